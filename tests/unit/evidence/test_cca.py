"""Arm CCA tokens on veraison's TF-RMM sample (an FVP model with a test CPAK) and mutations
re-signed or re-encoded so that each reaches the check it is meant for."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import TESTVECTORS

from veritee import evidence
from veritee.appraisal import appraise, load_policy
from veritee.collateral import Collateral
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import cca

DIR = TESTVECTORS / "arm-cca"
TOKEN = DIR / "veraison_tfrmm_cca_token.cbor"
AT = datetime(2026, 1, 1, tzinfo=UTC)
pytestmark = pytest.mark.skipif(
    not TOKEN.is_file(), reason="test vectors absent (../shared/testvectors)"
)


@functools.cache
def _raw() -> bytes:
    return TOKEN.read_bytes()


@functools.cache
def _cpak() -> Collateral:
    return Collateral.from_paths([DIR])


def _parts() -> tuple[dict[Any, Any], list[Any], list[Any]]:
    outer = cbor2.loads(_raw())
    platform = cbor2.loads(outer.value[cca.PLATFORM]).value
    realm = cbor2.loads(outer.value[cca.REALM]).value
    return dict(outer.value), list(platform), list(realm)


def _token(platform: list[Any], realm: list[Any]) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(cca.CCA_TOKEN_TAG, {
        cca.PLATFORM: cbor2.dumps(cbor2.CBORTag(18, platform)),
        cca.REALM: cbor2.dumps(cbor2.CBORTag(18, realm)),
    }))  # fmt: skip


def _with_claims(sign1: list[Any], change: dict[int, Any]) -> list[Any]:
    claims = cbor2.loads(sign1[2])
    claims.update(change)
    return [sign1[0], sign1[1], cbor2.dumps(claims), sign1[3]]


def test_real_token_verifies_with_its_platform_key() -> None:
    assert cca.detect(_raw()) and evidence.detect_format(_raw()) == "cca"
    ev = cca.verify(_raw(), collateral=_cpak(), at=AT)
    c = ev.claims
    assert c["platform"] == "cca" and c["debug"] is False
    assert c["report_data"] == "ab" * 64 and c["measurement"] == "00" * 32
    assert [x["type"] for x in c["platform_components"]] == ["BL", "M1", "M2", "M3"]
    key = serialization.load_pem_public_key((DIR / "veraison_tfrmm_cca_platform.pub").read_bytes())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib

    assert c["platform_key"] == hashlib.sha256(der).hexdigest()
    assert {k: v for k, v in c.items() if k != "platform_key"} == cca.parse_claims(_raw())


def test_platform_key_must_be_given_and_must_verify() -> None:
    with pytest.raises(VerificationError) as e:
        cca.verify(_raw(), collateral=Collateral.empty(), at=AT)
    assert e.value.code == "platform_key_not_trusted"
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(VerificationError) as e:
        cca.verify(_raw(), collateral=Collateral(public_keys=(other,)), at=AT)
    assert e.value.code == "platform_key_not_trusted"


def test_changed_claims_break_the_signatures_or_the_binding() -> None:
    _, platform, realm = _parts()
    changed_realm = _with_claims(realm, {44238: b"\x01" * 32})  # another RIM, old signature
    with pytest.raises(VerificationError) as e:
        cca.verify(_token(platform, changed_realm), collateral=_cpak(), at=AT)
    assert e.value.code == "signature_invalid"
    changed_platform = _with_claims(platform, {2395: 0x2000})  # lifecycle, old signature
    with pytest.raises(VerificationError) as e:
        cca.verify(_token(changed_platform, realm), collateral=_cpak(), at=AT)
    assert e.value.code == "platform_key_not_trusted"
    # A realm token re-signed by another RAK (so its own signature holds) is not the one the
    # platform vouched for.
    rak = ec.generate_private_key(ec.SECP384R1())
    point = rak.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)  # fmt: skip
    forged = _with_claims(realm, {44237: point})
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from veritee.evidence.nitro import sig_structure

    r, s = decode_dss_signature(
        rak.sign(sig_structure(forged[0], forged[2]), ec.ECDSA(hashes.SHA384()))
    )
    forged[3] = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    with pytest.raises(VerificationError) as e:
        cca.verify(_token(platform, forged), collateral=_cpak(), at=AT)
    assert e.value.code == "binding_mismatch"


def test_malformed_tokens_name_their_field() -> None:
    _, platform, realm = _parts()
    cases = {
        "token": [b"\x00", cbor2.dumps([1, 2]), cbor2.dumps(cbor2.CBORTag(399, {1: b""})),
                  b"\xd9\x01\x8f" + b"\xa2" * 10, b"\xd9\x01\x8f" + b"\x00" * (cca.MAX_TOKEN_BYTES + 1)],
        "realm": [_token(platform, _with_claims(realm, {44237: b"\x04" * 10})),
                  _token(platform, _with_claims(realm, {10: "not bytes"})),
                  _token(platform, _with_claims(realm, {44239: [b"\x00"]})),
                  _token(platform, [realm[0], realm[1], b"\xff", realm[3]])],
        "platform": [_token(_with_claims(platform, {2395: "x"}), realm),
                     _token([platform[0], platform[1], platform[2], b"short"], realm)],
    }  # fmt: skip
    for prefix, tokens in cases.items():
        for data in tokens:
            with pytest.raises(MalformedError) as e:
                cca.verify(data, collateral=_cpak(), at=AT)
            assert e.value.field is not None and e.value.field.startswith(prefix), (prefix, e.value)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(st.integers(min_value=0, max_value=1221), st.integers(min_value=1, max_value=255))
def test_any_single_byte_change_is_refused(at: int, xor: int) -> None:
    data = bytearray(_raw())
    data[at] ^= xor
    with pytest.raises((MalformedError, VerificationError)):
        cca.verify(bytes(data), collateral=_cpak(), at=AT)


def test_policy_trusts_the_platform_key_and_pins_the_realm(tmp_path: Path) -> None:
    ev = cca.verify(_raw(), collateral=_cpak(), at=AT)
    key = ev.claims["platform_key"]
    ok = load_policy(
        f"version: 1\nname: realm\nplatforms:\n  cca:\n    platform_keys: ['{key}']\n"
        f"    measurements: ['{'00' * 32}']\n    rem: {{'0': ['{'00' * 32}']}}\n"
    )
    d = appraise(ev, ok)
    assert d.accepted, [r.code for r in d.reasons]
    untrusted = load_policy(
        "version: 1\nname: realm\nplatforms:\n  cca:\n    platform_keys: ['" + "11" * 32 + "']\n"
    )
    assert [r.code for r in appraise(ev, untrusted).reasons] == ["platform_key_not_trusted"]
    with pytest.raises(Exception, match=r"cca\.rem"):
        load_policy("version: 1\nname: r\nplatforms:\n  cca:\n    rem: {'4': ['00']}\n")
