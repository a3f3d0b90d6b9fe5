"""The service appraises RISC-V Keystone reports end to end (/v1/attest): a report built as
Keystone's SM builds it, with the published TEST device key, binding the service's fresh nonce
in its data, is admitted under a policy that lists the device key; other device keys, other
enclaves and tampered reports are refused with their reasons and audited, never an HTTP 500."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from tests.fakes import keystone as fake
from tests.service.conftest import Env

from veritee.binding import report_data_for
from veritee.profiles import Profile

pytestmark = pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)

ENCLAVE = hashlib.sha3_512(b"keystone eapp").digest()
SM = hashlib.sha3_512(b"keystone sm").digest()


def _policy(device_key: bytes) -> dict[str, Any]:
    return {"version": 1, "name": "keystone", "platforms": {"keystone": {
        "device_keys": [device_key.hex()], "measurements": [ENCLAVE.hex()], "sm_measurements": [SM.hex()]}}}  # fmt: skip


def _attest(env: Env, *, device: fake.KeystoneKey | None = None, enclave: bytes = ENCLAVE,
            flip: int | None = None) -> dict[str, Any]:  # fmt: skip
    nonce = env.nonce()
    data = report_data_for(nonce, b"", profile=Profile.DEVELOPMENT)
    raw = bytearray(fake.build_report(device=device or fake.dev_key(), sm=fake.expand_seed(b"\x33" * 32),
                                      enclave_hash=enclave, sm_hash=SM, data=data))  # fmt: skip
    if flip is not None:
        raw[flip] ^= 1
    body = {
        "evidence": base64.b64encode(bytes(raw)).decode(),
        "nonce": nonce.hex(),
        "format": "keystone",
    }
    r = env.client.post("/v1/attest", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_keystone_enclave_is_admitted_by_its_device_key(env: Env) -> None:
    env.install_policy(_policy(fake.dev_key().public))
    out = _attest(env)
    assert out["accepted"] is True, out["reasons"]
    assert out["claims"]["platform"] == "keystone"
    assert out["claims"]["measurement"] == ENCLAVE.hex()
    assert out["claims"]["sm_measurement"] == SM.hex()
    assert out["token"]


def test_other_devices_enclaves_and_tampered_reports_are_refused(env: Env) -> None:
    env.install_policy(_policy(fake.dev_key().public))
    rogue = _attest(env, device=fake.expand_seed(b"\x44" * 32))
    assert [r["code"] for r in rogue["reasons"]] == ["platform_key_not_trusted"]
    other = _attest(env, enclave=hashlib.sha3_512(b"another eapp").digest())
    assert [r["code"] for r in other["reasons"]] == ["measurement_not_allowed"]
    for flip, code in ((0x10, "signature_invalid"), (0x40, "signature_invalid"), (0x200, "padding_not_zero"),
                       (0x4C8, "signature_invalid"), (0x530, "signature_invalid")):  # fmt: skip
        out = _attest(env, flip=flip)
        assert out["accepted"] is False
        assert out["reasons"][0]["code"] in (code, "signature_malformed", "key_invalid"), (
            flip,
            out["reasons"],
        )
    entries = env.client.get("/v1/admin/audit?limit=3", headers=env.admin).json()["entries"]
    assert entries[-1]["kind"] == "attest" and entries[-1]["decision"] == "reject"
