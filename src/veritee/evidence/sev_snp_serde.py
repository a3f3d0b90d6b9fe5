"""SEV-SNP evidence as the Rust ``sev`` crate serializes it, turned back into the raw report.

Trustee's guest components (attestation-agent, ``attester/src/snp``) send SNP evidence as
``serde_json`` of ``SnpEvidence { attestation_report: sev::firmware::guest::AttestationReport,
cert_chain: Option<Vec<sev::firmware::host::CertTableEntry>> }`` (early versions: a plain
``Vec``). The report is then a JSON object with one member per Rust field, not the 1184 bytes
the firmware signed. :func:`report_from_sev_json` rebuilds those bytes, so the ordinary
verifier (:mod:`veritee.evidence.sev_snp`) checks the signature over them: a member that does
not round-trip exactly makes the signature fail, never pass.

Two layouts of the report object are accepted, told apart by their members:

* **full** (sev 1.x to 4.x, the versions whose verifier re-created the signed bytes with
  ``bincode::serialize``): every field of the firmware structure, the reserved ones included,
  in byte order. The bytes are rebuilt positionally, exactly as bincode writes them:
  ``[u8; N]`` arrays as JSON arrays of N numbers (``serde_big_array`` for N > 32 serializes
  the same way), the ``GuestPolicy``/``PlatformInfo``/``KeyInfo`` bitfield newtypes as plain
  numbers, ``TcbVersion`` as ``{bootloader, tee, _reserved: [4], snp, microcode}``, the
  signature as ``{r: [72], s: [72], _reserved: [368]}`` (r and s little-endian). Variants:
  the signer word is ``_author_key_en`` (1.x), ``author_key_en`` or ``key_info`` (later),
  always followed by ``_reserved_0``; ``_reserved_1`` is 24 bytes, or 21 bytes after
  ``cpuid_fam_id``/``cpuid_mod_id``/``cpuid_step`` (the 4.x ``AttestationReportV3``); one early
  ``TcbVersion`` spells its members ``boot_loader``/``reserved``.
* **compact** (sev 6.x, where ``from_bytes``/``write_bytes`` replaced bincode, possibly already
  5.x; and 7.x, which adds ``launch_mit_vector`` and ``current_mit_vector``):
  no reserved members, which are therefore zero in the rebuilt bytes;
  ``cpuid_fam_id``/``cpuid_mod_id``/``cpuid_step`` are ``null`` in version 2 reports;
  ``current``/``committed`` are ``{major, minor, build}`` (stored build, minor, major);
  ``TcbVersion`` is ``{fmc, bootloader, tee, snp, microcode}`` where ``fmc`` is ``null`` for
  the Milan/Genoa byte layout (bootloader, tee, 4 reserved, snp, microcode) and a number for
  the Turin one (fmc, bootloader, tee, snp, 3 reserved, microcode); the signature is
  ``{r: [72], s: [72]}``. A version 5 report serialized by sev 6 (or 5) has lost its
  mitigation vectors; they are rebuilt as zero and the signature decides.

``cert_chain`` entries are ``{"cert_type": "ARK" | "ASK" | "VCEK" | "VLEK" | "CRL" | "Empty" |
{"OTHER": "<uuid>"}, "data": [bytes]}`` (serde's default enum and ``Vec<u8>`` forms);
:func:`cert_chain_from_sev_json` checks and returns them with their GHCB table GUIDs.

Established from the public sources (facts only, no code taken): virtee/sev
``src/firmware/guest/types/snp.rs`` (the full layout with ``_author_key_en``, the 4.x
``AttestationReportV2``/``V3`` enum serialized as the inner struct, the 6.x compact struct
with ``from_bytes``/``write_bytes``), ``src/util/array.rs`` (``Array`` = ``serde_big_array``),
``src/certs/snp/ecdsa/mod.rs`` (signature with and without ``_reserved``),
``src/firmware/host/types/snp.rs`` (``TcbVersion``, ``CertType`` and its GUIDs,
``CertTableEntry``) and the 7.x ``TcbVersion`` module; confidential-containers/guest-components
``attestation-agent/attester/src/snp/mod.rs`` (several revisions) and ``attester/Cargo.toml``
(sev 6.3.1); confidential-containers/trustee ``deps/verifier/src/snp/mod.rs``,
``deps/verifier/Cargo.toml`` (sev 7 with ``serde``, patched to a git revision in the root
``Cargo.toml``) and an early-2024 ``Cargo.lock`` (sev 1.2.1). The 7.x ``AttestationReport``
member list comes from a third-party mirror struct that destructures it exhaustively, and the
compact JSON shape was compared with a sev 6 sample in that project's tests; the 7.x report
source itself, and how 7.x serializes ``CertType``, were not available.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from veritee.errors import MalformedError
from veritee.evidence import sev_snp as s

__all__ = [
    "CERT_TYPE_GUIDS",
    "MAX_CERT_BYTES",
    "MAX_CERT_ENTRIES",
    "SevCertEntry",
    "cert_chain_from_sev_json",
    "evidence_from_sev_json",
    "report_from_sev_json",
]

#: ``CertType`` variant names and the certificate-table GUIDs the sev crate maps them to.
CERT_TYPE_GUIDS: dict[str, str] = {
    "Empty": "00000000-0000-0000-0000-000000000000",
    "ARK": "c0b406a4-a803-4952-9743-3fb6014cd0ae",
    "ASK": "4ab7b379-bbac-4fe4-a02f-05aef327c782",
    "VCEK": "63da758d-e664-4564-adc5-f4b93be8accd",
    "VLEK": "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
    "CRL": "92f81bc3-5811-4d3d-97ff-d19f88dc67ea",
}
MAX_CERT_ENTRIES = 16
MAX_CERT_BYTES = 64 * 1024

TURIN_FAMILY = 0x1A
_SIG_RESERVED = s.REPORT_SIZE - s.OFF_SIGNATURE_RESERVED  # 368
_RESERVED_4 = s.SIGNED_SIZE - s.OFF_LAUNCH_MIT_VECTOR  # 168

# Members common to both layouts: name -> (offset, kind); kind is "u32"/"u64" or a byte count.
_COMMON: dict[str, tuple[int, str | int]] = {
    "version": (s.OFF_VERSION, "u32"),
    "guest_svn": (s.OFF_GUEST_SVN, "u32"),
    "policy": (s.OFF_POLICY, "u64"),
    "family_id": (s.OFF_FAMILY_ID, 16),
    "image_id": (s.OFF_IMAGE_ID, 16),
    "vmpl": (s.OFF_VMPL, "u32"),
    "sig_algo": (s.OFF_SIGNATURE_ALGO, "u32"),
    "plat_info": (s.OFF_PLATFORM_INFO, "u64"),
    "report_data": (s.OFF_REPORT_DATA, 64),
    "measurement": (s.OFF_MEASUREMENT, 48),
    "host_data": (s.OFF_HOST_DATA, 32),
    "id_key_digest": (s.OFF_ID_KEY_DIGEST, 48),
    "author_key_digest": (s.OFF_AUTHOR_KEY_DIGEST, 48),
    "report_id": (s.OFF_REPORT_ID, 32),
    "report_id_ma": (s.OFF_REPORT_ID_MA, 32),
    "chip_id": (s.OFF_CHIP_ID, 64),
}
_TCBS = {
    "current_tcb": s.OFF_CURRENT_TCB,
    "reported_tcb": s.OFF_REPORTED_TCB,
    "committed_tcb": s.OFF_COMMITTED_TCB,
    "launch_tcb": s.OFF_LAUNCH_TCB,
}
_CPUID = ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step")
_MIT = {"launch_mit_vector": s.OFF_LAUNCH_MIT_VECTOR,
        "current_mit_vector": s.OFF_CURRENT_MIT_VECTOR}  # fmt: skip
_SIGNERS = ("_author_key_en", "author_key_en", "key_info")
# Full layout, positional u8 members after COMMITTED_TCB.
_FULL_VERSIONS = (
    ("current_build", 0x1E8), ("current_minor", 0x1E9), ("current_major", 0x1EA),
    ("_reserved_2", 0x1EB), ("committed_build", 0x1EC), ("committed_minor", 0x1ED),
    ("committed_major", 0x1EE), ("_reserved_3", 0x1EF),
)  # fmt: skip
_FULL_TCB_KEYS = (
    ("bootloader", "tee", "_reserved", "snp", "microcode"),
    ("boot_loader", "tee", "reserved", "snp", "microcode"),
)
_COMPACT_TCB_KEYS = ("fmc", "bootloader", "tee", "snp", "microcode")
_VERSION_KEYS = ("major", "minor", "build")


# --- typed readers (each names the JSON path it refused) ---------------------------------------


def _uint(value: Any, path: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedError(
            f"expected an unsigned {bits}-bit integer, got {type(value).__name__}", field=path
        )
    if not 0 <= value < 1 << bits:
        raise MalformedError(f"value out of range for an unsigned {bits}-bit integer", field=path)
    return value


def _opt_uint(value: Any, path: str, bits: int) -> int | None:
    return None if value is None else _uint(value, path, bits)


def _byte_array(value: Any, path: str, size: int) -> bytes:
    if not isinstance(value, list):
        raise MalformedError(
            f"expected an array of {size} bytes, got {type(value).__name__}", field=path
        )
    if len(value) != size:
        raise MalformedError(f"expected {size} bytes, got {len(value)}", field=path)
    return bytes(_uint(b, f"{path}[{i}]", 8) for i, b in enumerate(value))


def _members(
    value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Mapping[str, Any]:
    """``value`` as an object with every ``required`` member and nothing unknown."""
    if not isinstance(value, dict):
        raise MalformedError(f"expected an object, got {type(value).__name__}", field=path)
    missing = [k for k in required if k not in value]
    if missing:
        raise MalformedError(f"missing member {missing[0]!r}", field=path)
    allowed = set(required) | set(optional)
    extra = sorted(str(k) for k in value if k not in allowed)
    if extra:
        raise MalformedError(f"unexpected member {extra[0][:40]!r}", field=path)
    return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- the two report layouts ---------------------------------------------------------------------


def _put(buf: bytearray, offset: int, data: bytes) -> None:
    buf[offset : offset + len(data)] = data


def _put_common(buf: bytearray, doc: Mapping[str, Any], path: str) -> None:
    for name, (off, kind) in _COMMON.items():
        where = _join(path, name)
        if kind == "u32":
            _put(buf, off, _uint(doc[name], where, 32).to_bytes(4, "little"))
        elif kind == "u64":
            _put(buf, off, _uint(doc[name], where, 64).to_bytes(8, "little"))
        else:
            _put(buf, off, _byte_array(doc[name], where, int(kind)))


def _full_tcb(value: Any, path: str) -> bytes:
    early = isinstance(value, dict) and "boot_loader" in value
    keys = _FULL_TCB_KEYS[1] if early else _FULL_TCB_KEYS[0]
    doc = _members(value, path, keys)
    first, tee, reserved, snp, microcode = (_join(path, k) for k in keys)
    return (
        bytes([_uint(doc[keys[0]], first, 8), _uint(doc[keys[1]], tee, 8)])
        + _byte_array(doc[keys[2]], reserved, 4)
        + bytes([_uint(doc[keys[3]], snp, 8), _uint(doc[keys[4]], microcode, 8)])
    )


def _full(doc: Mapping[str, Any], path: str) -> bytes:
    signers = [k for k in _SIGNERS if k in doc]
    if len(signers) != 1:
        raise MalformedError(
            "expected exactly one of " + ", ".join(_SIGNERS) + " (the signer word)", field=path
        )
    with_cpuid = any(k in doc for k in _CPUID)
    required = (
        *_COMMON, *_TCBS, signers[0], "_reserved_0", "_reserved_1", "_reserved_4", "signature",
        *(name for name, _ in _FULL_VERSIONS), *(_CPUID if with_cpuid else ()),
    )  # fmt: skip
    _members(doc, path, required)
    buf = bytearray(s.REPORT_SIZE)
    _put_common(buf, doc, path)
    for name, off in _TCBS.items():
        _put(buf, off, _full_tcb(doc[name], _join(path, name)))
    for name, off in ((signers[0], s.OFF_SIGNER_INFO), ("_reserved_0", s.OFF_SIGNER_INFO + 4)):
        _put(buf, off, _uint(doc[name], _join(path, name), 32).to_bytes(4, "little"))
    off = s.OFF_CPUID_FAM_ID
    if with_cpuid:
        for i, name in enumerate(_CPUID):
            buf[off + i] = _uint(doc[name], _join(path, name), 8)
        off += len(_CPUID)
    _put(buf, off, _byte_array(doc["_reserved_1"], _join(path, "_reserved_1"), s.OFF_CHIP_ID - off))
    for name, at in _FULL_VERSIONS:
        buf[at] = _uint(doc[name], _join(path, name), 8)
    _put(buf, s.OFF_LAUNCH_MIT_VECTOR,
         _byte_array(doc["_reserved_4"], _join(path, "_reserved_4"), _RESERVED_4))  # fmt: skip
    where = _join(path, "signature")
    sig = _members(doc["signature"], where, ("r", "s", "_reserved"))
    _put(buf, s.OFF_SIGNATURE_R, _byte_array(sig["r"], _join(where, "r"), s.SIG_COMPONENT_SIZE))
    _put(buf, s.OFF_SIGNATURE_S, _byte_array(sig["s"], _join(where, "s"), s.SIG_COMPONENT_SIZE))
    _put(buf, s.OFF_SIGNATURE_RESERVED,
         _byte_array(sig["_reserved"], _join(where, "_reserved"), _SIG_RESERVED))  # fmt: skip
    return bytes(buf)


def _compact_tcb(value: Any, path: str) -> tuple[bytes, bool]:
    """The 8 TCB_VERSION bytes and whether they use the Turin layout (``fmc`` present)."""
    doc = _members(value, path, _COMPACT_TCB_KEYS)
    fmc = _opt_uint(doc["fmc"], _join(path, "fmc"), 8)
    bl, tee, snp, mc = (_uint(doc[k], _join(path, k), 8)
                        for k in ("bootloader", "tee", "snp", "microcode"))  # fmt: skip
    if fmc is None:
        return bytes([bl, tee, 0, 0, 0, 0, snp, mc]), False
    return bytes([fmc, bl, tee, snp, 0, 0, 0, mc]), True


def _compact(doc: Mapping[str, Any], path: str) -> bytes:
    required = (*_COMMON, *_TCBS, "key_info", *_CPUID, "current", "committed", "signature")
    _members(doc, path, required, tuple(_MIT))
    buf = bytearray(s.REPORT_SIZE)
    _put_common(buf, doc, path)
    version = int.from_bytes(buf[s.OFF_VERSION : s.OFF_VERSION + 4], "little")
    if version < 2:
        raise MalformedError("report version must be 2 or later", field=_join(path, "version"))
    _put(buf, s.OFF_SIGNER_INFO,
         _uint(doc["key_info"], _join(path, "key_info"), 32).to_bytes(4, "little"))  # fmt: skip
    layouts = set()
    for name, off in _TCBS.items():
        raw, turin = _compact_tcb(doc[name], _join(path, name))
        _put(buf, off, raw)
        layouts.add(turin)
    if len(layouts) != 1:
        raise MalformedError(
            "the four TCB versions disagree on fmc (null for Milan/Genoa, a number for Turin)",
            field=_join(path, "current_tcb.fmc"),
        )
    turin = layouts.pop()
    cpuid = {k: _opt_uint(doc[k], _join(path, k), 8) for k in _CPUID}
    if version == 2:
        for name, v in cpuid.items():
            if v is not None:
                raise MalformedError("must be null in a version 2 report", field=_join(path, name))
    else:
        for name, v in cpuid.items():
            if v is None:
                raise MalformedError(
                    f"must be a number in a version {version} report", field=_join(path, name)
                )
        family = int(cpuid["cpuid_fam_id"] or 0)
        if (family >= TURIN_FAMILY) != turin:
            raise MalformedError(
                f"CPUID family {family:#x} does not match the TCB layout its fmc implies",
                field=_join(path, "current_tcb.fmc"),
            )
        _put(buf, s.OFF_CPUID_FAM_ID, bytes(int(v or 0) for v in cpuid.values()))
    for name, off in (("current", s.OFF_CURRENT_BUILD), ("committed", s.OFF_COMMITTED_BUILD)):
        where = _join(path, name)
        ver = _members(doc[name], where, _VERSION_KEYS)
        _put(
            buf, off, bytes(_uint(ver[k], _join(where, k), 8) for k in ("build", "minor", "major"))
        )
    for name, off in _MIT.items():
        vector = _opt_uint(doc.get(name), _join(path, name), 64)
        if vector is not None:
            if version < 5:
                raise MalformedError(
                    f"must be null in a version {version} report (mitigation vectors are "
                    "version 5 and later)",
                    field=_join(path, name),
                )
            _put(buf, off, vector.to_bytes(8, "little"))
    where = _join(path, "signature")
    sig = _members(doc["signature"], where, ("r", "s"))
    _put(buf, s.OFF_SIGNATURE_R, _byte_array(sig["r"], _join(where, "r"), s.SIG_COMPONENT_SIZE))
    _put(buf, s.OFF_SIGNATURE_S, _byte_array(sig["s"], _join(where, "s"), s.SIG_COMPONENT_SIZE))
    return bytes(buf)


def report_from_sev_json(obj: Any, *, field: str = "attestation_report") -> bytes:
    """The 1184-byte ATTESTATION_REPORT that a sev-crate JSON ``AttestationReport`` encodes.

    Raises :class:`MalformedError` naming the JSON path (under ``field``) of the first missing,
    unknown, mistyped or out-of-range member. The result is not verified: pass it to
    :func:`veritee.evidence.sev_snp.verify`.
    """
    if not isinstance(obj, dict):
        raise MalformedError(
            f"expected the sev-crate AttestationReport object, got {type(obj).__name__}",
            field=field,
        )
    if "current" in obj or "committed" in obj:
        return _compact(obj, field)
    if "current_build" in obj or "_reserved_0" in obj:
        return _full(obj, field)
    raise MalformedError(
        "not a sev-crate AttestationReport: neither the sev 5+ members (current, committed) "
        "nor the sev 1-4 ones (current_build, _reserved_0) are present",
        field=field,
    )


# --- cert_chain ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SevCertEntry:
    """One ``CertTableEntry``: the sev-crate type name (``OTHER`` for a bare GUID), its GUID and
    the certificate bytes (DER for ARK/ASK/VCEK/VLEK)."""

    cert_type: str
    guid: str
    data: bytes


def _cert_type(value: Any, path: str) -> tuple[str, str]:
    if isinstance(value, str):
        if value not in CERT_TYPE_GUIDS:
            raise MalformedError(f"unknown cert_type {value[:24]!r}", field=path)
        return value, CERT_TYPE_GUIDS[value]
    doc = _members(value, path, ("OTHER",))
    guid = doc["OTHER"]
    try:
        parsed = uuid.UUID(guid) if isinstance(guid, str) and len(guid) <= 64 else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise MalformedError("OTHER must carry a GUID string", field=_join(path, "OTHER"))
    return "OTHER", str(parsed)


def cert_chain_from_sev_json(obj: Any, *, field: str = "cert_chain") -> tuple[SevCertEntry, ...]:
    """The entries of a sev-crate ``cert_chain`` (``null`` gives none); strict like the report."""
    if obj is None:
        return ()
    if not isinstance(obj, list):
        raise MalformedError(f"expected null or an array, got {type(obj).__name__}", field=field)
    if len(obj) > MAX_CERT_ENTRIES:
        raise MalformedError(f"more than {MAX_CERT_ENTRIES} entries", field=field)
    out = []
    for i, item in enumerate(obj):
        where = f"{field}[{i}]"
        entry = _members(item, where, ("cert_type", "data"))
        name, guid = _cert_type(entry["cert_type"], _join(where, "cert_type"))
        data = entry["data"]
        if not isinstance(data, list) or len(data) > MAX_CERT_BYTES:
            raise MalformedError(
                f"expected an array of at most {MAX_CERT_BYTES} bytes", field=_join(where, "data")
            )
        out.append(SevCertEntry(name, guid, _byte_array(data, _join(where, "data"), len(data))))
    return tuple(out)


def evidence_from_sev_json(
    obj: Any, *, field: str = "tee-evidence"
) -> tuple[bytes, tuple[SevCertEntry, ...]]:
    """The report bytes and cert-chain entries of a whole sev-crate ``SnpEvidence`` object."""
    if not isinstance(obj, dict):
        raise MalformedError(f"expected an object, got {type(obj).__name__}", field=field)
    if "svsm_manifest" in obj:
        raise MalformedError(
            "SVSM vTPM evidence (svsm_manifest) is not supported: its report binds the manifest, "
            "not the KBS runtime data",
            field=_join(field, "svsm_manifest"),
        )
    doc = _members(obj, field, ("attestation_report",), ("cert_chain",))
    report = report_from_sev_json(doc["attestation_report"],
                                  field=_join(field, "attestation_report"))  # fmt: skip
    certs = cert_chain_from_sev_json(doc.get("cert_chain"), field=_join(field, "cert_chain"))
    return report, certs
