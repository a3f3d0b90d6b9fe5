"""The one list of platforms veritee appraises, and what each one is.

A platform is what a verified piece of evidence says it ran on (the claim ``platform``); a
policy has one section per platform (:class:`veritee.appraisal.policy.Platforms`). Evidence
*formats* (``veritee.evidence.FORMATS``) are how the evidence is encoded: several formats can
come from one platform (an Azure CVM's ``az-snp-vtpm`` document is SEV-SNP evidence with a
vTPM quote). Adding a platform: a member here, its verifier module, its policy section.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Tee"]


class Tee(StrEnum):
    """A platform, by the name its claims and policies use."""

    SEV_SNP = "sev-snp"
    TDX = "tdx"
    SGX = "sgx"
    NITRO = "nitro"
    TPM = "tpm"
    CCA = "cca"
    NVIDIA_GPU = "nvidia-gpu"
    KEYSTONE = "keystone"
    SIMULATED = "simulated"

    @property
    def hardware(self) -> bool:
        """Evidence signed by a hardware root (everything but the simulated platform)."""
        return self is not Tee.SIMULATED

    @property
    def isolates_memory(self) -> bool:
        """The evidence also says the workload's memory is kept from the host: a TPM alone
        attests the boot, and a GPU's measurements do not say whether its CC mode is on."""
        return self in _ISOLATING

    @property
    def policy_section(self) -> str:
        """The attribute of :class:`veritee.appraisal.policy.Platforms` for this platform."""
        return self.value.replace("-", "_")

    @property
    def module(self) -> str:
        """The verifier module of its own evidence format (``veritee.evidence.FORMATS``)."""
        return "veritee.evidence." + ("nvidia" if self is Tee.NVIDIA_GPU else self.policy_section)


_ISOLATING = frozenset({Tee.SEV_SNP, Tee.TDX, Tee.SGX, Tee.NITRO, Tee.CCA, Tee.KEYSTONE})
