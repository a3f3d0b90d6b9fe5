"""Intel TCB evaluation of a DCAP quote against verified collateral (steps 8-11 of
:func:`veritee.evidence.dcap.verify_quote`).

Pure functions over the verified TCB info and QE identity JSON (Intel PCS API v4) and the
quote's own fields: the QE identity level (MRSIGNER, ISVPRODID, masked MISCSELECT/ATTRIBUTES,
ISVSVN), the platform TCB level (SGX components and PCE SVN from the PCK certificate; for TDX
also TEE_TCB_SVN and the TDX module identity), and how the statuses converge into one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence.dcap_pck import PckExtension
from veritee.evidence.dcap_quote import TCB_STATUSES, EnclaveReport

__all__ = ["PlatformTcb", "TdxTcbInput", "converge_status", "platform_tcb", "qe_tcb"]


@dataclass(frozen=True)
class TdxTcbInput:
    """The TD report fields TCB evaluation needs (TD report 1.0, Table A.7)."""

    tee_tcb_svn: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes




def _field(doc: dict[str, Any], key: str, typ: type, name: str) -> Any:
    v = doc.get(key)
    if not isinstance(v, typ) or isinstance(v, bool):
        raise MalformedError(f"{name}.{key} missing or not {typ.__name__}", field=f"{name}.{key}")
    return v


def _hex_field(doc: dict[str, Any], key: str, name: str) -> bytes:
    try:
        return bytes.fromhex(_field(doc, key, str, name))
    except ValueError:
        raise MalformedError(f"{name}.{key} is not hex", field=f"{name}.{key}") from None


#: The statuses a QE identity or TDX module identity level may have (Intel PCS API v4: an
#: enclave identity's ``tcbStatus`` is one of these three; Intel QVL and dcap-qvl refuse others).
IDENTITY_TCB_STATUSES = ("UpToDate", "OutOfDate", "Revoked")


def _status(level: dict[str, Any], name: str, allowed: tuple[str, ...] = TCB_STATUSES) -> str:
    status: str = _field(level, "tcbStatus", str, name)
    if status not in allowed:
        raise VerificationError(f"{name}: unrecognized TCB status {status!r}", code="tcb_status_unrecognized")
    return status


def _advisories(level: dict[str, Any]) -> list[str]:
    ids = level.get("advisoryIDs", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MalformedError("advisoryIDs must be a list of strings", field="advisoryIDs")
    return ids


def _levels(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    levels: list[dict[str, Any]] = _field(doc, "tcbLevels", list, name)
    if not levels or not all(isinstance(lv, dict) and isinstance(lv.get("tcb"), dict) for lv in levels):
        raise MalformedError(f"{name}.tcbLevels must be a non-empty list of levels", field=f"{name}.tcbLevels")
    return levels


def _svns(tcb: dict[str, Any], key: str, v2_prefix: str | None, name: str) -> list[int]:
    comps = tcb.get(key)
    if isinstance(comps, list) and len(comps) == 16:
        out = [c.get("svn") if isinstance(c, dict) else None for c in comps]
    elif v2_prefix is not None:
        out = [tcb.get(f"{v2_prefix}{i:02d}svn") for i in range(1, 17)]
    else:
        out = []
    if len(out) != 16 or not all(isinstance(x, int) and not isinstance(x, bool) for x in out):
        raise MalformedError(f"{name}: {key} must be 16 integer SVNs", field=f"{name}.{key}")
    return [x for x in out if isinstance(x, int)]


def _tcb_date(level: dict[str, Any], name: str) -> datetime:
    try:
        t = datetime.fromisoformat(_field(level, "tcbDate", str, name))
    except ValueError:
        raise MalformedError(f"{name}.tcbDate is not an ISO-8601 time", field=f"{name}.tcbDate") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _isvsvn_levels(doc: dict[str, Any], name: str) -> list[tuple[int, dict[str, Any]]]:
    """QE identity / TDX module levels in Intel QVL's order (``IdentityTcbLevel::operator>``), not
    in JSON order: by ISVSVN, then tcbDate, highest first; two levels equal in both are refused."""
    keyed = [
        ((_field(lv["tcb"], "isvsvn", int, f"{name}.tcb"), _tcb_date(lv, name)), lv) for lv in _levels(doc, name)
    ]
    return [(key[0], lv) for key, lv in _ordered(keyed, name)]


def _ordered(keyed: list[tuple[Any, dict[str, Any]]], name: str) -> list[tuple[Any, dict[str, Any]]]:
    keyed.sort(key=lambda kv: kv[0], reverse=True)
    for (a, _), (b, _) in itertools.pairwise(keyed):
        if a == b:
            raise CollateralError(f"{name}: duplicated TCB levels", code="collateral_invalid")
    return keyed


def qe_tcb(qe: dict[str, Any], report: EnclaveReport, tdx: bool) -> tuple[str, list[str]]:
    """Step 9: the QE report against the QE identity; returns the QE TCB status and advisories."""
    want_id = "TD_QE" if tdx else "QE"
    if qe.get("id") != want_id:
        raise CollateralError(f"QE identity is for {qe.get('id')!r}, expected {want_id!r}", code="qe_identity_mismatch")
    if _hex_field(qe, "mrsigner", "qe_identity") != report.mr_signer:
        raise VerificationError("QE MRSIGNER does not match the QE identity", code="qe_identity_mismatch")
    if _field(qe, "isvprodid", int, "qe_identity") != report.isv_prod_id:
        raise VerificationError("QE ISVPRODID does not match the QE identity", code="qe_identity_mismatch")
    # Little-endian, as the report's MISCSELECT is (Intel QVL, dcap-qvl: u32::from_le_bytes).
    misc_raw = _hex_field(qe, "miscselect", "qe_identity")
    mask_raw = _hex_field(qe, "miscselectMask", "qe_identity")
    if len(misc_raw) != 4 or len(mask_raw) != 4:
        raise MalformedError("QE identity miscselect must be 4 bytes", field="qe_identity.miscselect")
    misc = int.from_bytes(misc_raw, "little")
    misc_mask = int.from_bytes(mask_raw, "little")
    if report.misc_select & misc_mask != misc & misc_mask:
        raise VerificationError("QE MISCSELECT does not match the QE identity", code="qe_identity_mismatch")
    attrs = _hex_field(qe, "attributes", "qe_identity")
    mask = _hex_field(qe, "attributesMask", "qe_identity")
    if len(attrs) != 16 or len(mask) != 16:
        raise MalformedError("QE identity attributes must be 16 bytes", field="qe_identity.attributes")
    if any((a & m) != (b & m) for a, b, m in zip(report.attributes, attrs, mask, strict=True)):
        raise VerificationError("QE ATTRIBUTES do not match the QE identity", code="qe_identity_mismatch")
    for isvsvn, level in _isvsvn_levels(qe, "qe_identity"):
        if report.isv_svn >= isvsvn:
            return _status(level, "qe_identity", IDENTITY_TCB_STATUSES), _advisories(level)
    raise VerificationError(f"QE ISVSVN {report.isv_svn} matches no QE identity TCB level", code="tcb_level_not_found")


def converge_status(platform: str, other: str) -> str:
    """Intel QVL convergeTcbStatusWith{Qe,TdxModule}TcbStatus."""
    if other == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    if other == "Revoked":
        return "Revoked"
    return platform


def _tdx_module(info: dict[str, Any], tdx: TdxTcbInput) -> tuple[str, list[str]]:
    """TDX module identity (QVL TdxModuleCheck): MRSIGNERSEAM, SEAM attributes, module TCB level."""
    version, isvsvn = tdx.tee_tcb_svn[1], tdx.tee_tcb_svn[0]
    status, advisories = "UpToDate", []
    if version == 0:
        ident = _field(info, "tdxModule", dict, "tcb_info")
    else:
        want = f"TDX_{version:02X}"
        idents = info.get("tdxModuleIdentities")
        found = [i for i in idents or [] if isinstance(i, dict) and str(i.get("id", "")).upper() == want]
        if not found:
            raise VerificationError(f"TCB info has no TDX module identity {want}", code="tdx_module_mismatch")
        ident = found[0]
        for need, level in _isvsvn_levels(ident, want):
            if isvsvn >= need:
                status, advisories = _status(level, want, IDENTITY_TCB_STATUSES), _advisories(level)
                break
        else:
            raise VerificationError(f"TDX module SVN {isvsvn} matches no level of {want}", code="tcb_level_not_found")
    if _hex_field(ident, "mrsigner", "tdxModule") != tdx.mr_signer_seam:
        raise VerificationError("MRSIGNERSEAM does not match the TDX module identity", code="tdx_module_mismatch")
    attrs = _hex_field(ident, "attributes", "tdxModule")
    mask = _hex_field(ident, "attributesMask", "tdxModule")
    if len(attrs) != 8 or len(mask) != 8 or any(
        (a & m) != (b & m) for a, b, m in zip(tdx.seam_attributes, attrs, mask, strict=True)
    ):
        raise VerificationError("SEAM attributes do not match the TDX module identity", code="tdx_module_mismatch")
    return status, advisories


@dataclass(frozen=True)
class PlatformTcb:
    status: str
    advisories: list[str]
    tcb_date: str | None
    module_status: str | None


def _platform_levels(info: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """TCB levels in Intel QVL's order (``TcbLevel::operator>``), not in JSON order: SGX
    components, then PCESVN, then (TDX TCB info) TDX components, each compared lexicographically,
    highest first. Two levels equal in all of these are refused, as QVL refuses duplicated levels
    and dcap-qvl sorts the same way."""
    is_tdx = info.get("id") == "TDX"
    keyed: list[tuple[Any, dict[str, Any]]] = []
    for level in _levels(info, "tcb_info"):
        tcb = level["tcb"]
        sgx = tuple(_svns(tcb, "sgxtcbcomponents", "sgxtcbcomp", "tcb_info"))
        pcesvn = _field(tcb, "pcesvn", int, "tcb_info.tcb")
        td = tuple(_svns(tcb, "tdxtcbcomponents", None, "tcb_info")) if is_tdx else ()
        keyed.append(((sgx, pcesvn, td), level))
    return _ordered(keyed, "tcb_info")


def platform_tcb(info: dict[str, Any], ext: PckExtension, tdx: TdxTcbInput | None) -> PlatformTcb:
    """Step 10 (QVL TcbLevelCheck): the first level, in QVL's order, the PCK TCB (and
    TEE_TCB_SVN) reaches."""
    sgx_level: dict[str, Any] | None = None
    tdx_level: dict[str, Any] | None = None
    start = 2 if tdx is not None and tdx.tee_tcb_svn[1] > 0 else 0
    for (sgx, pcesvn, td), level in _platform_levels(info):
        if any(have < need for have, need in zip(ext.tcb_components, sgx, strict=True)) or ext.pce_svn < pcesvn:
            continue
        if tdx is None:
            sgx_level = level
            break
        sgx_level = sgx_level or level
        if not td:
            td = tuple(_svns(level["tcb"], "tdxtcbcomponents", None, "tcb_info"))
        if all(tdx.tee_tcb_svn[i] >= td[i] for i in range(start, 16)):
            tdx_level = level
            break
    if sgx_level is None:
        raise VerificationError(
            "No matching TCB level: the platform's SGX TCB is below every level of the TCB info",
            code="tcb_level_not_found",
        )
    if tdx is None:
        return PlatformTcb(_status(sgx_level, "tcb_info"), _advisories(sgx_level), sgx_level.get("tcbDate"), None)
    if tdx_level is None:
        raise VerificationError(
            "No matching TCB level: TEE_TCB_SVN is below every TDX level of the TCB info",
            code="tcb_level_not_found",
        )
    module_status, module_adv = _tdx_module(info, tdx)
    status = converge_status(_status(tdx_level, "tcb_info"), module_status)
    return PlatformTcb(status, _advisories(tdx_level) + module_adv, tdx_level.get("tcbDate"), module_status)


