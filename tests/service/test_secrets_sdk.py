"""Trust.get_secret against the in-process service (SDK transport seam)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from tests.service.conftest import GOOD, OTHER, Env

from veritee.errors import VerificationError
from veritee.sdk.secrets import fetch_secret
from veritee.sdk.trust import Trust


def _put(env: Env) -> None:
    policy = {"anyOf": [{"claim": "measurement", "equals": GOOD}]}
    body = {"value": base64.b64encode(b"api-key-123").decode(), "policy": policy}
    assert env.client.put("/v1/admin/secrets/api", json=body, headers=env.admin).status_code == 200


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_get_secret_via_trust(env: Env, tmp_path: Path) -> None:
    env.install_policy()
    _put(env)
    trust = Trust(
        "http://testserver",
        env.domain.ca_pem,
        platform="simulated",
        measurement=GOOD,
        platform_dir=env.platform_dir,
        store=tmp_path / "store",
    )
    trust._http = env.client  # the in-process app behind the same httpx interface
    assert trust.get_secret("api") == b"api-key-123"
    assert (
        fetch_secret(
            env.client,
            env.platform,
            "api",
            envelope="jwe",
            ca_certificate=env.domain.ca_certificate,
        )
        == b"api-key-123"
    )


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_modified_workload_is_told_why(env: Env) -> None:
    doc = {"version": 1, "name": "t", "platforms": {"simulated": {
        "measurements": [GOOD, OTHER], "platform_keys": [env.platform.key_id], "allow_debug": True}}}  # fmt: skip
    env.install_policy(doc)
    _put(env)
    with pytest.raises(VerificationError) as e:
        fetch_secret(
            env.client, env.workload(OTHER), "api", ca_certificate=env.domain.ca_certificate
        )
    assert e.value.code == "release_denied"
    assert e.value.reasons[0]["code"] == "release_claim_mismatch"  # type: ignore[attr-defined]
