"""``ConfidentialLogHandler``: a standard :class:`logging.Handler` that keeps secrets from the host.

* development / testing: each formatted record goes, as plaintext, to ``plain_stream``;
* staging / production: each formatted record is encrypted (AES-256-GCM, per-epoch key) and
  appended to the signed Merkle log (:class:`~veritee.logs.writer.LogWriter`). The only thing the
  host may additionally see is a catalogue notice (``VT-nnnn title``) on ``host_stream`` for
  records at ``notice_level`` or above; never the message.

What a crash can lose: every record is written to the host as it is logged (a killed process
loses none); a record at ``flush_level`` (ERROR) or above is signed and fsynced before
``emit`` returns (at most once per ``flush_gap`` seconds), others by the workload log's timer.

Before the control plane is up (no attested signing key yet), records are held in a
:class:`PendingBuffer`: AEAD-encrypted under a random buffer key that is itself protected by the
platform's ``seal`` callable, optionally persisted to a host file, and replayed in order into the
log by :meth:`ConfidentialLogHandler.attach_control_plane`.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TextIO

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import MalformedError, SealingError, StorageError, UsageError
from veritee.logs.catalogue import classify, lookup
from veritee.logs.ratchet import KEY_SIZE, wipe
from veritee.logs.segment import SignedTreeHead
from veritee.logs.writer import LogWriter
from veritee.profiles import Profile

__all__ = [
    "DEFAULT_FORMAT",
    "PENDING_MAGIC",
    "ConfidentialLogHandler",
    "PendingBuffer",
    "load_pending",
    "lock_pending_file",
    "recover_pending",
]

DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PENDING_MAGIC = b"VTLOGPND"
_PENDING_AAD = b"veritee-log-pending-v1"
_LEN = struct.Struct(">I")

Seal = Callable[[bytes], bytes]
Unseal = Callable[[bytes], bytes]


class PendingBuffer:
    """Records held sealed until the control plane is attached.

    File layout (when ``path`` is given): ``"VTLOGPND" | u32 len | seal(buffer key)`` then per
    record ``u32 len | nonce(12) | AES-256-GCM(record, aad="veritee-log-pending-v1"||u64 seq)``.
    """

    def __init__(self, seal: Seal | None, *, path: Path | None = None, limit: int = 10_000) -> None:
        self._seal, self._limit = seal, limit
        self.dropped = 0
        self._open(path)
        _LIVE_BUFFERS.add(self)

    def _open(self, path: Path | None) -> None:
        self._key = bytearray(os.urandom(KEY_SIZE))
        self._aead = AESGCM(self._key)
        self._items: list[bytes] = []
        self._file: BinaryIO | None = None
        self._forked = False
        if path is not None:
            if self._seal is None:
                raise SealingError("a persisted pending buffer needs a seal function",
                                   code="no_seal")  # fmt: skip
            sealed = self._seal(bytes(self._key))
            # made under another name and locked before it is one a later start recovers
            new = path.with_name(f".{path.name}.new")
            self._file = open(new, "xb", buffering=0)  # unbuffered: a fork copies no bytes
            lock_pending_file(self._file)
            self._file.write(PENDING_MAGIC + _LEN.pack(len(sealed)) + sealed)
            os.replace(new, path)
        self.path = path

    def _after_fork(self) -> None:
        """In a forked child: the held records and the file are the parent's (it delivers
        them); this copy forgets them and starts its own buffer at the next record."""
        if self._file is not None:
            self._file.close()  # the child's descriptor only; flushed after every record
            self._file = None
        self._items.clear()
        wipe(self._key)
        self._forked = True

    def __len__(self) -> int:
        return len(self._items)

    def add(self, plaintext: bytes) -> bool:
        if self._forked:
            where = self.path
            self._open(None if where is None else where.with_name(
                f"pending-{os.urandom(8).hex()}.sealed"))  # fmt: skip
        if len(self._items) >= self._limit:
            self.dropped += 1
            return False
        nonce = os.urandom(12)
        item = nonce + self._aead.encrypt(nonce, plaintext, _aad(len(self._items)))
        self._items.append(item)
        if self._file is not None:
            self._file.write(_LEN.pack(len(item)) + item)
            self._file.flush()
        return True

    def records(self) -> list[bytes]:
        """Every held record, decrypted, in order (the buffer keeps them until :meth:`erase`)."""
        return [
            self._aead.decrypt(item[:12], item[12:], _aad(i)) for i, item in enumerate(self._items)
        ]

    def sync(self) -> None:
        """Make the persisted buffer durable (fsync)."""
        if self._file is not None:
            os.fsync(self._file.fileno())

    def erase(self) -> None:
        """Forget the held records: erase the buffer key and remove the file."""
        self._items.clear()
        wipe(self._key)
        if self._file is not None:
            self._file.close()
            self._file = None
            if self.path is not None:
                self.path.unlink(missing_ok=True)

    def drain(self) -> list[bytes]:
        """Decrypt every held record in order, erase the buffer key and remove the file."""
        out = self.records()
        self.erase()
        return out


_LIVE_BUFFERS: weakref.WeakSet[PendingBuffer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for buffer in list(_LIVE_BUFFERS):
        buffer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _aad(seq: int) -> bytes:
    return _PENDING_AAD + struct.pack(">Q", seq)


def lock_pending_file(f: BinaryIO) -> bool:
    """Take the exclusive lock of a pending file (``flock``; held while the file is open):
    a process holds it on its own buffer, so a later start recovering the held records of
    earlier ones never takes a live process's. False when another process holds it."""
    if fcntl is None:  # pragma: no cover - not POSIX
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def load_pending(path: Path, unseal: Unseal) -> list[bytes]:
    """Recover records from a pending file left by an earlier run (same measurement)."""
    return recover_pending(path, unseal)[0]


def recover_pending(path: Path, unseal: Unseal) -> tuple[list[bytes], int]:
    """The records of a pending file left by an earlier start, and how many were lost to a
    record cut by a crash mid-write (0 or 1). Raises MalformedError / SealingError, or the
    StorageError of an unseal that cannot reach its key now (the file is then left alone)."""
    data = path.read_bytes()
    if data[:8] != PENDING_MAGIC or len(data) < 12:
        raise MalformedError("not a pending log buffer", field="pending.magic", offset=0)
    (n,) = _LEN.unpack_from(data, 8)
    pos = 12 + n
    if pos > len(data):
        raise MalformedError("truncated sealed key", field="pending.sealed_key", offset=12)
    try:
        key = bytearray(unseal(data[12:pos]))
    except StorageError:
        raise  # the key is out of reach for now (a domain-released key, the service down)
    except Exception:  # the platform's unseal fails for another measurement or tampering
        raise SealingError("pending buffer key does not unseal", code="pending_unseal") from None
    aead = AESGCM(key)
    wipe(key)
    out: list[bytes] = []
    while pos < len(data):
        n = _LEN.unpack_from(data, pos)[0] if pos + 4 <= len(data) else 0
        item = data[pos + 4 : pos + 4 + n]
        if pos + 4 > len(data) or len(item) != n or n < 28:
            return out, 1  # a record cut by a crash mid-write: the rest is unrecoverable
        try:
            out.append(aead.decrypt(item[:12], item[12:], _aad(len(out))))
        except InvalidTag:
            raise SealingError("pending log record does not decrypt", code="pending_tampered",
                               ) from None  # fmt: skip
        pos += 4 + n
    return out, 0


class ConfidentialLogHandler(logging.Handler):
    """A logging handler whose output is safe for the host in the profile it runs in."""

    def __init__(
        self,
        profile: Profile,
        *,
        writer: LogWriter | None = None,
        plain_stream: TextIO | None = None,
        host_stream: TextIO | None = None,
        notice_level: int = logging.WARNING,
        seal: Seal | None = None,
        pending_path: Path | None = None,
        pending_limit: int = 10_000,
        level: int = logging.NOTSET,
        flush_level: int = logging.ERROR,
        flush_gap: float = 0.05,
    ) -> None:
        super().__init__(level)
        self._flush_level, self._flush_gap = flush_level, flush_gap
        self._refused = 0  # records the host's store refused since the last one it took
        self._flushed_at = -flush_gap
        self.profile = profile
        self.setFormatter(logging.Formatter(DEFAULT_FORMAT))
        self._writer = writer
        self._plain = plain_stream
        self._host = host_stream
        self._notice_level = notice_level
        self._pending: PendingBuffer | None = None
        #: called for a new writer when the current one is a forked parent's (see LogWriter)
        self.renew: Callable[[], LogWriter] | None = None
        if profile.encrypts_logs and writer is None:
            self._pending = PendingBuffer(seal, path=pending_path, limit=pending_limit)

    @property
    def writer(self) -> LogWriter | None:
        """The writer of this process (in a forked child, its own: made by :attr:`renew`)."""
        with self.lock:  # type: ignore[union-attr]
            return self._live_writer()

    def _live_writer(self) -> LogWriter | None:
        w = self._writer
        if w is not None and w.forked:
            if self.renew is None:
                raise UsageError("this log belongs to the parent process", code="log_forked")
            w = self._writer = self.renew()
        return w

    @property
    def last_head(self) -> SignedTreeHead | None:
        """The last head this process's writer signed (None: none, or a forked parent's)."""
        writer = self._own_writer()
        return writer.last_head if writer is not None else None

    def _own_writer(self) -> LogWriter | None:
        """The writer if it is this process's (None for a forked parent's: nothing to do)."""
        w = self._writer
        return w if w is not None and not w.forked else None

    @property
    def pending(self) -> int:
        return len(self._pending) if self._pending is not None else 0

    @property
    def pending_path(self) -> Path | None:
        """The host file the pending buffer is persisted in (None: memory only, or attached)."""
        return self._pending.path if self._pending is not None else None

    @property
    def dropped(self) -> int:
        """Records refused because the pending buffer was full."""
        return self._pending.dropped if self._pending is not None else 0

    def hold(self, records: list[bytes]) -> None:
        """Put records recovered from an earlier start at the head of the pending buffer, and
        make the buffer durable (the earlier start's file may then be removed)."""
        with self.lock:  # type: ignore[union-attr]
            if self._pending is None:
                raise UsageError("records are held only before the control plane is attached",
                                 code="log_attached")  # fmt: skip
            for rec in records:
                self._pending.add(rec)
            self._pending.sync()

    def attach_control_plane(self, writer: LogWriter) -> int:
        """Start writing to ``writer``; replay the pending records first. Returns how many."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._writer = writer
            if self._pending is None:
                return 0
            records = self._pending.records()
            for rec in records:
                writer.append(rec)
            writer.flush()  # the records are in the signed log before their buffer goes
            self._pending.erase()
            self._pending = None
            return len(records)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if not self.profile.encrypts_logs:
                stream = self._plain if self._plain is not None else sys.stderr
                stream.write(text + "\n")
                return
            data = text.encode("utf-8", "backslashreplace")
            index: int | None = None
            writer = self._live_writer()
            if writer is not None:
                try:
                    if self._refused:
                        self._announce_refused(writer)
                    index = writer.append(data)
                except OSError:  # the host's store refused it: counted, announced in the log
                    self._refused += 1
                    self._notice(lookup("VT-0100").public_text(), None)
                    return
                if record.levelno >= self._flush_level:
                    self._flush_for_error()
            elif self._pending is not None and not self._pending.add(data):
                self._notice(lookup("VT-0102").public_text(), None)
                return
            if record.levelno >= self._notice_level:
                self._notice(self._public_text(record), index)
        except Exception:
            self.handleError(record)

    def _announce_refused(self, writer: LogWriter) -> None:
        """Tell the tenant, in the log, how many records the host's store refused."""
        note = logging.makeLogRecord({
            "name": "veritee.log", "levelno": logging.WARNING, "levelname": "WARNING",
            "msg": "%d records were lost: the host's store refused to write them",
            "args": (self._refused,)})  # fmt: skip
        writer.append(self.format(note).encode())
        self._refused = 0

    def _flush_for_error(self) -> None:
        """Sign a head over an error record and make it durable at once (the process may be
        about to die), at most once per ``flush_gap`` seconds: a burst of errors is covered
        by the timer's next head instead of an fsync each."""
        now = time.monotonic()
        writer = self._own_writer()
        if writer is not None and now - self._flushed_at >= self._flush_gap:
            writer.flush()
            self._flushed_at = now

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            writer = self._own_writer()
            if writer is not None and self.profile.encrypts_logs:
                writer.flush()
            for s in (self._plain, self._host):
                if s is not None:
                    s.flush()

    def tick(self) -> None:
        """Timer work (:meth:`LogWriter.tick`); a failure is a catalogue notice, never a crash."""
        with self.lock:  # type: ignore[union-attr]
            writer = self._own_writer()
            if writer is None or not self.profile.encrypts_logs:
                return
            try:
                writer.tick()
            except Exception:
                self._notice(lookup("VT-0100").public_text(), None)

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            writer = self._own_writer()
            if writer is not None:
                writer.close()
        super().close()

    def handleError(self, record: logging.LogRecord) -> None:
        """In staging/production print the catalogue code only, never the record or traceback."""
        if self.profile.free_form_to_host:
            super().handleError(record)
            return
        if logging.raiseExceptions:
            self._notice(lookup("VT-0100").public_text(), None)

    def _public_text(self, record: logging.LogRecord) -> str:
        code = getattr(record, "catalogue_code", None)
        if isinstance(code, str):
            try:
                return lookup(code).public_text()
            except KeyError:
                pass
        if record.exc_info and record.exc_info[1] is not None:
            return classify(record.exc_info[1]).public_text()
        return lookup("VT-0200" if record.levelno >= logging.ERROR else "VT-0201").public_text()

    def _notice(self, text: str, index: int | None) -> None:
        if self._host is None:
            return
        where = f" [log leaf {index}]" if index is not None else ""
        try:
            self._host.write(f"veritee: {text}{where}\n")
        except Exception:  # noqa: S110 - a broken host stream must not break the workload
            pass
