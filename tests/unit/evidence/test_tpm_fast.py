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
            assert _outcome(tpm._attest, blob, "q") == _outcome(tpm._attest_checked, blob, "q")
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
