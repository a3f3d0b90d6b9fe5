"""The tenant's side: receive the log key, verify a stored log, decrypt its records.

Log keys reach the tenant sealed with HPKE (RFC 9180, single-shot base mode) to the tenant's
X25519, P-256 or P-384 public key. The HPKE ``info`` binds the log id, the profile, the epoch the
key starts at and the SHA-256 of the signer's SubjectPublicKeyInfo, so an envelope moved to
another log, profile or signer does not open.

:func:`verify_log` needs no secret: only the signer's public key (the workload's attested key:
give ``admitted=``, from :func:`veritee.logs.signer.admitted_signer`, to check it against its
admission certificate) and, ideally, the last tree head the tenant kept. It names what it finds:

==============  =====================================================================
kind            meaning
==============  =====================================================================
truncation      records or segments cut away at the end (or a segment cut short)
deletion        records missing from the middle of the log
rollback        the stored log is an older (signed) state than the tenant's kept head
reordering      records, heads or segment files stored out of order
tampering       stored bytes changed: records do not hash to the signed roots
bad_signature   a tree head is not signed by the given key
fork            the stored history does not extend the kept head (equivocation)
wrong_log       segments or heads of another log id / profile mixed in
profile         the log's profile is not the one the tenant requires
empty           the folder holds no segments (a wrong folder, or everything removed)
signer          the signer's admission certificate does not fit the log: it attests another
                profile, or is not valid at the time of the latest verified head
unsigned_tail   (warning) records after the last signed head; not yet authenticated
not_closed      (warning) no final head; records after the last head may be missing
torn_tail       (warning) the last segment ends inside a frame (a crash mid-write, or a cut):
                every record before it is read; the finding names the frame that is lost
unreadable_tail (warning) an unsigned record names an epoch that cannot be honest (before the
                previous record's, or more than MAX_EPOCH_GAP past the last signed head's):
                it and the records after it are not decrypted, so no one can make the tenant
                ratchet 2^32 keys
==============  =====================================================================

Checking every signed head's root against the stored leaves is equivalent to checking each
record's RFC 9162 inclusion proof; the kept head is checked with an RFC 9162 consistency proof.

What is proven (:attr:`LogReport.verdict`): ``OK`` only for a *complete* log, closed by a final
head that covers every stored record; ``INCOMPLETE`` when no error is found but the last verified
head is not final (a log still being written looks exactly like one whose end was cut away, so
the report names the head up to which it is proven); ``FAILED`` on any error, including an empty
folder.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import MalformedError, SealingError, UsageError
from veritee.logs.errors import LogIntegrityError
from veritee.logs.merkle import MerkleTree, leaf_hash, verify_consistency
from veritee.logs.ratchet import KEY_SIZE, KeyRatchet, log_context
from veritee.logs.segment import (
    FRAME_HEAD,
    FRAME_PREFIX_SIZE,
    FRAME_RECORD,
    RecordFrame,
    RunStart,
    SegmentHeader,
    SignedTreeHead,
    VerifyingKey,
    key_id,
    parse_segment,
    record_aad,
)
from veritee.logs.signer import AdmittedSigner
from veritee.profiles import Profile

__all__ = [
    "ERROR_KINDS",
    "MAX_EPOCH_GAP",
    "WARNING_KINDS",
    "CheckedLog",
    "Finding",
    "LogKey",
    "LogRecord",
    "LogReport",
    "TenantPrivateKey",
    "TenantPublicKey",
    "check_log",
    "check_segments",
    "decrypt_log",
    "decrypt_records",
    "open_log_key",
    "seal_log_key",
    "verify_log",
]

LOG_KEY_FORMAT = "veritee-log-key-v1"
ERROR_KINDS = ("truncation", "deletion", "rollback", "reordering", "tampering", "bad_signature",
               "fork", "wrong_log", "profile", "empty", "signer")  # fmt: skip
WARNING_KINDS = ("unsigned_tail", "not_closed", "torn_tail", "unreadable_tail")
#: How far past the epoch of the last verified head an unsigned record's epoch may go (keys to
#: ratchet, ~50 us each). The writer advances one epoch per ``records_per_epoch`` records and one
#: per ``epoch_seconds`` of time (300 s by default: 2^16 epochs are about 227 days).
MAX_EPOCH_GAP = 1 << 16
_SEGMENT_RE = re.compile(r"^segment-(\d{8})\.vtlog$")

TenantPublicKey = x25519.X25519PublicKey | ec.EllipticCurvePublicKey
TenantPrivateKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


# -- log key envelope ----------------------------------------------------------------------------


def _suite(key: object) -> tuple[hpke.Suite, str]:
    if isinstance(key, x25519.X25519PublicKey | x25519.X25519PrivateKey):
        return hpke.Suite(
            hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
        ), "X25519"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM), "P-256"
        if isinstance(key.curve, ec.SECP384R1):
            return hpke.Suite(hpke.KEM.P384, hpke.KDF.HKDF_SHA384, hpke.AEAD.AES_256_GCM), "P-384"
    raise UsageError("tenant key must be X25519, P-256 or P-384", code="tenant_key_type")


def _info(log_id: str, profile: str, epoch: int, signer_key_id: bytes) -> bytes:
    lid, prof = log_id.encode(), profile.encode()
    return (LOG_KEY_FORMAT.encode() + struct.pack(">H", len(lid)) + lid
            + struct.pack(">H", len(prof)) + prof + struct.pack(">I", epoch) + signer_key_id)  # fmt: skip


@dataclass(frozen=True)
class LogKey:
    """An opened log key: the chain key of ``epoch`` (reads records of that epoch and later)."""

    log_id: str
    profile: str
    epoch: int
    signer_key_id: bytes
    chain_key: bytes = field(repr=False)


def seal_log_key(
    chain_key: bytes,
    *,
    epoch: int,
    log_id: str,
    profile: str,
    signer_key_id: bytes,
    tenant_public_key: TenantPublicKey,
) -> bytes:
    """HPKE-seal a chain key to the tenant; returns a small JSON envelope (bytes)."""
    suite, kem = _suite(tenant_public_key)
    sealed = suite.encrypt(chain_key, tenant_public_key,
                           info=_info(log_id, profile, epoch, signer_key_id))  # fmt: skip
    doc = {
        "format": LOG_KEY_FORMAT,
        "log_id": log_id,
        "profile": profile,
        "epoch": epoch,
        "signer_key_id": signer_key_id.hex(),
        "kem": kem,
        "sealed": base64.b64encode(sealed).decode(),
    }
    return json.dumps(doc, indent=2).encode()


def open_log_key(blob: bytes, tenant_private_key: TenantPrivateKey) -> LogKey:
    """Open an envelope from :func:`seal_log_key`. Raises MalformedError / SealingError."""
    try:
        doc = json.loads(blob)
        if doc.get("format") != LOG_KEY_FORMAT:
            raise MalformedError("not a veritee log key", field="format")
        log_id, profile, epoch = str(doc["log_id"]), str(doc["profile"]), int(doc["epoch"])
        signer = bytes.fromhex(doc["signer_key_id"])
        sealed = base64.b64decode(doc["sealed"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MalformedError(f"log key envelope does not parse ({type(e).__name__})",
                             field="log_key") from None  # fmt: skip
    suite, _ = _suite(tenant_private_key)
    try:
        chain = suite.decrypt(
            sealed, tenant_private_key, info=_info(log_id, profile, epoch, signer)
        )
    except Exception:  # HPKE raises InvalidTag or ValueError for a wrong key / tampered envelope
        raise SealingError("log key does not open with this tenant key", code="log_key") from None
    if len(chain) != KEY_SIZE:
        raise MalformedError("log key has the wrong length", field="log_key.sealed")
    return LogKey(log_id, profile, epoch, signer, chain)


# -- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    segment: int | None = None
    offset: int | None = None
    leaf_index: int | None = None

    @property
    def is_error(self) -> bool:
        return self.kind not in WARNING_KINDS

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "message": self.message}
        for k in ("segment", "offset", "leaf_index"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


def _iso(timestamp_ms: int) -> str:
    try:
        when = dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{timestamp_ms} ms after the epoch"
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LogReport:
    """What :func:`verify_log` proved about a stored log, and every problem it found.

    ``verdict`` is ``"OK"`` only when the log is *complete*: no error, and a final tree head (the
    workload closed the log) covers every stored record. A log without errors whose last verified
    head is not final is ``"INCOMPLETE"``: everything up to that head is proven, but records
    written after it may have been cut away, which no one without a later head can tell from a
    log that is still being written. Anything else is ``"FAILED"``.
    """

    log_id: str | None
    profile: str | None
    segments: int
    records: int
    tree_size: int  # size of the latest head that verified (signature and root)
    latest_head: SignedTreeHead | None
    findings: tuple[Finding, ...]
    readable: int = 0  # leaves 0..readable-1 are decrypted (see torn_tail, unreadable_tail)

    @property
    def ok(self) -> bool:
        """No error found (warnings such as ``not_closed`` allowed): see :attr:`complete`."""
        return not any(f.is_error for f in self.findings)

    @property
    def complete(self) -> bool:
        """No error, and a final head covers every stored record: nothing can be missing."""
        h = self.latest_head
        return self.ok and h is not None and h.final and h.tree_size == self.records

    @property
    def verdict(self) -> str:
        if not self.ok:
            return "FAILED"
        return "OK" if self.complete else "INCOMPLETE"

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(f.kind for f in self.findings)

    def proven(self) -> str:
        """One sentence: up to which signed head the log is proven, and whether it was closed."""
        h = self.latest_head
        if not self.ok:
            kinds = ", ".join(sorted({f.kind for f in self.findings if f.is_error}))
            return f"nothing is proven: the log failed verification ({kinds})"
        if h is None:
            return "nothing is proven: no signed tree head verifies"
        where = (f"the signed tree head of size {h.tree_size} (root {h.root_hash.hex()[:16]}..., "
                 f"signed {_iso(h.timestamp_ms)}, segment {h.segment})")  # fmt: skip
        if h.final:
            return f"records 0..{h.tree_size - 1} are proven by {where}, the final one: the log was closed"
        first = f"records 0..{h.tree_size - 1} are proven by {where}" if h.tree_size else (
            f"only the empty start of the log is proven, by {where}")  # fmt: skip
        return f"{first}; the log is not closed: records written after it may be missing"

    def to_dict(self) -> dict[str, Any]:
        h = self.latest_head
        proven = None
        if h is not None:
            proven = {"tree_size": h.tree_size, "root_hash": h.root_hash.hex(),
                      "timestamp": _iso(h.timestamp_ms), "timestamp_ms": h.timestamp_ms,
                      "segment": h.segment, "final": h.final}  # fmt: skip
        return {
            "verdict": self.verdict,
            "ok": self.ok,
            "complete": self.complete,
            "log_id": self.log_id,
            "profile": self.profile,
            "segments": self.segments,
            "records": self.records,
            "tree_size": self.tree_size,
            "readable": self.readable,
            "root_hash": h.root_hash.hex() if h else None,
            "final": h.final if h else False,
            "proven": proven,
            "summary": self.proven(),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class CheckedLog:
    """A stored log after :func:`check_log`: the report and the records it read (by leaf)."""

    report: LogReport
    records: Mapping[int, RecordFrame]


def verify_log(
    segments_dir: Path | str,
    signer_public_key: VerifyingKey,
    last_tree_head: SignedTreeHead | None = None,
    *,
    require_profile: Profile | None = None,
    require_final: bool = False,
    admitted: AdmittedSigner | None = None,
) -> LogReport:
    """Verify a stored log without any secret; every problem found is a named :class:`Finding`."""
    return check_log(segments_dir, signer_public_key, last_tree_head, require_profile=require_profile,
                     require_final=require_final, admitted=admitted).report  # fmt: skip


def check_log(
    segments_dir: Path | str,
    signer_public_key: VerifyingKey,
    last_tree_head: SignedTreeHead | None = None,
    *,
    require_profile: Profile | None = None,
    require_final: bool = False,
    admitted: AdmittedSigner | None = None,
) -> CheckedLog:
    """Read the segment files of ``segments_dir`` (the only I/O), then :func:`check_segments`."""
    directory = Path(segments_dir)
    files = [(p.name, p.read_bytes()) for p in sorted(directory.glob("segment-*.vtlog"))]
    if files:
        elsewhere: list[str] = []
    else:  # a wrong folder: say where segments are, a level or two down
        found = {p.parent for pattern in ("*/segment-*.vtlog", "*/*/segment-*.vtlog")
                 for p in directory.glob(pattern)}  # fmt: skip
        elsewhere = sorted(str(p.relative_to(directory)) for p in found)[:5]
    return check_segments(files, signer_public_key, last_tree_head, require_profile=require_profile,
                          require_final=require_final, elsewhere=elsewhere,
                          admitted=admitted)  # fmt: skip


def check_segments(
    files: Sequence[tuple[str, bytes]],
    signer: VerifyingKey,
    kept: SignedTreeHead | None = None,
    *,
    require_profile: Profile | None = None,
    require_final: bool = False,
    elsewhere: Sequence[str] = (),
    admitted: AdmittedSigner | None = None,
) -> CheckedLog:
    """Check a log given as ``(file name, bytes)`` of its segment files, in name order (pure).

    1. each segment parses, is named and numbered in order, belongs to one log; heads verify;
    2. records are stored in leaf order with no gap;
    3. every verified head's root matches the stored leaves (RFC 9162 inclusion of each record);
    4. the head the tenant kept is extended (RFC 9162 consistency), not rolled back;
    5. what is not proven: an empty folder, an unsigned tail, a log that was not closed, a torn
       last frame; unsigned records whose epochs cannot be honest are left unread;
    6. with ``admitted``: the log's profile is the one its signer's admission certificate
       attests, and the certificate is valid at the time of the latest verified head.
    """
    if admitted is not None and key_id(admitted.public_key) != key_id(signer):
        raise UsageError("the admitted signer is not the signing key given", code="usage")
    c = _Check(signer)
    for pos, (name, data) in enumerate(files):
        c.segment(name, data, last=pos == len(files) - 1)
    contiguous = c.completeness()
    tree = MerkleTree([leaf_hash(c.records[i].body) for i in range(contiguous)])
    latest, final = c.heads_against(tree, contiguous)
    out = c.out
    if kept is not None:
        _check_kept(kept, signer, c.log_id, tree, latest, c.present, out)
    signed = latest.tree_size if latest else 0
    if contiguous > signed:
        out.append(Finding("unsigned_tail", f"{contiguous - signed} records after the last signed "
                           "head are not yet authenticated", leaf_index=signed))  # fmt: skip
    readable = c.tail_epochs(latest, contiguous)
    out.extend(_unproven(c.torn, final, bool(files), kept, require_final, elsewhere))
    if admitted is not None and files:
        out.extend(_signer_findings(admitted, c.profile, latest))
    if require_profile is not None and c.profile != require_profile.value:
        out.append(Finding("profile", f"log profile is {c.profile!r}, required "
                           f"{require_profile.value!r}"))  # fmt: skip
    report = LogReport(c.log_id, c.profile, len(files), len(c.records), signed, latest, tuple(out),
                       readable)  # fmt: skip
    return CheckedLog(report, {i: c.records[i] for i in range(readable)})


class _Check:
    """The state of one :func:`check_segments` run, filled step by step."""

    def __init__(self, signer: VerifyingKey) -> None:
        self.signer = signer
        self.out: list[Finding] = []
        self.records: dict[int, RecordFrame] = {}
        self.order: list[int] = []
        self.heads: list[tuple[SignedTreeHead, int]] = []
        self.log_id: str | None = None
        self.profile: str | None = None
        self.expected_seg = 0
        self.present: list[int] = []
        self.torn: Finding | None = None  # the last segment's partial frame, if any

    # 1. one segment: name, numbering, log, framing and head signatures
    def segment(self, name: str, data: bytes, *, last: bool) -> None:
        m = _SEGMENT_RE.match(name)
        name_idx = int(m.group(1)) if m else -1
        try:
            seg = parse_segment(data)
        except MalformedError as e:
            self._unparsed(name, name_idx, len(data), e, last=last)
            return
        if not self._header(seg.header, name, name_idx):
            return
        index = seg.header.index
        for fr in seg.frames:
            if fr.record is not None:
                self._record(fr.record, index, fr.offset)
            elif fr.head is not None:
                self._head(fr.head, index, fr.offset)
            elif fr.run is not None:
                self._run(fr.run, index, fr.offset)
        if seg.truncated_at is not None and last:
            self.torn = _torn_frame(index, data, seg.truncated_at)
        elif seg.truncated_at is not None:
            self.out.append(Finding("truncation", f"segment {index} ends inside a frame",
                                    index, seg.truncated_at))  # fmt: skip
        elif not last and (not seg.frames or seg.frames[-1].kind != FRAME_HEAD):
            self.out.append(Finding("truncation", f"segment {index} does not end with its signed "
                                    "tree head: records were cut from its end", index))  # fmt: skip

    def _unparsed(
        self, name: str, name_idx: int, size: int, e: MalformedError, *, last: bool
    ) -> None:
        """A segment that does not parse: a last one cut inside its header is a crash while it
        was being opened (torn_tail); anything else is tampering."""
        if last and e.message.startswith("truncated") and (e.field or "").startswith("segment."):
            self.torn = Finding("torn_tail", f"{name} holds only {size} bytes, part of its "
                                "header: the workload stopped while opening it; records it was "
                                "about to hold are lost", name_idx, 0)  # fmt: skip
        else:
            self.out.append(Finding("tampering", f"{name} does not parse: {e}", name_idx, e.offset))
        self.expected_seg = max(self.expected_seg, name_idx + 1)

    def _header(self, h: SegmentHeader, name: str, name_idx: int) -> bool:
        """Name, log and numbering of a segment; False when it belongs to another log."""
        out = self.out
        if h.index != name_idx:
            out.append(Finding("reordering", f"{name} holds segment {h.index}", h.index))
        if self.log_id is None:
            self.log_id, self.profile = h.log_id, h.profile
        elif (h.log_id, h.profile) != (self.log_id, self.profile):
            out.append(
                Finding("wrong_log", f"segment {h.index} belongs to log {h.log_id!r}", h.index)
            )
            return False
        if h.index > self.expected_seg:
            out.append(Finding("truncation", f"segments {self.expected_seg}..{h.index - 1} are "
                               "missing", self.expected_seg))  # fmt: skip
        elif h.index < self.expected_seg:
            out.append(Finding("reordering", f"segment {h.index} is stored after a later one",
                               h.index))  # fmt: skip
        self.expected_seg = max(self.expected_seg, h.index + 1)
        self.present.append(h.index)
        return True

    def _record(self, rec: RecordFrame, seg: int, offset: int) -> None:
        idx = rec.leaf_index
        if idx in self.records:
            self.out.append(Finding("tampering", f"leaf {idx} is stored twice", seg, offset, idx))
            return
        self.records[idx] = rec
        self.order.append(idx)

    def _head(self, hd: SignedTreeHead, seg: int, offset: int) -> None:
        if not hd.verify(self.signer):
            self.out.append(Finding("bad_signature", f"tree head of size {hd.tree_size} is not "
                                    "signed by the given key", seg, offset))  # fmt: skip
        elif (hd.log_id, hd.profile) != (self.log_id, self.profile):
            self.out.append(Finding("wrong_log", f"tree head of log {hd.log_id!r}", seg, offset))
        else:
            self.heads.append((hd, seg))

    # 5. epochs of the unsigned tail; returns how many leaves may be decrypted
    def tail_epochs(self, latest: SignedTreeHead | None, contiguous: int) -> int:
        signed = latest.tree_size if latest else 0
        bound = (latest.epoch if latest else 0) + MAX_EPOCH_GAP
        prev = self.records[signed - 1].epoch if signed else 0
        for idx in range(signed, contiguous):
            epoch = self.records[idx].epoch
            why = (f"before the previous record's epoch {prev}" if epoch < prev else
                   f"more than {MAX_EPOCH_GAP} past the last signed head's epoch "
                   f"{bound - MAX_EPOCH_GAP}" if epoch > bound else None)  # fmt: skip
            if why is not None:
                self.out.append(Finding("unreadable_tail", f"the unsigned record at leaf {idx} "
                                        f"names epoch {epoch}, {why}: it and the "
                                        f"{contiguous - idx - 1} unsigned records after it are not "
                                        "decrypted", leaf_index=idx))  # fmt: skip
                return idx
            prev = epoch
        return contiguous

    def _run(self, run: RunStart, seg: int, offset: int) -> None:
        """A run start (segment version 2) is signed by the run's key and names the run."""
        if not run.verify(self.signer):
            self.out.append(Finding("bad_signature", "the run start is not signed by the given "
                                    "key", seg, offset))  # fmt: skip
        elif (run.log_id, run.profile) != (self.log_id, self.profile):
            self.out.append(Finding("wrong_log", f"run start of log {run.log_id!r}", seg, offset))

    # 2. record order and completeness; returns how many leaves are stored without a gap
    def completeness(self) -> int:
        order = self.order
        if order != sorted(order):
            at = next(i for i in range(1, len(order)) if order[i] < order[i - 1])
            self.out.append(Finding("reordering", f"leaf {order[at]} is stored after leaf "
                                    f"{order[at - 1]}", leaf_index=order[at]))  # fmt: skip
        contiguous = 0
        while contiguous in self.records:
            contiguous += 1
        if contiguous < len(self.records):
            self.out.append(Finding("deletion", f"records from leaf {contiguous} are missing while "
                                    "later ones are present", leaf_index=contiguous))  # fmt: skip
        return contiguous

    # 3. every signed head against the stored leaves (== inclusion of each record)
    def heads_against(
        self, tree: MerkleTree, contiguous: int
    ) -> tuple[SignedTreeHead | None, SignedTreeHead | None]:
        out, stored = self.out, len(self.records)
        latest: SignedTreeHead | None = None
        prev: SignedTreeHead | None = None
        good = 0
        for hd, seg_idx in self.heads:
            if prev is not None and prev.final:
                out.append(Finding("tampering", "a tree head follows the final one", seg_idx))
            # order is the leaf index (tree size), never the workload's wall clock: a clock step
            # back between two honest heads is not reordering
            if prev is not None and hd.tree_size < prev.tree_size:
                out.append(Finding("reordering", f"tree head of size {hd.tree_size} is stored "
                                   f"after one of size {prev.tree_size}", seg_idx))  # fmt: skip
            prev = hd
            if hd.tree_size > stored:
                out.append(Finding("truncation", f"a signed head covers {hd.tree_size} records "
                                   f"but only {stored} are stored", seg_idx))  # fmt: skip
            elif hd.tree_size > contiguous:
                continue  # already named as deletion
            elif tree.root(hd.tree_size) != hd.root_hash:
                out.append(Finding("tampering", f"records in leaves {good}..{hd.tree_size - 1} do "
                                   "not hash to the signed root", seg_idx, leaf_index=good))  # fmt: skip
            else:
                good = max(good, hd.tree_size)
                if latest is None or hd.tree_size >= latest.tree_size:
                    latest = hd
        final = next((hd for hd, _ in self.heads if hd.final), None)
        if final is not None and stored > final.tree_size:
            out.append(Finding("tampering", f"{stored - final.tree_size} records stored after "
                               "the final tree head", leaf_index=final.tree_size))  # fmt: skip
        return latest, final


def _unproven(
    torn: Finding | None,
    final: SignedTreeHead | None,
    stored: bool,
    kept: SignedTreeHead | None,
    require_final: bool,
    elsewhere: Sequence[str],
) -> list[Finding]:
    """Step 5 of :func:`check_segments`: a torn tail, an empty folder, a log not closed."""
    out: list[Finding] = []
    if torn is not None:
        if final is not None:  # the writer writes nothing after its final head
            out.append(Finding("tampering", f"bytes follow the final tree head: {torn.message}",
                               torn.segment, torn.offset))  # fmt: skip
        else:
            out.append(torn)
    if not stored:
        hint = f" (segments were found in {', '.join(elsewhere)})" if elsewhere else ""
        out.append(Finding("empty", f"the folder holds no log segments{hint}: no log to verify"))
        if kept is not None and kept.tree_size:
            out.append(Finding("truncation", "no segments are stored"))
    elif final is None:
        kind = "truncation" if require_final else "not_closed"
        out.append(Finding(kind, "the log has no final tree head; records after the last head "
                           "may be missing"))  # fmt: skip
    return out


def _signer_findings(
    admitted: AdmittedSigner, profile: str | None, latest: SignedTreeHead | None
) -> list[Finding]:
    out: list[Finding] = []
    info = admitted.info
    attested = info.profile.value if info.profile is not None else None
    if profile != attested:
        out.append(Finding("signer", f"the log says profile {profile!r}, but its signer's "
                           f"admission certificate attests {attested or 'no profile'!r}"))  # fmt: skip
    if latest is not None:
        at = dt.datetime.fromtimestamp(latest.timestamp_ms / 1000, dt.UTC)
        if not info.is_valid_at(at):
            out.append(Finding("signer", f"the signer's admission certificate (valid "
                               f"{info.not_before.isoformat()} to {info.not_after.isoformat()}) "
                               f"is not valid at the latest verified head (size "
                               f"{latest.tree_size}, signed {_iso(latest.timestamp_ms)}): give "
                               "the certificate valid then"))  # fmt: skip
    return out


def _torn_frame(segment: int, data: bytes, offset: int) -> Finding:
    """Name the partial frame that ends the last segment: what kind, how much of it is there,
    and which leaf it held when enough of the record header survived."""
    part = data[offset:]
    if len(part) < FRAME_PREFIX_SIZE:
        what = f"a frame prefix ({len(part)} of {FRAME_PREFIX_SIZE} bytes stored)"
    else:
        kind, length = struct.unpack_from(">BI", part)
        name = {FRAME_RECORD: "record", FRAME_HEAD: "tree head"}.get(kind, f"type-{kind}")
        what = f"a {name} frame ({len(part) - FRAME_PREFIX_SIZE} of {length} bytes stored)"
        if kind == FRAME_RECORD and len(part) >= FRAME_PREFIX_SIZE + 12:
            (leaf,) = struct.unpack_from(">Q", part, FRAME_PREFIX_SIZE + 4)
            what += f", leaf {leaf}"
    return Finding("torn_tail", f"segment {segment} ends inside {what}: that frame is lost (a "
                   "crash mid-write, or a cut); every record before it is read", segment, offset)  # fmt: skip


def _check_kept(
    kept: SignedTreeHead,
    signer: VerifyingKey,
    log_id: str | None,
    tree: MerkleTree,
    latest: SignedTreeHead | None,
    present: list[int],
    out: list[Finding],
) -> None:
    if not kept.verify(signer):
        out.append(Finding("bad_signature", "the kept tree head is not signed by the given key"))
        return
    if log_id is not None and kept.log_id != log_id:
        out.append(Finding("wrong_log", f"the kept head is of log {kept.log_id!r}"))
        return
    if kept.tree_size > tree.size:
        have = latest.tree_size if latest else 0
        if kept.segment > max(present, default=-1):
            out.append(Finding("truncation", f"the kept head covers {kept.tree_size} records in "
                               f"segment {kept.segment}, but the stored log ends at {tree.size} "
                               "records: segments were removed", kept.segment))  # fmt: skip
        else:
            out.append(Finding("rollback", f"the stored log (signed size {have}) is older than "
                               f"the kept head (size {kept.tree_size}): it was rolled back"))  # fmt: skip
        return
    if kept.tree_size:
        new_size = latest.tree_size if latest and latest.tree_size >= kept.tree_size else tree.size
        new_root = tree.root(new_size)
        proof = tree.consistency_proof(kept.tree_size, new_size)
        if not verify_consistency(kept.tree_size, new_size, kept.root_hash, new_root, proof):
            out.append(Finding("fork", f"the stored history does not extend the kept head of size "
                               f"{kept.tree_size}"))  # fmt: skip
            return
    if kept.final and (latest is None or not latest.final):
        out.append(Finding("truncation", "the kept head is the final one, but the stored log "
                           "has no final head: its end was cut away"))  # fmt: skip


# -- decryption --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRecord:
    """One decrypted record: its leaf index and ratchet epoch, its text, and whether a verified
    signed tree head covers it."""

    leaf_index: int
    epoch: int
    text: str
    signed: bool  # covered by a verified signed tree head


def decrypt_log(
    segments_dir: Path | str,
    log_key: LogKey,
    signer_public_key: VerifyingKey,
    last_tree_head: SignedTreeHead | None = None,
    *,
    require_profile: Profile | None = None,
    admitted: AdmittedSigner | None = None,
) -> Iterator[LogRecord]:
    """Verify the log, then yield its records in order: :func:`check_log`, then
    :func:`decrypt_records` (which says what is raised and what is skipped)."""
    checked = check_log(segments_dir, signer_public_key, last_tree_head,
                        require_profile=require_profile, admitted=admitted)  # fmt: skip
    return decrypt_records(checked, log_key, signer_public_key)


def decrypt_records(
    checked: CheckedLog, log_key: LogKey, signer_public_key: VerifyingKey
) -> Iterator[LogRecord]:
    """Yield the records of a checked log in leaf order.

    Raises :class:`LogIntegrityError` when the check found an error; warnings (an unsigned
    tail, a log not closed) do not stop it: records after the last signed head come with
    ``signed=False``, and ``checked.report`` says what is proven. Records of epochs before the
    key's epoch are unreadable by design and skipped.
    """
    rep = checked.report
    if not rep.ok:
        kinds = ", ".join(sorted({f.kind for f in rep.findings if f.is_error}))
        raise LogIntegrityError(f"log failed verification: {kinds}", report=rep)
    if rep.log_id is None:
        return iter(())
    if (log_key.log_id, log_key.profile) != (rep.log_id, rep.profile):
        raise UsageError("the log key belongs to another log or profile", code="log_key_mismatch")
    if log_key.signer_key_id != key_id(signer_public_key):
        raise UsageError("the log key names another signer", code="log_key_mismatch")
    return _decrypt(checked, log_key)


def _decrypt(checked: CheckedLog, log_key: LogKey) -> Iterator[LogRecord]:
    rep = checked.report
    log_id, profile = rep.log_id or "", rep.profile or ""
    ratchet = KeyRatchet(log_key.chain_key, context=log_context(log_id, profile),
                         epoch=log_key.epoch)  # fmt: skip
    lid, prof = log_id.encode(), profile.encode()
    aead, aead_epoch = AESGCM(ratchet.record_key), ratchet.epoch
    try:
        for idx in sorted(checked.records):
            r = checked.records[idx]
            if r.epoch < ratchet.epoch:
                continue
            if r.epoch != aead_epoch:
                ratchet.advance_to(r.epoch)
                aead, aead_epoch = AESGCM(ratchet.record_key), r.epoch
            try:
                pt = aead.decrypt(r.nonce, r.ciphertext, record_aad(lid, prof, r.epoch, idx))
            except InvalidTag:
                raise LogIntegrityError(f"record {idx} does not decrypt: tampered, or not "
                                        "this log's key", report=rep) from None  # fmt: skip
            yield LogRecord(idx, r.epoch, pt.decode("utf-8", "replace"), idx < rep.tree_size)
    finally:
        ratchet.erase()
