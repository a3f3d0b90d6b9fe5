"""SEV-SNP verifier against the real reports, VCEKs/VLEK and AMD chains of the test vectors.

Negative cases mutate the real reports (flipped bytes at seeded random positions, changed
signatures, other VCEKs, other times). Cases no public sample reaches (Genoa/Turin reports, an
unpinned root, CRLs, TCB and chip-id mismatches) are in test_sev_snp_chain.py with a fake chain.
"""

from __future__ import annotations

import hashlib
import random
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import manifest_cases
from tests.conftest import testvectors_dir as _tv_dir

from veritee import evidence
from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence import amd, sev_snp
from veritee.evidence.amd import AmdTrust, ChainCache, Product

# AMD VCEKs have serial number 0; cryptography warns about it on load (SOURCES.md).
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")

AT = datetime(2026, 1, 15, tzinfo=UTC)
CASES = manifest_cases("sev-snp")


def _at(case: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))


def _load(case: dict[str, Any]) -> tuple[bytes, Collateral]:
    tv = _tv_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        col = Collateral.from_paths([tv / p for p in case["collateral"]])
    return (tv / case["evidence"]).read_bytes(), col


def _sev(name: str) -> Path:
    return _tv_dir() / "sev-snp" / name


def _collateral(*names: str) -> Collateral:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Collateral.from_paths([_sev(n) for n in names])


def _virtee() -> tuple[bytes, Collateral]:
    return _sev("virtee_milan_report.bin").read_bytes(), _collateral(
        "virtee_milan_vcek.der", "amd_milan_vcek_ask_ark.pem"
    )


# -- every manifest case ------------------------------------------------------------------------


@pytest.mark.skipif(not CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize("case", CASES, ids=[c["evidence"] for c in CASES])
def test_manifest_case_verifies_with_expected_claims(case: dict[str, Any]) -> None:
    data, col = _load(case)
    result = evidence.verify(
        data, collateral=col, at=_at(case), format="sev-snp", trust=AmdTrust(cache=None)
    )
    assert result.format == "sev-snp"
    for key, expected in case["claims"].items():
        assert result.claims[key] == expected, key
    assert result.claims["tcb_status"] is None
    assert result.claims["product"] == "milan"
    # The certificate's TCB is the one a policy's min_tcb is held against; here it equals REPORTED_TCB.
    assert result.claims["vcek_tcb"] == result.claims["reported_tcb"]
    assert result.claims["policy_bits"]["debug"] is case["claims"]["debug"]


@pytest.mark.skipif(not CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize("case", CASES, ids=[c["evidence"] for c in CASES])
def test_manifest_case_unverified_claims_agree(case: dict[str, Any]) -> None:
    data, _ = _load(case)
    assert sev_snp.detect(data)
    claims = evidence.parse_claims(data, format="sev-snp")
    for key, expected in case["claims"].items():
        assert claims[key] == expected, key


@pytest.mark.skipif(not CASES, reason="test vectors absent (../shared/testvectors)")
@pytest.mark.parametrize("case", CASES, ids=[c["evidence"] for c in CASES])
def test_manifest_case_auto_detected(case: dict[str, Any]) -> None:
    data, _ = _load(case)
    assert evidence.detect_format(data) == "sev-snp"


def test_debug_report_is_authentic_and_says_debug() -> None:
    data = _sev("gosevguest_milan_report.bin").read_bytes()
    col = _collateral("gosevguest_milan_vcek.der", "amd_milan_vcek_ask_ark.pem")
    result = sev_snp.verify(data, collateral=col, at=AT)
    assert result.claims["debug"] is True
    assert result.claims["policy_bits"]["smt"] is True
    assert result.claims["reported_tcb"] == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}


def test_version_specific_fields() -> None:
    v2 = sev_snp.AttestationReport.from_bytes(_sev("virtee_milan_report.bin").read_bytes())
    assert v2.version == 2 and v2.cpuid_fam_id is None and v2.launch_mit_vector is None
    v3 = sev_snp.AttestationReport.from_bytes(_sev("azure_milan_v3_report.bin").read_bytes())
    assert (v3.cpuid_fam_id, v3.cpuid_mod_id, v3.cpuid_step) == (0x19, 0x01, 0x01)
    assert v3.cpuid_product is Product.MILAN and v3.current_mit_vector is None
    assert (
        sev_snp.parse_claims(_sev("azure_milan_v3_report.bin").read_bytes())["current_firmware"]
        == "1.55.29"
    )
    v5 = sev_snp.AttestationReport.from_bytes(_sev("teekit_sev-gcp.bin").read_bytes())
    assert v5.launch_mit_vector == 0x0B and v5.current_mit_vector == 0x0B
    vlek = sev_snp.AttestationReport.from_bytes(_sev("trustee_vlek_report.bin").read_bytes())
    assert vlek.signing_key_name == "vlek" and vlek.vmpl == 1


def test_fields_sit_at_their_named_offsets() -> None:
    data = _sev("trustee_vcek_report.bin").read_bytes()
    r = sev_snp.AttestationReport.from_bytes(data)
    assert r.measurement == data[sev_snp.OFF_MEASUREMENT : sev_snp.OFF_MEASUREMENT + 48]
    assert r.report_data == data[sev_snp.OFF_REPORT_DATA : sev_snp.OFF_REPORT_DATA + 64]
    assert r.chip_id == data[sev_snp.OFF_CHIP_ID : sev_snp.OFF_CHIP_ID + 64]
    assert r.host_data == data[sev_snp.OFF_HOST_DATA : sev_snp.OFF_HOST_DATA + 32]
    assert r.policy == struct.unpack_from("<Q", data, sev_snp.OFF_POLICY)[0]
    assert r.reported_tcb == struct.unpack_from("<Q", data, sev_snp.OFF_REPORTED_TCB)[0]
    assert r.launch_tcb == struct.unpack_from("<Q", data, sev_snp.OFF_LAUNCH_TCB)[0]
    assert r.guest_svn == 4 and r.signed == data[: sev_snp.SIGNED_SIZE]
    assert r.signature_r == int.from_bytes(data[0x2A0 : 0x2A0 + 48], "little")


# -- pinned roots ---------------------------------------------------------------------------------


@pytest.mark.parametrize("product", ["milan", "genoa", "turin"])
def test_pinned_fingerprints_are_the_genuine_arks(product: str) -> None:
    fps = set()
    for chain in (f"amd_{product}_vcek_ask_ark.pem", f"amd_{product}_vlek_asvk_ark.pem"):
        ark = x509.load_pem_x509_certificates(_sev(chain).read_bytes())[-1]
        assert ark.subject == ark.issuer
        fps.add(hashlib.sha256(ark.public_bytes(Encoding.DER)).hexdigest())
    assert len(fps) == 1  # one ARK signs both the ASK and the ASVK
    assert amd.PINNED_ARKS[fps.pop()] is Product(product)


def test_unpinned_root_is_refused() -> None:
    data, col = _virtee()
    only_genoa = AmdTrust.with_roots({amd.ARK_GENOA_SHA256: "genoa"}, cache=None)
    with pytest.raises(VerificationError, match="not a pinned AMD ARK") as e:
        sev_snp.verify(data, collateral=col, at=AT, trust=only_genoa)
    assert e.value.code == "root_not_pinned"


# -- tampering ------------------------------------------------------------------------------------

_PARSED_HEADER = set(range(0, 4)) | set(range(0x34, 0x38)) | set(range(0x48, 0x4C))


def test_flipped_byte_in_signed_region_is_refused() -> None:
    data, col = _virtee()
    cache = ChainCache()
    sev_snp.verify(data, collateral=col, at=AT, trust=cache)  # warm: exercise the cached path
    rng = random.Random(20240515)
    positions = rng.sample(range(sev_snp.SIGNED_SIZE), 300)
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        expected: tuple[type[Exception], ...] = (
            (MalformedError, VerificationError) if pos in _PARSED_HEADER else (VerificationError,)
        )
        with pytest.raises(expected):
            sev_snp.verify(bytes(bad), collateral=col, at=AT, trust=cache)


def test_changed_signature_is_refused() -> None:
    data, col = _virtee()
    for off in (sev_snp.OFF_SIGNATURE_R, sev_snp.OFF_SIGNATURE_R + 47, sev_snp.OFF_SIGNATURE_S + 5):
        bad = bytearray(data)
        bad[off] ^= 0x80
        with pytest.raises(VerificationError, match="does not verify"):
            sev_snp.verify(bytes(bad), collateral=col, at=AT)
    zero = bytearray(data)
    zero[sev_snp.OFF_SIGNATURE_R : sev_snp.OFF_SIGNATURE_R + 72] = bytes(72)
    with pytest.raises(VerificationError):
        sev_snp.verify(bytes(zero), collateral=col, at=AT)


def test_signature_padding_and_reserved_must_be_zero() -> None:
    data, col = _virtee()
    for off, field in (
        (sev_snp.OFF_SIGNATURE_R + 48, "signature.r"),
        (sev_snp.OFF_SIGNATURE_S + 71, "signature.s"),
        (0x400, "signature.reserved"),
    ):
        bad = bytearray(data)
        bad[off] = 1
        with pytest.raises(MalformedError) as e:
            sev_snp.verify(bytes(bad), collateral=col, at=AT)
        assert e.value.field == field


def test_another_chips_vcek_is_refused() -> None:
    data = _sev("virtee_milan_report.bin").read_bytes()
    col = _collateral("gosevguest_milan_vcek.der", "amd_milan_vcek_ask_ark.pem")
    with pytest.raises(VerificationError, match="does not verify with any of the 1 VCEK"):
        sev_snp.verify(data, collateral=col, at=AT)


def test_right_vcek_is_picked_from_a_bag_of_many() -> None:
    tv = _tv_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        col = Collateral.from_paths([tv / "sev-snp"])
    for name in ("virtee_milan_report.bin", "trustee_vcek_report.bin", "teekit_sev-gcp.bin"):
        r = sev_snp.verify(_sev(name).read_bytes(), collateral=col, at=AT, trust=ChainCache())
        assert r.claims["signing_key"] == "vcek"
    vlek = sev_snp.verify(
        _sev("trustee_vlek_report.bin").read_bytes(),
        collateral=col,
        at=datetime(2025, 6, 1, tzinfo=UTC),
    )
    assert vlek.claims["signing_key"] == "vlek"


def test_missing_collateral_is_a_collateral_error() -> None:
    data = _sev("virtee_milan_report.bin").read_bytes()
    for names in (
        (),
        ("amd_milan_vcek_ask_ark.pem",),
        ("virtee_milan_vcek.der",),
        ("virtee_milan_vcek.der", "amd_genoa_vcek_ask_ark.pem"),
    ):
        with pytest.raises(CollateralError):
            sev_snp.verify(data, collateral=_collateral(*names), at=AT, trust=AmdTrust(cache=None))


def test_vlek_report_with_only_vceks_is_refused() -> None:
    data = _sev("trustee_vlek_report.bin").read_bytes()
    col = _collateral("trustee_vcek.der", "amd_milan_vcek_ask_ark.pem")
    with pytest.raises(CollateralError, match="no VLEK"):
        sev_snp.verify(data, collateral=col, at=datetime(2025, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize("at", [datetime(2022, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC)])
def test_outside_validity_window_is_refused_even_when_cached(at: datetime) -> None:
    data, col = _virtee()
    cache = ChainCache()
    sev_snp.verify(data, collateral=col, at=AT, trust=cache)
    with pytest.raises(CollateralError, match="not valid at") as e:
        sev_snp.verify(data, collateral=col, at=at, trust=cache)
    assert e.value.code == "certificate_expired"


def test_vlek_outside_its_one_year_window() -> None:
    data = _sev("trustee_vlek_report.bin").read_bytes()
    col = _collateral("trustee_vlek.der", "amd_milan_vlek_asvk_ark.pem")
    with pytest.raises(CollateralError, match="VLEK certificate is not valid"):
        sev_snp.verify(data, collateral=col, at=AT)


# -- the chain cache ------------------------------------------------------------------------------


def test_cache_hit_gives_same_claims_and_still_needs_the_chain_in_collateral() -> None:
    data, col = _virtee()
    cache = ChainCache(maxsize=4)
    first = sev_snp.verify(data, collateral=col, at=AT, trust=cache)
    second = sev_snp.verify(data, collateral=col, at=AT, trust=cache)
    assert first.claims == second.claims and cache.hits == 1 and len(cache) == 1
    with pytest.raises(CollateralError):
        sev_snp.verify(data, collateral=_collateral("virtee_milan_vcek.der"), at=AT, trust=cache)


def test_cache_is_bounded() -> None:
    cache = ChainCache(maxsize=2)
    tv = _tv_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        col = Collateral.from_paths([tv / "sev-snp"])
    for name in ("virtee_milan_report.bin", "trustee_vcek_report.bin", "teekit_sev-gcp.bin"):
        sev_snp.verify(_sev(name).read_bytes(), collateral=col, at=AT, trust=cache)
    assert len(cache) == 2


def test_cache_is_safe_across_threads() -> None:
    data, col = _virtee()
    cache = ChainCache(maxsize=1)
    other = _sev("trustee_vcek_report.bin").read_bytes()
    col2 = col.joined(_collateral("trustee_vcek.der"))

    def run(i: int) -> str:
        r = sev_snp.verify(data if i % 2 else other, collateral=col2, at=AT, trust=cache)
        return str(r.claims["measurement"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(40)))
    assert set(results) == {
        sev_snp.parse_claims(data)["measurement"],
        sev_snp.parse_claims(other)["measurement"],
    }


# -- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 3, 0x50, 0x2A0, 0x2A1, 0x49F])
def test_truncated_report_names_field_and_offset(n: int) -> None:
    data, col = _virtee()
    with pytest.raises(MalformedError) as e:
        sev_snp.verify(data[:n], collateral=col, at=AT)
    assert e.value.offset == n and e.value.field is not None
    assert e.value.field in str(e.value)
    if n == 0x2A0:
        assert e.value.field == "signature.r"


def test_oversized_report_is_refused() -> None:
    data, col = _virtee()
    with pytest.raises(MalformedError, match="trailing") as e:
        sev_snp.verify(data + b"\x00", collateral=col, at=AT)
    assert e.value.offset == sev_snp.REPORT_SIZE
    assert not sev_snp.detect(data + b"\x00") and not sev_snp.detect(data[:-1])


@pytest.mark.parametrize("version", [0, 1, 4, 6, 255])
def test_unknown_version_is_refused_by_name(version: int) -> None:
    data, col = _virtee()
    bad = struct.pack("<I", version) + data[4:]
    with pytest.raises(MalformedError, match=f"unsupported report version {version}") as e:
        evidence.verify(bad, collateral=col, at=AT, format="sev-snp")
    assert e.value.field == "version"


def test_unknown_signature_algorithm_and_signing_key() -> None:
    data, _ = _virtee()
    bad = bytearray(data)
    bad[sev_snp.OFF_SIGNATURE_ALGO] = 2
    with pytest.raises(MalformedError, match="signature algorithm 2"):
        sev_snp.parse_claims(bytes(bad))
    bad = bytearray(data)
    bad[sev_snp.OFF_SIGNER_INFO] = 7 << 2
    with pytest.raises(MalformedError, match="SIGNING_KEY 7"):
        sev_snp.parse_claims(bytes(bad))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(min_size=0, max_size=1300) | st.binary(min_size=1184, max_size=1184))
def test_random_bytes_only_raise_malformed_or_verification(blob: bytes) -> None:
    _, col = _virtee()
    try:
        sev_snp.verify(blob, collateral=col, at=AT)
    except (MalformedError, VerificationError):
        pass
    else:  # pragma: no cover - would be a forgery
        pytest.fail("random bytes verified")


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0x2A0 - 0x50, max_size=0x2A0 - 0x50), st.sampled_from([2, 3, 5]))
def test_random_body_with_valid_header_is_refused(body: bytes, version: int) -> None:
    data, col = _virtee()
    blob = struct.pack("<I", version) + data[4:0x50] + body + data[0x2A0:]
    with pytest.raises((MalformedError, VerificationError)):
        sev_snp.verify(blob, collateral=col, at=AT)


def test_naive_time_is_a_usage_error() -> None:
    from veritee.errors import UsageError

    data, col = _virtee()
    with pytest.raises(UsageError):
        sev_snp.verify(data, collateral=col, at=datetime(2026, 1, 1))


def test_public_surface() -> None:
    for mod in (sev_snp, amd):
        for name in mod.__all__:
            assert hasattr(mod, name), name
