"""Azure confidential VMs on Intel TDX: the paravisor's vTPM quote, anchored in a TD quote.

The same chain as :mod:`veritee.evidence.azure_vtpm`, with a TDX quote in place of the SNP
report: Intel's DCAP collateral vouches for the TD quote, the quote's report data for the
runtime JSON (``HCLAkPub``), the AK for the vTPM quote and its nonce.

Evidence is Trustee's ``az-tdx-vtpm`` document (``deps/verifier/src/az_tdx_vtpm/compat.rs``):
``{"version": 1 | 2, "tpm_quote": {"signature", "message", "pcrs"}, "hcl_report": base64url,
"td_quote": base64url}`` with the quote's members as hex, or the unversioned earlier form
``{"tpm_quote": {...the same, as arrays of bytes...}, "hcl_report": [bytes], "td_quote":
[bytes]}``. The HCL report's IGVM report type is 4 (TDX) and its hardware area holds the
TDREPORT, which is not used: the TD quote is the signed statement.

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
from veritee.evidence import dcap, tdx
from veritee.evidence._reader import base64_any, json_object
from veritee.evidence.azure_vtpm import (
    MAX_DOCUMENT_BYTES,
    REPORT_TYPE_TDX,
    check_runtime_binding,
    document_version,
    hcl_report,
    verify_vtpm_quote,
    vtpm_claims,
    vtpm_quote,
)
from veritee.evidence.claims import VerifiedEvidence

__all__ = ["detect", "parse", "parse_claims", "verify"]


def detect(data: bytes) -> bool:
    return data[:64].lstrip()[:1] == b"{" and b'"td_quote"' in data and b'"hcl_report"' in data


def _blob(value: Any, field: str, versioned: bool) -> bytes:
    """base64url text (versioned forms) or an array of byte values (the unversioned form)."""
    if versioned:
        return base64_any(value, field)
    if not isinstance(value, list) or not all(isinstance(b, int) and 0 <= b < 256 for b in value):
        raise MalformedError("must be an array of bytes", field=field)
    return bytes(value)


def parse(data: bytes) -> tuple[bytes, dict[str, Any], bytes]:
    """(HCL report, the vTPM quote object, TD quote bytes), of any document form."""
    doc = json_object(data, MAX_DOCUMENT_BYTES)
    versioned = "version" in doc
    if versioned:
        document_version(doc)
    quote = doc.get("tpm_quote")
    if not isinstance(quote, dict):
        raise MalformedError("the TPM quote must be an object", field="tpm_quote")
    return (_blob(doc.get("hcl_report"), "hcl_report", versioned), quote,
            _blob(doc.get("td_quote"), "td_quote", versioned))  # fmt: skip


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
    # The TD quote's cheap checks (windows) first: no signature is checked for a refusal. Then
    # the vTPM links (no collateral needed), then the TD quote that anchors them.
    quote_obj, _ = tdx._parse(td_quote)
    dcap.cheap_checks(quote_obj, collateral=collateral, at=at, trust=trust, tdx=True,
                      then=("vtpm_quote_signature",))  # fmt: skip
    attest, pcrs = verify_vtpm_quote(runtime, quote)
    check_runtime_binding(tdx.parse_claims(td_quote)["report_data"], hash_name, runtime, "TD quote")
    hw = tdx.verify(td_quote, collateral=collateral, at=at, trust=trust)
    check_runtime_binding(hw.claims["report_data"], hash_name, runtime, "TD quote")
    return VerifiedEvidence(format="az-tdx-vtpm", claims=vtpm_claims(hw.claims, attest, pcrs),
                            verified_at=at, findings=hw.findings)  # fmt: skip
