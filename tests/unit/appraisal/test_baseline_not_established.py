"""Honest baseline results (issue 11, item 8): evidence whose verifier or baseline cannot establish
something (a GPU's revocation status and reference values, a TPM's measured boot) is never a
plain ``affirming``: the decision says what was not established, and the EAR status is
``warning`` (draft-ietf-rats-ar4si), on real GPU and TPM evidence."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from tests.conftest import TESTVECTORS

from veritee import evidence
from veritee.appraisal import appraise, appraise_baseline, load_policy
from veritee.collateral import Collateral

AT = datetime(2026, 1, 15, tzinfo=UTC)
GPU = TESTVECTORS / "nvidia-gpu"
TPM = TESTVECTORS / "tpm" / "gotpmtools_gce-cos-85-nonce9009.pb"
pytestmark = pytest.mark.skipif(
    not TPM.is_file(), reason="test vectors absent (../shared/testvectors)"
)


def _policy(**platforms: object) -> object:
    return load_policy(json.dumps({"version": 1, "name": "p", "platforms": platforms}))


def _gpu() -> evidence.VerifiedEvidence:
    doc = {"report": (GPU / "nvtrust_hopperAttestationReport.txt").read_text().strip(),
           "certificate_chain": (GPU / "nvtrust_hopperCertChain.pem").read_text()}  # fmt: skip
    return evidence.verify(json.dumps(doc).encode(), at=AT)


def _tpm() -> evidence.VerifiedEvidence:
    return evidence.verify(
        TPM.read_bytes(), collateral=Collateral.from_paths([TESTVECTORS / "tpm"]), at=AT
    )


def test_gpu_evidence_says_revocation_and_rims_were_not_established() -> None:
    d = appraise_baseline(_gpu())
    assert d.accepted and d.status == "warning"
    assert {"revocation_not_checked", "reference_values_not_compared"} <= {
        w.code for w in d.warnings
    }
    assert d.vector["hardware"] == 32 and d.vector["executables"] == 32


def test_a_policy_pinning_the_gpu_measurements_settles_the_reference_values_only() -> None:
    ev = _gpu()
    d = appraise(ev, _policy(**{"nvidia-gpu": {"measurements": [ev.claims["measurement"]]}}))
    assert d.accepted and d.status == "warning"
    codes = {w.code for w in d.warnings}
    assert "revocation_not_checked" in codes and "reference_values_not_compared" not in codes
    assert d.vector["executables"] == 2
    d = appraise(ev, _policy(**{"nvidia-gpu": {}}))
    assert {"revocation_not_checked", "reference_values_not_compared"} <= {
        w.code for w in d.warnings
    }


def test_a_tpm_quote_whose_measured_boot_was_not_appraised_is_a_warning() -> None:
    ev = _tpm()
    assert ev.claims["event_log"]["verified"] is True  # replayed, but its content is not judged
    d = appraise_baseline(ev)
    assert d.accepted and d.status == "warning"
    assert "measured_boot_not_appraised" in {w.code for w in d.warnings}
    assert d.vector["executables"] == 32
    d = appraise(ev, _policy(tpm={}))
    assert d.status == "warning" and "measured_boot_not_appraised" in {w.code for w in d.warnings}
    pinned = appraise(ev, _policy(tpm={"pcrs": {"4": [ev.claims["pcr4"]]}}))
    assert pinned.accepted and pinned.status == "affirming"
    assert "measured_boot_not_appraised" not in {w.code for w in pinned.warnings}


def test_azure_vtpm_pcrs_not_appraised_is_a_warning() -> None:
    data = (TESTVECTORS / "azure-vtpm" / "az-snp-vtpm_evidence-v2.json").read_bytes()
    chain = Collateral.from_paths([TESTVECTORS / "sev-snp" / "amd_milan_vcek_ask_ark.pem"])
    ev = evidence.verify(data, collateral=chain, at=AT)
    d = appraise_baseline(ev)
    assert d.accepted and d.status == "warning"
    assert "measured_boot_not_appraised" in {w.code for w in d.warnings}
    pinned = appraise(ev, _policy(**{"sev-snp": {"pcrs": {"0": [ev.claims["pcr0"]]}}}))
    assert "measured_boot_not_appraised" not in {w.code for w in pinned.warnings}


def test_hardware_evidence_with_nothing_left_unestablished_stays_affirming() -> None:
    from tests.fakes import amd as fake_amd

    chain = fake_amd.make_chain()
    data = fake_amd.make_report(chain)
    col = chain.collateral(crls=(fake_amd.make_crl(chain, []),))
    ev = evidence.verify(data, collateral=col, at=fake_amd.AT, trust=chain.trust())
    d = appraise_baseline(ev)
    assert d.accepted and d.status == "affirming" and not d.warnings


def test_sev_snp_without_the_arks_crl_leaves_the_hardware_claim_unestablished() -> None:
    """The ASK's revocation is only checked against a CRL of the ARK: without one the verifier
    says so (``revocation_not_checked``), as NVIDIA's does, and the hardware claim is a warning.
    Before, a revoked ASK passed silently where no CRL was given."""
    data = (TESTVECTORS / "sev-snp" / "virtee_milan_report.bin").read_bytes()
    col = Collateral.from_paths([TESTVECTORS / "sev-snp" / n for n in
                                 ("virtee_milan_vcek.der", "amd_milan_vcek_ask_ark.pem")])  # fmt: skip
    ev = evidence.verify(data, collateral=col, at=AT)
    assert [f.code for f in ev.findings] == ["revocation_not_checked"]
    d = appraise_baseline(ev)
    assert d.accepted and d.status == "warning"
    assert d.vector["hardware"] != 2 and "revocation_not_checked" in {w.code for w in d.warnings}
