"""The TPM verifier's fast paths (issue 15 item 1) decide exactly as the field-by-field readers
and the uncached checks: inline readers against checked readers on the real GCE sample and on
every one-bit change of its structures, and the caches (AK keys, AK chains, checked event logs)
never letting a changed input or another time through. No timing here (bench/bench_tpm.py).
"""

from __future__ import annotations

import functools
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.conftest import TESTVECTORS

from veritee.collateral import Collateral
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import tcg_log, tpm

SAMPLE = TESTVECTORS / "tpm" / "gotpmtools_gce-cos-85-nonce9009.pb"
AT = datetime(2026, 1, 1, tzinfo=UTC)

pytestmark = [
    pytest.mark.skipif(not SAMPLE.is_file(), reason="test vectors absent (../shared/testvectors)"),
    pytest.mark.filterwarnings("ignore:Attribute's length must be"),
]


@functools.cache
def _raw() -> bytes:
    return SAMPLE.read_bytes()


@functools.cache
def _roots() -> Collateral:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Collateral.from_paths([TESTVECTORS / "tpm"])


def _quote_parts() -> list[dict[int, bytes]]:
    out = []
    for number, value in tpm._fields(_raw(), "attestation"):
        if number == 2:
            assert isinstance(value, bytes)
            out.append({n: v for n, v in tpm._fields(value, "quote") if isinstance(v, bytes)})
    return out


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except (MalformedError, VerificationError) as e:
        return (type(e).__name__, e.code, e.message)


def _flips(blob: bytes) -> list[bytes]:
    """``blob`` with each bit of each of its first 64 bytes and every 7th byte after flipped."""
    out = []
    for pos in [*range(min(64, len(blob))), *range(64, len(blob), 7)]:
        for bit in range(8):
            changed = bytearray(blob)
            changed[pos] ^= 1 << bit
            out.append(bytes(changed))
    return out


def test_inline_readers_agree_with_the_checked_readers() -> None:
    parts = _quote_parts()
    assert len(parts) == 3
    for p in parts:
        assert tpm._attest_fast(p[1]) == tpm._attest_checked(p[1], "q")
        assert tpm._pcrs_fast(p[3]) == tpm._pcrs_checked(p[3], "q")
        assert tpm._signature(p[2], "q") == tpm._signature_checked(p[2], "q")
        for blob in _flips(p[1]):
            assert _outcome(tpm._attest_fields, blob, "q") == _outcome(
                tpm._attest_checked, blob, "q"
            )
        for blob in _flips(p[3]):
            assert _outcome(tpm._pcrs, blob, "q") == _outcome(tpm._pcrs_checked, blob, "q")
        for blob in _flips(p[2])[:400]:
            assert _outcome(tpm._signature, blob, "q") == _outcome(
                tpm._signature_checked, blob, "q"
            )


def test_the_inline_event_log_reader_agrees_with_the_checked_reader() -> None:
    log = tpm.parse(_raw()).event_log
    flipped = []
    for pos in range(0, 600, 3):  # the Spec ID event and the first events' headers and digests
        changed = bytearray(log)
        changed[pos] ^= 1 << (pos % 8)
        flipped.append(bytes(changed))
    for blob in [log, log[:-3], log[: len(log) // 2], *flipped]:
        try:
            fast = tcg_log._parse_fast(blob, 23)
        except tcg_log._Slow:
            fast = None
        checked = _outcome(tcg_log._parse_checked, blob, 23)
        if fast is not None:  # where the inline reader decides, it decides the same
            assert checked == ("ok", fast)
        assert _outcome(lambda b: tcg_log.parse(b, max_index=23), blob) == checked


def _event_log_claims(data: bytes) -> dict[str, Any]:
    claims: dict[str, Any] = tpm.verify(data, collateral=_roots(), at=AT).claims["event_log"]
    return claims


def test_cached_and_uncached_verification_give_the_same_claims() -> None:
    tpm.clear_caches()
    cold = tpm.verify(_raw(), collateral=_roots(), at=AT).claims
    warm = tpm.verify(_raw(), collateral=_roots(), at=AT).claims
    assert cold == warm and cold["event_log"]["verified"] is True
    # The claims are the caller's own: changing them changes nothing cached.
    warm["event_log"]["entries"][0]["type"] = -1
    warm["event_log"]["pcrs"].append(99)
    assert tpm.verify(_raw(), collateral=_roots(), at=AT).claims == cold


def test_a_cached_ak_chain_is_reused_only_inside_its_windows() -> None:
    tpm.verify(_raw(), collateral=_roots(), at=AT)  # cached
    with pytest.raises(VerificationError) as e:
        tpm.verify(_raw(), collateral=_roots(), at=datetime(2021, 1, 1, tzinfo=UTC))
    assert e.value.code == "certificate_expired"
    with pytest.raises(VerificationError) as e:  # other pins: another cache entry, refused
        tpm.verify(_raw(), collateral=_roots(), at=AT, trust={"00" * 32})
    assert e.value.code == "root_not_pinned"
    with pytest.raises(VerificationError) as e:  # the intermediate and root not given
        tpm.verify(_raw(), collateral=Collateral.empty(), at=AT)
    assert e.value.code == "root_not_pinned"


def _with_ak_pub(change: Any) -> bytes:
    from tests.fakes.tpm_sample import encode_fields

    top = list(tpm._fields(_raw(), "attestation"))
    ak_pub = top[0][1]
    assert top[0][0] == 1 and isinstance(ak_pub, bytes)
    top[0] = (1, change(ak_pub))
    return encode_fields(top)


def test_a_cached_ak_chain_does_not_vouch_for_another_ak() -> None:
    tpm.verify(_raw(), collateral=_roots(), at=AT)  # the chain for the genuine AK is cached

    def other_modulus(blob: bytes) -> bytes:
        changed = bytearray(blob)
        changed[-10] ^= 0x01  # a byte of the RSA modulus: another key
        return bytes(changed)

    with pytest.raises(VerificationError) as e:
        tpm.verify(_with_ak_pub(other_modulus), collateral=_roots(), at=AT)
    assert e.value.code == "ak_mismatch"


def test_a_changed_event_log_is_checked_again() -> None:
    from tests.fakes.tpm_sample import encode_fields

    tpm.verify(_raw(), collateral=_roots(), at=AT)  # the log is cached
    log = tpm.parse(_raw()).event_log
    att = tpm.parse(_raw())
    # The digest of the first event after the Spec ID event, in its first bank.
    spec_size = int.from_bytes(log[28:32], "little")
    first_digest = 32 + spec_size + 12 + 2
    changed = bytearray(log)
    changed[first_digest] ^= 0x01
    top = [(n, bytes(changed) if n == 3 else v) for n, v in tpm._fields(_raw(), "attestation")]
    with pytest.raises(VerificationError) as e:
        tpm.verify(encode_fields(top), collateral=_roots(), at=AT)
    assert e.value.code in ("event_log_mismatch", "event_data_mismatch")
    assert att.event_log == log  # the sample itself is unchanged and still verifies
    assert _event_log_claims(_raw())["verified"] is True


def test_the_ak_chain_cache_key_names_every_byte_of_the_collateral() -> None:
    # The key holds one SHA-256 over the collateral's candidates, read once per collateral
    # object (tpm._candidates_digest): the same certificates in another object give the same
    # digest; other certificates, fewer or more, another one.
    same = Collateral(certificates=_roots().certificates)
    assert same is not _roots()
    assert tpm._candidates_digest(same) == tpm._candidates_digest(_roots())
    fewer = Collateral(certificates=_roots().certificates[1:])
    more = _roots().joined(Collateral(untrusted=_roots().certificates[:1]))
    digests = {tpm._candidates_digest(c) for c in (_roots(), fewer, more)}
    assert len(digests) == 3
    # A chain verified with the full collateral is not reused for collateral that lacks the root.
    tpm.verify(_raw(), collateral=_roots(), at=AT)
    without_roots = Collateral(
        certificates=tuple(c for c in _roots().certificates if c.subject != c.issuer)
    )
    with pytest.raises(VerificationError) as e:
        tpm.verify(_raw(), collateral=without_roots, at=AT)
    assert e.value.code == "root_not_pinned"


def _single_quote(mutate_pcrs: Any = None, mutate_attest: Any = None) -> bytes:
    """The sample cut to its SHA-256 quote and no event log (the peers benchmark's input), the
    quote's PCRs message or TPMS_ATTEST changed by the given functions."""
    from tests.fakes.tpm_sample import encode_fields

    keep: list[tuple[int, int | bytes]] = []
    for number, value in tpm._fields(_raw(), "attestation"):
        if number == 3:
            continue
        if number == 2:
            assert isinstance(value, bytes)
            attest, raw_sig, pcrs = tpm._quote_parts(value, "q")
            if tpm._quote(value, "q").bank != 0x000B:
                continue
            attest = mutate_attest(attest) if mutate_attest else attest
            pcrs = mutate_pcrs(pcrs) if mutate_pcrs else pcrs
            value = encode_fields([(1, attest), (2, raw_sig), (3, pcrs)])
        keep.append((number, value))
    return encode_fields(keep)


def _flip(blob: bytes, at: int) -> bytes:
    changed = bytearray(blob)
    changed[at] ^= 0x01
    return bytes(changed)


def test_the_inline_quote_splitter_agrees_with_the_field_reader() -> None:
    def by_fields(blob: bytes) -> Any:
        parts: dict[int, bytes] = {}
        for number, value in tpm._fields(blob, "q"):
            if number in (1, 2, 3):
                parts[number] = tpm._bytes_field(value, "q")
        for number, name in ((1, "quote"), (2, "raw_sig"), (3, "pcrs")):
            if number not in parts:
                raise MalformedError(f"{name} is missing", field=f"q.{name}")
        return parts[1], parts[2], parts[3]

    for number, value in tpm._fields(_raw(), "attestation"):
        if number != 2:
            continue
        assert isinstance(value, bytes)
        blobs = [value, value[:-1], value + b"\x1a\x00", value[:5], b"\x0a\x00\x12\x00\x1a\x00"]
        blobs += [_flip(value, i) for i in range(12)] + [_flip(value, i) for i in (145, 148, 150)]
        for blob in blobs:
            assert _outcome(tpm._quote_parts, blob, "q") == _outcome(by_fields, blob)


def test_warm_caches_vouch_for_nothing_every_check_runs_on_every_call() -> None:
    """The AK key, the AK chain and the parsed PCRs are kept by their exact bytes; with all of
    them warm, a changed PCR value, nonce, pcrDigest, signature or AK attribute is refused, on
    the first call and on the second (when its own PCRs message and key are kept too)."""
    tpm.clear_caches()
    good = _single_quote()
    claims = tpm.verify(good, collateral=_roots(), at=AT).claims
    # extraData starts after magic, type and the qualifiedSigner (a TPM2B).
    attest = tpm._quote_parts(next(v for n, v in tpm._fields(good, "a") if n == 2), "q")[0]  # type: ignore[arg-type]
    extra = 8 + int.from_bytes(attest[6:8], "big") + 2

    def first_pcr_value(pcrs: bytes) -> bytes:
        return _flip(pcrs, len(pcrs) - 1)  # the last byte of the last entry's value

    changed = {
        "tpm_pcr_mismatch": _single_quote(mutate_pcrs=first_pcr_value),
        "signature_invalid": _single_quote(mutate_attest=lambda a: _flip(a, extra)),
    }
    changed["signature_invalid/pcr_digest"] = _single_quote(mutate_attest=lambda a: _flip(a, -1))
    for _ in range(2):
        for code, data in changed.items():
            with pytest.raises(VerificationError) as e:
                tpm.verify(data, collateral=_roots(), at=AT)
            assert e.value.code == code.split("/")[0]
        for bit in (1, 16, 17):  # fixedTPM, restricted, decrypt: not an AK
            flipped = _with_attributes_of(good, bit)
            with pytest.raises(VerificationError) as e:
                tpm.verify(flipped, collateral=_roots(), at=AT)
            assert e.value.code == "ak_attributes_invalid"
        assert tpm.verify(good, collateral=_roots(), at=AT).claims == claims


def _with_attributes_of(data: bytes, bit: int) -> bytes:
    from tests.fakes.tpm_sample import encode_fields

    top = list(tpm._fields(data, "attestation"))
    ak_pub = top[0][1]
    assert top[0][0] == 1 and isinstance(ak_pub, bytes)
    attributes = int.from_bytes(ak_pub[4:8], "big") ^ (1 << bit)
    top[0] = (1, ak_pub[:4] + attributes.to_bytes(4, "big") + ak_pub[8:])
    return encode_fields(top)


def test_what_leaves_the_pcr_cache_is_a_copy() -> None:
    good = _single_quote()
    first = tpm.verify(good, collateral=_roots(), at=AT).claims
    expected = {k: (dict(v) if isinstance(v, dict) else v) for k, v in first.items()}
    expected["pcrs"] = {bank: dict(values) for bank, values in first["pcrs"].items()}
    first["pcrs"]["sha256"]["0"] = "00"
    first["pcr0"] = "00"
    att = tpm.parse(good)
    att.quotes[0].pcrs[0] = b"\x00" * 32
    again = tpm.verify(good, collateral=_roots(), at=AT).claims
    assert again == expected and again["pcr0"] != "00"
    assert tpm.parse(good).quotes[0].pcrs[0] != b"\x00" * 32
    assert tpm.parse_claims(good)["pcrs"] == expected["pcrs"]


def test_the_pcr_cache_is_bounded() -> None:
    tpm.clear_caches()
    assert len(tpm._PCR_SETS._data) == 0
    for i in range(300):
        tpm._pcr_set(b"\x08\x0b\x12\x24\x08\x00\x12\x20" + i.to_bytes(32, "big"), "q")
    assert len(tpm._PCR_SETS._data) == 256
