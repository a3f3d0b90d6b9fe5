"""TDX CCEL event log: the ACPI CCEL table and the TCG2 crypto-agile event log it points to.

* ACPI CCEL table (ACPI 6.5, 5.2.34 "Confidential Computing Event Log Table"), 56 bytes:
  standard ACPI header (36 bytes, signature ``CCEL``, checksum over the table sums to 0),
  CC type u8 (2 = TDX), CC subtype u8, reserved u16, LAML u64 (log area length),
  LASA u64 (log area start address).
* Event log: the TCG2 crypto-agile format (:mod:`veritee.evidence.tcg_log`), which must carry
  SHA-384 digests.

In TDX the index is the CC measurement register: 0 = MRTD, 1..4 = RTMR0..3 (TDX Guest-Host
Communication Interface / UEFI CC measurement protocol). Replay:
``RTMR[i] = SHA-384(RTMR[i] || digest)`` from 48 zero bytes, skipping EV_NO_ACTION events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from veritee.errors import MalformedError
from veritee.evidence import tcg_log
from veritee.evidence._reader import Reader

__all__ = ["CcelTable", "Event", "EventLog", "parse_event_log", "parse_table", "replay"]

CCEL_SIGNATURE = b"CCEL"
CCEL_TABLE_SIZE = 56
CC_TYPE_TDX = 2
OFF_CC_TYPE = 36
OFF_LAML = 40
OFF_LASA = 48

TPM_ALG_SHA384 = 0x000C
SHA384_SIZE = 48
EV_NO_ACTION = tcg_log.EV_NO_ACTION
MAX_DATA_IN_CLAIMS = 1024
RTMR_COUNT = 4

EVENT_TYPES = {
    0x1: "EV_POST_CODE", 0x3: "EV_NO_ACTION", 0x4: "EV_SEPARATOR", 0x5: "EV_ACTION",
    0x6: "EV_EVENT_TAG", 0x7: "EV_S_CRTM_CONTENTS", 0x8: "EV_S_CRTM_VERSION",
    0x9: "EV_CPU_MICROCODE", 0xA: "EV_PLATFORM_CONFIG_FLAGS", 0xB: "EV_TABLE_OF_DEVICES",
    0xC: "EV_COMPACT_HASH", 0xD: "EV_IPL", 0xE: "EV_IPL_PARTITION_DATA", 0xF: "EV_NONHOST_CODE",
    0x10: "EV_NONHOST_CONFIG", 0x11: "EV_NONHOST_INFO", 0x12: "EV_OMIT_BOOT_DEVICE_EVENTS",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG", 0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION", 0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER", 0x80000006: "EV_EFI_GPT_EVENT",
    0x80000007: "EV_EFI_ACTION", 0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
    0x80000009: "EV_EFI_HANDOFF_TABLES", 0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    0x8000000B: "EV_EFI_HANDOFF_TABLES2", 0x8000000C: "EV_EFI_VARIABLE_BOOT2",
    0x80000010: "EV_EFI_HCRTM_EVENT", 0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
    0x800000E1: "EV_EFI_SPDM_FIRMWARE_BLOB", 0x800000E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
}  # fmt: skip


@dataclass(frozen=True)
class CcelTable:
    """The ACPI CCEL table (56 bytes)."""

    cc_type: int
    cc_subtype: int
    laml: int
    lasa: int

    @classmethod
    def from_bytes(cls, data: bytes) -> CcelTable:
        r = Reader(data)
        if r.bytes(4, "ccel.signature") != CCEL_SIGNATURE:
            raise MalformedError("not an ACPI CCEL table", field="ccel.signature", offset=0)
        length = r.u32("ccel.length")
        if length != len(data) or length < CCEL_TABLE_SIZE:
            raise MalformedError(f"CCEL length {length} != {len(data)} bytes", field="ccel.length", offset=4)
        if sum(data) % 256 != 0:
            raise MalformedError("CCEL checksum does not sum to zero", field="ccel.checksum", offset=9)
        r.offset = OFF_CC_TYPE
        cc_type = r.u8("ccel.cc_type")
        cc_subtype = r.u8("ccel.cc_subtype")
        r.skip(2, "ccel.reserved")
        laml = r.u64("ccel.laml")
        lasa = r.u64("ccel.lasa")
        if cc_type != CC_TYPE_TDX:
            raise MalformedError(f"CC type {cc_type} is not TDX (2)", field="ccel.cc_type", offset=OFF_CC_TYPE)
        return cls(cc_type, cc_subtype, laml, lasa)


def parse_table(data: bytes) -> CcelTable:
    return CcelTable.from_bytes(data)


@dataclass(frozen=True)
class Event:
    """One TCG_PCR_EVENT2 entry, with its SHA-384 digest."""

    offset: int
    index: int
    type: int
    digest: bytes
    data: bytes

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "rtmr": self.index - 1 if 1 <= self.index <= RTMR_COUNT else None,
            "type": self.type,
            "type_name": EVENT_TYPES.get(self.type, f"0x{self.type:08x}"),
            "digest": self.digest.hex(),
            "data_size": len(self.data),
            "data_hex": self.data[:MAX_DATA_IN_CLAIMS].hex(),
        }
        text = _text(self.data)
        if text is not None:
            out["text"] = text
        return out


def _text(data: bytes) -> str | None:
    """Printable ASCII or UTF-16LE text (e.g. kernel command lines, EFI actions), else None."""
    for enc, payload in (("ascii", data.rstrip(b"\0")), ("utf-16-le", data)):
        try:
            s = payload.decode(enc).rstrip("\0")
        except UnicodeDecodeError:
            continue
        if s and len(s) <= MAX_DATA_IN_CLAIMS and all(c.isprintable() or c in "\t\n\r" for c in s):
            return s
    return None


@dataclass(frozen=True)
class EventLog:
    """Parsed events and the RTMR0-3 values their replay gives."""

    events: tuple[Event, ...]
    rtmrs: tuple[bytes, ...]

    def claims(self) -> list[dict[str, Any]]:
        return [e.claims() for e in self.events]


def parse_event_log(data: bytes) -> EventLog:
    """Parse and replay a CCEL event log; raises :class:`MalformedError` naming the offset."""
    log = tcg_log.parse(data, max_index=RTMR_COUNT)
    if log.sizes.get(TPM_ALG_SHA384) != SHA384_SIZE:
        raise MalformedError("event log has no SHA-384 digests", field="spec_id.algorithms")
    events: list[Event] = []
    rtmrs = [bytes(SHA384_SIZE)] * RTMR_COUNT
    for e in log.events:
        digest = e.digests.get(TPM_ALG_SHA384)
        if digest is None:
            raise MalformedError("event has no SHA-384 digest", field="event.digest", offset=e.offset)
        if e.type != EV_NO_ACTION and e.index >= 1:
            rtmrs[e.index - 1] = hashlib.sha384(rtmrs[e.index - 1] + digest).digest()
        events.append(Event(e.offset, e.index, e.type, digest, e.data))
    return EventLog(tuple(events), tuple(rtmrs))


def replay(table: bytes | None, data: bytes) -> EventLog:
    """Parse the CCEL ``table`` (if given; the log is cut to its LAML) and replay ``data``."""
    if table is not None:
        t = CcelTable.from_bytes(table)
        if t.laml < len(data):
            data = data[: t.laml]
    return parse_event_log(data)
