"""Test helper: a raw SEV-SNP report serialized as the Rust sev crate would (serde_json).

This is the inverse of :func:`veritee.evidence.sev_snp_serde.report_from_sev_json`, written
separately from it (straight from the byte offsets of the ABI spec's ATTESTATION_REPORT table)
so the round trip checks one against the other. Layouts:

* ``"sev1"``: sev 1.x, every field incl. reserved, signer word ``_author_key_en``, no CPUID
  members (``_reserved_1`` is 24 bytes even in v3+ reports, as that crate read them);
* ``"sev4"``: the 4.x V2/V3 structs, signer word ``key_info``, CPUID members in v3+ reports;
* ``"sev6"``: sev 5.x/6.x, no reserved members, no mitigation vectors;
* ``"sev7"``: sev 7.x, as sev6 plus ``launch_mit_vector``/``current_mit_vector``.
"""

from __future__ import annotations

from typing import Any

LAYOUTS = ("sev1", "sev4", "sev6", "sev7")


def _u(raw: bytes, off: int, size: int) -> int:
    return int.from_bytes(raw[off : off + size], "little")


def _arr(raw: bytes, off: int, size: int) -> list[int]:
    return list(raw[off : off + size])


def _turin(raw: bytes) -> bool:
    """The sev 5+ crates' choice: CPUID family in v3+, else a chip id with only 8 bytes set."""
    if _u(raw, 0, 4) >= 3:
        return raw[0x188] >= 0x1A
    chip = raw[0x1A0:0x1E0]
    return any(chip) and not any(chip[8:])


def _tcb_full(raw: bytes, off: int) -> dict[str, Any]:
    return {"bootloader": raw[off], "tee": raw[off + 1], "_reserved": _arr(raw, off + 2, 4),
            "snp": raw[off + 6], "microcode": raw[off + 7]}  # fmt: skip


def _tcb_compact(raw: bytes, off: int, turin: bool) -> dict[str, Any]:
    b = raw[off : off + 8]
    if turin:
        return {"fmc": b[0], "bootloader": b[1], "tee": b[2], "snp": b[3], "microcode": b[7]}
    return {"fmc": None, "bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]}


def sev_json(raw: bytes, layout: str = "sev7") -> dict[str, Any]:
    """``raw`` (1184 bytes) as the JSON object the given sev crate layout produces."""
    assert len(raw) == 1184 and layout in LAYOUTS
    version = _u(raw, 0, 4)
    doc: dict[str, Any] = {
        "version": version,
        "guest_svn": _u(raw, 0x04, 4),
        "policy": _u(raw, 0x08, 8),
        "family_id": _arr(raw, 0x10, 16),
        "image_id": _arr(raw, 0x20, 16),
        "vmpl": _u(raw, 0x30, 4),
        "sig_algo": _u(raw, 0x34, 4),
    }
    full = layout in ("sev1", "sev4")
    turin = _turin(raw)

    def tcb(off: int) -> dict[str, Any]:
        return _tcb_full(raw, off) if full else _tcb_compact(raw, off, turin)

    doc["current_tcb"] = tcb(0x38)
    doc["plat_info"] = _u(raw, 0x40, 8)
    if full:
        doc["_author_key_en" if layout == "sev1" else "key_info"] = _u(raw, 0x48, 4)
        doc["_reserved_0"] = _u(raw, 0x4C, 4)
    else:
        doc["key_info"] = _u(raw, 0x48, 4)
    for name, off, size in (("report_data", 0x50, 64), ("measurement", 0x90, 48),
                            ("host_data", 0xC0, 32), ("id_key_digest", 0xE0, 48),
                            ("author_key_digest", 0x110, 48), ("report_id", 0x140, 32),
                            ("report_id_ma", 0x160, 32)):  # fmt: skip
        doc[name] = _arr(raw, off, size)
    doc["reported_tcb"] = tcb(0x180)
    cpuid = dict(zip(("cpuid_fam_id", "cpuid_mod_id", "cpuid_step"), raw[0x188:0x18B], strict=True))
    if layout == "sev1":
        doc["_reserved_1"] = _arr(raw, 0x188, 24)
    elif layout == "sev4":
        if version >= 3:
            doc.update(cpuid)
            doc["_reserved_1"] = _arr(raw, 0x18B, 21)
        else:
            doc["_reserved_1"] = _arr(raw, 0x188, 24)
    else:
        doc.update(cpuid if version >= 3 else dict.fromkeys(cpuid))
    doc["chip_id"] = _arr(raw, 0x1A0, 64)
    doc["committed_tcb"] = tcb(0x1E0)
    if full:
        for i, name in enumerate(("current_build", "current_minor", "current_major", "_reserved_2",
                                  "committed_build", "committed_minor", "committed_major",
                                  "_reserved_3")):  # fmt: skip
            doc[name] = raw[0x1E8 + i]
    else:
        doc["current"] = {"major": raw[0x1EA], "minor": raw[0x1E9], "build": raw[0x1E8]}
        doc["committed"] = {"major": raw[0x1EE], "minor": raw[0x1ED], "build": raw[0x1EC]}
    doc["launch_tcb"] = tcb(0x1F0)
    if full:
        doc["_reserved_4"] = _arr(raw, 0x1F8, 168)
    elif layout == "sev7":
        doc["launch_mit_vector"] = _u(raw, 0x1F8, 8) if version >= 5 else None
        doc["current_mit_vector"] = _u(raw, 0x200, 8) if version >= 5 else None
    sig = {"r": _arr(raw, 0x2A0, 72), "s": _arr(raw, 0x2E8, 72)}
    if full:
        sig["_reserved"] = _arr(raw, 0x330, 368)
    doc["signature"] = sig
    return doc


def sev_evidence(raw: bytes, layout: str = "sev7", cert_chain: Any = None) -> dict[str, Any]:
    """A whole ``SnpEvidence`` object as the attestation-agent's snp attester sends it."""
    return {"attestation_report": sev_json(raw, layout), "cert_chain": cert_chain}
