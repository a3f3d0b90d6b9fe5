"""Cheap checks first (issue 15, item 3): a verifier refuses on closed validity windows and other
cheap checks before any signature work, lists every reason it found and names the checks it did
not reach; the appraisal carries both (``checks_not_reached``). No timing here (bench/ measures
the cost): a changed signature that is NOT reported proves the signature was not checked.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TESTVECTORS

from veritee.appraisal.attest import appraise_evidence
from veritee.appraisal.evaluate import refused_for_error
from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence import azure_vtpm, cca, dcap, nitro, nvidia, sev_snp, sgx, tdx, tpm
from veritee.evidence.amd import AmdTrust, ChainCache

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

TDX_QUOTE = TESTVECTORS / "tdx" / "dcapqvl_tdx_quote_v4.bin"
TDX_COLL = TESTVECTORS / "tdx" / "dcapqvl_tdx_quote_v4_collateral.json"
SGX_QUOTE = TESTVECTORS / "sgx" / "dcapqvl_sgx_quote_v3.bin"
SGX_COLL = TESTVECTORS / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json"
DCAP_GOOD = datetime(2025, 6, 20, tzinfo=UTC)
DCAP_EXPIRED = datetime(
    2025, 9, 20, tzinfo=UTC
)  # TCB info, QE identity and PCK CRL are past nextUpdate
SNP = TESTVECTORS / "sev-snp"
SNP_GOOD = datetime(2026, 1, 15, tzinfo=UTC)
SNP_EXPIRED = datetime(2040, 1, 1, tzinfo=UTC)  # the VCEK (7 years) has expired, the ARK not yet


def _need(*paths: Path) -> None:
    for p in paths:
        if not p.is_file():
            pytest.skip(f"test vectors not found: {p} (../shared/testvectors is absent)")


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def _codes(e: VerificationError) -> list[str]:
    return [code for code, _ in e.refusals]


# --- DCAP: TDX and SGX ------------------------------------------------------------------------

DCAP_CASES = [
    pytest.param(tdx, TDX_QUOTE, TDX_COLL, 48 + 584 + 4, id="tdx"),
    pytest.param(sgx, SGX_QUOTE, SGX_COLL, 48 + 384 + 4, id="sgx"),
]


@pytest.mark.parametrize("mod, quote_path, coll_path, sig_offset", DCAP_CASES)
@pytest.mark.parametrize("cold", [False, True], ids=["cached", "cold"])
def test_dcap_expired_collateral_is_refused_before_any_signature(
    mod: Any, quote_path: Path, coll_path: Path, sig_offset: int, cold: bool
) -> None:
    _need(quote_path, coll_path)
    quote = quote_path.read_bytes()
    collateral = Collateral.from_paths([coll_path])
    mod.verify(quote, collateral=collateral, at=DCAP_GOOD)  # fills every cache
    if cold:
        dcap.clear_caches()
    # The quote's own signature is broken too: it is never reported, so it was never checked.
    bad = _flip(quote, sig_offset + 5)
    with pytest.raises(CollateralError) as e:
        mod.verify(bad, collateral=collateral, at=DCAP_EXPIRED)
    assert e.value.code == "collateral_expired"
    assert e.value.not_reached == dcap.NOT_REACHED
    assert (
        "quote_signature" in e.value.not_reached and "collateral_signatures" in e.value.not_reached
    )
    messages = [m for _, m in e.value.refusals]
    # Every closed window is listed: the PCK CRL, the TCB info and the QE identity.
    assert set(_codes(e.value)) == {"collateral_expired"}
    for part in ("PCK CRL", "tcb_info expired", "qe_identity expired"):
        assert any(part in m for m in messages), (part, messages)
    # The good quote at the good time still verifies, the bad one is refused for its signature.
    mod.verify(quote, collateral=collateral, at=DCAP_GOOD)
    with pytest.raises(VerificationError) as sig:
        mod.verify(bad, collateral=collateral, at=DCAP_GOOD)
    assert sig.value.code == "quote_signature_invalid" and sig.value.not_reached == ()


def test_dcap_not_yet_valid_collateral_is_refused_before_any_signature() -> None:
    _need(TDX_QUOTE, TDX_COLL)
    dcap.clear_caches()
    with pytest.raises(CollateralError) as e:
        tdx.verify(TDX_QUOTE.read_bytes(), collateral=Collateral.from_paths([TDX_COLL]),
                   at=datetime(2025, 6, 1, tzinfo=UTC))  # fmt: skip
    assert e.value.code == "collateral_not_yet_valid" and e.value.not_reached == dcap.NOT_REACHED


def test_dcap_tcb_info_for_another_tee_is_refused_before_any_signature() -> None:
    """Identity: SGX collateral for a TDX quote (its TCB info is for SGX)."""
    _need(TDX_QUOTE, SGX_COLL)
    dcap.clear_caches()
    with pytest.raises(CollateralError) as e:
        tdx.verify(
            TDX_QUOTE.read_bytes(), collateral=Collateral.from_paths([SGX_COLL]), at=DCAP_GOOD
        )
    assert "tcb_info_mismatch" in _codes(e.value) and e.value.not_reached == dcap.NOT_REACHED


def test_the_decision_lists_every_reason_and_the_checks_not_reached() -> None:
    _need(TDX_QUOTE, TDX_COLL)
    appraisal = appraise_evidence(
        TDX_QUOTE.read_bytes(), collateral=Collateral.from_paths([TDX_COLL]), at=DCAP_EXPIRED,
        policy=None, baseline=True,
    )  # fmt: skip
    d = appraisal.decision
    assert not d.accepted and appraisal.evidence is None
    assert [r.code for r in d.reasons].count("collateral_expired") >= 3
    [warning] = [w for w in d.warnings if w.code == "checks_not_reached"]
    for check in dcap.NOT_REACHED:
        assert check in warning.message
    assert "checks_not_reached" in appraisal.audit_details()["warnings"]


def test_an_error_without_skipped_checks_gives_one_reason_and_no_warning() -> None:
    d = refused_for_error(
        VerificationError("quote: signature does not verify", code="quote_signature_invalid")
    )
    assert [r.code for r in d.reasons] == ["quote_signature_invalid"] and d.warnings == []
    d = refused_for_error(MalformedError("bad", field="x"))
    assert [r.code for r in d.reasons] == ["malformed"] and d.warnings == []


# --- SEV-SNP and Azure SNP vTPM -------------------------------------------------------------------


def _snp() -> tuple[bytes, Collateral]:
    _need(
        SNP / "virtee_milan_report.bin",
        SNP / "virtee_milan_vcek.der",
        SNP / "amd_milan_vcek_ask_ark.pem",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        col = Collateral.from_paths(
            [SNP / "virtee_milan_vcek.der", SNP / "amd_milan_vcek_ask_ark.pem"]
        )
    return (SNP / "virtee_milan_report.bin").read_bytes(), col


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "cold"])
def test_snp_expired_vcek_is_refused_before_any_signature(cached: bool) -> None:
    data, col = _snp()
    trust = AmdTrust(cache=ChainCache() if cached else None)
    sev_snp.verify(data, collateral=col, at=SNP_GOOD, trust=trust)  # warms the chain cache
    bad = _flip(data, sev_snp.SIGNED_SIZE + 3)  # the report signature's r
    with pytest.raises(VerificationError) as e:
        sev_snp.verify(bad, collateral=col, at=SNP_EXPIRED, trust=trust)
    assert e.value.code == "certificate_expired"
    assert e.value.not_reached == sev_snp.NOT_REACHED
    assert any("VCEK certificate is not valid" in m for _, m in e.value.refusals)
    with pytest.raises(VerificationError) as sig:
        sev_snp.verify(bad, collateral=col, at=SNP_GOOD, trust=trust)
    assert sig.value.code == "signature_invalid" and sig.value.not_reached == ()


def test_snp_missing_ask_is_refused_before_any_signature() -> None:
    data, col = _snp()
    vcek_only = Collateral(
        certificates=tuple(c for c in col.certificates if "VCEK" in c.subject.rfc4514_string())
    )
    with pytest.raises(CollateralError) as e:
        sev_snp.verify(data, collateral=vcek_only, at=SNP_GOOD, trust=AmdTrust(cache=None))
    assert e.value.code == "collateral_missing" and e.value.not_reached == sev_snp.NOT_REACHED


def test_azure_snp_vtpm_expired_vcek_is_refused_before_any_signature() -> None:
    path = TESTVECTORS / "azure-vtpm"
    docs = sorted(path.glob("*.json")) if path.is_dir() else []
    data = next((p.read_bytes() for p in docs if azure_vtpm.detect(p.read_bytes())), None)
    if data is None:
        pytest.skip("no az-snp-vtpm document in ../shared/testvectors/azure-vtpm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chain = Collateral.from_paths([SNP / "amd_milan_vcek_ask_ark.pem"])
    with pytest.raises(VerificationError) as e:
        azure_vtpm.verify(data, collateral=chain, at=SNP_EXPIRED)
    assert e.value.code == "certificate_expired" and e.value.not_reached == sev_snp.NOT_REACHED


# --- chains carried in the evidence: Nitro, NVIDIA, TPM --------------------------------------------


def test_nitro_expired_leaf_is_refused_before_any_signature() -> None:
    sample = TESTVECTORS / "nitro" / "nitrite_attestation.cbor"
    _need(sample)
    data = sample.read_bytes()
    with pytest.raises(VerificationError) as e:
        nitro.verify(data, collateral=Collateral.empty(), at=datetime(2024, 9, 8, tzinfo=UTC))
    assert e.value.code == "certificate_expired"
    assert e.value.not_reached == ("chain_signatures", "cose_signature")
    assert any("certificate is not valid" in m for _, m in e.value.refusals)


def test_nvidia_chain_before_its_validity_is_refused_before_any_signature() -> None:
    d = TESTVECTORS / "nvidia-gpu"
    _need(d / "nvtrust_hopperAttestationReport.txt", d / "nvtrust_hopperCertChain.pem")
    data = json.dumps({"report": (d / "nvtrust_hopperAttestationReport.txt").read_text().strip(),
                       "certificate_chain": (d / "nvtrust_hopperCertChain.pem").read_text()}).encode()  # fmt: skip
    with pytest.raises(VerificationError) as e:
        nvidia.verify(data, collateral=Collateral.empty(), at=datetime(2000, 1, 1, tzinfo=UTC))
    assert e.value.code == "certificate_expired"
    assert e.value.not_reached == ("chain_signatures", "measurements_signature")
    assert len(e.value.refusals) >= 2  # every certificate of the chain is not yet valid: all listed


def test_tpm_ak_chain_outside_its_validity_is_refused_before_any_signature() -> None:
    sample = TESTVECTORS / "tpm" / "gotpmtools_gce-cos-85-nonce9009.pb"
    _need(sample)
    roots = Collateral.from_paths([TESTVECTORS / "tpm"])
    with pytest.raises(VerificationError) as e:
        tpm.verify(sample.read_bytes(), collateral=roots, at=datetime(2000, 1, 1, tzinfo=UTC))
    assert e.value.code == "certificate_expired"
    assert e.value.not_reached == ("chain_signatures", "quote_signatures", "event_log")


def test_cca_without_a_platform_key_is_refused_before_any_signature() -> None:
    token = TESTVECTORS / "arm-cca" / "veraison_tfrmm_cca_token.cbor"
    _need(token)
    with pytest.raises(VerificationError) as e:
        cca.verify(
            token.read_bytes(), collateral=Collateral.empty(), at=datetime(2026, 1, 1, tzinfo=UTC)
        )
    assert e.value.code == "platform_key_not_trusted"
    assert e.value.not_reached == ("realm_signature", "platform_signature")
