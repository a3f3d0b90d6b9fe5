"""Nitro verifier against the real AWS attestation document of the test vectors.

Negative cases are made by mutating the real document (flipped bytes at seeded random positions,
re-encoded payloads, other times). Cases the public sample cannot reach (debug mode, an unpinned
root, other algorithms) are in test_nitro_synthetic.py with a fake Nitro-like chain.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from tests.conftest import manifest_cases

from veritee import evidence
from veritee.errors import MalformedError, OversizedError, VerificationError
from veritee.evidence import nitro

AT = datetime(2024, 9, 7, 14, 40, tzinfo=UTC)
# Leaf validity of the sample: 2024-09-07T14:37:36Z .. 17:37:39Z (SOURCES.md).
LEAF_NOT_BEFORE = datetime(2024, 9, 7, 14, 37, 36, tzinfo=UTC)
LEAF_NOT_AFTER = datetime(2024, 9, 7, 17, 37, 39, tzinfo=UTC)


@pytest.fixture
def sample(testvectors: Path) -> bytes:
    return (testvectors / "nitro" / "nitrite_attestation.cbor").read_bytes()


def _parts(data: bytes) -> list[Any]:
    return list(cbor2.loads(data))


def _rebuild(parts: list[Any], payload: dict[str, Any] | None = None) -> bytes:
    if payload is not None:
        parts = [parts[0], parts[1], cbor2.dumps(payload), parts[3]]
    return bytes(cbor2.dumps(parts))


@pytest.mark.parametrize("case", manifest_cases("nitro"), ids=lambda c: c["evidence"])
def test_manifest_case(testvectors: Path, case: dict[str, Any]) -> None:
    data = (testvectors / case["evidence"]).read_bytes()
    at = datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))
    assert evidence.detect_format(data) == "nitro"
    result = evidence.verify(data, at=at)
    assert result.format == "nitro"
    for key, value in case["claims"].items():
        assert result.claims[key] == value, key
    assert result.claims["tcb_status"] is None
    assert result.claims["report_data"] == result.claims["user_data"]
    # parse_claims (unverified) agrees with the verified claims.
    assert evidence.parse_claims(data) == result.claims
    if case["baseline"] == "accept":
        assert result.claims["debug"] is False


def test_pinned_root_matches_shared_pem(testvectors: Path) -> None:
    pem = (testvectors / "nitro" / "aws_nitro_root_g1.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == nitro.AWS_NITRO_ROOT_G1_SHA256
    # The .sha256.hex file pins the zip AWS publishes, not the certificate (SOURCES.md).
    zip_hash = (testvectors / "nitro" / "AWS_NitroEnclaves_Root-G1.sha256.hex").read_text().strip()
    assert zip_hash != nitro.AWS_NITRO_ROOT_G1_SHA256
    assert len(bytes.fromhex(zip_hash)) == 32


def test_claims_shape(sample: bytes) -> None:
    claims = nitro.verify(sample, collateral=evidence.Collateral.empty(), at=AT).claims
    assert claims["platform"] == "nitro"
    assert claims["digest"] == "SHA384"
    assert [k for k in claims if k.startswith("pcr")] == [f"pcr{i}" for i in range(16)]
    assert all(len(bytes.fromhex(claims[f"pcr{i}"])) == 48 for i in range(16))
    assert claims["measurement"] == claims["pcr0"]
    assert len(bytes.fromhex(claims["public_key"])) == 1024


def test_tagged_and_untagged(sample: bytes) -> None:
    assert sample[0] == 0x84  # the sample is untagged
    tagged = bytes(cbor2.dumps(cbor2.CBORTag(18, _parts(sample))))
    assert tagged[0] == 0xD2
    assert nitro.detect(tagged) and nitro.detect(sample)
    a = evidence.verify(sample, at=AT)
    b = evidence.verify(tagged, at=AT)
    assert a.claims == b.claims
    other_tag = bytes(cbor2.dumps(cbor2.CBORTag(98, _parts(sample))))
    with pytest.raises(MalformedError, match="tag 98"):
        nitro.parse_claims(other_tag)


@pytest.mark.parametrize(
    "at",
    [LEAF_NOT_BEFORE - timedelta(seconds=1), LEAF_NOT_AFTER + timedelta(seconds=1)],
    ids=["before", "after"],
)
def test_time_outside_leaf_validity(sample: bytes, at: datetime) -> None:
    with pytest.raises(VerificationError, match="certificate is not valid") as e:
        evidence.verify(sample, at=at)
    assert e.value.code == "certificate_expired"


def test_time_at_validity_edges(sample: bytes) -> None:
    evidence.verify(sample, at=LEAF_NOT_BEFORE)
    evidence.verify(sample, at=LEAF_NOT_AFTER)


def _signed_region(sample: bytes) -> tuple[int, int, int, int]:
    """Offsets of the protected header bytes and of the payload bytes inside the document."""
    protected, _, payload, _ = _parts(sample)
    p = sample.index(protected)
    q = sample.index(payload)
    return p, p + len(protected), q, q + len(payload)


@pytest.mark.parametrize("seed", range(8))
def test_flipped_bytes_in_signed_region_are_refused(sample: bytes, seed: int) -> None:
    rng = random.Random(seed)
    p0, p1, q0, q1 = _signed_region(sample)
    positions = [rng.randrange(p0, p1)] + [rng.randrange(q0, q1) for _ in range(24)]
    for pos in positions:
        mutated = bytearray(sample)
        mutated[pos] ^= 1 << rng.randrange(8)
        with pytest.raises((MalformedError, VerificationError)):
            nitro.verify(bytes(mutated), collateral=evidence.Collateral.empty(), at=AT)


def test_flipped_pcr_byte_is_a_signature_failure(sample: bytes) -> None:
    _, _, payload, _ = _parts(sample)
    pcr0 = cbor2.loads(payload)["pcrs"][0]
    pos = sample.index(pcr0) + 5
    mutated = bytearray(sample)
    mutated[pos] ^= 0xFF
    with pytest.raises(VerificationError) as e:
        evidence.verify(bytes(mutated), at=AT)
    assert e.value.code == "signature_invalid"


@pytest.mark.parametrize("index", [0, 47, 48, 95])
def test_changed_signature(sample: bytes, index: int) -> None:
    parts = _parts(sample)
    sig = bytearray(parts[3])
    sig[index] ^= 0x01
    parts[3] = bytes(sig)
    with pytest.raises(VerificationError) as e:
        evidence.verify(_rebuild(parts), at=AT)
    assert e.value.code == "signature_invalid"


def test_signature_of_wrong_length(sample: bytes) -> None:
    parts = _parts(sample)
    parts[3] = parts[3] + b"\x00"
    with pytest.raises(MalformedError, match="signature"):
        evidence.verify(_rebuild(parts), at=AT)


def test_changed_intermediate_order_breaks_chain(sample: bytes) -> None:
    parts = _parts(sample)
    payload = cbor2.loads(parts[2])
    bundle = list(payload["cabundle"])
    bundle[1], bundle[2] = bundle[2], bundle[1]
    payload["cabundle"] = bundle
    with pytest.raises(VerificationError) as e:
        evidence.verify(_rebuild(parts, payload), at=AT)
    assert e.value.code == "chain_invalid"


def test_leaf_replaced_by_intermediate(sample: bytes) -> None:
    parts = _parts(sample)
    payload = cbor2.loads(parts[2])
    payload["certificate"] = payload["cabundle"][-1]
    with pytest.raises(VerificationError) as e:
        evidence.verify(_rebuild(parts, payload), at=AT)
    assert e.value.code == "chain_invalid"


def test_root_dropped_is_untrusted(sample: bytes) -> None:
    parts = _parts(sample)
    payload = cbor2.loads(parts[2])
    payload["cabundle"] = payload["cabundle"][1:]
    with pytest.raises(VerificationError) as e:
        evidence.verify(_rebuild(parts, payload), at=AT)
    assert e.value.code == "root_not_pinned"


def test_re_encoded_payload_is_a_signature_failure(sample: bytes) -> None:
    # Same content, other key order: the signature covers bytes, not meaning.
    parts = _parts(sample)
    payload = cbor2.loads(parts[2])
    reordered = dict(reversed(list(payload.items())))
    with pytest.raises(VerificationError) as e:
        evidence.verify(_rebuild(parts, reordered), at=AT)
    assert e.value.code == "signature_invalid"


def test_truncations(sample: bytes) -> None:
    for n in [1, 2, 5, 10, 100, len(sample) // 2, len(sample) - 1]:
        with pytest.raises(MalformedError) as e:
            nitro.verify(sample[:n], collateral=evidence.Collateral.empty(), at=AT)
        assert e.value.field is not None


def test_trailing_bytes(sample: bytes) -> None:
    with pytest.raises(MalformedError, match="COSE_Sign1"):
        nitro.parse_claims(sample + b"\x00")


def test_oversized(sample: bytes) -> None:
    with pytest.raises(OversizedError):
        evidence.verify(sample * 40, at=AT, format="nitro")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(seed: int) -> None:
    rng = random.Random(seed)
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
    for data in (junk, b"\x84" + junk, b"\xd2\x84\x44\xa1\x01\x38\x22" + junk):
        with pytest.raises(MalformedError):
            nitro.verify(data, collateral=evidence.Collateral.empty(), at=AT)


def test_naive_time_is_usage_error(sample: bytes) -> None:
    from veritee.errors import UsageError

    with pytest.raises(UsageError):
        nitro.verify(sample, collateral=evidence.Collateral.empty(), at=AT.replace(tzinfo=None))


def test_detect_rejects_other_formats(testvectors: Path) -> None:
    for case in manifest_cases():
        if case["format"] != "nitro":
            assert not nitro.detect((testvectors / case["evidence"]).read_bytes()), case["evidence"]
