"""TDX quotes: every manifest case, mutations of real quotes and collateral, malformed input."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import manifest_cases
from tests.conftest import testvectors_dir as tv_dir

from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError, VeriteeError
from veritee.evidence import dcap, detect_format, tdx
from veritee.evidence import verify as verify_any

CASES = manifest_cases("tdx")


def _case_inputs(case: dict[str, Any]) -> tuple[bytes, Collateral, datetime]:
    tv = tv_dir()
    data = (tv / case["evidence"]).read_bytes()
    collateral = Collateral.from_paths([tv / p for p in case["collateral"]])
    return data, collateral, datetime.fromisoformat(case["verify_at"])


def baseline_accepts(
    data: bytes, collateral: Collateral, at: datetime
) -> tuple[bool, str, dict[str, Any] | None]:
    """The baseline verdict: authentic, UpToDate, not debug. Returns (accepted, reason, claims)."""
    try:
        v = verify_any(data, collateral=collateral, at=at)
    except VeriteeError as e:
        return False, e.code, None
    ok = v.claims["tcb_status"] == "UpToDate" and not v.claims["debug"]
    return ok, "" if ok else str(v.claims["tcb_status"]), v.claims


@pytest.mark.parametrize("case", CASES, ids=[f"{c['evidence']}@{c['verify_at']}" for c in CASES])
def test_manifest_case(case: dict[str, Any]) -> None:
    data, collateral, at = _case_inputs(case)
    assert detect_format(data) == "tdx"
    parsed = tdx.parse_claims(data)
    for key, want in case["claims"].items():
        assert parsed[key] == want, key
    accepted, reason, claims = baseline_accepts(data, collateral, at)
    assert accepted == (case["baseline"] == "accept"), reason
    if claims is not None:
        for key, want in case["claims"].items():
            assert claims[key] == want, key
    note = case["note"].lower()
    if "no matching tcb level" in note:
        # The SPR E4 sample carries non-zero trailing text ("extra bytes (only for testing purpose)"):
        # refused as such; without it, the quote reaches the TCB check and fails there.
        quote = dcap.parse_quote(data)
        with pytest.raises(VerificationError) as e:
            tdx.verify(data[: quote.end], collateral=collateral, at=at)
        assert e.value.code == "tcb_level_not_found"
    if "expired" in note:
        assert reason == "collateral_expired"


def _good() -> tuple[bytes, Collateral, datetime]:
    case = next(c for c in CASES if c["baseline"] == "accept") if CASES else None
    if case is None:
        tv_dir()
        pytest.skip("no accepted TDX case in the manifest")
    return _case_inputs(case)


def test_good_quote_claims_and_padding_finding() -> None:
    data, collateral, at = _good()
    v = tdx.verify(data, collateral=collateral, at=at)
    assert v.format == "tdx"
    assert v.claims["fmspc"] == "B0C06F000000"
    assert v.claims["tcb_status"] == "UpToDate"
    assert [r.code for r in v.findings] == ["quote_trailing_padding"]
    for i in range(4):
        assert len(v.claims[f"rtmr{i}"]) == 96
    assert json.dumps(v.claims)  # JSON types only


def test_flipped_bytes_in_signed_region_are_refused() -> None:
    data, collateral, at = _good()
    quote = dcap.parse_quote(data)
    sig_start = len(quote.signed) + 4
    rng = random.Random(20250620)
    # Header+body (quote signature), then the signature data (keys, QE report, its signature, chain).
    positions = rng.sample(range(len(quote.signed)), 200) + rng.sample(
        range(sig_start, quote.end), 100
    )
    for pos in positions:
        mutated = bytearray(data)
        mutated[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(VeriteeError):
            tdx.verify(bytes(mutated), collateral=collateral, at=at)


def test_changed_signature_and_pck_cert_are_refused() -> None:
    data, collateral, at = _good()
    quote = dcap.parse_quote(data)
    sig_off = len(quote.signed) + 4
    bad = bytearray(data)
    bad[sig_off : sig_off + 64] = bytes(reversed(data[sig_off : sig_off + 64]))
    with pytest.raises(VerificationError) as e:
        tdx.verify(bytes(bad), collateral=collateral, at=at)
    assert e.value.code == "quote_signature_invalid"
    # Swap the PCK leaf for another real PCK certificate (from the SGX sample): QE report sig fails.
    sgx_quote = (tv_dir() / "sgx" / "dcapqvl_sgx_quote_v3.bin").read_bytes()
    other_pem = dcap.parse_quote(sgx_quote).signature_data.pck_chain_pem
    pem = quote.signature_data.pck_chain_pem
    first_end = pem.index(b"-----END CERTIFICATE-----") + 25
    other_leaf = other_pem[: other_pem.index(b"-----END CERTIFICATE-----") + 25]
    if len(other_leaf) == first_end:  # same length: splice in place, framing unchanged
        bad = bytearray(data)
        start = data.index(pem)
        bad[start : start + first_end] = other_leaf
        with pytest.raises(VerificationError):
            tdx.verify(bytes(bad), collateral=collateral, at=at)
    else:
        swapped = pem.replace(pem[:first_end], other_leaf)
        rebuilt = _replace_chain(data, quote, swapped)
        with pytest.raises(VerificationError):
            tdx.verify(rebuilt, collateral=collateral, at=at)


def _replace_chain(data: bytes, quote: dcap.Quote, pem: bytes) -> bytes:
    """Rebuild a v4 quote with another PEM chain, fixing all three length fields."""
    import struct

    old = quote.signature_data.pck_chain_pem
    delta = len(pem) - len(old)
    start = data.index(old)
    out = bytearray(data[: quote.end])
    out[start : start + len(old)] = pem
    sig_len_off = len(quote.signed)
    struct.pack_into("<I", out, sig_len_off, struct.unpack_from("<I", data, sig_len_off)[0] + delta)
    outer = sig_len_off + 4 + 128 + 2
    struct.pack_into("<I", out, outer, struct.unpack_from("<I", data, outer)[0] + delta)
    struct.pack_into("<I", out, start - 4, len(pem))
    return bytes(out)


def test_tampered_tcb_info_fails_signature() -> None:
    data, collateral, at = _good()
    doc = dict(collateral.documents[0])
    text = doc["tcb_info"]
    i = text.index('"tcbEvaluationDataNumber":17')
    doc["tcb_info"] = text[:i] + text[i:].replace("17", "16", 1)
    with pytest.raises(VerificationError) as e:
        tdx.verify(data, collateral=Collateral(documents=(doc,)), at=at)
    assert e.value.code == "collateral_signature_invalid"
    doc = dict(collateral.documents[0])
    doc["qe_identity_signature"] = "00" + doc["qe_identity_signature"][2:]
    with pytest.raises(VerificationError) as e:
        tdx.verify(data, collateral=Collateral(documents=(doc,)), at=at)
    assert e.value.code == "collateral_signature_invalid"


@pytest.mark.parametrize(
    "at",
    [
        datetime(2025, 6, 19, 10, 0, tzinfo=UTC),
        datetime(2025, 7, 19, 11, 0, tzinfo=UTC),
        datetime(2050, 1, 1, tzinfo=UTC),
    ],
)
def test_times_outside_collateral_windows(at: datetime) -> None:
    data, collateral, _ = _good()
    with pytest.raises(VerificationError) as e:
        tdx.verify(data, collateral=collateral, at=at)
    assert e.value.code in ("collateral_expired", "collateral_not_yet_valid", "certificate_expired")


def test_collateral_from_separate_pcs_files() -> None:
    tv = tv_dir() / "tdx"
    names = ["gotdxguest_pckcrl.der", "gotdxguest_pckcrl_issuer_chain.pem", "gotdxguest_qeidentity_response.json",
             "gotdxguest_rootcrl.der", "gotdxguest_tcbinfo_qeidentity_issuer_chain.pem",
             "gotdxguest_tcbinfo_v3_response.json"]  # fmt: skip
    collateral = Collateral.from_paths([tv / n for n in names])
    data = (tv / "gotdxguest_tdx_prod_quote_SPR_E4_v4.bin").read_bytes()
    quote = dcap.parse_quote(data)
    with pytest.raises(
        VerificationError
    ) as e:  # signatures of the PCS responses verify; no TCB level
        tdx.verify(data[: quote.end], collateral=collateral, at=datetime(2023, 6, 19, tzinfo=UTC))
    assert e.value.code == "tcb_level_not_found"


def test_non_zero_trailing_bytes_refused_zero_padding_accepted() -> None:
    data, collateral, at = _good()
    with pytest.raises(MalformedError) as e:
        tdx.verify(data + b"x", collateral=collateral, at=at)
    assert e.value.code == "trailing_bytes" and e.value.offset is not None
    v = tdx.verify(data + bytes(100), collateral=collateral, at=at)
    assert v.claims["tcb_status"] == "UpToDate"


@pytest.mark.parametrize(
    "path",
    [
        "trustee_tdx_quote_4_v4.bin",
        "trustee_tdx_quote_5_v5.bin",
        "trustee_tdx_quote_6_v4.bin",
        "gotdxguest_ccel_cos-113-tdx-quote_v4.bin",
    ],
)
def test_other_samples_parse(path: str) -> None:
    data = (tv_dir() / "tdx" / path).read_bytes()
    claims = tdx.parse_claims(data)
    assert claims["platform"] == "tdx" and claims["version"] in (4, 5)
    assert claims["measurement"] == claims["mrtd"]
    with pytest.raises(CollateralError):  # no collateral given
        tdx.verify(data, collateral=Collateral.empty(), at=datetime(2025, 11, 1, tzinfo=UTC))


def test_truncations_name_field_and_offset() -> None:
    data, _, _ = _good()
    for n in (0, 10, 47, 48, 300, 632, 633, 700, 1100, 1200, 2000, 4935):
        with pytest.raises(MalformedError) as e:
            tdx.parse_claims(data[:n])
        assert e.value.field is not None, n


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_fuzzed_quotes_never_crash(d: st.DataObject) -> None:
    tv = tv_dir()
    data = (tv / "tdx" / "dcapqvl_tdx_quote_v4.bin").read_bytes()
    choice = d.draw(st.sampled_from(["truncate", "random", "splice", "grow"]))
    if choice == "truncate":
        blob = data[: d.draw(st.integers(0, len(data) - 71))]
    elif choice == "random":
        blob = d.draw(st.binary(min_size=0, max_size=6000))
        blob = b"\x04\x00\x02\x00\x81\x00\x00\x00" + blob if d.draw(st.booleans()) else blob
    elif choice == "splice":
        pos = d.draw(st.integers(0, len(data) - 1))
        blob = data[:pos] + d.draw(st.binary(min_size=1, max_size=8)) + data[pos + 1 :]
    else:
        blob = data + d.draw(st.binary(min_size=1, max_size=64))
    try:
        tdx.verify(blob, collateral=Collateral.empty(), at=datetime(2025, 6, 20, tzinfo=UTC))
    except MalformedError as e:
        assert e.field is not None or e.code in ("trailing_bytes",)
    except VerificationError:
        pass


def test_detect() -> None:
    tv = tv_dir()
    assert tdx.detect((tv / "tdx" / "trustee_tdx_quote_5_v5.bin").read_bytes())
    assert not tdx.detect((tv / "sgx" / "dcapqvl_sgx_quote_v3.bin").read_bytes())
    assert not tdx.detect(b"\x04\x00")


def test_all_exported() -> None:
    for mod in (tdx, dcap):
        for name in mod.__all__:
            assert hasattr(mod, name)


def test_testvectors_not_in_repo() -> None:
    root = Path(__file__).resolve().parents[3]
    assert not list(root.glob("tests/**/*.bin"))
