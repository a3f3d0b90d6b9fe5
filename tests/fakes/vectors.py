"""One real sample per evidence format, from ../shared/testvectors, with its collateral and a
time at which it verifies (or gets as far as the vectors allow): the starting points of the
crash-fuzz and property tests. Example::

    s = sample("tpm")
    evidence.verify(s.data, collateral=s.collateral, at=s.at, format="tpm")
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec
from tests.conftest import TESTVECTORS

from veritee.collateral import Collateral
from veritee.evidence import simulated
from veritee.profiles import Profile

__all__ = ["SAMPLES", "Sample", "sample"]


@dataclass(frozen=True)
class Sample:
    data: bytes
    collateral_files: tuple[str, ...]
    at: datetime

    @functools.cached_property
    def collateral(self) -> Collateral:
        return Collateral.from_paths([TESTVECTORS / f for f in self.collateral_files])


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def _simulated() -> bytes:
    key = ec.derive_private_key(0x5EED, ec.SECP384R1())
    return simulated.sign_report(key, measurement=b"\x01" * 48, report_data=b"\x02" * 64,
                                 profile=Profile.PRODUCTION, debug=False)  # fmt: skip


def _keystone() -> bytes:
    """A report built as Keystone's SM builds it, signed with the published TEST device key of
    ../shared/testvectors/keystone (no real report is published; SOURCES.md there)."""
    import hashlib

    from tests.fakes import keystone

    return keystone.build_report(
        device=keystone.dev_key(), sm=keystone.expand_seed(b"\x5a" * 32),
        enclave_hash=hashlib.sha3_512(b"enclave").digest(), sm_hash=hashlib.sha3_512(b"sm").digest(),
        data=bytes(range(64)),
    )  # fmt: skip


def _nvidia() -> bytes:
    d = TESTVECTORS / "nvidia-gpu"
    return json.dumps({"report": (d / "nvtrust_hopperAttestationReport.txt").read_text().strip(),
                       "certificate_chain": (d / "nvtrust_hopperCertChain.pem").read_text()}).encode()  # fmt: skip


def _file(path: str) -> Callable[[], bytes]:
    return lambda: (TESTVECTORS / path).read_bytes()


#: format -> (the real evidence, its collateral files, a time at which it verifies or nearly).
SAMPLES: dict[str, tuple[Callable[[], bytes], tuple[str, ...], datetime]] = {
    "sev-snp": (_file("sev-snp/virtee_milan_report.bin"),
                ("sev-snp/virtee_milan_vcek.der", "sev-snp/amd_milan_vcek_ask_ark.pem"), _t("2026-01-15")),
    "tdx": (_file("tdx/dcapqvl_tdx_quote_v4.bin"), ("tdx/dcapqvl_tdx_quote_v4_collateral.json",), _t("2025-06-20")),
    "sgx": (_file("sgx/dcapqvl_sgx_quote_v3.bin"), ("sgx/dcapqvl_sgx_quote_v3_collateral.json",), _t("2025-06-20")),
    "nitro": (_file("nitro/nitrite_attestation.cbor"), (), _t("2024-09-07T14:40:00")),
    "tpm": (_file("tpm/gotpmtools_gce-cos-85-nonce9009.pb"), ("tpm",), _t("2026-01-15")),
    "az-snp-vtpm": (_file("azure-vtpm/az-snp-vtpm_evidence-v2.json"),
                    ("sev-snp/amd_milan_vcek_ask_ark.pem",), _t("2026-01-15")),
    "az-tdx-vtpm": (_file("azure-vtpm/az-tdx-vtpm_evidence-v1.json"), (), _t("2026-01-15")),
    "cca": (_file("arm-cca/veraison_tfrmm_cca_token.cbor"), ("arm-cca",), _t("2026-01-15")),
    "nvidia-gpu": (_nvidia, (), _t("2026-01-15")),
    "keystone": (_keystone, (), _t("2026-01-15")),
    "simulated": (_simulated, (), _t("2026-01-15")),
}  # fmt: skip


@functools.cache
def sample(fmt: str) -> Sample:
    data, files, at = SAMPLES[fmt]
    return Sample(data(), files, at)
