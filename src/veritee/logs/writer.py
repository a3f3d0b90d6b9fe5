"""The workload's side of the log: encrypt, append to the Merkle log, write frames to the host.

:class:`SegmentStore` is the host folder (a directory of segment files the host keeps);
:class:`LogWriter` owns the key ratchet, the AEAD, the compact Merkle range and the signing key.
Formats are in :mod:`.segment`; a workload's runs in :mod:`.runs`. Every ``records_per_head`` records, on :meth:`LogWriter.flush`,
before a segment is rotated, and on close (with the *final* flag) a signed tree head is written,
so every segment but the last ends with a head covering all its records.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import UsageError
from veritee.logs.merkle import CompactRange
from veritee.logs.ratchet import KEY_SIZE, KeyRatchet, log_context, wipe
from veritee.logs.segment import (
    FRAME_HEAD,
    FRAME_PREFIX,
    FRAME_RECORD,
    FRAME_RUN,
    RunStart,
    SegmentHeader,
    SignedTreeHead,
    SigningKey,
    VerifyingKey,
    record_aad,
    segment_name,
)

__all__ = ["LogWriter", "SegmentStore"]

_HEADER_NONCE = struct.Struct(">IQ4sQ")  # epoch, leaf index, nonce = salt || leaf index


class SegmentStore:
    """A folder of segment files on the host. Refuses a folder that already holds segments.

    Frames are written unbuffered, one ``write`` each: a record :meth:`LogWriter.append` has
    returned is in the host's page cache, so a killed process (kill -9, a crash) loses none.
    :meth:`flush` makes them durable (``fsync``, with ``durable``) against a host crash.
    """

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if any(self.directory.glob("segment-*.vtlog")):
            raise UsageError(
                f"log folder {self.directory} already holds segments; use a fresh folder per log",
                code="log_folder_in_use",
            )
        self._durable = durable
        self._file: BinaryIO | None = None
        self._size = 0

    def start(self, header: SegmentHeader) -> None:
        self.close()
        path = self.directory / segment_name(header.index)
        self._file = open(path, "xb", buffering=0)
        self._size = 0
        self.write(header.to_bytes())

    def write(self, data: bytes) -> None:
        """Store all of ``data`` or none of it. A write the host refuses part way (disk full,
        a file size limit) is cut back, so a partial frame is never followed by whole ones;
        the :class:`OSError` is raised."""
        f = self._file
        if f is None:
            raise UsageError("segment store is closed", code="log_closed")
        done = f.write(data) or 0  # an OSError here: nothing was written
        if done == len(data):  # the usual case: one write(2) took it all
            self._size += done
            return
        view = memoryview(data)
        try:
            while done < len(data):
                n = f.write(view[done:])
                if not n:
                    raise OSError(errno.ENOSPC, "a log segment write made no progress")
                done += n
        except OSError:
            if done:
                os.ftruncate(f.fileno(), self._size)
                f.seek(self._size)
            raise
        self._size += done

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            if self._durable:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def drop(self) -> None:
        """Close this process's descriptor without writing or syncing (a forked child's copy;
        the file is its parent's)."""
        if self._file is not None:
            self._file.close()  # unbuffered: nothing of the parent's is written
            self._file = None


# Writers alive in this process: a forked child must never encrypt under its parent's stream.
_LIVE: weakref.WeakSet[LogWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for writer in list(_LIVE):
        writer._abandon()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class LogWriter:
    """Encrypts records under the current epoch key and appends them to the signed Merkle log.

    A writer belongs to the process that made it. In a child made by ``os.fork()`` (pre-fork
    servers, ``multiprocessing``) it is :attr:`forked`: its copy of the keys is erased and
    :meth:`append` refuses (``log_forked``), since the child would encrypt other records under
    its parent's key and nonces (the workload log starts the child's own run instead).
    """

    def __init__(
        self,
        store: SegmentStore,
        *,
        log_id: str,
        profile: str,
        signing_key: SigningKey,
        log_secret: bytes | bytearray | None = None,
        records_per_head: int = 1024,
        records_per_epoch: int = 4096,
        epoch_seconds: float | None = 300.0,
        records_per_segment: int = 65536,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        run_start: RunStart | None = None,
    ) -> None:
        if min(records_per_head, records_per_epoch, records_per_segment) < 1:
            raise UsageError("log intervals must be positive", code="log_config")
        if run_start is not None and (run_start.log_id, run_start.profile) != (log_id, profile):
            raise UsageError("the run start names another log", code="log_config")
        self.log_id, self.profile = log_id, profile
        self._log_id_b, self._profile_b = log_id.encode(), profile.encode()
        self._key = signing_key
        self._store = store
        secret = bytearray(os.urandom(KEY_SIZE)) if log_secret is None else bytearray(log_secret)
        self._ratchet = KeyRatchet(secret, context=log_context(log_id, profile))
        wipe(secret)
        self._aead = AESGCM(self._ratchet.record_key)
        self._salt = os.urandom(4)
        # record_aad(log_id, profile, epoch, index) == prefix || u32 epoch || u64 index
        self._aad_prefix = record_aad(self._log_id_b, self._profile_b, 0, 0)[:-12]
        self._range = CompactRange()
        self._per_head, self._per_epoch = records_per_head, records_per_epoch
        self._per_segment, self._epoch_seconds = records_per_segment, epoch_seconds
        self._clock, self._monotonic = clock, monotonic
        self._epoch_started = monotonic()
        self._in_epoch = 0
        self._segment = 0
        self._in_segment = 0
        self._since_head = 0
        self._closed = False
        self._forked = False
        self.last_head: SignedTreeHead | None = None
        _LIVE.add(self)
        store.start(SegmentHeader(0, 0, log_id, profile))
        if run_start is not None:
            body = run_start.to_bytes()
            store.write(FRAME_PREFIX.pack(FRAME_RUN, len(body)) + body)

    @property
    def signing_public_key(self) -> VerifyingKey:
        return self._key.public_key()

    @property
    def size(self) -> int:
        return self._range.size

    @property
    def epoch(self) -> int:
        return self._ratchet.epoch

    @property
    def forked(self) -> bool:
        """True in a child process forked after this writer was made (see the class doc)."""
        return self._forked

    def _abandon(self) -> None:
        """In a forked child: erase this copy of the keys, drop the file, refuse to write."""
        self._forked = self._closed = True
        self._ratchet.erase()
        self._store.drop()

    def chain_key(self) -> tuple[int, bytes]:
        """The current epoch and its chain key (for sealing to the tenant; erase after use)."""
        return self._ratchet.epoch, self._ratchet.chain_key()

    def rotate_epoch(self) -> None:
        """Advance the key ratchet now; the previous epoch's keys are erased."""
        self._ratchet.advance()
        self._aead = AESGCM(self._ratchet.record_key)
        self._salt = os.urandom(4)
        self._epoch_started = self._monotonic()
        self._in_epoch = 0

    def _epoch_expired(self) -> bool:
        return (
            self._epoch_seconds is not None
            and self._monotonic() - self._epoch_started >= self._epoch_seconds
        )

    def tick(self) -> None:
        """Timer work (the workload log calls it about once a second): end an epoch whose time
        is up even when no record comes, so an idle log's key does not outlive its epoch; and
        sign a head over (and fsync) records appended since the last one, so a record is
        unsigned or not durable for one timer period at most."""
        if self._closed:
            return
        if self._epoch_expired():
            self.rotate_epoch()
        if self._since_head:
            self.emit_head()

    def append(self, plaintext: bytes) -> int:
        """Encrypt and store one record; returns its leaf index.

        The 12-byte nonce is a random 4-byte salt drawn per epoch followed by the 8-byte leaf
        index: unique under each epoch key by construction (the index never repeats), and
        stored in the record header as the format says.
        """
        if self._closed:
            if self._forked:
                raise UsageError("this log belongs to the parent process", code="log_forked")
            raise UsageError("log is closed", code="log_closed")
        index = self._range.size
        # an epoch ends after records_per_epoch records or epoch_seconds (monotonic clock: a
        # wall-clock step neither stalls nor rushes it), whichever comes first
        if self._in_epoch >= self._per_epoch or self._epoch_expired():
            self.rotate_epoch()
        if self._in_segment >= self._per_segment:
            self._rotate_segment()
        header = _HEADER_NONCE.pack(self._ratchet.epoch, index, self._salt, index)
        body = header + self._aead.encrypt(header[12:], plaintext, self._aad_prefix + header[:12])
        try:
            self._store.write(FRAME_PREFIX.pack(FRAME_RECORD, len(body)) + body)
        except OSError:
            # not stored, so not in the tree, and the index is free again; but this key and
            # nonce encrypted a record the host may have seen part of: never use them again
            self.rotate_epoch()
            raise
        self._range.append(hashlib.sha256(b"\x00" + body).digest())
        self._in_segment += 1
        self._in_epoch += 1
        self._since_head += 1
        if self._since_head >= self._per_head:
            self.emit_head()
        return index

    def emit_head(self, *, final: bool = False) -> SignedTreeHead:
        """Sign and store a tree head over every record so far, and flush the segment."""
        head = SignedTreeHead.sign(
            self._key,
            log_id=self.log_id,
            profile=self.profile,
            tree_size=self._range.size,
            root_hash=self._range.root(),
            timestamp_ms=int(self._clock() * 1000),
            epoch=self._ratchet.epoch,
            segment=self._segment,
            final=final,
        )
        body = head.to_bytes()
        self._store.write(struct.pack(">BI", FRAME_HEAD, len(body)) + body)
        self._store.flush()
        self._since_head = 0
        self.last_head = head
        return head

    def flush(self) -> SignedTreeHead | None:
        """Sign a head if records were appended since the last one."""
        if self._closed:
            return self.last_head
        if self._since_head or self.last_head is None:
            return self.emit_head()
        self._store.flush()
        return self.last_head

    def close(self) -> SignedTreeHead | None:
        """Write the final head, close the segment and erase the keys (a forked writer: the
        parent's last head this child saw, and nothing written)."""
        if self._forked or (self._closed and self.last_head is not None):
            return self.last_head
        head = self.emit_head(final=True)
        self._closed = True
        self._store.close()
        self._ratchet.erase()
        return head

    def _rotate_segment(self) -> None:
        if self._since_head or self.last_head is None or self.last_head.segment != self._segment:
            self.emit_head()
        self._segment += 1
        self._in_segment = 0
        self._store.start(SegmentHeader(self._segment, self._range.size, self.log_id, self.profile))
