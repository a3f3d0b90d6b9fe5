"""One appraisal workflow (issue 11, "Fix at the cause"): `veritee verify`, the service's
/v1/attest and the admin dry run all call :func:`veritee.appraisal.attest.appraise_evidence`, so
the same evidence gets the same binding rule and the same reasons everywhere. They once bound
differently: the CLI refused a version-1 binding of production evidence as ``nonce_mismatch``
(and accepted a prefix), the service as ``binding_version_refused``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from tests.service.conftest import GOOD, Env

from veritee.binding import report_data_for, report_data_v1
from veritee.cli.verify import verify_evidence
from veritee.platforms.simulated import SimulatedPlatform
from veritee.profiles import Profile


def _policy(platform: SimulatedPlatform) -> dict[str, object]:
    return {"version": 1, "name": "p", "platforms": {"simulated": {
        "measurements": [GOOD], "platform_keys": [platform.key_id]}}}  # fmt: skip


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize("binding", ["v1", "v2", "other"])
def test_the_cli_the_service_and_the_dry_run_decide_alike(
    env: Env, tmp_path: Path, binding: str
) -> None:
    platform = SimulatedPlatform(
        tmp_path / "prod", measurement=GOOD, profile=Profile.PRODUCTION, debug=False
    )
    env.install_policy(_policy(platform))
    nonce = env.nonce()
    report_data = {
        "v1": report_data_v1(nonce, b""),
        "v2": report_data_for(nonce, b"", profile=Profile.PRODUCTION),
        "other": report_data_for(nonce[::-1], b"", profile=Profile.PRODUCTION),
    }[binding]
    ev = platform.evidence(report_data)
    r = env.client.post("/v1/attest", json={"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(),
                                            "format": "simulated"})  # fmt: skip
    assert r.status_code == 200, r.text
    service = [x["code"] for x in r.json()["reasons"]]
    policy_file = tmp_path / "p.json"
    policy_file.write_text(json.dumps(_policy(platform)))
    cli = verify_evidence(ev, format="auto", collateral_paths=[], at=dt.datetime.now(dt.UTC),
                          policy_text=policy_file.read_bytes(), nonce=nonce)  # fmt: skip
    assert (
        service
        == {"v1": ["binding_version_refused"], "v2": [], "other": ["binding_mismatch"]}[binding]
    )
    # The same rule; where no form carries the nonce the CLI names that condition as its own
    # documented code, since it also accepts the whole report data or nonce claim.
    expected_cli = ["nonce_mismatch"] if binding == "other" else service
    assert [x["code"] for x in cli["reasons"]] == expected_cli
    assert cli["accepted"] is (binding == "v2") is r.json()["accepted"]
    dry = env.client.post("/v1/admin/policy/dry-run", headers=env.admin, json={
        "policy": json.dumps(_policy(platform)), "evidence": base64.b64encode(ev).decode()})  # fmt: skip
    assert dry.status_code == 200 and dry.json()["accepted"] is True  # no nonce named: no binding
