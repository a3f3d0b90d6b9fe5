"""The trust root: what a verifier trusts a priori, the pinned vendor roots.

As sigstore's ``TrustedRoot`` and cryptography's ``Store``: one frozen object, given to the
verifier, never taken from the evidence. Everything else a verifier reads is
:class:`veritee.collateral.Collateral`, kept apart by provenance (the relying party's own
endorsements; the attester's certificates, which are path candidates only).

``TrustRoot()`` pins the genuine vendor roots. Tests and private deployments pin others per
vendor (``TrustRoot(intel=DcapTrust(...))``); a fingerprint not pinned here is never trusted.
The Arm CCA platform key and the simulated platform key have no vendor root: the relying party
names them (its collateral, ``--platform-key``, a policy's ``platform_keys``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from veritee.evidence.amd import AmdTrust
from veritee.evidence.dcap import DcapTrust
from veritee.evidence.nitro import NitroTrust
from veritee.evidence.nvidia import NVIDIA_DEVICE_IDENTITY_CA_SHA256
from veritee.evidence.tpm import PINNED_ROOTS as TPM_PINNED_ROOTS

__all__ = ["TrustRoot"]


@dataclass(frozen=True)
class TrustRoot:
    """The pinned roots of every vendor (each field is what that vendor's verifier takes)."""

    #: AMD ARKs (SEV-SNP, Azure SEV-SNP vTPM), with the verified-chain cache.
    amd: AmdTrust = field(default_factory=AmdTrust)
    #: The Intel SGX Root CA (SGX, TDX, Azure TDX vTPM).
    intel: DcapTrust = field(default_factory=DcapTrust)
    #: The AWS Nitro Enclaves root.
    nitro: NitroTrust = field(default_factory=NitroTrust)
    #: TPM AK roots (SHA-256 hex of the root's DER): the cloud vendors' pinned roots.
    tpm: frozenset[str] = TPM_PINNED_ROOTS
    #: NVIDIA Device Identity CA (SHA-256 hex).
    nvidia: frozenset[str] = frozenset({NVIDIA_DEVICE_IDENTITY_CA_SHA256})

    @classmethod
    def default(cls) -> TrustRoot:
        """The genuine vendor roots."""
        return cls()

    def with_tpm_roots(self, fingerprints: frozenset[str]) -> TrustRoot:
        """Also trust these TPM AK roots (a domain CA that enrolled TPMs)."""
        return replace(self, tpm=self.tpm | fingerprints)

    def for_format(self, fmt: str) -> Any:
        """What the verifier of ``fmt`` takes as ``trust`` (None where no vendor root applies)."""
        return {
            "sev-snp": self.amd,
            "az-snp-vtpm": self.amd,
            "tdx": self.intel,
            "sgx": self.intel,
            "az-tdx-vtpm": self.intel,
            "nitro": self.nitro,
            "tpm": self.tpm,
            "nvidia-gpu": self.nvidia,
        }.get(fmt)
