"""SGX v3 quotes: the manifest case, mutations, malformed input."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import manifest_cases
from tests.conftest import testvectors_dir as tv_dir

from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError, VeriteeError
from veritee.evidence import dcap, detect_format, sgx

CASES = manifest_cases("sgx")


def _inputs(case: dict[str, Any]) -> tuple[bytes, Collateral, datetime]:
    tv = tv_dir()
    return (
        (tv / case["evidence"]).read_bytes(),
        Collateral.from_paths([tv / p for p in case["collateral"]]),
        datetime.fromisoformat(case["verify_at"]),
    )


@pytest.mark.parametrize("case", CASES, ids=[c["evidence"] for c in CASES])
def test_manifest_case(case: dict[str, Any]) -> None:
    data, collateral, at = _inputs(case)
    assert detect_format(data) == "sgx"
    v = sgx.verify(data, collateral=collateral, at=at)
    for key, want in case["claims"].items():
        assert v.claims[key] == want, key
        assert sgx.parse_claims(data)[key] == want, key
    accepted = v.claims["tcb_status"] == "UpToDate" and not v.claims["debug"]
    assert accepted == (case["baseline"] == "accept")
    if "ConfigurationAndSWHardeningNeeded" in case["note"]:
        assert v.claims["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
        assert v.claims["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
        codes = {r.code for r in v.findings}
        assert {"tcb_status", "intel_advisories"} <= codes


def _sample() -> tuple[bytes, Collateral, datetime]:
    if not CASES:
        tv_dir()
        pytest.skip("no SGX case in the manifest")
    return _inputs(CASES[0])


def test_flipped_bytes_are_refused() -> None:
    data, collateral, at = _sample()
    quote = dcap.parse_quote(data)
    rng = random.Random(3)
    positions = rng.sample(range(len(quote.signed)), 150) + rng.sample(
        range(len(quote.signed) + 4, quote.end), 100
    )
    for pos in positions:
        mutated = bytearray(data)
        mutated[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(VeriteeError):
            sgx.verify(bytes(mutated), collateral=collateral, at=at)


def test_tampered_collateral_and_expiry() -> None:
    data, collateral, at = _sample()
    doc = dict(collateral.documents[0])
    doc["tcb_info"] = doc["tcb_info"].replace('"SWHardeningNeeded"', '"UpToDate"', 1)
    with pytest.raises(VerificationError) as e:
        sgx.verify(data, collateral=Collateral(documents=(doc,)), at=at)
    assert e.value.code == "collateral_signature_invalid"
    with pytest.raises(CollateralError) as e:
        sgx.verify(data, collateral=collateral, at=datetime(2025, 7, 20, tzinfo=UTC))
    assert e.value.code == "collateral_expired"


def test_tdx_collateral_does_not_fit_sgx_quote() -> None:
    data, _, at = _sample()
    tdx_coll = Collateral.from_paths([tv_dir() / "tdx" / "dcapqvl_tdx_quote_v4_collateral.json"])
    with pytest.raises(VerificationError):
        sgx.verify(data, collateral=tdx_coll, at=at)


def test_occlum_quote_parses_and_needs_collateral() -> None:
    data = (tv_dir() / "sgx" / "trustee_occlum_sgx_quote_v3.bin").read_bytes()
    claims = sgx.parse_claims(data)
    assert claims["platform"] == "sgx" and claims["measurement"] == claims["mr_enclave"]
    with pytest.raises(CollateralError):
        sgx.verify(data, collateral=Collateral.empty(), at=datetime(2024, 1, 1, tzinfo=UTC))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4599), st.binary(min_size=0, max_size=16))
def test_truncated_or_spliced_never_crash(cut: int, junk: bytes) -> None:
    data = (tv_dir() / "sgx" / "dcapqvl_sgx_quote_v3.bin").read_bytes()
    for blob in (data[:cut], data[:cut] + junk + data[cut + len(junk) :]):
        try:
            sgx.parse_claims(blob)
            sgx.verify(blob, collateral=Collateral.empty(), at=datetime(2025, 6, 20, tzinfo=UTC))
        except MalformedError as e:
            assert e.field is not None
        except VerificationError:
            pass


def test_detect_and_exports() -> None:
    data = (tv_dir() / "sgx" / "dcapqvl_sgx_quote_v3.bin").read_bytes()
    assert sgx.detect(data) and not sgx.detect(data[:10])
    assert all(hasattr(sgx, n) for n in sgx.__all__)
