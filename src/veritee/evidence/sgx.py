"""Intel SGX ECDSA quotes (version 3), verified with DCAP.

The quote body is the SGX enclave report body (Intel SGX DCAP Quoting Library API,
Table A.4 "Enclave Report Body", 384 bytes, parsed by :class:`veritee.evidence.dcap.EnclaveReport`)::

    0x000 16 CPUSVN       0x040 32 MRENCLAVE    0x100 2 ISVPRODID    0x130 16 ISVFAMILYID
    0x010  4 MISCSELECT   0x080 32 MRSIGNER     0x102 2 ISVSVN       0x140 64 REPORTDATA
    0x030 16 ATTRIBUTES   0x0C0 64 CONFIGID     0x104 2 CONFIGSVN

ATTRIBUTES bit 1 is DEBUG. Signatures, the PCK chain, collateral and the TCB status are
handled by :mod:`veritee.evidence.dcap`; a status other than ``UpToDate`` is a finding.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from veritee.collateral import Collateral
from veritee.errors import MalformedError
from veritee.evidence import dcap
from veritee.evidence.claims import Reason, VerifiedEvidence

__all__ = ["detect", "parse_claims", "verify"]


def detect(data: bytes) -> bool:
    """A DCAP quote header: version 3, ECDSA-256, TEE type 0 (SGX), Intel QE vendor ID.

    The key type and vendor ID keep SEV-SNP v3 reports (version u32 = 3, GUEST_SVN 0) out.
    """
    return dcap.looks_like_quote(data, (3,), dcap.TEE_TYPE_SGX)


def _parse(data: bytes) -> tuple[dcap.Quote, dcap.EnclaveReport]:
    quote = dcap.parse_quote(data)
    if quote.header.tee_type != dcap.TEE_TYPE_SGX:
        raise MalformedError("not an SGX quote", field="header.tee_type", offset=4)
    return quote, dcap.EnclaveReport.from_bytes(quote.body, "enclave_report")


def _base_claims(quote: dcap.Quote, report: dcap.EnclaveReport) -> dict[str, Any]:
    return {
        "platform": "sgx",
        "version": quote.header.version,
        "measurement": report.mr_enclave.hex(),
        "report_data": report.report_data.hex(),
        "debug": report.debug,
        "mr_enclave": report.mr_enclave.hex(),
        "mr_signer": report.mr_signer.hex(),
        "isv_prod_id": report.isv_prod_id,
        "isv_svn": report.isv_svn,
        "attributes": report.attributes.hex(),
        "misc_select": report.misc_select,
        "cpu_svn": report.cpu_svn.hex(),
        "config_id": report.config_id.hex(),
        "config_svn": report.config_svn,
        "isv_ext_prod_id": report.isv_ext_prod_id.hex(),
        "isv_family_id": report.isv_family_id.hex(),
    }


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims for display. Trailing bytes are tolerated here (and counted)."""
    quote, report = _parse(data)
    out = _base_claims(quote, report)
    out.update(tcb_status=None, advisory_ids=[], trailing_bytes=len(quote.trailing))
    return out


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Verify an SGX quote (see :func:`veritee.evidence.dcap.verify_quote`) and return its claims.

    ``trust`` is a :class:`~veritee.evidence.dcap.DcapTrust` (default: the Intel SGX Root CA).
    """
    quote, report = _parse(data)
    findings = dcap.trailing_findings(quote)
    result = dcap.verify_quote(quote, collateral=collateral, at=at, trust=trust)
    claims = _base_claims(quote, report)
    claims.update(result.claims())
    if report.debug:
        findings += (Reason("debug", "ATTRIBUTES.DEBUG is set: the enclave is debuggable"),)
    return VerifiedEvidence("sgx", claims, at, findings + result.findings)
