"""The SDK's entry point: one confidential log per workload (``open_workload_log``).

A workload's log lives in one host folder and is written in *runs* (:mod:`.runs`): every
process that attaches the control plane (a start, a restart after a stop, a crash or kill -9)
begins the next run with a fresh log secret, and names in the run's signed first frame what it
found of the run before and how many held records it replays. Records held before the control
plane was up are sealed to the platform on the host; a later start of the same workload
recovers them and replays them into its run, so a crash before certification loses nothing but
a record cut mid-write (which is counted).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TextIO

from cryptography import x509

from veritee.binding import spki_der
from veritee.errors import MalformedError, SealingError, StorageError, UsageError
from veritee.logs.catalogue import public_message
from veritee.logs.handler import (
    PENDING_MAGIC,
    ConfidentialLogHandler,
    lock_pending_file,
    recover_pending,
)
from veritee.logs.ratchet import wipe
from veritee.logs.runs import (
    ADMISSION_FILE,
    KEY_FILE,
    RunFolder,
    allocate_run,
    observe,
    run_dir_name,
)
from veritee.logs.segment import (
    RunCause,
    RunStart,
    RunState,
    SignedTreeHead,
    SigningKey,
    key_id,
    run_log_id,
)
from veritee.logs.tenant import TenantPublicKey, seal_log_key
from veritee.logs.writer import LogWriter, SegmentStore
from veritee.profiles import Profile

__all__ = ["PENDING_FILE", "PENDING_GLOB", "WorkloadLog", "open_workload_log"]

PENDING_FILE = "pending.sealed"  # the name version 1 used; still recovered
PENDING_GLOB = "pending*.sealed"
_MAX_LOG_ID = 255 - len("/run-000000")


class WorkloadLog:
    """A workload's log: a :class:`logging.Handler`, its signed Merkle log and the tenant's key.

    In staging/production the log secret is sealed to the tenant's public key as soon as both a
    signing key and a tenant key are known (before any epoch advances), so the tenant can read the
    whole log; a tenant key given later gets the *current* epoch's key only (forward secrecy).
    """

    def __init__(
        self,
        *,
        profile: Profile,
        directory: Path,
        log_id: str,
        tenant_public_key: TenantPublicKey | None,
        handler: ConfidentialLogHandler,
        host_stream: TextIO | None,
        records_per_head: int = 1024,
        records_per_epoch: int = 4096,
        epoch_seconds: float | None = 300.0,
        durable: bool = True,
        flush_seconds: float | None = 1.0,
    ) -> None:
        self.profile = profile
        self.directory = Path(directory)
        self.log_id = log_id
        self.handler = handler
        self._tenant = tenant_public_key
        self._per_head, self._per_epoch = records_per_head, records_per_epoch
        self._epoch_seconds, self._durable = epoch_seconds, durable
        self._host = host_stream
        self._key_blob: bytes | None = None
        self._signing_key: SigningKey | None = None
        self._loggers: list[logging.Logger] = []
        self._flush_seconds = flush_seconds
        self._timer_stop: threading.Event | None = None
        self._run: RunFolder | None = None
        self.run_start: RunStart | None = None
        # held records recovered from earlier starts: the files go once the records are safe
        self._recovered_files: list[tuple[Path, BinaryIO]] = []
        self._recovered = 0
        self._lost = 0
        self._certificate: bytes | None = None
        handler.renew = self._renew_after_fork

    # -- control plane -------------------------------------------------------------------------

    def attach_control_plane(
        self, signing_key: SigningKey, tenant_public_key: TenantPublicKey | None = None
    ) -> int:
        """Start the signed log with the workload's attested key; replay buffered records.

        Returns the number of records that were buffered before the control plane was up.
        """
        if self._signing_key is not None:
            raise UsageError("the log already has its signing key", code="log_attached")
        if tenant_public_key is not None:
            self._tenant = tenant_public_key
        self._signing_key = signing_key
        if not self.profile.encrypts_logs:
            return 0
        with self.handler.lock:  # type: ignore[union-attr]  # no record slips between the steps
            held = self.handler.pending
            writer = self._start_run(signing_key, RunCause.START, replayed=held)
            replayed = self.handler.attach_control_plane(writer)
            self._forget_recovered()
        self._start_timer()
        return replayed

    def _renew_after_fork(self) -> LogWriter:
        """In a child forked from an attached process: begin the child's own run (a fresh log
        secret; its parent's keys and nonces are never used here). Called by the handler at
        the child's first record, head or key export."""
        parent = self.handler._writer  # the parent's, abandoned at the fork
        assert parent is not None and self._signing_key is not None
        parent_run = self._run.run if self._run is not None else 0
        self._timer_stop = None  # the parent's timer thread does not exist here
        self._recovered = self._lost = 0  # the parent's run start counted those
        writer = self._start_run(self._signing_key, RunCause.FORK, replayed=0, parent=parent_run,
                                 parent_size=parent.size)  # fmt: skip
        self._start_timer()
        return writer

    def _start_run(
        self,
        signing_key: SigningKey,
        cause: RunCause,
        *,
        replayed: int,
        parent: int = 0,
        parent_size: int = 0,
    ) -> LogWriter:
        """Allocate the next run folder, sign its start and open its writer."""
        run = allocate_run(self.directory)
        previous = self._previous(run.run)
        if cause is RunCause.START and previous is not None:
            cause = RunCause.RESTART
        log_id = run_log_id(self.log_id, run.run)
        start = RunStart.sign(
            signing_key, log_id=log_id, profile=self.profile.value, run=run.run,
            started_ms=int(time.time() * 1000), cause=cause, parent_run=parent,
            parent_size=parent_size, previous=previous, replayed=replayed,
            recovered=min(self._recovered, replayed), lost=self._lost + self.handler.dropped,
        )  # fmt: skip
        writer = LogWriter(
            SegmentStore(run.path, durable=self._durable),
            log_id=log_id,
            profile=self.profile.value,
            signing_key=signing_key,
            records_per_head=self._per_head,
            records_per_epoch=self._per_epoch,
            epoch_seconds=self._epoch_seconds,
            run_start=start,
        )
        self._run, self.run_start = run, start
        if self._certificate is not None:
            (run.path / ADMISSION_FILE).write_bytes(self._certificate)
        if self._tenant is not None:
            self._key_blob = self._seal_current(writer, self._tenant)
            (run.path / KEY_FILE).write_bytes(self._key_blob)
        return writer

    def set_certificate(self, pem: bytes) -> None:
        """The admission certificate of the log's signing key: kept beside every run this
        process writes (``admission.pem``, a forked child's too) for the tenant. A certificate
        of another key (a renewal that rotated the key) does not certify this log's heads and
        is not put there."""
        cert = x509.load_pem_x509_certificate(pem)
        key = self._signing_key
        if key is None or spki_der(cert.public_key()) != spki_der(key.public_key()):
            return
        self._certificate = pem
        if self._run is not None:
            (self._run.path / ADMISSION_FILE).write_bytes(pem)

    def _previous(self, run: int) -> RunState | None:
        """What is stored of the run before ``run`` (for run 1: a version-1 log in the folder)."""
        if run > 1:
            folder = self.directory / run_dir_name(run - 1)
            if folder.is_dir():
                return observe(folder, run_log_id(self.log_id, run - 1))
            return None
        if any(self.directory.glob("segment-*.vtlog")):
            return observe(self.directory, self.log_id)
        return None

    def _forget_recovered(self) -> None:
        for path, lock in self._recovered_files:
            path.unlink(missing_ok=True)
            lock.close()
        self._recovered_files.clear()

    @property
    def run(self) -> int | None:
        """This process's run number (None before the control plane is attached)."""
        return self._run.run if self._run is not None else None

    @property
    def run_directory(self) -> Path | None:
        """This process's run folder: what :func:`veritee.logs.verify_log` reads."""
        return self._run.path if self._run is not None else None

    def _start_timer(self) -> None:
        """A daemon thread that calls :meth:`ConfidentialLogHandler.tick` every
        ``flush_seconds``: epochs end on time even when the workload logs nothing."""
        if self._flush_seconds is None or self._timer_stop is not None:
            return
        stop, interval, handler = threading.Event(), self._flush_seconds, self.handler

        def run() -> None:
            while not stop.wait(interval):
                handler.tick()

        self._timer_stop = stop
        threading.Thread(target=run, name="veritee-log-timer", daemon=True).start()

    @property
    def attached(self) -> bool:
        return self._signing_key is not None

    # -- the SDK surface -----------------------------------------------------------------------

    def logger(self, name: str) -> logging.Logger:
        """A logger that writes only to this log (does not propagate to the root logger)."""
        lg = logging.getLogger(name)
        if self.handler not in lg.handlers:
            lg.addHandler(self.handler)
            self._loggers.append(lg)
        lg.propagate = False
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.DEBUG if self.profile.allows_debug else logging.INFO)
        return lg

    def export_key_for_tenant(self, tenant_public_key: TenantPublicKey | None = None) -> bytes:
        """The log key sealed (HPKE) to the tenant. With a new tenant key: the current epoch's."""
        writer = self.handler.writer
        if writer is None:
            raise UsageError("no encrypted log yet (profile or control plane)", code="log_no_key")
        if tenant_public_key is not None:
            return self._seal_current(writer, tenant_public_key)
        if self._key_blob is None:
            raise UsageError("no tenant key was given", code="log_no_tenant")
        return self._key_blob

    def tree_head(self) -> SignedTreeHead:
        """Sign and return a tree head over every record so far (give it to the tenant)."""
        writer = self.handler.writer
        if writer is None:
            raise UsageError("no encrypted log yet (profile or control plane)", code="log_no_key")
        with self.handler.lock:  # type: ignore[union-attr]
            head = writer.flush()
        assert head is not None
        return head

    def install_excepthook(self) -> None:
        """Uncaught exceptions go into the log; the host's stderr gets the catalogue code only."""
        lg = self.logger("veritee.uncaught")

        def hook(
            etype: type[BaseException],
            value: BaseException,
            tb: types.TracebackType | None,
        ) -> None:
            lg.error("uncaught exception", exc_info=(etype, value, tb))
            # with a host stream the handler has already written the catalogue notice
            if not self.profile.free_form_to_host and self._host is None:
                sys.stderr.write(f"veritee: {public_message(value, self.profile)}\n")

        def thread_hook(args: threading.ExceptHookArgs) -> None:
            if args.exc_value is not None:
                hook(args.exc_type, args.exc_value, args.exc_traceback)

        sys.excepthook = hook
        threading.excepthook = thread_hook

    def close(self) -> SignedTreeHead | None:
        """Write the final tree head, close the segment, erase the keys."""
        if self._timer_stop is not None:
            self._timer_stop.set()
        for lg in self._loggers:
            lg.removeHandler(self.handler)
        self._loggers.clear()
        self.handler.close()
        return self.handler.last_head

    def _seal_current(self, writer: LogWriter, tenant: TenantPublicKey) -> bytes:
        epoch, chain = writer.chain_key()
        try:
            return seal_log_key(chain, epoch=epoch, log_id=writer.log_id, profile=writer.profile,
                                signer_key_id=key_id(writer.signing_public_key),
                                tenant_public_key=tenant)  # fmt: skip
        finally:
            wipe(chain)


def open_workload_log(
    *,
    profile: Profile,
    directory: Path,
    signing_key: SigningKey | None,
    tenant_public_key: TenantPublicKey | None,
    seal: Callable[[bytes], bytes] | None,
    log_id: str,
    unseal: Callable[[bytes], bytes] | None = None,
    plain_stream: TextIO | None = None,
    host_stream: TextIO | None = None,
    records_per_head: int = 1024,
    records_per_epoch: int = 4096,
    epoch_seconds: float | None = 300.0,
    durable: bool = True,
    flush_seconds: float | None = 1.0,
) -> WorkloadLog:
    """Open the workload's log in ``directory`` (a host folder, one per workload log id).

    The folder may hold earlier runs: the control plane, when attached, begins the next run.
    ``signing_key`` is the workload's attested / admission-certified key; pass ``None`` to start
    before the control plane is up: records are then held sealed (``seal``; persisted in
    ``directory/pending-<hex>.sealed`` when ``seal`` is given) until
    :meth:`WorkloadLog.attach_control_plane`. With ``unseal``, records an earlier start of
    the same workload held and never delivered (it crashed first) are recovered and replayed
    first; a buffer that does not unseal is renamed ``*.unreadable`` and its records counted
    as lost in the run start.

    An epoch (one log key) ends after ``records_per_epoch`` records or ``epoch_seconds``,
    whichever comes first; a timer thread running every ``flush_seconds`` (``None``: no thread)
    ends it on time even when nothing is logged.
    """
    if not log_id or len(log_id.encode()) > _MAX_LOG_ID:
        raise UsageError(f"log_id must be 1..{_MAX_LOG_ID} bytes", code="log_id")
    directory = Path(directory)
    pending = None
    if profile.encrypts_logs and signing_key is None and seal is not None:
        directory.mkdir(parents=True, exist_ok=True)
        pending = directory / f"pending-{os.urandom(8).hex()}.sealed"
    handler = ConfidentialLogHandler(profile, plain_stream=plain_stream, host_stream=host_stream,
                                     seal=seal, pending_path=pending)  # fmt: skip
    log = WorkloadLog(
        profile=profile,
        directory=directory,
        log_id=log_id,
        tenant_public_key=tenant_public_key,
        handler=handler,
        host_stream=host_stream,
        records_per_head=records_per_head,
        records_per_epoch=records_per_epoch,
        epoch_seconds=epoch_seconds,
        durable=durable,
        flush_seconds=flush_seconds,
    )
    if profile.encrypts_logs and unseal is not None:
        _recover_held(log, unseal, exclude=pending)
    if signing_key is not None:
        log.attach_control_plane(signing_key)
    return log


def _recover_held(log: WorkloadLog, unseal: Callable[[bytes], bytes], exclude: Path | None) -> None:
    """Move records held by earlier starts into this start's pending buffer (see the docstring
    of :func:`open_workload_log`)."""
    if not log.directory.is_dir():
        return
    records: list[bytes] = []
    for path in sorted(log.directory.glob(PENDING_GLOB)):
        if path == exclude:
            continue
        try:
            f = open(path, "rb")  # kept open (locked) until the file goes
        except OSError:
            continue
        if not lock_pending_file(f):  # a live process's own buffer: not ours to take
            f.close()
            continue
        try:
            got, cut = recover_pending(path, unseal)
        except (MalformedError, SealingError):  # never readable here: set aside, counted
            log._lost += _framed_items(path)
            with contextlib.suppress(OSError):
                path.rename(path.with_name(path.name + ".unreadable"))
            f.close()
            continue
        except (StorageError, OSError):  # not now (its key out of reach): a later start's
            f.close()
            continue
        records += got
        log._lost += cut
        log._recovered_files.append((path, f))
    if not records and not log._recovered_files:
        return
    log._recovered = len(records)
    log.handler.hold(records)
    if log.handler.pending_path is not None:  # now durable in this start's own buffer
        log._forget_recovered()


def _framed_items(path: Path) -> int:
    """How many records an unreadable pending file holds, by its length prefixes (at least 1)."""
    try:
        data = path.read_bytes()
    except OSError:
        return 1
    if data[:8] != PENDING_MAGIC or len(data) < 12:
        return 1
    pos, n = 12 + struct.unpack_from(">I", data, 8)[0], 0
    while pos + 4 <= len(data):
        pos += 4 + struct.unpack_from(">I", data, pos)[0]
        n += 1
    return max(n, 1)
