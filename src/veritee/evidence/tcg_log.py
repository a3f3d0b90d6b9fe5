"""TCG2 crypto-agile event logs (TCG PC Client Platform Firmware Profile, 10.2 "Crypto Agile
Log Format"), shared by the TPM verifier (PCRs) and the TDX CCEL verifier (RTMRs).

Layout: one ``TCG_PCR_EVENT`` in the SHA-1 layout (index u32, type u32 = EV_NO_ACTION, 20-byte
digest, size u32, "Spec ID Event03" naming the digest algorithms and their sizes), then
``TCG_PCR_EVENT2`` entries: index u32, type u32, digest count u32, ``{alg u16, digest}``...,
event size u32, event data (all little-endian). The log ends at its end, at an index of
0xFFFFFFFF or at an all-zero header (the unused rest of a fixed-size log area).

Replay: ``PCR[i] = H(PCR[i] || digest)`` per bank, skipping EV_NO_ACTION events; PCR 0 may
start at the locality given by a "StartupLocality" EV_NO_ACTION event (0 otherwise).

Replay binds the digests, not the event data: an event's data is only what the firmware says
it measured. The data is bound where the digest is defined over it:

* for the event types of :data:`DATA_BOUND` (PC Client PFP, table "Events": EV_SEPARATOR,
  EV_ACTION, EV_S_CRTM_VERSION, EV_NONHOST_INFO, EV_OMIT_BOOT_DEVICE_EVENTS, EV_EFI_ACTION,
  EV_EFI_GPT_EVENT, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT2,
  EV_EFI_VARIABLE_AUTHORITY) the digest MUST be H(data) in every bank;
  :func:`check_bound_events` refuses a log where it is not (``event_data_mismatch``), as
  go-eventlog does for the events it reads;
* any other event is ``data_verified`` when H(data) equals its digest in every bank, and a GRUB
  command (EV_IPL with a ``grub_cmd: ``, ``kernel_cmdline: `` ... prefix, which GRUB measures
  without its prefix and NUL) when H(command) does, as go-eventlog reads GRUB's events;
* every other event's data is unverified: the claims carry its text as ``unverified_text``.

Known firmware deviations accepted, as go-eventlog accepts them: older shim logs
EV_EFI_VARIABLE_AUTHORITY events whose signature lacks its owner GUID with one stray byte at
the end that the digest does not cover.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from veritee.errors import MalformedError, OversizedError, VerificationError
from veritee.evidence._reader import Reader

__all__ = [
    "DATA_BOUND",
    "EVENT_TYPES",
    "EV_NO_ACTION",
    "TcgEvent",
    "TcgLog",
    "check_bound_events",
    "event_claims",
    "parse",
]

EV_NO_ACTION = 0x3
EV_SEPARATOR, EV_ACTION, EV_S_CRTM_VERSION, EV_IPL = 0x4, 0x5, 0x8, 0xD
EV_NONHOST_INFO, EV_OMIT_BOOT_DEVICE_EVENTS = 0x11, 0x12
EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_GPT_EVENT, EV_EFI_ACTION = 0x80000001, 0x80000006, 0x80000007
EV_EFI_VARIABLE_BOOT2, EV_EFI_VARIABLE_AUTHORITY = 0x8000000C, 0x800000E0

#: Event types whose digest the PC Client PFP defines as the hash of the event data.
DATA_BOUND = frozenset({
    EV_SEPARATOR, EV_ACTION, EV_S_CRTM_VERSION, EV_NONHOST_INFO, EV_OMIT_BOOT_DEVICE_EVENTS,
    EV_EFI_ACTION, EV_EFI_GPT_EVENT, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT2,
    EV_EFI_VARIABLE_AUTHORITY,
})  # fmt: skip
#: Prefixes of GRUB's EV_IPL command events; the digest covers what follows the prefix.
GRUB_PREFIXES = (b"grub_cmd: ", b"kernel_cmdline: ", b"module_cmdline: ", b"grub_kernel_cmdline ",
                 b"grub_cmd ")  # fmt: skip
MAX_DATA_IN_CLAIMS = 1024

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
SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"
MAX_EVENT_LOG = 16 * 1024 * 1024
MAX_EVENT_DATA = 1024 * 1024
HASH_NAMES = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}


@dataclass(frozen=True)
class TcgEvent:
    """One TCG_PCR_EVENT2 entry: where it starts, its register, type, digests and data, and
    whether the data is bound to the digests (see the module docstring)."""

    offset: int
    index: int
    type: int
    digests: dict[int, bytes]
    data: bytes
    data_verified: bool = field(default=False)

    @property
    def type_name(self) -> str:
        return EVENT_TYPES.get(self.type, f"0x{self.type:08x}")


#: Algorithm id -> hashlib constructor (a named constructor is faster than ``hashlib.new``).
HASH_FUNCS: dict[int, Callable[..., Any]] = {
    0x0004: hashlib.sha1, 0x000B: hashlib.sha256, 0x000C: hashlib.sha384, 0x000D: hashlib.sha512,
}  # fmt: skip


def _hashes_to(digests: dict[int, bytes], data: bytes) -> bool:
    if not digests:
        return False
    for alg, d in digests.items():
        if HASH_FUNCS[alg](data).digest() != d:
            return False
    return True


def _signature_without_owner(data: bytes) -> bool:
    """Whether the UEFI_VARIABLE_DATA in ``data`` holds one bare DER certificate: an
    EFI_SIGNATURE_DATA without its owner GUID, as shim before rhboot/shim@8a27a48 logs it."""
    if len(data) < 32:
        return False
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    start = 32 + 2 * name_len
    value = data[start : start + data_len]
    return (len(value) == data_len > 4 and value[:2] == b"\x30\x82"
            and 4 + int.from_bytes(value[2:4], "big") == data_len)  # fmt: skip


def _data_verified(etype: int, digests: dict[int, bytes], data: bytes) -> bool:
    if _hashes_to(digests, data):
        return True
    if etype == EV_IPL:
        for prefix in GRUB_PREFIXES:
            if data.startswith(prefix):
                # GRUB measures the command without its NUL (older GRUBs with it); only a NUL
                # may be left out of the digest.
                cmd = data[len(prefix) :]
                return _hashes_to(digests, cmd) or (
                    cmd.endswith(b"\0") and _hashes_to(digests, cmd[:-1])
                )
        return False
    if etype == EV_EFI_VARIABLE_AUTHORITY and _signature_without_owner(data):
        # That shim also logs one stray byte more than it measured (go-eventlog's workaround).
        return _hashes_to(digests, data[:-1])
    return False


@dataclass(frozen=True)
class TcgLog:
    """The parsed log: digest sizes by algorithm (from the Spec ID event), events, and the
    startup locality (for PCR 0)."""

    sizes: dict[int, int]
    events: tuple[TcgEvent, ...]
    startup_locality: int = 0

    def replay(self, alg: int, registers: int) -> list[bytes]:
        """The values of registers 0..``registers``-1 of bank ``alg`` after every event."""
        h = HASH_FUNCS[alg]
        size = self.sizes[alg]
        values = [bytes(size) for _ in range(registers)]
        if registers:
            values[0] = bytes(size - 1) + bytes([self.startup_locality])
        for e in self.events:
            if e.type == EV_NO_ACTION or e.index >= registers:
                continue
            values[e.index] = h(values[e.index] + e.digests[alg]).digest()
        return values


def _spec_id(r: Reader) -> dict[int, int]:
    """The first event (TCG_PCR_EVENT + Spec ID Event03); returns {algorithm id: digest size}."""
    r.u32("spec_id.pcr_index")
    if r.u32("spec_id.event_type") != EV_NO_ACTION:
        raise MalformedError(
            "first event is not EV_NO_ACTION", field="spec_id.event_type", offset=4
        )
    r.skip(20, "spec_id.digest")
    size = r.u32("spec_id.event_size")
    start = r.offset
    s = Reader(r.bytes(size, "spec_id.event"))
    if s.bytes(16, "spec_id.signature") != SPEC_ID_SIGNATURE:
        raise MalformedError(
            "not a crypto-agile log (no Spec ID Event03)", field="spec_id.signature", offset=start
        )
    s.skip(4 + 4, "spec_id.platform_class_version")
    n = s.u32("spec_id.number_of_algorithms")
    if not 0 < n <= 16:
        raise MalformedError(
            f"{n} digest algorithms", field="spec_id.number_of_algorithms", offset=start + 24
        )
    sizes = {}
    for _ in range(n):
        alg = s.u16("spec_id.algorithm_id")
        sizes[alg] = s.u16("spec_id.digest_size")
    return sizes


class _Slow(Exception):
    """The fast reader met something it does not judge: the bounds-checked reader names it."""


_U32 = struct.Struct("<I")
_U32X3 = struct.Struct("<III")
_U16 = struct.Struct("<H")


def parse(data: bytes, *, max_index: int) -> TcgLog:
    """Parse a crypto-agile log whose register indices are at most ``max_index``.

    Raises :class:`MalformedError` naming the field and offset that do not parse. A log that
    parses is read with ``struct.unpack_from`` over the bytes; anything it does not judge
    (a bound, a count, an index) goes to the field-by-field reader, which names the fault.
    """
    if len(data) > MAX_EVENT_LOG:
        raise OversizedError(f"event log is {len(data)} bytes; limit {MAX_EVENT_LOG}")
    data = bytes(data)
    try:
        return _parse_fast(data, max_index)
    except _Slow:
        return _parse_checked(data, max_index)


def _parse_fast(data: bytes, max_index: int) -> TcgLog:
    end = len(data)
    try:
        sizes = _spec_id(Reader(data))
        (spec_size,) = _U32.unpack_from(data, 28)
    except MalformedError:
        raise _Slow from None
    at = 32 + spec_size
    events: list[TcgEvent] = []
    locality = 0
    unpack3, unpack_u16, unpack_u32 = _U32X3.unpack_from, _U16.unpack_from, _U32.unpack_from
    hash_funcs = HASH_FUNCS
    while end - at >= 8:
        start = at
        if end - at < 12:
            raise _Slow
        index, etype, count = unpack3(data, at)
        if index == 0xFFFFFFFF or (index == 0 and etype == 0):
            break
        if not 0 < count <= len(sizes) or index > max_index:
            raise _Slow
        at += 12
        digests: dict[int, bytes] = {}
        for _ in range(count):
            if end - at < 2:
                raise _Slow
            (alg,) = unpack_u16(data, at)
            n = sizes.get(alg)
            if n is None or end - at - 2 < n or alg not in hash_funcs:
                raise _Slow
            digests[alg] = data[at + 2 : at + 2 + n]
            at += 2 + n
        if end - at < 4:
            raise _Slow
        (size,) = unpack_u32(data, at)
        at += 4
        if size > MAX_EVENT_DATA or end - at < size:
            raise _Slow
        payload = data[at : at + size]
        at += size
        verified = False
        if etype == EV_NO_ACTION:
            if len(payload) == 17 and payload.startswith(STARTUP_LOCALITY_SIGNATURE):
                locality = payload[16]
        elif etype == EV_IPL or etype == EV_EFI_VARIABLE_AUTHORITY:
            verified = _data_verified(etype, digests, payload)
        else:  # _hashes_to, inline (every event of a log is hashed in every bank)
            verified = bool(digests)
            for alg, d in digests.items():
                if hash_funcs[alg](payload).digest() != d:
                    verified = False
                    break
        events.append(TcgEvent(start, index, etype, digests, payload, verified))
    return TcgLog(sizes, tuple(events), locality)


def _parse_checked(data: bytes, max_index: int) -> TcgLog:
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
            raise MalformedError(
                f"{count} digests in event", field="event.digest_count", offset=start + 8
            )
        digests: dict[int, bytes] = {}
        for _ in range(count):
            alg_off = r.offset
            alg = r.u16("event.digest_alg")
            if alg not in sizes:
                raise MalformedError(
                    f"digest algorithm {alg:#06x} not in Spec ID",
                    field="event.digest_alg",
                    offset=alg_off,
                )
            if alg not in HASH_FUNCS:  # (declared, but its digests could be neither checked
                raise MalformedError(  # against the data nor replayed)
                    f"digest algorithm {alg:#06x} is not supported (SHA-1, SHA-256, SHA-384, "
                    "SHA-512)",
                    field="event.digest_alg",
                    offset=alg_off,
                )
            digests[alg] = r.bytes(sizes[alg], "event.digest")
        size_off = r.offset
        size = r.u32("event.size")
        if size > MAX_EVENT_DATA:
            raise MalformedError(f"event data of {size} bytes", field="event.size", offset=size_off)
        payload = r.bytes(size, "event.data")
        if index > max_index:
            raise MalformedError(
                f"register index {index} > {max_index}", field="event.index", offset=start
            )
        if (
            etype == EV_NO_ACTION
            and payload.startswith(STARTUP_LOCALITY_SIGNATURE)
            and len(payload) == 17
        ):
            locality = payload[16]
        verified = etype != EV_NO_ACTION and _data_verified(etype, digests, payload)
        events.append(TcgEvent(start, index, etype, digests, payload, verified))
    return TcgLog(sizes, tuple(events), locality)


def check_bound_events(log: TcgLog) -> None:
    """Every event of a :data:`DATA_BOUND` type has digest H(data) in every bank, else
    :class:`VerificationError` (``event_data_mismatch``) naming the event."""
    for e in log.events:
        if e.type in DATA_BOUND and not e.data_verified:
            raise VerificationError(
                f"{e.type_name} event at offset {e.offset} (register {e.index}): its data does not "
                "hash to its digest, which the PC Client PFP defines over that data",
                code="event_data_mismatch",
            )


#: Tab, newline and carriage return: allowed in an event's text besides printable characters.
_WHITESPACE = {9: None, 10: None, 13: None}


def _text(data: bytes) -> str | None:
    """Printable ASCII or UTF-16LE text (e.g. kernel command lines, EFI actions), else None."""
    stripped = data.rstrip(b"\0")
    for enc, payload, limit in (
        ("ascii", stripped, MAX_DATA_IN_CLAIMS),
        ("utf-16-le", data, 2 * MAX_DATA_IN_CLAIMS),
    ):
        if len(stripped) > limit:  # longer than the claims show whole, whatever it decodes to
            continue
        try:
            s = payload.decode(enc).rstrip("\0")
        except UnicodeDecodeError:
            continue
        if (
            s
            and len(s) <= MAX_DATA_IN_CLAIMS
            and (s.isprintable() or s.translate(_WHITESPACE).isprintable())
        ):
            return s
    return None


def event_claims(e: TcgEvent) -> dict[str, Any]:
    """What the claims say about one event: register, type, ``data_verified``, the data's size,
    and its text as ``text`` when the data is bound to the digest, else ``unverified_text``."""
    out: dict[str, Any] = {
        "index": e.index,
        "type": e.type,
        "type_name": e.type_name,
        "data_verified": e.data_verified,
        "data_size": len(e.data),
    }
    text = _text(e.data)
    if text is not None:
        out["text" if e.data_verified else "unverified_text"] = text
    return out
