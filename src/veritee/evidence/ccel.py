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

Replay binds digests only; each event's data is bound, or marked unverified, as
:mod:`veritee.evidence.tcg_log` says (claims ``data_verified``, ``text`` / ``unverified_text``).
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
MAX_DATA_IN_CLAIMS = tcg_log.MAX_DATA_IN_CLAIMS
RTMR_COUNT = 4

EVENT_TYPES = tcg_log.EVENT_TYPES


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
            raise MalformedError(
                f"CCEL length {length} != {len(data)} bytes", field="ccel.length", offset=4
            )
        if sum(data) % 256 != 0:
            raise MalformedError(
                "CCEL checksum does not sum to zero", field="ccel.checksum", offset=9
            )
        r.offset = OFF_CC_TYPE
        cc_type = r.u8("ccel.cc_type")
        cc_subtype = r.u8("ccel.cc_subtype")
        r.skip(2, "ccel.reserved")
        laml = r.u64("ccel.laml")
        lasa = r.u64("ccel.lasa")
        if cc_type != CC_TYPE_TDX:
            raise MalformedError(
                f"CC type {cc_type} is not TDX (2)", field="ccel.cc_type", offset=OFF_CC_TYPE
            )
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
    data_verified: bool = False

    def claims(self) -> dict[str, Any]:
        """:func:`veritee.evidence.tcg_log.event_claims` (``data_verified``, ``text`` only for
        data bound to the digest, else ``unverified_text``), plus the RTMR, the SHA-384 digest
        and the data as hex (its first 1 KiB)."""
        base = tcg_log.event_claims(
            tcg_log.TcgEvent(self.offset, self.index, self.type, {}, self.data, self.data_verified)
        )
        out: dict[str, Any] = {
            "index": self.index,
            "rtmr": self.index - 1 if 1 <= self.index <= RTMR_COUNT else None,
            "type": self.type,
            "type_name": base["type_name"],
            "digest": self.digest.hex(),
            "data_size": len(self.data),
            "data_hex": self.data[:MAX_DATA_IN_CLAIMS].hex(),
            "data_verified": self.data_verified,
        }
        for key in ("text", "unverified_text"):
            if key in base:
                out[key] = base[key]
        return out


@dataclass(frozen=True)
class EventLog:
    """Parsed events and the RTMR0-3 values their replay gives."""

    events: tuple[Event, ...]
    rtmrs: tuple[bytes, ...]

    def claims(self) -> list[dict[str, Any]]:
        return [e.claims() for e in self.events]


def parse_event_log(data: bytes) -> EventLog:
    """Parse and replay a CCEL event log; raises :class:`MalformedError` naming the offset (also
    for an event other than EV_NO_ACTION at index 0, MRTD: it could not be replayed, so nothing
    in it could be trusted), and :class:`VerificationError` (``event_data_mismatch``) when an
    event whose digest is defined over its data does not hash to it
    (:func:`veritee.evidence.tcg_log.check_bound_events`)."""
    log = tcg_log.parse(data, max_index=RTMR_COUNT)
    if log.sizes.get(TPM_ALG_SHA384) != SHA384_SIZE:
        raise MalformedError("event log has no SHA-384 digests", field="spec_id.algorithms")
    tcg_log.check_bound_events(log)
    events: list[Event] = []
    rtmrs = [bytes(SHA384_SIZE)] * RTMR_COUNT
    for e in log.events:
        digest = e.digests.get(TPM_ALG_SHA384)
        if digest is None:
            raise MalformedError(
                "event has no SHA-384 digest", field="event.digest", offset=e.offset
            )
        if e.type != EV_NO_ACTION:
            if e.index == 0:  # (MRTD is measured as the TD is built: no event extends it)
                raise MalformedError(
                    "event extends MRTD (index 0), which no event extends: it cannot be replayed",
                    field="event.index",
                    offset=e.offset,
                )
            rtmrs[e.index - 1] = hashlib.sha384(rtmrs[e.index - 1] + digest).digest()
        events.append(Event(e.offset, e.index, e.type, digest, e.data, e.data_verified))
    return EventLog(tuple(events), tuple(rtmrs))


def replay(table: bytes | None, data: bytes) -> EventLog:
    """Parse the CCEL ``table`` (if given; the log is cut to its LAML) and replay ``data``."""
    if table is not None:
        t = CcelTable.from_bytes(table)
        if t.laml < len(data):
            data = data[: t.laml]
    return parse_event_log(data)
