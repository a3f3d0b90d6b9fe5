"""Intel TCB evaluation of a DCAP quote against verified collateral (steps 8-11 of
:func:`veritee.evidence.dcap.verify_quote`).

Pure functions over the verified TCB info and QE identity JSON (Intel PCS API v4) and the
quote's own fields: the QE identity level (MRSIGNER, ISVPRODID, masked MISCSELECT/ATTRIBUTES,
ISVSVN), the platform TCB level (SGX components and PCE SVN from the PCK certificate; for TDX
also TEE_TCB_SVN and the TDX module identity), and how the statuses converge into one.
"""

from __future__ import annotations

import itertools
import operator
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence.dcap_pck import PckExtension
from veritee.evidence.dcap_quote import TCB_STATUSES, EnclaveReport

__all__ = [
    "Levels",
    "PlatformTcb",
    "TdxTcbInput",
    "check_qe_identity",
    "check_tcb_info",
    "check_tcb_info_levels",
    "collateral_time",
    "converge_status",
    "platform_tcb",
    "qe_tcb",
]


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
        raise VerificationError(
            f"{name}: unrecognized TCB status {status!r}", code="tcb_status_unrecognized"
        )
    return status


def _advisories(level: dict[str, Any]) -> list[str]:
    ids = level.get("advisoryIDs", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MalformedError("advisoryIDs must be a list of strings", field="advisoryIDs")
    return ids


def _levels(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    levels: list[dict[str, Any]] = _field(doc, "tcbLevels", list, name)
    if not levels or not all(
        isinstance(lv, dict) and isinstance(lv.get("tcb"), dict) for lv in levels
    ):
        raise MalformedError(
            f"{name}.tcbLevels must be a non-empty list of levels", field=f"{name}.tcbLevels"
        )
    return levels


def _svns(tcb: dict[str, Any], key: str, v2_prefix: str | None, name: str) -> list[int]:
    comps = tcb.get(key)
    if isinstance(comps, list) and len(comps) == 16:
        out = [c.get("svn") if isinstance(c, dict) else None for c in comps]
    elif v2_prefix is not None:
        out = [tcb.get(f"{v2_prefix}{i:02d}svn") for i in range(1, 17)]
    else:
        out = []
    if len(out) != 16 or not all(
        isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255 for x in out
    ):
        raise MalformedError(f"{name}: {key} must be 16 SVNs of 0-255", field=f"{name}.{key}")
    return [x for x in out if isinstance(x, int)]


#: An RFC 3339 date-time with a zone, as Intel PCS writes them ("2025-06-19T10:16:03Z"; RFC 3339
#: also allows a lowercase t/z and a space). ``datetime.fromisoformat`` alone takes any character
#: as the date-time separator.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def collateral_time(value: Any, field: str) -> datetime:
    """A time field of Intel collateral (issueDate, nextUpdate, tcbDate); raises MalformedError."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise MalformedError(f"{field} is not an RFC 3339 time with a zone", field=field)
    try:
        if value[-1] == "Z":  # (as Intel writes them: fromisoformat reads the "Z" itself)
            return datetime.fromisoformat(value)
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise MalformedError(f"{field} is not a valid time", field=field) from None


def _tcb_date(level: dict[str, Any], name: str) -> datetime:
    return collateral_time(level.get("tcbDate"), f"{name}.tcbDate")


def _isvsvn_levels(doc: dict[str, Any], name: str) -> list[tuple[int, dict[str, Any]]]:
    """QE identity / TDX module levels in Intel QVL's order (``IdentityTcbLevel::operator>``), not
    in JSON order: by ISVSVN, then tcbDate, highest first; two levels equal in both are refused."""
    keyed = [
        ((_field(lv["tcb"], "isvsvn", int, f"{name}.tcb"), _tcb_date(lv, name)), lv)
        for lv in _levels(doc, name)
    ]
    return [(key[0], lv) for key, lv in _ordered(keyed, name)]


def _ordered(
    keyed: list[tuple[Any, dict[str, Any]]], name: str
) -> list[tuple[Any, dict[str, Any]]]:
    keyed.sort(key=lambda kv: kv[0], reverse=True)
    for (a, _), (b, _) in itertools.pairwise(keyed):
        if a == b:
            raise CollateralError(f"{name}: duplicated TCB levels", code="collateral_invalid")
    return keyed


def _uint(doc: dict[str, Any], key: str, name: str, maximum: int) -> int:
    v: int = _field(doc, key, int, name)
    if not 0 <= v <= maximum:
        raise MalformedError(f"{name}.{key} is out of range 0-{maximum}", field=f"{name}.{key}")
    return v


def _hex_len(doc: dict[str, Any], key: str, name: str, size: int) -> bytes:
    b = _hex_field(doc, key, name)
    if len(b) != size:
        raise MalformedError(f"{name}.{key} must be {size} bytes", field=f"{name}.{key}")
    return b


def _check_signer(doc: dict[str, Any], name: str, mrsigner_size: int, attributes_size: int) -> None:
    _hex_len(doc, "mrsigner", name, mrsigner_size)
    _hex_len(doc, "attributes", name, attributes_size)
    _hex_len(doc, "attributesMask", name, attributes_size)


def _check_identity(
    doc: dict[str, Any], name: str, mrsigner_size: int, attributes_size: int, svn_max: int
) -> list[tuple[int, dict[str, Any]]]:
    _check_signer(doc, name, mrsigner_size, attributes_size)
    for level in _levels(doc, name):
        _uint(level["tcb"], "isvsvn", f"{name}.tcb", svn_max)
        _status(level, name, IDENTITY_TCB_STATUSES)
        _advisories(level)
    return _isvsvn_levels(doc, name)  # tcbDate of every level; duplicated levels


#: TCB levels in Intel QVL's order, as :func:`check_tcb_info` and :func:`check_qe_identity`
#: return them for the evaluation to reuse.
Levels = list[tuple[Any, dict[str, Any]]]


def check_tcb_info(info: dict[str, Any]) -> Levels:
    """:func:`check_tcb_info_levels`: the platform levels."""
    return check_tcb_info_levels(info)[0]


def check_tcb_info_levels(info: dict[str, Any]) -> tuple[Levels, tuple[Levels, ...]]:
    """Every field Intel QVL's ``TcbInfo`` parser reads, in every level (not only the one a
    platform matches): version 2 or 3, id (v3) SGX or TDX, FMSPC and PCE ID, TCB type and
    evaluation data number, 16 SGX (and TDX) components of 0-255, PCESVN of 0-65535, tcbDate,
    tcbStatus, advisory IDs, no duplicated levels, and for TDX the module identities.
    Called once per collateral set when its signature is verified (cached with it). Returns the
    platform levels in QVL's order (:func:`platform_tcb` takes them) and each TDX module
    identity's levels in QVL's order, one per ``tdxModuleIdentities`` entry (``()`` for SGX)."""
    try:
        fast = _fast_tcb_info(info)
    except (ValueError, KeyError, TypeError, MalformedError):
        fast = None
    if fast is not None:
        return fast
    name = "tcb_info"
    version = _field(info, "version", int, name)
    if version not in (2, 3):
        raise MalformedError(f"tcb_info.version {version} is not 2 or 3", field="tcb_info.version")
    tee = info.get("id", "SGX") if version == 2 else _field(info, "id", str, name)
    if tee not in ("SGX", "TDX") or (tee == "TDX" and version != 3):
        raise MalformedError(
            f"tcb_info.id {tee!r} is not SGX or TDX (version 3)", field="tcb_info.id"
        )
    _hex_len(info, "fmspc", name, 6)
    _hex_len(info, "pceId", name, 2)
    _uint(info, "tcbType", name, 2**32 - 1)
    _uint(info, "tcbEvaluationDataNumber", name, 2**32 - 1)
    for level in _levels(info, name):
        _uint(level["tcb"], "pcesvn", f"{name}.tcb", 0xFFFF)
        _tcb_date(level, name)
        _status(level, name)
        _advisories(level)
    levels = _platform_levels(info)  # the components of every level; duplicated levels
    modules: list[Levels] = []
    if tee == "TDX":
        _check_signer(_field(info, "tdxModule", dict, name), "tcb_info.tdxModule", 48, 8)
        idents = info.get("tdxModuleIdentities", [])
        if not isinstance(idents, list) or not all(isinstance(i, dict) for i in idents):
            raise MalformedError(
                "tcb_info.tdxModuleIdentities must be a list", field="tcb_info.tdxModuleIdentities"
            )
        for ident in idents:
            _field(ident, "id", str, "tcb_info.tdxModuleIdentities")
            modules.append(_check_identity(ident, "tcb_info.tdxModuleIdentities", 48, 8, 255))
    return levels, tuple(modules)


def check_qe_identity(qe: dict[str, Any]) -> Levels:
    """Every field Intel QVL's ``EnclaveIdentityV2`` parser reads, in every level: id, version 2,
    evaluation data number, MISCSELECT and its mask (4 bytes), ATTRIBUTES and mask (16), MRSIGNER
    (32), ISVPRODID and each level's ISVSVN (0-65535), tcbDate, a QE status, advisory IDs, no
    duplicated levels. Called once per collateral set, as :func:`check_tcb_info`; returns the
    levels in QVL's order (:func:`qe_tcb` takes them)."""
    try:
        fast = _fast_qe_identity(qe)
    except (ValueError, KeyError, TypeError, MalformedError):
        fast = None
    if fast is not None:
        return fast
    name = "qe_identity"
    if _field(qe, "id", str, name) not in ("QE", "QVE", "TD_QE"):
        raise MalformedError(
            f"qe_identity.id {qe.get('id')!r} is not QE, QVE or TD_QE", field="qe_identity.id"
        )
    if _field(qe, "version", int, name) != 2:
        raise MalformedError("qe_identity.version is not 2", field="qe_identity.version")
    _uint(qe, "tcbEvaluationDataNumber", name, 2**32 - 1)
    _uint(qe, "isvprodid", name, 0xFFFF)
    _hex_len(qe, "miscselect", name, 4)
    _hex_len(qe, "miscselectMask", name, 4)
    return _check_identity(qe, name, 32, 16, 0xFFFF)


def qe_tcb(
    qe: dict[str, Any], report: EnclaveReport, tdx: bool, levels: Levels | None = None
) -> tuple[str, list[str]]:
    """Step 9: the QE report against the QE identity; returns the QE TCB status and advisories.
    ``levels``: what :func:`check_qe_identity` returned for ``qe``."""
    want_id = "TD_QE" if tdx else "QE"
    if qe.get("id") != want_id:
        raise CollateralError(
            f"QE identity is for {qe.get('id')!r}, expected {want_id!r}",
            code="qe_identity_mismatch",
        )
    if _hex_field(qe, "mrsigner", "qe_identity") != report.mr_signer:
        raise VerificationError(
            "QE MRSIGNER does not match the QE identity", code="qe_identity_mismatch"
        )
    if _field(qe, "isvprodid", int, "qe_identity") != report.isv_prod_id:
        raise VerificationError(
            "QE ISVPRODID does not match the QE identity", code="qe_identity_mismatch"
        )
    # Little-endian, as the report's MISCSELECT is (Intel QVL, dcap-qvl: u32::from_le_bytes).
    misc_raw = _hex_field(qe, "miscselect", "qe_identity")
    mask_raw = _hex_field(qe, "miscselectMask", "qe_identity")
    if len(misc_raw) != 4 or len(mask_raw) != 4:
        raise MalformedError(
            "QE identity miscselect must be 4 bytes", field="qe_identity.miscselect"
        )
    misc = int.from_bytes(misc_raw, "little")
    misc_mask = int.from_bytes(mask_raw, "little")
    if report.misc_select & misc_mask != misc & misc_mask:
        raise VerificationError(
            "QE MISCSELECT does not match the QE identity", code="qe_identity_mismatch"
        )
    attrs = _hex_field(qe, "attributes", "qe_identity")
    mask = _hex_field(qe, "attributesMask", "qe_identity")
    if len(attrs) != 16 or len(mask) != 16:
        raise MalformedError(
            "QE identity attributes must be 16 bytes", field="qe_identity.attributes"
        )
    if any((a & m) != (b & m) for a, b, m in zip(report.attributes, attrs, mask, strict=True)):
        raise VerificationError(
            "QE ATTRIBUTES do not match the QE identity", code="qe_identity_mismatch"
        )
    for isvsvn, level in levels if levels is not None else _isvsvn_levels(qe, "qe_identity"):
        if report.isv_svn >= isvsvn:
            return _status(level, "qe_identity", IDENTITY_TCB_STATUSES), _advisories(level)
    raise VerificationError(
        f"QE ISVSVN {report.isv_svn} matches no QE identity TCB level", code="tcb_level_not_found"
    )


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


def _tdx_module(
    info: dict[str, Any], tdx: TdxTcbInput, modules: tuple[Levels, ...] | None = None
) -> tuple[str, list[str]]:
    """TDX module identity (QVL TdxModuleCheck): MRSIGNERSEAM, SEAM attributes, module TCB level.
    ``modules``: each module identity's levels as :func:`check_tcb_info_levels` returned them."""
    version, isvsvn = tdx.tee_tcb_svn[1], tdx.tee_tcb_svn[0]
    status, advisories = "UpToDate", []
    if version == 0:
        ident = _field(info, "tdxModule", dict, "tcb_info")
    else:
        want = f"TDX_{version:02X}"
        idents = info.get("tdxModuleIdentities")
        found = [
            (k, i)
            for k, i in enumerate(idents or [])
            if isinstance(i, dict) and str(i.get("id", "")).upper() == want
        ]
        if not found:
            raise VerificationError(
                f"TCB info has no TDX module identity {want}", code="tdx_module_mismatch"
            )
        index, ident = found[0]
        ordered = (
            modules[index]
            if modules is not None and index < len(modules)
            else _isvsvn_levels(ident, want)
        )
        for need, level in ordered:
            if isvsvn >= need:
                status, advisories = _status(level, want, IDENTITY_TCB_STATUSES), _advisories(level)
                break
        else:
            raise VerificationError(
                f"TDX module SVN {isvsvn} matches no level of {want}", code="tcb_level_not_found"
            )
    if _hex_field(ident, "mrsigner", "tdxModule") != tdx.mr_signer_seam:
        raise VerificationError(
            "MRSIGNERSEAM does not match the TDX module identity", code="tdx_module_mismatch"
        )
    attrs = _hex_field(ident, "attributes", "tdxModule")
    mask = _hex_field(ident, "attributesMask", "tdxModule")
    if (
        len(attrs) != 8
        or len(mask) != 8
        or any((a & m) != (b & m) for a, b, m in zip(tdx.seam_attributes, attrs, mask, strict=True))
    ):
        raise VerificationError(
            "SEAM attributes do not match the TDX module identity", code="tdx_module_mismatch"
        )
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


def platform_tcb(
    info: dict[str, Any],
    ext: PckExtension,
    tdx: TdxTcbInput | None,
    levels: Levels | None = None,
    modules: tuple[Levels, ...] | None = None,
) -> PlatformTcb:
    """Step 10 (QVL TcbLevelCheck): the first level, in QVL's order, the PCK TCB (and
    TEE_TCB_SVN) reaches. ``levels`` and ``modules``: what :func:`check_tcb_info_levels`
    returned for ``info``."""
    sgx_level: dict[str, Any] | None = None
    tdx_level: dict[str, Any] | None = None
    start = 2 if tdx is not None and tdx.tee_tcb_svn[1] > 0 else 0
    for (sgx, pcesvn, td), level in levels if levels is not None else _platform_levels(info):
        if (
            any(have < need for have, need in zip(ext.tcb_components, sgx, strict=True))
            or ext.pce_svn < pcesvn
        ):
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
        return PlatformTcb(
            _status(sgx_level, "tcb_info"), _advisories(sgx_level), sgx_level.get("tcbDate"), None
        )
    if tdx_level is None:
        raise VerificationError(
            "No matching TCB level: TEE_TCB_SVN is below every TDX level of the TCB info",
            code="tcb_level_not_found",
        )
    module_status, module_adv = _tdx_module(info, tdx, modules)
    status = converge_status(_status(tdx_level, "tcb_info"), module_status)
    return PlatformTcb(
        status, _advisories(tdx_level) + module_adv, tdx_level.get("tcbDate"), module_status
    )


# --- the checks of every level, compiled (issue 15 item 2) --------------------------------------
#
# check_tcb_info and check_qe_identity run once per collateral set, so a cold verification pays
# for them: the generic per-field helpers above cost ~1 us a field. The readers below accept a
# subset of what those accept (plain ``int`` / ``str`` / ``list`` / ``dict`` as json.loads makes
# them) and return the very same levels; on anything else, or anything they would refuse, they
# return None and the generic checks run and name the fault as before.


def _ints_in(values: list[Any], maximum: int) -> bool:
    """Every value a plain int (no bool) of 0..maximum."""
    return list(map(type, values)).count(int) == len(values) and (
        not values or (min(values) >= 0 and max(values) <= maximum)
    )


def _strs(values: Any) -> bool:
    return type(values) is list and list(map(type, values)).count(str) == len(values)


def _hex_of(doc: dict[str, Any], key: str, size: int) -> bool:
    v = doc.get(key)
    return type(v) is str and len(bytes.fromhex(v)) == size


_STATUS_SET = frozenset(TCB_STATUSES)
_IDENTITY_STATUS_SET = frozenset(IDENTITY_TCB_STATUSES)


def _uint_of(doc: dict[str, Any], key: str, maximum: int) -> bool:
    v = doc.get(key)
    return type(v) is int and 0 <= v <= maximum


_SVN = operator.itemgetter("svn")


def _fast_svns(tcb: dict[str, Any], key: str, v2_prefix: str | None) -> tuple[int, ...] | None:
    comps = tcb.get(key)
    if type(comps) is list and len(comps) == 16:
        out = list(map(_SVN, comps))  # KeyError, TypeError: not a dict with an svn
    elif v2_prefix is not None:
        out = [tcb.get(f"{v2_prefix}{i:02d}svn") for i in range(1, 17)]
    else:
        return None
    return tuple(out) if _ints_in(out, 255) else None


def _fast_sorted(keyed: list[tuple[Any, dict[str, Any]]]) -> Levels | None:
    """``_ordered`` without its refusal (None: two levels equal, the generic check refuses)."""
    keyed.sort(key=lambda kv: kv[0], reverse=True)
    for (a, _), (b, _) in itertools.pairwise(keyed):
        if a == b:
            return None
    return keyed


def _fast_level_common(level: Any, statuses: frozenset[str]) -> dict[str, Any] | None:
    """The level's ``tcb`` when the level is a dict with a dict ``tcb``, a known status,
    advisory IDs that are strings (or none) and an RFC 3339 ``tcbDate``."""
    if type(level) is not dict:
        return None
    tcb = level.get("tcb")
    status = level.get("tcbStatus")
    if type(tcb) is not dict or type(status) is not str or status not in statuses:
        return None
    if "advisoryIDs" in level and not _strs(level["advisoryIDs"]):
        return None
    return tcb


def _fast_identity_levels(doc: dict[str, Any], svn_max: int, name: str) -> Levels | None:
    levels = doc.get("tcbLevels")
    if type(levels) is not list or not levels:
        return None
    keyed: list[tuple[Any, dict[str, Any]]] = []
    for level in levels:
        tcb = _fast_level_common(level, _IDENTITY_STATUS_SET)
        if tcb is None or not _uint_of(tcb, "isvsvn", svn_max):
            return None
        keyed.append(((tcb["isvsvn"], collateral_time(level.get("tcbDate"), name)), level))
    ordered = _fast_sorted(keyed)
    return None if ordered is None else [(key[0], lv) for key, lv in ordered]


def _fast_signer(doc: Any, mrsigner_size: int, attributes_size: int) -> bool:
    return (
        type(doc) is dict
        and _hex_of(doc, "mrsigner", mrsigner_size)
        and _hex_of(doc, "attributes", attributes_size)
        and _hex_of(doc, "attributesMask", attributes_size)
    )


def _fast_tcb_info(info: dict[str, Any]) -> tuple[Levels, tuple[Levels, ...]] | None:
    version = info.get("version")
    if type(version) is not int or version not in (2, 3):
        return None
    tee = info.get("id", "SGX") if version == 2 else info.get("id")
    if type(tee) is not str or tee not in ("SGX", "TDX") or (tee == "TDX" and version != 3):
        return None
    if not (
        _hex_of(info, "fmspc", 6)
        and _hex_of(info, "pceId", 2)
        and _uint_of(info, "tcbType", 2**32 - 1)
        and _uint_of(info, "tcbEvaluationDataNumber", 2**32 - 1)
    ):
        return None
    levels = info.get("tcbLevels")
    if type(levels) is not list or not levels:
        return None
    is_tdx = info.get("id") == "TDX"
    keyed: list[tuple[Any, dict[str, Any]]] = []
    for level in levels:
        tcb = _fast_level_common(level, _STATUS_SET)
        if tcb is None or not _uint_of(tcb, "pcesvn", 0xFFFF):
            return None
        collateral_time(level.get("tcbDate"), "tcb_info.tcbDate")
        sgx = _fast_svns(tcb, "sgxtcbcomponents", "sgxtcbcomp")
        td = _fast_svns(tcb, "tdxtcbcomponents", None) if is_tdx else ()
        if sgx is None or td is None:
            return None
        keyed.append(((sgx, tcb["pcesvn"], td), level))
    ordered = _fast_sorted(keyed)
    if ordered is None:
        return None
    modules: list[Levels] = []
    if tee == "TDX":
        if not _fast_signer(info.get("tdxModule"), 48, 8):
            return None
        idents = info.get("tdxModuleIdentities", [])
        if type(idents) is not list:
            return None
        for ident in idents:
            if not _fast_signer(ident, 48, 8) or type(ident.get("id")) is not str:
                return None
            module = _fast_identity_levels(ident, 255, "tcb_info.tdxModuleIdentities")
            if module is None:
                return None
            modules.append(module)
    return ordered, tuple(modules)


def _fast_qe_identity(qe: dict[str, Any]) -> Levels | None:
    if qe.get("id") not in ("QE", "QVE", "TD_QE") or type(qe.get("id")) is not str:
        return None
    version = qe.get("version")
    if type(version) is not int or version != 2:
        return None
    if not (
        _uint_of(qe, "tcbEvaluationDataNumber", 2**32 - 1)
        and _uint_of(qe, "isvprodid", 0xFFFF)
        and _hex_of(qe, "miscselect", 4)
        and _hex_of(qe, "miscselectMask", 4)
        and _fast_signer(qe, 32, 16)
    ):
        return None
    return _fast_identity_levels(qe, 0xFFFF, "qe_identity")
