"""TPM 2.0 quotes (go-tpm-tools attestation) on the real GCE vTPM sample, and mutations of it.

The sample is read from ../shared/testvectors/tpm (never copied); negative cases re-encode the
protobuf with one field changed, so each reaches the check it is meant for.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import TESTVECTORS
from tests.fakes.tpm_sample import (
    AT,
    SAMPLE,
    decode_fields,
    encode_fields,
    sample_bytes,
    sample_roots,
    verify_claims,
)

from veritee import evidence
from veritee.appraisal import appraise, load_policy
from veritee.collateral import Collateral
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import tcg_log, tpm

pytestmark = [
    pytest.mark.skipif(not SAMPLE.is_file(), reason="test vectors absent (../shared/testvectors)"),
    pytest.mark.filterwarnings("ignore:Attribute's length must be"),
]


def _with_quote(mutate: Any, index: int = 0) -> bytes:
    """The sample with quote ``index`` replaced by ``mutate(list of its fields)``."""
    top = decode_fields(sample_bytes())
    positions = [i for i, (n, _) in enumerate(top) if n == 2]
    pos = positions[index]
    value = top[pos][1]
    assert isinstance(value, bytes)
    top[pos] = (2, encode_fields(mutate(decode_fields(value))))
    return encode_fields(top)


def test_real_gce_sample_verifies_and_gives_claims() -> None:
    assert tpm.detect(sample_bytes()) and evidence.detect_format(sample_bytes()) == "tpm"
    assert (
        decode_fields(sample_bytes())
        and encode_fields(decode_fields(sample_bytes())) == sample_bytes()
    )  # the test encoder round-trips
    claims = verify_claims(sample_bytes())
    assert claims["platform"] == "tpm"
    assert claims["report_data"] == "9009"  # extraData: the nonce the verifier asked for
    assert set(claims["pcrs"]) == {"sha1", "sha256", "sha384"}
    assert len(claims["pcrs"]["sha256"]) == 24 and claims["pcr8"] == claims["pcrs"]["sha256"]["8"]
    assert len(claims["measurement"]) == 96 and claims["debug"] is False
    unverified = tpm.parse_claims(sample_bytes())  # the module's own, as verify_claims is
    assert unverified["event_log"] == {"bytes": 23970, "verified": False}
    assert {k: v for k, v in claims.items() if k not in ("event_log", "ak_root")} == {
        k: v for k, v in unverified.items() if k != "event_log"
    }
    assert claims["ak_root"] in tpm.PINNED_ROOTS  # which root vouched for the AK
    assert claims["event_log"]["verified"] is True and claims["event_log"]["pcrs"] == list(
        range(10)
    )
    assert claims["event_log"]["banks"] == ["sha1", "sha256", "sha384"]
    via_registry = evidence.verify(sample_bytes(), collateral=sample_roots(), at=AT, format="auto")
    assert via_registry.format == "tpm"


def test_trust_comes_from_the_pinned_root_and_the_time() -> None:
    with pytest.raises(VerificationError) as e:
        verify_claims(
            sample_bytes(), collateral=Collateral.empty()
        )  # intermediate and root not given
    assert e.value.code == "root_not_pinned"
    with pytest.raises(VerificationError) as e:
        tpm.verify(
            sample_bytes(), collateral=sample_roots(), at=AT, trust={"00" * 32}
        )  # another pin
    assert e.value.code == "root_not_pinned"
    with pytest.raises(VerificationError) as e:
        verify_claims(
            sample_bytes(), at=datetime(2021, 1, 1, tzinfo=UTC)
        )  # before the AK certificate
    assert e.value.code == "certificate_expired"


def test_a_changed_pcr_value_or_signature_or_nonce_is_refused() -> None:
    def bump_pcr(fields: list[tuple[int, int | bytes]]) -> list[tuple[int, int | bytes]]:
        out = []
        for n, v in fields:
            if n == 3 and isinstance(v, bytes):
                pcrs = decode_fields(v)
                entry = decode_fields(pcrs[1][1])  # type: ignore[arg-type]
                digest = entry[1][1]
                assert isinstance(digest, bytes)
                entry[1] = (2, bytes([digest[0] ^ 1]) + digest[1:])
                pcrs[1] = (2, encode_fields(entry))
                v = encode_fields(pcrs)
            out.append((n, v))
        return out

    with pytest.raises(VerificationError) as e:
        verify_claims(_with_quote(bump_pcr))
    assert e.value.code == "tpm_pcr_mismatch"

    def flip(number: int, offset: int) -> Any:
        def go(fields: list[tuple[int, int | bytes]]) -> list[tuple[int, int | bytes]]:
            out = []
            for n, v in fields:
                if n == number and isinstance(v, bytes):
                    v = v[:offset] + bytes([v[offset] ^ 1]) + v[offset + 1 :]
                out.append((n, v))
            return out

        return go

    with pytest.raises(VerificationError) as e:
        verify_claims(_with_quote(flip(2, 40), index=1))  # a signature byte of the SHA-256 quote
    assert e.value.code == "signature_invalid"
    # extraData (the nonce) sits at byte 44 of the quote: signed, so changing it breaks it.
    with pytest.raises(VerificationError) as e:
        verify_claims(_with_quote(flip(1, 44)))
    assert e.value.code == "signature_invalid"
    with pytest.raises(VerificationError) as e:
        verify_claims(_with_quote(flip(1, 0)))  # the magic
    assert e.value.code == "tpm_not_generated"


def test_the_ak_must_be_certified_and_be_the_certified_key() -> None:
    top = decode_fields(sample_bytes())
    without_cert = encode_fields([(n, v) for n, v in top if n != 6])
    with pytest.raises(VerificationError) as e:
        verify_claims(without_cert)
    assert e.value.code == "ak_not_certified"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    ak_pub = next(v for n, v in top if n == 1)
    assert isinstance(ak_pub, bytes)
    modulus = other.public_numbers().n.to_bytes(256, "big")
    swapped = ak_pub[: len(ak_pub) - 256] + modulus
    forged = encode_fields([(n, swapped if n == 1 else v) for n, v in top])
    with pytest.raises(VerificationError) as e:
        verify_claims(forged)
    assert e.value.code == "ak_mismatch"


def test_structure_errors_name_their_field() -> None:
    top = decode_fields(sample_bytes())
    cases = {
        "no quotes": encode_fields([(n, v) for n, v in top if n != 2]),
        "no ak_pub": encode_fields([(n, v) for n, v in top if n != 1]),
        "ak_pub cut": encode_fields(
            [(n, v[:-10] if n == 1 and isinstance(v, bytes) else v) for n, v in top]
        ),
        "nine quotes": encode_fields(top + [(2, top[1][1])] * 6),
        "same bank twice": encode_fields([*top[:2], top[1], *top[2:]]),
        "quote without its signature": _with_quote(lambda f: [x for x in f if x[0] != 2]),
        "bad wire type": sample_bytes()[:1] + b"\x0f",
    }
    for name, data in cases.items():
        with pytest.raises((MalformedError, VerificationError)) as e:
            verify_claims(data)
        assert e.value.message, name
        if isinstance(e.value, MalformedError):
            assert e.value.field or e.value.offset is not None, name
    for cut in range(0, len(sample_bytes()), 997):
        with pytest.raises((MalformedError, VerificationError)):
            verify_claims(sample_bytes()[:cut] if cut else b"\x0a")


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(st.integers(min_value=0, max_value=29_601), st.integers(min_value=1, max_value=255))
def test_any_single_byte_change_is_refused_cleanly(at: int, xor: int) -> None:
    data = bytearray(sample_bytes())
    if at >= len(data):
        return
    data[at] ^= xor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            verify_claims(bytes(data))
        except (MalformedError, VerificationError):
            return
    # Only bytes nothing vouches for may change without a refusal: the event log (not
    # replayed) and the TPMT_PUBLIC fields around the AK's modulus (attributes, policy: the AK
    # certificate certifies the key only).
    ak_pub, log = (next(v for n, v in decode_fields(sample_bytes()) if n == k) for k in (1, 3))
    assert isinstance(ak_pub, bytes) and isinstance(log, bytes)
    ak_at, log_at = sample_bytes().find(ak_pub), sample_bytes().find(log)
    assert ak_at <= at < ak_at + len(ak_pub) - 256 or log_at <= at < log_at + len(log), at


def test_policy_pins_pcrs_and_the_measurement(tmp_path: Path) -> None:
    ev = tpm.verify(sample_bytes(), collateral=sample_roots(), at=AT)
    pcr8 = ev.claims["pcr8"]
    ok = load_policy(
        "version: 1\nname: vm\nplatforms:\n  tpm:\n"
        f"    measurements: ['{ev.claims['measurement']}']\n    pcrs: {{'8': ['{pcr8}']}}\n"
    )
    d = appraise(ev, ok)
    assert d.accepted, [r.code for r in d.reasons]
    other = load_policy(
        "version: 1\nname: vm\nplatforms:\n  tpm:\n    pcrs: {'8': ['" + "00" * 32 + "']}\n"
    )
    d = appraise(ev, other)
    assert not d.accepted and [r.code for r in d.reasons] == ["pcr8_not_allowed"]
    for bad in (
        "pcrs: {'24': ['" + "00" * 32 + "']}",
        "pcrs: {'8': ['00']}",
        "measurements: ['zz']",
    ):
        with pytest.raises(Exception) as e:
            load_policy(f"version: 1\nname: vm\nplatforms:\n  tpm:\n    {bad}\n")
        assert "tpm" in str(e.value)


def test_cli_verify_format_tpm(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from veritee.cli.main import _register, cli

    _register()
    args = ["verify", str(SAMPLE), "--format", "tpm", "--at", "2026-01-01T00:00:00Z", "--json"]
    r = CliRunner().invoke(
        cli, [*args, "--collateral", str(TESTVECTORS / "tpm"), "--nonce", "9009"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert (out["format"], out["authentic"], out["accepted"]) == ("tpm", True, True)
    # The whole extraData, never a prefix of it (issue 11 item 7).
    r = CliRunner().invoke(cli, [*args, "--collateral", str(TESTVECTORS / "tpm"), "--nonce", "90"])
    assert r.exit_code == 1 and json.loads(r.output)["reasons"][0]["code"] == "nonce_mismatch"
    r = CliRunner().invoke(cli, args)  # no collateral: the chain cannot reach the pinned root
    assert r.exit_code == 1 and json.loads(r.output)["reasons"][0]["code"] == "root_not_pinned"
    bad = tmp_path / "bad.pb"
    bad.write_bytes(sample_bytes()[:500])
    r = CliRunner().invoke(cli, ["verify", str(bad), "--format", "tpm", "--json"])
    assert r.exit_code == 1 and json.loads(r.output)["authentic"] is False


def test_without_the_sha256_bank_there_is_no_measurement_to_pin() -> None:
    top = decode_fields(sample_bytes())
    quotes = [v for n, v in top if n == 2]
    sha1_only = encode_fields([(n, v) for n, v in top if n != 2] + [(2, quotes[0])])
    claims = verify_claims(sha1_only)
    assert claims["measurement"] is None and "pcr8" not in claims
    assert set(claims["pcrs"]) == {"sha1"}
    policy = load_policy(
        "version: 1\nname: vm\nplatforms:\n  tpm:\n    measurements: ['" + "00" * 48 + "']\n"
    )
    d = appraise(tpm.verify(sha1_only, collateral=sample_roots(), at=AT), policy)
    assert not d.accepted and "measurement_not_allowed" in [r.code for r in d.reasons]


def test_event_log_must_replay_to_the_quoted_pcrs() -> None:
    top = decode_fields(sample_bytes())
    log = next(v for n, v in top if n == 3)
    assert isinstance(log, bytes)
    parsed = tcg_log.parse(log, max_index=23)
    event = next(
        e
        for e in parsed.events
        if e.index == 4 and e.type not in (tcg_log.EV_NO_ACTION, *tcg_log.DATA_BOUND)
    )
    sha256_at = log.index(event.digests[0x000B], event.offset)
    tampered = log[:sha256_at] + bytes([log[sha256_at] ^ 1]) + log[sha256_at + 1 :]
    with pytest.raises(VerificationError) as e:
        verify_claims(encode_fields([(n, tampered if n == 3 else v) for n, v in top]))
    assert e.value.code == "event_log_mismatch" and "[4]" in e.value.message
    with pytest.raises(MalformedError):
        verify_claims(encode_fields([(n, b"\x00" * 40 if n == 3 else v) for n, v in top]))
    without = verify_claims(encode_fields([(n, v) for n, v in top if n != 3]))
    assert without["event_log"] == {"bytes": 0, "verified": False}


def _with_attributes(change: Any) -> bytes:
    top = decode_fields(sample_bytes())
    ak_pub = next(v for n, v in top if n == 1)
    assert isinstance(ak_pub, bytes)
    attributes = change(int.from_bytes(ak_pub[4:8], "big"))
    changed = ak_pub[:4] + attributes.to_bytes(4, "big") + ak_pub[8:]
    return encode_fields([(n, changed if n == 1 else v) for n, v in top])


@pytest.mark.parametrize(
    "bit", [1, 4, 5, 16, 18]
)  # fixedTPM fixedParent sensitiveDataOrigin restricted sign
def test_an_ak_pub_that_is_not_an_ak_is_refused(bit: int) -> None:
    """A key that is not restricted could sign a forged TPMS_ATTEST: ak_pub must say "AK"."""
    with pytest.raises(VerificationError) as e:
        verify_claims(_with_attributes(lambda a: a & ~(1 << bit)))
    assert e.value.code == "ak_attributes_invalid"


@pytest.mark.parametrize(
    "bit", [0, 3, 8, 9, 12, 15, 17, 20, 24, 31]
)  # 17: decrypt; the rest reserved
def test_decrypt_and_reserved_attribute_bits_are_refused(bit: int) -> None:
    with pytest.raises(VerificationError) as e:
        verify_claims(_with_attributes(lambda a: a | (1 << bit)))
    assert e.value.code == "ak_attributes_invalid"


def test_attribute_bits_that_do_not_make_an_ak_are_bound_by_nothing() -> None:
    """userWithAuth, adminWithPolicy, noDA, stClear: the AK certificate covers the key only, so
    these change no verdict (documented in veritee.evidence.tpm, step 1)."""
    for bit in (2, 6, 7, 10):
        assert (
            verify_claims(_with_attributes(lambda a, bit=bit: a ^ (1 << bit)))["platform"] == "tpm"
        )


def test_a_declared_digest_algorithm_without_a_hash_function_is_malformed() -> None:
    """SM3_256 (0x0012), declared in the Spec ID event and used in an event: its digest can be
    neither checked against the data nor replayed. Before, a bare KeyError escaped (a 500 in the
    service); now a MalformedError names the field."""
    import hashlib
    import struct

    body = b"Spec ID Event03\x00" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 2)
    body += struct.pack("<HHHH", 0x000B, 32, 0x0012, 32) + b"\x00"
    spec = struct.pack("<II", 0, 3) + bytes(20) + struct.pack("<I", len(body)) + body
    data = b"\x00\x00\x00\x00"
    event = (
        struct.pack("<IIIH", 0, 4, 2, 0x000B) + hashlib.sha256(data).digest()
        + struct.pack("<H", 0x0012) + bytes(32) + struct.pack("<I", len(data)) + data
    )  # fmt: skip
    with pytest.raises(MalformedError) as e:
        tcg_log.parse(spec + event, max_index=23)
    assert e.value.field == "event.digest_alg" and "not supported" in str(e.value)
    att = encode_fields(
        [(n, spec + event if n == 3 else v) for n, v in decode_fields(sample_bytes())]
    )
    with pytest.raises(MalformedError) as e:
        tpm.verify(att, collateral=sample_roots(), at=AT)
    assert "not supported" in str(e.value)
