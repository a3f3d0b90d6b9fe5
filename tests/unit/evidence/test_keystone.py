"""RISC-V Keystone reports (:mod:`veritee.evidence.keystone`), built the way Keystone's security
monitor builds them (``tests.fakes.keystone``) with Keystone's published TEST device key from
../shared/testvectors/keystone: both forms verify and give their claims; every byte flipped,
every truncation and extension is refused with a reason (never another exception); device keys
count only through a policy."""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tests.fakes import keystone as fake

from veritee import evidence
from veritee.appraisal import appraise, load_policy
from veritee.appraisal.evaluate import appraise_baseline
from veritee.collateral import Collateral
from veritee.errors import (
    MalformedError,
    OversizedError,
    PolicyError,
    UsageError,
    VerificationError,
)
from veritee.evidence import eddsa, keystone
from veritee.reasons import is_known

AT = datetime(2026, 1, 15, tzinfo=UTC)
ENCLAVE_HASH = hashlib.sha3_512(b"loader || runtime || eapp pages").digest()
SM_HASH = hashlib.sha3_512(b"security monitor image").digest()
NONCE = bytes(range(64))


@functools.cache
def sm_key() -> fake.KeystoneKey:
    return fake.expand_seed(b"\x5a" * 32)


@functools.cache
def other_key() -> fake.KeystoneKey:
    return fake.expand_seed(b"\xa5" * 32)


def report(data: bytes = NONCE, **kw: object) -> bytes:
    args: dict[str, object] = {"device": fake.dev_key(), "sm": sm_key(), "enclave_hash": ENCLAVE_HASH,
                               "sm_hash": SM_HASH, "data": data}  # fmt: skip
    args.update(kw)
    return fake.build_report(**args)  # type: ignore[arg-type]


@functools.cache
def good() -> bytes:
    return report()


@functools.cache
def good_compact() -> bytes:
    return report(data=NONCE[:32], compact=True)


def verify(data: bytes) -> evidence.VerifiedEvidence:
    return evidence.verify(data, at=AT, format="keystone")


def refused(data: bytes) -> str:
    """The reason code ``data`` is refused with; any other exception fails the test."""
    with pytest.raises((MalformedError, VerificationError)) as e:
        verify(data)
    assert is_known(e.value.code), e.value.code
    return e.value.code


def policy(**section: object) -> str:
    keystone_section = {"device_keys": [fake.dev_key().public.hex()], **section}
    return json.dumps(
        {"version": 1, "name": "keystone-test", "platforms": {"keystone": keystone_section}}
    )


# --- layout and good reports ----------------------------------------------------------------------


def test_the_struct_form_follows_report_hpp() -> None:
    raw = good()
    assert len(raw) == keystone.REPORT_SIZE == 1352
    assert raw[:64] == ENCLAVE_HASH
    assert struct.unpack_from("<Q", raw, 64)[0] == len(NONCE)
    assert raw[72 : 72 + 64] == NONCE and not any(raw[72 + 64 : 72 + 1024])
    enclave_sig = raw[0x448:0x488]
    assert raw[0x488:0x4C8] == SM_HASH and raw[0x4C8:0x4E8] == sm_key().public
    sm_sig, dev = raw[0x4E8:0x528], raw[0x528:]
    assert dev == fake.dev_key().public
    # The signed bytes, checked with the Ed25519-SHA3 primitive directly (not via the parser).
    eddsa.verify(sm_key().public, ENCLAVE_HASH + struct.pack("<Q", 64) + NONCE, enclave_sig,
                 hash=eddsa.SHA3_512)  # fmt: skip
    eddsa.verify(dev, SM_HASH + sm_key().public, sm_sig, hash=eddsa.SHA3_512)


def test_an_rfc8032_verifier_refuses_a_report_signed_the_keystone_way() -> None:
    raw = good()
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(raw[0x528:]).verify(
            raw[0x4E8:0x528], SM_HASH + sm_key().public
        )


@pytest.mark.parametrize("length", [0, 1, 64, 1023, 1024])
@pytest.mark.parametrize("compact", [False, True])
def test_good_reports_verify_with_their_claims(length: int, compact: bool) -> None:
    data = bytes((7 * i + 3) % 256 for i in range(length))
    raw = report(data=data, compact=compact)
    assert len(raw) == (keystone.COMPACT_FIXED_SIZE + length if compact else 1352)
    assert evidence.detect_format(raw) == "keystone"
    ev = verify(raw)
    assert ev.format == "keystone" and ev.verified_at == AT
    c = ev.claims
    assert c["platform"] == "keystone"
    assert c["measurement"] == ENCLAVE_HASH.hex() and c["sm_measurement"] == SM_HASH.hex()
    assert c["report_data"] == data.hex()
    assert c["device_key"] == fake.dev_key().public.hex()
    assert c["sm_public_key"] == sm_key().public.hex()
    assert c["debug"] is False and c["tcb_status"] is None and c["profile"] == "development"
    assert evidence.parse_claims(raw, format="keystone") == c


def test_to_compact_drops_the_unsigned_tail() -> None:
    raw = report(padding=b"\xee" * (1024 - 64))  # what the SM's uninitialised stack may leave
    assert refused(raw) == "padding_not_zero"
    compact = keystone.to_compact(raw)
    assert len(compact) == keystone.COMPACT_FIXED_SIZE + 64
    assert verify(compact).claims == verify(good()).claims
    with pytest.raises(MalformedError):
        keystone.to_compact(compact)


# --- every mutation is refused --------------------------------------------------------------------


def test_every_byte_flipped_in_the_struct_form_is_refused() -> None:
    raw = good()
    codes = set()
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        codes.add(refused(bytes(bad)))
    # parse (data_len, tail), the curve checks and the equation each refuse some flip.
    assert {"padding_not_zero", "signature_invalid", "report_data_oversized"} <= codes, codes


def test_every_byte_flipped_in_the_compact_form_is_refused() -> None:
    raw = good_compact()
    for xor in (0x01, 0x80):
        for i in range(len(raw)):
            bad = bytearray(raw)
            bad[i] ^= xor
            refused(bytes(bad))


def test_every_truncation_and_extension_is_refused() -> None:
    for raw in (good(), good_compact()):
        for n in range(len(raw)):
            code = refused(raw[:n])
            assert code in ("empty", "truncated", "trailing_bytes", "signature_invalid", "signature_malformed",
                            "key_invalid", "padding_not_zero"), (n, code)  # fmt: skip
        for extra in (b"\0", b"\x01", bytes(1024)):
            refused(raw + extra)
    assert refused(good() + b"\0") == "oversized"
    assert refused(good_compact() + b"\0") == "trailing_bytes"


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(OversizedError):
        keystone.KeystoneReport.from_bytes(good() + bytes(100))
    with pytest.raises(OversizedError):  # the registry's own limit
        evidence.verify(bytes(evidence.MAX_EVIDENCE_BYTES + 1), at=AT, format="keystone")


@pytest.mark.parametrize("data_len", [1025, 2**32, 2**64 - 1])
def test_data_length_above_1024_is_refused(data_len: int) -> None:
    for raw in (good(), good_compact()):
        bad = raw[:64] + struct.pack("<Q", data_len) + raw[72:]
        assert refused(bad) == "report_data_oversized"
    with pytest.raises(AssertionError):  # the test helper will not even build one
        report(data=bytes(1025))


def test_reports_signed_by_other_keys_are_refused() -> None:
    dev = fake.dev_key()
    # The SM report signed by another key than the device key the report names.
    assert refused(report(sm_signed_by=other_key())) == "signature_invalid"
    # Another device key named than the one that signed.
    assert refused(report(dev_public_key=other_key().public)) == "signature_invalid"
    # The enclave report signed by another SM key than the one the SM report certifies.
    raw = bytearray(good())
    raw[0x448:0x488] = other_key().sign(ENCLAVE_HASH + struct.pack("<Q", 64) + NONCE)
    assert refused(bytes(raw)) == "signature_invalid"
    # Signed with RFC 8032's Ed25519 (SHA-512), not Keystone's.
    raw = bytearray(good())
    raw[0x4E8:0x528] = fake.sign(
        dev.secret, dev.public, SM_HASH + sm_key().public, hash=eddsa.SHA512
    )
    assert refused(bytes(raw)) == "signature_invalid"


def test_invalid_keys_and_malleable_signatures_are_refused() -> None:
    raw = good()
    not_a_point = (1 | (1 << 255)).to_bytes(32, "little")  # x = 0 with the sign bit set
    assert refused(raw[:0x528] + not_a_point) == "key_invalid"
    assert (
        refused(raw[:0x4C8] + not_a_point + raw[0x4E8:]) == "signature_invalid"
    )  # SM report first
    # S + L: the same signature mod L, refused as malleable.
    for off in (0x448, 0x4E8):
        s = int.from_bytes(raw[off + 32 : off + 64], "little") + eddsa.L
        bad = raw[: off + 32] + s.to_bytes(32, "little") + raw[off + 64 :]
        assert refused(bad) == "signature_malformed"


def test_all_zero_keys_and_signatures_are_refused() -> None:
    """An all-zero key is a point of order 4 with which an all-zero signature holds for a
    quarter of messages (a truncated struct-form report reads zeros there)."""
    raw = good()
    zero_sm = raw[:0x448] + bytes(64) + raw[0x488:0x4C8] + bytes(32) + bytes(64) + bytes(32)
    assert refused(zero_sm) == "key_invalid"
    for i in range(8):  # every such report refused, whatever its enclave hash
        assert refused(bytes([i]) + zero_sm[1:]) == "key_invalid"


def test_the_sm_report_cache_never_skips_a_check() -> None:
    verify(good())  # the SM report is now cached as verified
    raw = bytearray(good())
    raw[0x448 + 40] ^= 1  # the enclave signature's S
    assert refused(bytes(raw)) == "signature_invalid"
    raw = bytearray(good())
    raw[0x4E8 + 5] ^= 1  # the SM signature: another cache key
    assert refused(bytes(raw)) in ("signature_invalid", "signature_malformed")


def test_trust_is_refused_and_time_must_be_aware() -> None:
    with pytest.raises(UsageError):
        keystone.verify(
            good(), collateral=Collateral.empty(), at=AT, trust=[fake.dev_key().public.hex()]
        )
    with pytest.raises(UsageError):
        keystone.verify(good(), collateral=Collateral.empty(), at=datetime(2026, 1, 1))


def test_detection() -> None:
    assert keystone.detect(good()) and keystone.detect(good_compact())
    assert not keystone.detect(good()[:-1]) and not keystone.detect(good_compact() + b"\0")
    assert not keystone.detect(good()[:64] + struct.pack("<Q", 1025) + good()[72:])


# --- trust only through the policy ------------------------------------------------------------------


def test_the_baseline_never_trusts_a_device_key() -> None:
    d = appraise_baseline(verify(good()))
    assert not d.accepted
    assert [r.code for r in d.reasons] == ["platform_key_not_trusted"]
    assert "platforms.keystone.device_keys" in d.reasons[0].message


def test_a_policy_trusts_its_device_keys_and_pins_both_measurements() -> None:
    ev = verify(good())
    ok = appraise(
        ev, load_policy(policy(measurements=[ENCLAVE_HASH.hex()], sm_measurements=[SM_HASH.hex()]))
    )
    assert ok.accepted, ok.reasons
    assert appraise(
        ev, load_policy(policy())
    ).accepted  # no pins: any measurement of a trusted device
    d = appraise(ev, load_policy(policy(device_keys=[other_key().public.hex()])))
    assert [r.code for r in d.reasons] == ["platform_key_not_trusted"]
    d = appraise(ev, load_policy(policy(device_keys=[])))
    assert [r.code for r in d.reasons] == ["platform_key_not_trusted"]
    d = appraise(ev, load_policy(policy(measurements=["00" * 64], sm_measurements=["11" * 64])))
    assert {r.code for r in d.reasons} == {"measurement_not_allowed", "sm_measurement_not_allowed"}
    # A device whose key the policy does not list, signing its own reports: authentic, refused.
    rogue = verify(report(device=other_key()))
    assert rogue.claims["device_key"] == other_key().public.hex()
    assert not appraise(rogue, load_policy(policy())).accepted
    # A policy without a keystone section refuses the platform.
    other = json.dumps({"version": 1, "name": "x", "platforms": {"simulated": {}}})
    assert [r.code for r in appraise(ev, load_policy(other)).reasons] == ["platform_not_allowed"]


@pytest.mark.parametrize("section", [
    {"device_keys": ["00" * 31]},
    {"device_keys": ["zz" * 32]},
    {"device_keys": [(1 | (1 << 255)).to_bytes(32, "little").hex()]},  # not a point
    {"measurements": ["00" * 48]},
    {"sm_measurements": ["00" * 65]},
    {"platform_keys": []},
])  # fmt: skip
def test_malformed_keystone_sections_do_not_load(section: dict[str, object]) -> None:
    doc = {"version": 1, "name": "x", "platforms": {"keystone": section}}
    with pytest.raises(PolicyError):
        load_policy(json.dumps(doc))


def test_veritee_verify_format_keystone_with_a_policy(tmp_path: Path) -> None:
    from veritee.cli.main import _register, cli

    _register()
    ev = tmp_path / "report.bin"
    ev.write_bytes(good())
    pol = tmp_path / "policy.yaml"
    pol.write_text(policy(measurements=[ENCLAVE_HASH.hex()]))
    runner = CliRunner()
    r = runner.invoke(cli, ["verify", str(ev), "--format", "keystone", "--policy", str(pol), "--json",
                            "--nonce", NONCE.hex()])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["format"] == "keystone" and out["accepted"] and out["authentic"]
    assert out["claims"]["measurement"] == ENCLAVE_HASH.hex()
    assert out["claims"]["report_data"] == NONCE.hex()
    # The baseline: authentic, not accepted, exit 1, with the reason.
    r = runner.invoke(cli, ["verify", str(ev), "--format", "keystone", "--json"])
    assert r.exit_code == 1
    out = json.loads(r.output)
    assert out["authentic"] and not out["accepted"]
    assert [x["code"] for x in out["reasons"]] == ["platform_key_not_trusted"]
    # Auto-detected; a wrong nonce is refused.
    r = runner.invoke(
        cli, ["verify", str(ev), "--policy", str(pol), "--json", "--nonce", "00" * 64]
    )
    out = json.loads(r.output)
    assert r.exit_code == 1 and out["format"] == "keystone"
    assert "nonce_mismatch" in [x["code"] for x in out["reasons"]]
    # A flipped byte: not authentic, exit 1, a reason.
    bad = bytearray(good())
    bad[0x100] ^= 1
    ev.write_bytes(bytes(bad))
    r = runner.invoke(
        cli, ["verify", str(ev), "--format", "keystone", "--policy", str(pol), "--json"]
    )
    out = json.loads(r.output)
    assert r.exit_code == 1 and not out["authentic"]
    assert [x["code"] for x in out["reasons"]] == ["padding_not_zero"]
