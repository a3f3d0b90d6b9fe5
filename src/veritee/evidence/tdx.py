"""Intel TDX quotes v4 (TD report 1.0) and v5 (TD report 1.0 or 1.5), verified with DCAP.

TD quote body (Intel TDX DCAP Quoting Library API, Table A.7 "TD Quote Body", 584 bytes;
v5 body type 3 "TD Quote Body 1.5" appends TEE_TCB_SVN2 and MRSERVICETD, 648 bytes)::

    0x000  16  TEE_TCB_SVN        0x0B8  48  MRTD             0x1C8  48  RTMR0
    0x010  48  MRSEAM             0x0E8  48  MRCONFIGID       0x1F8  48  RTMR1
    0x040  48  MRSIGNERSEAM       0x118  48  MROWNER          0x228  48  RTMR2
    0x070   8  SEAMATTRIBUTES     0x148  48  MROWNERCONFIG    0x258  48  RTMR3
    0x078   8  TDATTRIBUTES                                   0x288  64  REPORTDATA
    0x080   8  XFAM               (1.5) 0x2C8 16 TEE_TCB_SVN2, 0x2D8 48 MRSERVICETD

Everything about signatures, PCK chain, collateral and TCB status is in
:mod:`veritee.evidence.dcap`. A TCB status other than ``UpToDate`` is a finding, not a failure.

With a CCEL event log, :func:`verify_with_event_log` also replays the log
(:mod:`veritee.evidence.ccel`) and requires the replayed RTMRs to equal the quote's.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from veritee._frozen import maker
from veritee.collateral import Collateral
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import ccel, dcap
from veritee.evidence.claims import Reason, VerifiedEvidence
from veritee.evidence.dcap_tcb import TdxTcbInput

__all__ = ["TdReport", "detect", "parse_claims", "verify", "verify_with_event_log"]

TD_ATTRIBUTES_DEBUG = 0x1  # TDATTRIBUTES bit 0: TUD.DEBUG

_TD10_FORMAT = "<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s"
_TD10 = struct.Struct(_TD10_FORMAT)
_TD15 = struct.Struct(_TD10_FORMAT + "16s48s")


@dataclass(frozen=True)
class TdReport:
    """TD quote body 1.0 / 1.5 (Table A.7)."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes | None = None

    @classmethod
    def from_bytes(cls, body: bytes, body_type: int = dcap.BODY_TD10) -> TdReport:
        if (
            body_type not in (dcap.BODY_TD10, dcap.BODY_TD15)
            or len(body) != dcap.BODY_SIZES[body_type]
        ):
            raise MalformedError(
                f"not a TD report body (type {body_type}, {len(body)} bytes)", field="body"
            )
        # Fixed layout (table above), sizes checked: one struct unpack.
        f = _TD15.unpack(body) if body_type == dcap.BODY_TD15 else (*_TD10.unpack(body), None, None)
        return (_make_report if cls is TdReport else cls)(
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9],
            (f[10], f[11], f[12], f[13]), f[14], f[15], f[16],
        )  # fmt: skip

    @property
    def debug(self) -> bool:
        return bool(int.from_bytes(self.td_attributes, "little") & TD_ATTRIBUTES_DEBUG)

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "measurement": self.mr_td.hex(),
            "report_data": self.report_data.hex(),
            "debug": self.debug,
            "mrtd": self.mr_td.hex(),
            "mr_seam": self.mr_seam.hex(),
            "mr_signer_seam": self.mr_signer_seam.hex(),
            "seam_attributes": self.seam_attributes.hex(),
            "td_attributes": self.td_attributes.hex(),
            "xfam": self.xfam.hex(),
            "mr_config_id": self.mr_config_id.hex(),
            "mr_owner": self.mr_owner.hex(),
            "mr_owner_config": self.mr_owner_config.hex(),
            "tee_tcb_svn": self.tee_tcb_svn.hex(),
        }
        r0, r1, r2, r3 = self.rtmrs
        out["rtmr0"], out["rtmr1"], out["rtmr2"], out["rtmr3"] = (
            r0.hex(),
            r1.hex(),
            r2.hex(),
            r3.hex(),
        )
        if self.tee_tcb_svn2 is not None and self.mr_service_td is not None:
            out["tee_tcb_svn2"] = self.tee_tcb_svn2.hex()
            out["mr_service_td"] = self.mr_service_td.hex()
        return out


_make_report = maker(TdReport)
_make_tcb_input = maker(TdxTcbInput)
_make_verified = maker(VerifiedEvidence)


def detect(data: bytes) -> bool:
    """A DCAP quote header: version 4 or 5, ECDSA-256, TEE type 0x81 (TDX), Intel QE vendor."""
    return dcap.looks_like_quote(data, (4, 5), dcap.TEE_TYPE_TDX)


def _parse(data: bytes) -> tuple[dcap.Quote, TdReport]:
    quote = dcap.parse_quote(data)
    if quote.header.tee_type != dcap.TEE_TYPE_TDX:
        raise MalformedError("not a TDX quote", field="header.tee_type", offset=4)
    return quote, TdReport.from_bytes(quote.body, quote.body_type)


def _base_claims(quote: dcap.Quote, report: TdReport) -> dict[str, Any]:
    return {"platform": "tdx", "version": quote.header.version, **report.claims()}


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims for display. Trailing bytes are tolerated here (and counted)."""
    quote, report = _parse(data)
    out = _base_claims(quote, report)
    out.update(tcb_status=None, advisory_ids=[], trailing_bytes=len(quote.trailing))
    return out


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Verify a TDX quote (see :func:`veritee.evidence.dcap.verify_quote`) and return its claims.

    ``trust`` is a :class:`~veritee.evidence.dcap.DcapTrust` (default: the Intel SGX Root CA).
    """
    quote, report = _parse(data)
    findings = dcap.trailing_findings(quote)
    result = dcap.verify_quote(
        quote,
        collateral=collateral,
        at=at,
        trust=trust,
        tdx=_make_tcb_input(report.tee_tcb_svn, report.mr_signer_seam, report.seam_attributes),
    )
    claims = _verified_claims(quote.header.version, report, result)
    if claims["debug"]:
        findings += (Reason("debug", "TD_ATTRIBUTES.DEBUG is set: the TD is debuggable"),)
    return _make_verified("tdx", claims, at, findings + result.findings)


def _verified_claims(version: int, report: TdReport, result: dcap.DcapResult) -> dict[str, Any]:
    """``_base_claims`` updated with ``result.claims(tdx=True)``, built as one dict (the same keys
    in the same order: a test holds them equal)."""
    if type(report) is not TdReport or type(result) is not dcap.DcapResult:
        out = {"platform": "tdx", "version": version, **report.claims()}
        out.update(result.claims(tdx=True))
        return out
    r0, r1, r2, r3 = report.rtmrs
    mr_td = report.mr_td.hex()
    out = {
        "platform": "tdx", "version": version, "measurement": mr_td,
        "report_data": report.report_data.hex(),
        "debug": bool(report.td_attributes[0] & TD_ATTRIBUTES_DEBUG),  # (bit 0, little-endian)
        "mrtd": mr_td, "mr_seam": report.mr_seam.hex(), "mr_signer_seam": report.mr_signer_seam.hex(),
        "seam_attributes": report.seam_attributes.hex(), "td_attributes": report.td_attributes.hex(),
        "xfam": report.xfam.hex(), "mr_config_id": report.mr_config_id.hex(),
        "mr_owner": report.mr_owner.hex(), "mr_owner_config": report.mr_owner_config.hex(),
        "tee_tcb_svn": report.tee_tcb_svn.hex(),
        "rtmr0": r0.hex(), "rtmr1": r1.hex(), "rtmr2": r2.hex(), "rtmr3": r3.hex(),
    }  # fmt: skip
    if report.tee_tcb_svn2 is not None and report.mr_service_td is not None:
        out["tee_tcb_svn2"] = report.tee_tcb_svn2.hex()
        out["mr_service_td"] = report.mr_service_td.hex()
    out["tcb_status"] = result.tcb_status
    out["advisory_ids"] = list(result.advisory_ids)
    out["fmspc"] = result.fmspc
    out["qe_tcb_status"] = result.qe_tcb_status
    out["tcb_date"] = result.tcb_date
    out["tcb_evaluation_data_number"] = result.tcb_evaluation_data_number
    out["tdx_module_tcb_status"] = result.tdx_module_tcb_status
    return out


def verify_with_event_log(
    data: bytes,
    event_log: bytes,
    *,
    collateral: Collateral,
    at: datetime,
    table: bytes | None = None,
    trust: Any = None,
) -> VerifiedEvidence:
    """Verify the quote, replay the CCEL ``event_log`` and require RTMR0-3 to match the quote.

    ``table`` is the ACPI CCEL table (optional; bounds the log by its LAML). The claims gain
    ``event_log`` (one summary per event) and ``rtmr_replay_ok``; a mismatch raises
    :class:`VerificationError` (code ``event_log_mismatch``) naming the RTMR.
    """
    verified = verify(data, collateral=collateral, at=at, trust=trust)
    log = ccel.replay(table, event_log)
    quote_rtmrs = [bytes.fromhex(verified.claims[f"rtmr{i}"]) for i in range(4)]
    for i, (got, want) in enumerate(zip(log.rtmrs, quote_rtmrs, strict=True)):
        if not hmac.compare_digest(got, want):
            raise VerificationError(
                f"event log replay gives RTMR{i} {got.hex()[:16]}..., the quote has {want.hex()[:16]}...",
                code="event_log_mismatch",
            )
    claims = dict(verified.claims)
    claims["event_log"] = log.claims()
    claims["rtmr_replay_ok"] = True
    return VerifiedEvidence("tdx", claims, verified.verified_at, verified.findings)
