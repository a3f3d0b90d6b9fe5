"""The SDK's entry point: one confidential log per workload (``open_workload_log``)."""

from __future__ import annotations

import logging
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from veritee.errors import UsageError
from veritee.logs.catalogue import public_message
from veritee.logs.handler import ConfidentialLogHandler
from veritee.logs.ratchet import wipe
from veritee.logs.segment import SignedTreeHead, SigningKey, key_id
from veritee.logs.tenant import TenantPublicKey, seal_log_key
from veritee.logs.writer import LogWriter, SegmentStore
from veritee.profiles import Profile

__all__ = ["PENDING_FILE", "WorkloadLog", "open_workload_log"]

PENDING_FILE = "pending.sealed"


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
        writer = LogWriter(
            SegmentStore(self.directory, durable=self._durable),
            log_id=self.log_id,
            profile=self.profile.value,
            signing_key=signing_key,
            records_per_head=self._per_head,
            records_per_epoch=self._per_epoch,
            epoch_seconds=self._epoch_seconds,
        )
        if self._tenant is not None:
            self._key_blob = self._seal_current(writer, self._tenant)
        replayed = self.handler.attach_control_plane(writer)
        self._start_timer()
        return replayed

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
        writer = self.handler.writer
        if self._timer_stop is not None:
            self._timer_stop.set()
        for lg in self._loggers:
            lg.removeHandler(self.handler)
        self._loggers.clear()
        self.handler.close()
        return writer.last_head if writer is not None else None

    def _seal_current(self, writer: LogWriter, tenant: TenantPublicKey) -> bytes:
        epoch, chain = writer.chain_key()
        try:
            return seal_log_key(chain, epoch=epoch, log_id=self.log_id, profile=self.profile.value,
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
    plain_stream: TextIO | None = None,
    host_stream: TextIO | None = None,
    records_per_head: int = 1024,
    records_per_epoch: int = 4096,
    epoch_seconds: float | None = 300.0,
    durable: bool = True,
    flush_seconds: float | None = 1.0,
) -> WorkloadLog:
    """Open the workload's log in ``directory`` (a host folder, one per log).

    ``signing_key`` is the workload's attested / admission-certified key; pass ``None`` to start
    before the control plane is up: records are then held sealed (``seal``; persisted in
    ``directory/pending.sealed`` when ``seal`` is given) until :meth:`WorkloadLog.attach_control_plane`.

    An epoch (one log key) ends after ``records_per_epoch`` records or ``epoch_seconds``,
    whichever comes first; a timer thread running every ``flush_seconds`` (``None``: no thread)
    ends it on time even when nothing is logged.
    """
    if not log_id or len(log_id.encode()) > 255:
        raise UsageError("log_id must be 1..255 bytes", code="log_id")
    directory = Path(directory)
    pending = None
    if profile.encrypts_logs and signing_key is None and seal is not None:
        directory.mkdir(parents=True, exist_ok=True)
        pending = directory / PENDING_FILE
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
    if signing_key is not None:
        log.attach_control_plane(signing_key)
    return log
