"""A certified release re-appraises the admission certificate's claims under a policy whose
allow-list is a reference-value set (issue 17): released while the CoRIM counts, refused once it
is withdrawn (in-process service over HTTP, the SDK as the workload)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import cbor2
import httpx
import pytest

from veritee.appraisal import load_policy, sign_policy
from veritee.domain import Domain
from veritee.errors import VerificationError
from veritee.platforms.simulated import SimulatedPlatform
from veritee.sdk.trust import Trust
from veritee.service.app import create_app
from veritee.service.runner import start_in_thread
from veritee.service.settings import Settings

A = "a1" * 48
VALUE = b"released against a reference-value set"


def _corim(measurement: str) -> bytes:
    comid = {
        1: {0: "fe-build"},
        4: {
            0: [
                [
                    {0: {1: "ACME", 2: "frontend"}},
                    [{0: "image", 1: {2: [[7, bytes.fromhex(measurement)]]}}],
                ]
            ]
        },
    }
    return bytes(
        cbor2.dumps(
            cbor2.CBORTag(501, {0: "fe-corim", 1: [cbor2.CBORTag(506, cbor2.dumps(comid))]})
        )
    )


def test_certified_release_follows_the_set(tmp_path: Path) -> None:
    domain = Domain.create(tmp_path / "domain", name="rv", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)))
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    try:
        r = httpx.post(server.url + "/v1/admin/refvalues", headers=admin, json={
            "set": "fe", "corim": base64.b64encode(_corim(A)).decode(), "file_name": "fe.corim",
            "allow_unsigned": True})  # fmt: skip
        assert r.status_code == 200, r.text
        source = r.json()["id"]
        key_id = SimulatedPlatform(tmp_path / "sim", measurement=A).key_id
        doc = {"version": 1, "name": "fe", "platforms": {"simulated": {
            "measurements": {"refvalues": "fe"}, "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip
        signed = sign_policy(load_policy(json.dumps(doc)), domain.policy_key)
        assert (
            httpx.put(server.url + "/v1/admin/policy", content=signed, headers=admin).status_code
            == 200
        )
        secret = {"value": base64.b64encode(VALUE).decode(),
                  "policy": {"allOf": [{"claim": "measurement", "in": [A]}]}}  # fmt: skip
        assert (
            httpx.put(
                server.url + "/v1/admin/secrets/app/key", json=secret, headers=admin
            ).status_code
            == 200
        )
        trust = Trust(server.url, domain.path / "domain_ca.pem", platform="simulated", store=tmp_path / "a",
                      measurement=A, platform_dir=tmp_path / "sim")  # fmt: skip
        assert trust.get_secret("app/key", with_certificate=True) == VALUE
        r = httpx.post(
            f"{server.url}/v1/admin/refvalues/{source}/withdraw",
            headers=admin,
            json={"reason": "cve"},
        )
        assert r.status_code == 200 and r.json()["new"] is True
        with pytest.raises(VerificationError) as e:
            trust.get_secret("app/key", with_certificate=True)
        assert "refvalues_unavailable" in [x["code"] for x in e.value.reasons]  # type: ignore[attr-defined]
    finally:
        server.stop()
