"""The on-host log format: segment files of length-prefixed frames, and signed tree heads.

The host keeps these files; it can neither read the records (AEAD) nor change, drop, reorder or
roll them back unnoticed (Merkle log, RFC 9162 §2.1, with heads signed by the workload's attested
key). All integers are big-endian.

Segment file ``segment-NNNNNNNN.vtlog``::

    offset  size  field
    0       8     magic "VTLOGSEG"
    8       1     version (2; version 1 is read too: it has no run-start frame)
    9       4     segment index (also in the file name)
    13      8     index of the first leaf written in this segment
    21      2+n   log id (u16 length, UTF-8)
    ..      2+n   profile (u16 length, ASCII)
    ..            frames until end of file

Frame: ``type u8 | length u32 | body``; type 1 = record, type 2 = signed tree head, type 3 =
run start (version 2: exactly one, the first frame of segment 0 of a run; see :class:`RunStart`).

Record body (overhead 24 bytes + the 16-byte AEAD tag + the 5-byte frame prefix)::

    0   4   epoch
    4   8   leaf index
    12  12  nonce
    24  ..  AEAD ciphertext || tag

The Merkle leaf of a record is its whole record body: a verifier checks integrity without keys.

Signed tree head body::

    0   1   version (1)
    1   2+n log id            .. 2+n profile
    ..  8   tree size         .. 32 root hash (MTH of the first tree-size leaves)
    ..  8   timestamp (ms since the epoch, workload clock)
    ..  4   epoch             .. 4 segment index the head is written in
    ..  1   flags (bit 0: final, the log was closed after this head)
    ..  32  key id (SHA-256 of the signer's SubjectPublicKeyInfo DER)
    ..  1   signature algorithm (1 ECDSA P-256/SHA-256, 2 ECDSA P-384/SHA-384, 3 Ed25519)
    ..  2+n signature over "veritee-log-sth-v1" 0x00 || all bytes before the algorithm byte

Runs (version 2). A workload's log folder holds one folder per *run*, ``run-NNNNNN`` (from 1):
a process lifetime. A start, a restart after a stop or a crash, and a forked child each begin a
new run with a fresh log secret; each run is a complete log of the format above whose log id is
``<workload log id>/run-NNNNNN`` (so heads, records and keys name the run). Its run-start body::

    0   1   version (1)
    1   2+n log id (the run's)       .. 2+n profile
    ..  4   run number               .. 8 started (ms since the epoch, workload clock)
    ..  1   cause (1 first start, 2 restart, 3 forked child)
    ..  4   parent run (cause 3: the run forked from; else 0)
    ..  8   parent's tree size at the fork (else 0)
    ..  1   1 if the previous run (number - 1; for run 1 a version-1 log in the folder itself)
            was found, then what this run saw of it on the host when it began:
            2+n log id | 8 contiguous records stored | 8 tree size of its last signed head |
            32 that head's root hash (zeros: none) | 1 flags (bit 0 final head, bit 1 the last
            segment ends inside a frame, bit 2 a segment does not parse)
    ..  4   records held before the control plane, replayed as leaves 0..k-1 of this run
    ..  4   of those, recovered from the sealed buffer of an earlier start
    ..  4   held records lost (buffer full, cut by a crash, or an unreadable buffer file)
    ..  32  key id  .. 1 signature algorithm  .. 2+n signature over "veritee-log-run-v1" 0x00 ||
            all bytes before the algorithm byte

The chain of runs is what tells a tenant about restarts: every run names its predecessor's
signed state, so a run removed from the middle, or cut back after a later run began, shows.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from veritee.binding import spki_der
from veritee.errors import MalformedError, UsageError

__all__ = [
    "FRAME_HEAD",
    "FRAME_PREFIX_SIZE",
    "FRAME_RECORD",
    "FRAME_RUN",
    "RECORD_HEADER_SIZE",
    "SEGMENT_MAGIC",
    "Frame",
    "ParsedSegment",
    "RecordFrame",
    "RunCause",
    "RunStart",
    "RunState",
    "SegmentHeader",
    "SignedTreeHead",
    "SigningKey",
    "VerifyingKey",
    "key_id",
    "parse_segment",
    "record_aad",
    "run_log_id",
    "segment_name",
]

SEGMENT_MAGIC = b"VTLOGSEG"
SEGMENT_VERSION = 2
SEGMENT_VERSIONS = (1, 2)
STH_VERSION = 1
RUN_VERSION = 1
FRAME_RECORD = 1
FRAME_HEAD = 2
FRAME_RUN = 3
FRAME_PREFIX = struct.Struct(">BI")
FRAME_PREFIX_SIZE = FRAME_PREFIX.size
RECORD_HEADER = struct.Struct(">IQ12s")
RECORD_HEADER_SIZE = RECORD_HEADER.size
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_FRAME = 16 * 1024 * 1024
STH_DOMAIN = b"veritee-log-sth-v1\x00"
RUN_DOMAIN = b"veritee-log-run-v1\x00"
FLAG_FINAL = 0x01
RUN_FINAL, RUN_TORN, RUN_UNREADABLE = 0x01, 0x02, 0x04
NO_ROOT = bytes(32)

SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
VerifyingKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_ALG_P256, _ALG_P384, _ALG_ED25519 = 1, 2, 3


def segment_name(index: int) -> str:
    return f"segment-{index:08d}.vtlog"


def run_log_id(workload_log_id: str, run: int) -> str:
    """The log id of one run of a workload's log."""
    return f"{workload_log_id}/run-{run:06d}"


def key_id(public_key: VerifyingKey) -> bytes:
    return hashlib.sha256(spki_der(public_key)).digest()


def record_aad(log_id: bytes, profile: bytes, epoch: int, leaf_index: int) -> bytes:
    """Associated data of a record: binds log id, profile, epoch and leaf index."""
    return (
        b"veritee-log-rec-v1" + _lp(log_id) + _lp(profile) + struct.pack(">IQ", epoch, leaf_index)
    )


def _lp(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


class _Cursor:
    """A bounds-checked reader over one structure; errors name the field and absolute offset."""

    def __init__(self, data: bytes, base: int = 0) -> None:
        self.data, self.pos, self.base = data, 0, base

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.data):
            raise MalformedError("truncated", field=field, offset=self.base + self.pos)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u(self, fmt: str, field: str) -> int:
        st = struct.Struct(">" + fmt)
        (v,) = st.unpack(self.take(st.size, field))
        return int(v)

    def lp(self, field: str) -> bytes:
        return self.take(self.u("H", field + ".length"), field)

    def text(self, field: str) -> str:
        raw = self.lp(field)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise MalformedError("not UTF-8", field=field, offset=self.base + self.pos) from None

    def done(self, what: str) -> None:
        if self.pos != len(self.data):
            raise MalformedError(f"trailing bytes in {what}", offset=self.base + self.pos)


@dataclass(frozen=True)
class SegmentHeader:
    index: int
    first_leaf: int
    log_id: str
    profile: str

    def to_bytes(self) -> bytes:
        return (
            SEGMENT_MAGIC
            + struct.pack(">BIQ", SEGMENT_VERSION, self.index, self.first_leaf)
            + _lp(self.log_id.encode())
            + _lp(self.profile.encode())
        )


@dataclass(frozen=True)
class RecordFrame:
    epoch: int
    leaf_index: int
    nonce: bytes
    ciphertext: bytes
    body: bytes  # the exact stored body: the Merkle leaf

    @classmethod
    def from_bytes(cls, body: bytes, *, offset: int = 0) -> RecordFrame:
        if len(body) < RECORD_HEADER_SIZE + TAG_SIZE:
            raise MalformedError(
                "record shorter than header and tag", field="record", offset=offset
            )
        epoch, leaf, nonce = RECORD_HEADER.unpack_from(body)
        return cls(epoch, leaf, nonce, body[RECORD_HEADER_SIZE:], body)


@dataclass(frozen=True)
class SignedTreeHead:
    """A tree head signed by the workload's attested key (see the module docstring for bytes)."""

    log_id: str
    profile: str
    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    epoch: int
    segment: int
    final: bool
    key_id: bytes
    algorithm: int
    signature: bytes

    def tbs(self) -> bytes:
        return (
            struct.pack(">B", STH_VERSION)
            + _lp(self.log_id.encode())
            + _lp(self.profile.encode())
            + struct.pack(">Q", self.tree_size)
            + self.root_hash
            + struct.pack(">QIIB", self.timestamp_ms, self.epoch, self.segment,
                          FLAG_FINAL if self.final else 0)
            + self.key_id
        )  # fmt: skip

    def to_bytes(self) -> bytes:
        return self.tbs() + struct.pack(">B", self.algorithm) + _lp(self.signature)

    @classmethod
    def sign(
        cls,
        key: SigningKey,
        *,
        log_id: str,
        profile: str,
        tree_size: int,
        root_hash: bytes,
        timestamp_ms: int,
        epoch: int,
        segment: int,
        final: bool = False,
    ) -> SignedTreeHead:
        alg = _algorithm_of(key.public_key())
        unsigned = cls(log_id, profile, tree_size, root_hash, timestamp_ms, epoch, segment,
                       final, key_id(key.public_key()), alg, b"")  # fmt: skip
        sig = _sign(key, alg, STH_DOMAIN + unsigned.tbs())
        return cls(log_id, profile, tree_size, root_hash, timestamp_ms, epoch, segment, final,
                   unsigned.key_id, alg, sig)  # fmt: skip

    def verify(self, public_key: VerifyingKey) -> bool:
        """True when the signature is by ``public_key`` with the algorithm the head names."""
        return _verify(public_key, self.algorithm, self.key_id, self.signature,
                       STH_DOMAIN + self.tbs())  # fmt: skip

    @classmethod
    def from_bytes(cls, body: bytes, *, offset: int = 0) -> SignedTreeHead:
        c = _Cursor(body, offset)
        if c.u("B", "sth.version") != STH_VERSION:
            raise MalformedError(
                "unsupported tree head version", field="sth.version", offset=offset
            )
        log_id = c.text("sth.log_id")
        profile = c.text("sth.profile")
        size = c.u("Q", "sth.tree_size")
        root = c.take(32, "sth.root_hash")
        ts = c.u("Q", "sth.timestamp")
        epoch = c.u("I", "sth.epoch")
        seg = c.u("I", "sth.segment")
        flags = c.u("B", "sth.flags")
        kid = c.take(32, "sth.key_id")
        alg = c.u("B", "sth.algorithm")
        if alg not in (_ALG_P256, _ALG_P384, _ALG_ED25519):
            raise MalformedError(f"unknown signature algorithm {alg}", field="sth.algorithm",
                                 offset=offset + c.pos - 1)  # fmt: skip
        sig = c.lp("sth.signature")
        c.done("tree head")
        return cls(log_id, profile, size, root, ts, epoch, seg, bool(flags & FLAG_FINAL), kid,
                   alg, sig)  # fmt: skip

    # -- the tenant keeps its last head as a small JSON file -----------------------------------

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "format": "veritee-log-sth-v1",
            "log_id": self.log_id,
            "profile": self.profile,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp_ms": self.timestamp_ms,
            "epoch": self.epoch,
            "segment": self.segment,
            "final": self.final,
            "encoded": base64.b64encode(self.to_bytes()).decode(),
        }
        return json.dumps(doc, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedTreeHead:
        """Parse a kept head; only the signed ``encoded`` bytes count, the rest is for people."""
        try:
            doc = json.loads(text)
            encoded = base64.b64decode(doc["encoded"], validate=True)
        except (ValueError, KeyError, TypeError) as e:
            raise MalformedError(
                f"not a kept tree head: {type(e).__name__}", field="encoded"
            ) from None
        return cls.from_bytes(encoded)


class RunCause(enum.IntEnum):
    START = 1  # no earlier run in the folder
    RESTART = 2  # a new process after an earlier run (stopped, killed or crashed)
    FORK = 3  # a child forked from a process whose run was attached


@dataclass(frozen=True)
class RunState:
    """What a run saw of another run's stored segments (no key needed to observe it)."""

    log_id: str
    stored: int  # contiguous records stored from leaf 0
    signed: int  # tree size of the last signed head (0: none)
    root_hash: bytes  # of that head (NO_ROOT: none)
    final: bool
    torn: bool  # the last segment ends inside a frame
    unreadable: bool  # a segment does not parse

    def to_bytes(self) -> bytes:
        flags = ((RUN_FINAL if self.final else 0) | (RUN_TORN if self.torn else 0)
                 | (RUN_UNREADABLE if self.unreadable else 0))  # fmt: skip
        return (_lp(self.log_id.encode()) + struct.pack(">QQ", self.stored, self.signed)
                + self.root_hash + struct.pack(">B", flags))  # fmt: skip

    @classmethod
    def read(cls, c: _Cursor) -> RunState:
        log_id = c.text("run.previous.log_id")
        stored, signed = c.u("Q", "run.previous.stored"), c.u("Q", "run.previous.signed")
        root = c.take(32, "run.previous.root_hash")
        flags = c.u("B", "run.previous.flags")
        return cls(log_id, stored, signed, root, bool(flags & RUN_FINAL), bool(flags & RUN_TORN),
                   bool(flags & RUN_UNREADABLE))  # fmt: skip


@dataclass(frozen=True)
class RunStart:
    """The signed first frame of a run (see the module docstring for its bytes)."""

    log_id: str
    profile: str
    run: int
    started_ms: int
    cause: RunCause
    parent_run: int
    parent_size: int
    previous: RunState | None
    replayed: int
    recovered: int
    lost: int
    key_id: bytes
    algorithm: int
    signature: bytes

    def tbs(self) -> bytes:
        prev = b"\x01" + self.previous.to_bytes() if self.previous is not None else b"\x00"
        return (
            struct.pack(">B", RUN_VERSION)
            + _lp(self.log_id.encode())
            + _lp(self.profile.encode())
            + struct.pack(">IQBIQ", self.run, self.started_ms, self.cause, self.parent_run,
                          self.parent_size)
            + prev
            + struct.pack(">III", self.replayed, self.recovered, self.lost)
            + self.key_id
        )  # fmt: skip

    def to_bytes(self) -> bytes:
        return self.tbs() + struct.pack(">B", self.algorithm) + _lp(self.signature)

    @classmethod
    def sign(cls, key: SigningKey, **fields: Any) -> RunStart:
        """Sign a run start; ``fields`` are the dataclass fields up to ``lost``."""
        alg = _algorithm_of(key.public_key())
        unsigned = cls(**fields, key_id=key_id(key.public_key()), algorithm=alg, signature=b"")
        sig = _sign(key, alg, RUN_DOMAIN + unsigned.tbs())
        return cls(**fields, key_id=unsigned.key_id, algorithm=alg, signature=sig)

    def verify(self, public_key: VerifyingKey) -> bool:
        return _verify(public_key, self.algorithm, self.key_id, self.signature,
                       RUN_DOMAIN + self.tbs())  # fmt: skip

    @classmethod
    def from_bytes(cls, body: bytes, *, offset: int = 0) -> RunStart:
        c = _Cursor(body, offset)
        if c.u("B", "run.version") != RUN_VERSION:
            raise MalformedError("unsupported run-start version", field="run.version",
                                 offset=offset)  # fmt: skip
        log_id, profile = c.text("run.log_id"), c.text("run.profile")
        run, started = c.u("I", "run.number"), c.u("Q", "run.started")
        cause_v = c.u("B", "run.cause")
        if cause_v not in RunCause._value2member_map_:
            raise MalformedError(f"unknown run cause {cause_v}", field="run.cause",
                                 offset=offset + c.pos - 1)  # fmt: skip
        parent, parent_size = c.u("I", "run.parent"), c.u("Q", "run.parent_size")
        has_prev = c.u("B", "run.has_previous")
        if has_prev > 1:
            raise MalformedError("bad previous-run flag", field="run.has_previous",
                                 offset=offset + c.pos - 1)  # fmt: skip
        prev = RunState.read(c) if has_prev else None
        replayed = c.u("I", "run.replayed")
        recovered, lost = c.u("I", "run.recovered"), c.u("I", "run.lost")
        kid = c.take(32, "run.key_id")
        alg = c.u("B", "run.algorithm")
        if alg not in (_ALG_P256, _ALG_P384, _ALG_ED25519):
            raise MalformedError(f"unknown signature algorithm {alg}", field="run.algorithm",
                                 offset=offset + c.pos - 1)  # fmt: skip
        sig = c.lp("run.signature")
        c.done("run start")
        return cls(log_id, profile, run, started, RunCause(cause_v), parent, parent_size, prev,
                   replayed, recovered, lost, kid, alg, sig)  # fmt: skip


def _sign(key: SigningKey, alg: int, msg: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(msg)
    return key.sign(msg, ec.ECDSA(_hash_for(alg)))


def _verify(public_key: VerifyingKey, alg: int, kid: bytes, sig: bytes, msg: bytes) -> bool:
    try:
        if _algorithm_of(public_key) != alg or key_id(public_key) != kid:
            return False
    except UsageError:
        return False
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(sig, msg)
        else:
            public_key.verify(sig, msg, ec.ECDSA(_hash_for(alg)))
    except InvalidSignature:
        return False
    return True


def _algorithm_of(public_key: object) -> int:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return _ALG_ED25519
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return _ALG_P256
        if isinstance(public_key.curve, ec.SECP384R1):
            return _ALG_P384
    raise UsageError("log signing key must be ECDSA P-256, P-384 or Ed25519", code="log_key_type")


def _hash_for(alg: int) -> hashes.HashAlgorithm:
    return hashes.SHA384() if alg == _ALG_P384 else hashes.SHA256()


@dataclass(frozen=True)
class Frame:
    kind: int
    offset: int  # of the frame prefix within its file
    record: RecordFrame | None
    head: SignedTreeHead | None
    run: RunStart | None = None


@dataclass(frozen=True)
class ParsedSegment:
    header: SegmentHeader
    frames: tuple[Frame, ...]
    truncated_at: int | None  # offset of a partial trailing frame, if the file ends inside one


def parse_segment(data: bytes) -> ParsedSegment:
    """Parse one segment file. A file that ends inside a frame is reported (``truncated_at``),
    not raised; any other malformation raises :class:`MalformedError` naming field and offset."""
    c = _Cursor(data)
    if c.take(8, "segment.magic") != SEGMENT_MAGIC:
        raise MalformedError("not a veritee log segment", field="segment.magic", offset=0)
    version = c.u("B", "segment.version")
    if version not in SEGMENT_VERSIONS:
        raise MalformedError("unsupported segment version", field="segment.version", offset=8)
    index = c.u("I", "segment.index")
    first = c.u("Q", "segment.first_leaf")
    header = SegmentHeader(index, first, c.text("segment.log_id"), c.text("segment.profile"))
    frames: list[Frame] = []
    pos = c.pos
    truncated_at: int | None = None
    while pos < len(data):
        if pos + FRAME_PREFIX_SIZE > len(data):
            truncated_at = pos
            break
        kind, length = FRAME_PREFIX.unpack_from(data, pos)
        if length > MAX_FRAME:
            raise MalformedError(f"frame length {length} over limit", field="frame.length",
                                 offset=pos + 1)  # fmt: skip
        start = pos + FRAME_PREFIX_SIZE
        if start + length > len(data):
            truncated_at = pos
            break
        body = data[start : start + length]
        if kind == FRAME_RECORD:
            frames.append(Frame(kind, pos, RecordFrame.from_bytes(body, offset=start), None))
        elif kind == FRAME_HEAD:
            frames.append(Frame(kind, pos, None, SignedTreeHead.from_bytes(body, offset=start)))
        elif kind == FRAME_RUN and version >= 2:
            if index != 0 or frames:
                raise MalformedError("a run start that is not the first frame of segment 0",
                                     field="frame.type", offset=pos)  # fmt: skip
            frames.append(Frame(kind, pos, None, None, RunStart.from_bytes(body, offset=start)))
        else:
            raise MalformedError(f"unknown frame type {kind}", field="frame.type", offset=pos)
        pos = start + length
    return ParsedSegment(header, tuple(frames), truncated_at)
