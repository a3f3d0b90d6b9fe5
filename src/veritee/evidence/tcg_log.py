"""TCG2 crypto-agile event logs (TCG PC Client Platform Firmware Profile, 10.2 "Crypto Agile
Log Format"), shared by the TPM verifier (PCRs) and the TDX CCEL verifier (RTMRs).

Layout: one ``TCG_PCR_EVENT`` in the SHA-1 layout (index u32, type u32 = EV_NO_ACTION, 20-byte
digest, size u32, "Spec ID Event03" naming the digest algorithms and their sizes), then
``TCG_PCR_EVENT2`` entries: index u32, type u32, digest count u32, ``{alg u16, digest}``...,
event size u32, event data (all little-endian). The log ends at its end, at an index of
0xFFFFFFFF or at an all-zero header (the unused rest of a fixed-size log area).

Replay: ``PCR[i] = H(PCR[i] || digest)`` per bank, skipping EV_NO_ACTION events; PCR 0 may
start at the locality given by a "StartupLocality" EV_NO_ACTION event (0 otherwise).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from veritee.errors import MalformedError, OversizedError
from veritee.evidence._reader import Reader

__all__ = ["EV_NO_ACTION", "TcgEvent", "TcgLog", "parse"]

EV_NO_ACTION = 0x3
SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"
MAX_EVENT_LOG = 16 * 1024 * 1024
MAX_EVENT_DATA = 1024 * 1024
HASH_NAMES = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}


@dataclass(frozen=True)
class TcgEvent:
    """One TCG_PCR_EVENT2 entry: where it starts, its register, type, digests and data."""

    offset: int
    index: int
    type: int
    digests: dict[int, bytes]
    data: bytes


@dataclass(frozen=True)
class TcgLog:
    """The parsed log: digest sizes by algorithm (from the Spec ID event), events, and the
    startup locality (for PCR 0)."""

    sizes: dict[int, int]
    events: tuple[TcgEvent, ...]
    startup_locality: int = 0

    def replay(self, alg: int, registers: int) -> list[bytes]:
        """The values of registers 0..``registers``-1 of bank ``alg`` after every event."""
        name = HASH_NAMES[alg]
        size = self.sizes[alg]
        values = [bytes(size) for _ in range(registers)]
        if registers:
            values[0] = bytes(size - 1) + bytes([self.startup_locality])
        for e in self.events:
            if e.type == EV_NO_ACTION or e.index >= registers:
                continue
            values[e.index] = hashlib.new(name, values[e.index] + e.digests[alg]).digest()
        return values


def _spec_id(r: Reader) -> dict[int, int]:
    """The first event (TCG_PCR_EVENT + Spec ID Event03); returns {algorithm id: digest size}."""
    r.u32("spec_id.pcr_index")
    if r.u32("spec_id.event_type") != EV_NO_ACTION:
        raise MalformedError("first event is not EV_NO_ACTION", field="spec_id.event_type", offset=4)
    r.skip(20, "spec_id.digest")
    size = r.u32("spec_id.event_size")
    start = r.offset
    s = Reader(r.bytes(size, "spec_id.event"))
    if s.bytes(16, "spec_id.signature") != SPEC_ID_SIGNATURE:
        raise MalformedError("not a crypto-agile log (no Spec ID Event03)", field="spec_id.signature", offset=start)
    s.skip(4 + 4, "spec_id.platform_class_version")
    n = s.u32("spec_id.number_of_algorithms")
    if not 0 < n <= 16:
        raise MalformedError(f"{n} digest algorithms", field="spec_id.number_of_algorithms", offset=start + 24)
    sizes = {}
    for _ in range(n):
        alg = s.u16("spec_id.algorithm_id")
        sizes[alg] = s.u16("spec_id.digest_size")
    return sizes


def parse(data: bytes, *, max_index: int) -> TcgLog:
    """Parse a crypto-agile log whose register indices are at most ``max_index``.

    Raises :class:`MalformedError` naming the field and offset that do not parse.
    """
    if len(data) > MAX_EVENT_LOG:
        raise OversizedError(f"event log is {len(data)} bytes; limit {MAX_EVENT_LOG}")
    r = Reader(data)
    sizes = _spec_id(r)
    events: list[TcgEvent] = []
    locality = 0
    while r.remaining >= 8:
        start = r.offset
        index = r.u32("event.index")
        etype = r.u32("event.type")
        if index == 0xFFFFFFFF or (index == 0 and etype == 0):
            break
        count = r.u32("event.digest_count")
        if not 0 < count <= len(sizes):
            raise MalformedError(f"{count} digests in event", field="event.digest_count", offset=start + 8)
        digests: dict[int, bytes] = {}
        for _ in range(count):
            alg_off = r.offset
            alg = r.u16("event.digest_alg")
            if alg not in sizes:
                raise MalformedError(f"digest algorithm {alg:#06x} not in Spec ID", field="event.digest_alg", offset=alg_off)
            digests[alg] = r.bytes(sizes[alg], "event.digest")
        size_off = r.offset
        size = r.u32("event.size")
        if size > MAX_EVENT_DATA:
            raise MalformedError(f"event data of {size} bytes", field="event.size", offset=size_off)
        payload = r.bytes(size, "event.data")
        if index > max_index:
            raise MalformedError(f"register index {index} > {max_index}", field="event.index", offset=start)
        if etype == EV_NO_ACTION and payload.startswith(STARTUP_LOCALITY_SIGNATURE) and len(payload) == 17:
            locality = payload[16]
        events.append(TcgEvent(start, index, etype, digests, payload))
    return TcgLog(sizes, tuple(events), locality)
