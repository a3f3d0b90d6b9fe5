"""Cross-format fuzzing of ``veritee.evidence.verify`` / ``parse_claims``.

Random bytes, truncations and single-byte mutations of every real sample in the manifest may only
raise MalformedError or VerificationError (UsageError only for an unknown explicit format), never
another exception; a MalformedError names a field or an offset. Formats whose module is not
importable yet are skipped with a message.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import TESTVECTORS, manifest_cases

from veritee import evidence
from veritee.collateral import Collateral
from veritee.errors import MalformedError, UsageError, VerificationError

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
#: MalformedErrors raised by the registry itself before a format module sees the bytes.
REGISTRY_CODES = {"empty", "format_unknown", "oversized"}
AT = datetime(2025, 6, 20, tzinfo=UTC)


def _available(fmt: str) -> bool:
    try:
        evidence._module(fmt)
    except UsageError:
        return False
    return True


def _require(fmt: str) -> None:
    if not _available(fmt):
        pytest.skip(f"evidence format {fmt!r} is not importable yet; re-run when it lands")


@functools.cache
def _sample(path: str) -> bytes:
    return (TESTVECTORS / path).read_bytes()


@functools.cache
def _collateral(paths: tuple[str, ...]) -> Collateral:
    return Collateral.from_paths([TESTVECTORS / p for p in paths])


def _at(case: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))


def _check_malformed(e: MalformedError) -> None:
    if e.code in REGISTRY_CODES:
        return
    assert e.field is not None or e.offset is not None, f"MalformedError names no field/offset: {e}"


def _exercise(data: bytes, fmt: str, collateral: Collateral, at: datetime) -> None:
    """Run parse_claims and verify; only the allowed errors may come out."""
    for call in (
        lambda: evidence.parse_claims(data, format=fmt),
        lambda: evidence.verify(data, collateral=collateral, at=at, format=fmt),
    ):
        try:
            call()
        except MalformedError as e:
            _check_malformed(e)
        except VerificationError:
            pass


CASES = manifest_cases()
# One case per distinct evidence file (the manifest lists some twice at other times).
SAMPLES = list({c["evidence"]: c for c in CASES}.values())


def _ids(c: dict[str, Any]) -> str:
    return str(c["evidence"])


@pytest.mark.parametrize("case", SAMPLES, ids=_ids)
@FUZZ
@given(data=st.data())
def test_truncations(case: dict[str, Any], data: st.DataObject) -> None:
    _require(case["format"])
    raw = _sample(case["evidence"])
    n = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="length")
    coll = _collateral(tuple(case["collateral"]))
    for fmt in (case["format"], "auto"):
        _exercise(raw[:n], fmt, coll, _at(case))


@pytest.mark.parametrize("case", SAMPLES, ids=_ids)
@FUZZ
@given(data=st.data())
def test_single_byte_mutations(case: dict[str, Any], data: st.DataObject) -> None:
    _require(case["format"])
    raw = _sample(case["evidence"])
    pos = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="position")
    value = data.draw(
        st.integers(min_value=0, max_value=255).filter(lambda v: v != raw[pos]), label="value"
    )
    mutated = raw[:pos] + bytes([value]) + raw[pos + 1 :]
    coll = _collateral(tuple(case["collateral"]))
    for fmt in (case["format"], "auto"):
        _exercise(mutated, fmt, coll, _at(case))


@pytest.mark.parametrize("case", SAMPLES, ids=_ids)
def test_every_sample_still_parses(case: dict[str, Any]) -> None:
    """The unmutated sample parses in its own format (so mutations start from a good input)."""
    _require(case["format"])
    claims = evidence.parse_claims(_sample(case["evidence"]), format=case["format"])
    assert claims["platform"] == case["claims"]["platform"]


@pytest.mark.parametrize("fmt", [*sorted(evidence.FORMATS), "auto"])
@FUZZ
@given(blob=st.binary(min_size=0, max_size=6000))
def test_random_bytes(fmt: str, blob: bytes) -> None:
    if fmt != "auto":
        _require(fmt)
    _exercise(blob, fmt, Collateral.empty(), AT)


@pytest.mark.parametrize("case", SAMPLES, ids=_ids)
@FUZZ
@given(data=st.data())
def test_sample_prefix_with_random_tail(case: dict[str, Any], data: st.DataObject) -> None:
    """A real header followed by junk: reaches deeper parsing than pure random bytes."""
    _require(case["format"])
    raw = _sample(case["evidence"])
    keep = data.draw(st.integers(min_value=1, max_value=len(raw)), label="keep")
    tail = data.draw(st.binary(max_size=len(raw)), label="tail")
    _exercise(raw[:keep] + tail, case["format"], Collateral.empty(), _at(case))


@pytest.mark.parametrize("bad", ["sev_snp", "SEV-SNP", "x509", ""])
def test_unknown_explicit_format_is_usage_error(bad: str) -> None:
    with pytest.raises(UsageError):
        evidence.verify(b"\x01" * 100, at=AT, format=bad)
    with pytest.raises(UsageError):
        evidence.parse_claims(b"\x01" * 100, format=bad)


def test_oversized_for_every_format() -> None:
    blob = b"\x00" * (evidence.MAX_EVIDENCE_BYTES + 1)
    for fmt in ("auto", *evidence.FORMATS):
        with pytest.raises(MalformedError):
            evidence.verify(blob, at=AT, format=fmt)
