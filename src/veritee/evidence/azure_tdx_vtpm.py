"""Azure confidential VMs on Intel TDX: the paravisor's vTPM quote, anchored in a TD quote.

The same chain as :mod:`veritee.evidence.azure_vtpm`, with a TDX quote in place of the SNP
report: Intel's DCAP collateral vouches for the TD quote, the quote's report data for the
runtime JSON (``HCLAkPub``), the AK for the vTPM quote and its nonce.

Evidence is Trustee's ``az-tdx-vtpm`` document ``{"version": 1, "tpm_quote": {"signature",
"message", "pcrs"}, "hcl_report": base64url, "td_quote": base64url}``; the HCL report's IGVM
report type is 4 (TDX) and its hardware area holds the TDREPORT, which is not used: the TD
quote is the signed statement.

:func:`verify` checks (1) the TD quote with :func:`veritee.evidence.tdx.verify` (Intel
collateral, pinned root, TCB evaluation); (2) its report data starts with HASH(runtime JSON);
(3, 4) the vTPM quote as for SNP. Claims are the TD quote's (platform ``tdx``) with the quote's
nonce as ``report_data``, ``hcl_report_data``, ``vtpm: true`` and ``pcr0`` ... ``pcr23``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from veritee.collateral import Collateral
from veritee.errors import MalformedError, UsageError
from veritee.evidence import tdx
from veritee.evidence._reader import base64_any, json_object
from veritee.evidence.azure_vtpm import (
    MAX_DOCUMENT_BYTES,
    REPORT_TYPE_TDX,
    check_runtime_binding,
    hcl_report,
    verify_vtpm_quote,
    vtpm_claims,
    vtpm_quote,
)
from veritee.evidence.claims import VerifiedEvidence

__all__ = ["detect", "parse", "parse_claims", "verify"]


def detect(data: bytes) -> bool:
    return data[:64].lstrip()[:1] == b"{" and b'"td_quote"' in data and b'"hcl_report"' in data


def parse(data: bytes) -> tuple[bytes, dict[str, Any], bytes]:
    """(HCL report, the vTPM quote object, TD quote bytes)."""
    doc = json_object(data, MAX_DOCUMENT_BYTES)
    if doc.get("version") != 1:
        raise MalformedError(f"unsupported document version {doc.get('version')!r}", field="version")
    quote = doc.get("tpm_quote")
    if not isinstance(quote, dict):
        raise MalformedError("the TPM quote must be an object", field="tpm_quote")
    return base64_any(doc.get("hcl_report"), "hcl_report"), quote, base64_any(doc.get("td_quote"), "td_quote")


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims, for display."""
    from veritee.evidence import tpm

    report, quote, td_quote = parse(data)
    hcl_report(report, REPORT_TYPE_TDX)
    message, _, pcrs = vtpm_quote(quote)
    return vtpm_claims(tdx.parse_claims(td_quote), tpm._attest(message, "tpm_quote.message"), pcrs)


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Verify an ``az-tdx-vtpm`` document at ``at`` (see the module docstring)."""
    if at.tzinfo is None:
        raise UsageError("verification time must be timezone-aware")
    report, quote, td_quote = parse(data)
    _, hash_name, runtime = hcl_report(report, REPORT_TYPE_TDX)
    # The vTPM links first (no collateral needed), then the TD quote that anchors them.
    attest, pcrs = verify_vtpm_quote(runtime, quote)
    check_runtime_binding(tdx.parse_claims(td_quote)["report_data"], hash_name, runtime, "TD quote")
    hw = tdx.verify(td_quote, collateral=collateral, at=at, trust=trust)
    check_runtime_binding(hw.claims["report_data"], hash_name, runtime, "TD quote")
    return VerifiedEvidence(format="az-tdx-vtpm", claims=vtpm_claims(hw.claims, attest, pcrs),
                            verified_at=at, findings=hw.findings)  # fmt: skip
