"""The service appraises real hardware evidence (SEV-SNP, TDX, SGX, Nitro) with the same policies.

Real samples cannot bind a fresh nonce, so the checks go through the admin dry run (which takes
an explicit verification time) and through /v1/attest, where the only refusal left must be the
nonce binding.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TESTVECTORS, manifest_cases
from tests.service.conftest import Env

CASES = [c for c in manifest_cases() if c["format"] in ("sev-snp", "tdx", "sgx", "nitro")]


def _blobs(case: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"name": Path(p).name, "data": base64.b64encode((TESTVECTORS / p).read_bytes()).decode()}
        for p in case["collateral"]
    ]


def _policy_for(case: dict[str, Any], *, pin: bool) -> dict[str, Any]:
    claims = case["claims"]
    m = claims["measurement"] if pin else "00" * (len(claims["measurement"]) // 2)
    platforms: dict[str, Any] = {
        "sev-snp": {"measurements": [m]},
        "tdx": {"mrtd": [m]},
        "sgx": {
            "mr_enclave": [m],
            "tcb_status": ["UpToDate", "ConfigurationAndSWHardeningNeeded"],
            "allowed_advisories": ["INTEL-SA-00289", "INTEL-SA-00615"],
        },
        "nitro": {"pcr0": [m]},
    }
    return {"version": 1, "name": "hw", "platforms": {case["format"]: platforms[case["format"]]}}


def _dry_run(env: Env, case: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    r = env.client.post(
        "/v1/admin/policy/dry-run",
        headers=env.admin,
        json={
            "policy": json.dumps(policy),
            "evidence": base64.b64encode((TESTVECTORS / case["evidence"]).read_bytes()).decode(),
            "format": case["format"],
            "at": case["verify_at"],
            "collateral": _blobs(case),
        },
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.skipif(not CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c['evidence']}@{c['verify_at'][:10]}" for c in CASES]
)
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_dry_run_pins_measurement(env: Env, case: dict[str, Any]) -> None:
    out = _dry_run(env, case, _policy_for(case, pin=True))
    codes = {r["code"] for r in out["reasons"]}
    if case["baseline"] == "accept":
        assert out["accepted"] is True, out["reasons"]
        assert out["claims"]["measurement"] == case["claims"]["measurement"]
    elif case["format"] == "sgx":
        # refused by the baseline only for its advisories; this policy allows them
        assert out["accepted"] is True, out["reasons"]
        assert out["status"] == "warning"
    else:
        assert out["accepted"] is False and codes, out
    wrong = _dry_run(env, case, _policy_for(case, pin=False))
    assert wrong["accepted"] is False
    if case["baseline"] == "accept":
        assert {r["code"] for r in wrong["reasons"]} & {
            "measurement_not_allowed",
            "mrtd_not_allowed",
            "mr_enclave_not_allowed",
            "pcr0_not_allowed",
        }


@pytest.mark.skipif(not CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_attest_with_real_evidence_is_refused_only_for_the_nonce(env: Env) -> None:
    case = next(c for c in CASES if c["evidence"].endswith("virtee_milan_report.bin"))
    env.install_policy(_policy_for(case, pin=True))
    nonce = env.nonce()
    r = env.client.post(
        "/v1/attest",
        json={
            "evidence": base64.b64encode((TESTVECTORS / case["evidence"]).read_bytes()).decode(),
            "nonce": nonce.hex(),
            "format": "sev-snp",
            "collateral": _blobs(case),
        },
    )
    assert r.status_code == 200, r.text
    assert [x["code"] for x in r.json()["reasons"]] == ["binding_mismatch"]
    assert r.json()["claims"]["measurement"] == case["claims"]["measurement"]
