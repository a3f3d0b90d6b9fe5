"""veritee's side of bench_peers.py: the same loop as the peers' drivers, in veritee's venv.

Per call, by case kind (the inputs are files written by bench_peers.py):

  tdx, sgx       tdx.verify / sgx.verify of the quote with its collateral (parsed once, as a
                 Collateral); verified collateral and the PCK chain cached by veritee after the
                 first call
  sev-snp        sev_snp.verify with the VCEK -> ASK -> ARK chain cached (AmdTrust(ChainCache))
  sev-snp-cold   the same with no cache: the chain parsed and verified per call
  nitro          nitro.verify: COSE_Sign1 parsed, the whole chain to the pinned root checked (the
                 AWS root; for the timed, re-signed sample its own root): windows and CA
                 constraints on every call, each link's signature once (kept by the exact bytes
                 of issuer and certificate after the first call), the COSE signature
  nitro-cold     the same with the kept links forgotten before each call: every signature checked
  nvidia-gpu     nvidia.verify of {"report", "certificate_chain"}: the chain to the pinned NVIDIA
                 root checked as for nitro (links kept after the first call) and the SPDM
                 measurements signature verified (no OCSP, no RIMs)
  tpm            tpm.verify of a go-tpm-tools attestation with one quote (SHA-256 bank), the AK
                 certificate and intermediate: AK chain checked (cached where veritee caches
                 it), quote signature, PCR selection and digest, claims; the claim
                 report_data (the quote's extraData) compared with the nonce
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

logging.disable(logging.CRITICAL)  # as every driver does (see _driver)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _driver import serve

from veritee.collateral import Collateral
from veritee.evidence import nitro, nvidia, sev_snp, sgx, tdx, tpm
from veritee.evidence.amd import AmdTrust, ChainCache

warnings.filterwarnings("ignore")  # AMD VCEK serial 0, Google CA names longer than X.520's


def prepare(case: dict[str, Any]) -> Callable[[], object]:
    kind = case["kind"]
    data = Path(case["evidence"]).read_bytes()
    at = datetime.fromisoformat(case["at"])
    col = Collateral.from_paths([Path(p) for p in case.get("collateral", [])])
    if kind == "sev-snp":
        trust = AmdTrust(cache=ChainCache())
        return lambda: sev_snp.verify(data, collateral=col, at=at, trust=trust)
    if kind == "sev-snp-cold":
        cold = AmdTrust(cache=None)
        return lambda: sev_snp.verify(data, collateral=col, at=at, trust=cold)
    if kind in ("nitro", "nitro-cold"):
        # the re-signed sample: its own root pinned; else the AWS root
        trust = (
            nitro.NitroTrust(root_sha256=(case["root_sha256"],)) if "root_sha256" in case else None
        )
        if kind == "nitro":
            return lambda: nitro.verify(data, collateral=col, at=at, trust=trust)

        def nitro_cold() -> object:
            nitro.clear_caches()
            return nitro.verify(data, collateral=col, at=at, trust=trust)

        return nitro_cold
    if kind == "tpm":  # the nonce compared as Keylime's check_quote compares it
        nonce = case["nonce_hex"]

        def tpm_call() -> None:
            if tpm.verify(data, collateral=col, at=at).claims["report_data"] != nonce:
                raise ValueError("the quote's extraData is not the nonce")

        return tpm_call
    verify = {"tdx": tdx.verify, "sgx": sgx.verify, "nvidia-gpu": nvidia.verify}[kind]
    return lambda: verify(data, collateral=col, at=at)


if __name__ == "__main__":
    serve(prepare)
