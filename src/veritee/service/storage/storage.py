"""The service's database: engine setup, migrations, readiness, and transactions.

SQLite (a file; the embedded default) and PostgreSQL (for several replicas) are supported:

* ``sqlite:///path/to/db`` - each connection gets ``journal_mode=WAL``, ``synchronous=FULL``,
  a busy timeout and ``foreign_keys=ON``. FULL makes every commit durable before it returns (the
  WAL is synced at each commit): an acknowledged decision, its audit record and its used nonce
  survive a power loss (NORMAL may drop the last commits; issue 12 item 13). Write transactions start with ``BEGIN IMMEDIATE`` so
  concurrent writers (threads or processes) wait for each other instead of failing half-way;
  read-only transactions (``transaction(readonly=True)``) start with a plain ``BEGIN``.
  The service's handlers write through :meth:`Storage.run` (group commit): one thread per
  process runs the calls waiting in one transaction, so one sync of the WAL acknowledges them
  all and no commit holds the event loop.
* ``postgresql://...`` (mapped to the psycopg 3 driver) or ``postgresql+psycopg://...``.

Every failure of the database is raised as :class:`veritee.errors.StorageError` with a short
message naming the driver's error class; statements and their parameters are never included.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from veritee.errors import StorageError, UsageError

from .audit import AuditReport
from .nonces import NonceMinter
from .tx import Tx

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only where migrations are run or checked: it is slow to import.

__all__ = ["MIGRATIONS_DIR", "Storage", "default_sqlite_url", "verify_audit_chain"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_FILENAME = "veritee.db"
_MIGRATE_LOCK = int.from_bytes(b"veritem", "big")
_READONLY = "veritee_readonly"
#: Seconds the readiness probe (:meth:`Storage.check`) waits for the database.
READINESS_TIMEOUT = 2.0
_PROBE_PURPOSE = "readiness"
#: Marks (in the DBAPI connection's ``info``) the connection the group-commit thread keeps: its
#: transaction is begun on the driver connection, so SQLAlchemy's ``begin`` must not begin one.
_GROUP_HELD = "veritee_group_commit"
#: Every SQLite connection's ``synchronous`` setting: FULL, so a commit is on disk when it returns.
SQLITE_SYNCHRONOUS = "FULL"
#: The most calls :meth:`Storage.submit` commits together (one SQLite transaction, one sync).
GROUP_COMMIT_MAX = 64
#: The longest a group waits for the calls of other requests in progress (see _GroupCommit).
GROUP_COMMIT_WAIT = 0.002

T = TypeVar("T")


def default_sqlite_url(data_dir: Path) -> str:
    """The URL of the embedded database in ``data_dir`` (``veritee.db``)."""
    return f"sqlite:///{(Path(data_dir) / SQLITE_FILENAME).resolve()}"


def _is_driver_error(exc: BaseException) -> bool:
    """A psycopg error raised by a hot path on the driver connection (psycopg imported lazily)."""
    return type(exc).__module__.startswith("psycopg")


def _is_driver_integrity(exc: BaseException) -> bool:
    return _is_driver_error(exc) and any(c.__name__ == "IntegrityError" for c in type(exc).__mro__)


def _storage_error(exc: BaseException) -> StorageError:
    """A StorageError describing ``exc`` without its SQL text or bound parameters."""
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    first_line = (str(source).strip().splitlines() or [""])[0][:200]
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        code, what = "storage_unavailable", "database connection lost"
    elif isinstance(exc, IntegrityError | sqlite3.IntegrityError) or _is_driver_integrity(exc):
        code, what = "storage_conflict", "database refused the change"
    elif isinstance(exc, DBAPIError | sqlite3.Error) or _is_driver_error(exc):
        code, what = "storage_unavailable", "database error"
    else:
        code, what = "storage_unavailable", "database access failed"
    return StorageError(f"{what} ({type(source).__name__}): {first_line}", code=code)


class Storage:
    """One database, shared by the threads of one process (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        busy_timeout: float = 10.0,
        nonce_key: bytes | None = None,
    ) -> None:
        """``nonce_key``: the key of the nonces (:mod:`.nonces`); every process and replica
        sharing this database must use the same one (the service derives it from the domain).
        Without one, a random key of this Storage alone is used."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise UsageError("database URL does not parse") from None
        backend = parsed.get_backend_name()
        if backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            if parsed.drivername != "postgresql+psycopg":
                raise UsageError("PostgreSQL is supported through the psycopg (3) driver only")
        elif backend == "sqlite":
            if (
                not parsed.database
                or parsed.database == ":memory:"
                or (parsed.database.startswith("file:") and "memory" in parsed.database)
            ):
                raise UsageError("SQLite storage needs a file (sqlite:///path/to/db)")
        else:
            raise UsageError(f"unsupported database backend {backend!r} (sqlite or postgresql)")
        self.dialect = backend
        self._driver_errors: tuple[type[Exception], ...] = (sqlite3.Error,)
        if backend == "postgresql":
            import psycopg

            self._driver_errors = (sqlite3.Error, psycopg.Error)
        self._nonces = NonceMinter(nonce_key if nonce_key is not None else secrets.token_bytes(32))
        # SQLite hot paths on the driver connection; False only to measure the difference.
        self._fast_path = True
        self._closed = False
        self._head_revision: str | None = None
        self._head_lock = threading.Lock()
        self._probe: _Probe | None = None
        self._probe_lock = threading.Lock()
        self._busy_timeout = busy_timeout
        # SQLite admits one writer at a time anyway; threads of this process queue on a Python
        # lock instead of on SQLite's busy handler, which sleeps in steps of milliseconds.
        self._write_lock: threading.Lock | None = threading.Lock() if backend == "sqlite" else None
        self._lock_fd: int | None = None
        if backend == "sqlite" and parsed.database and not parsed.database.startswith("file:"):
            try:
                self._lock_fd = os.open(
                    parsed.database + ".writelock", os.O_RDWR | os.O_CREAT, 0o600
                )
            except OSError:
                self._lock_fd = None  # e.g. a read-only folder: SQLite's own locking still holds
        kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": pool_size}
        if backend == "sqlite":
            kwargs["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
        else:
            kwargs["connect_args"] = {"connect_timeout": max(1, int(busy_timeout))}
            # No pre-ping (it costs a round trip per transaction): a connection found dead fails
            # its transaction with StorageError and SQLAlchemy then replaces the whole pool.
            kwargs["pool_recycle"] = 1800
        try:
            self._engine: Engine = create_engine(parsed, **kwargs)
        except (SQLAlchemyError, ImportError) as exc:
            raise StorageError(f"cannot set up the database engine: {type(exc).__name__}") from None
        if backend == "sqlite":
            _install_sqlite_hooks(self._engine, busy_timeout)
        self._ro_engine = self._engine.execution_options(**{_READONLY: True})
        # SQLite: calls of submit() committed together (see _GroupCommit)
        self._group: _GroupCommit | None = _GroupCommit(self) if backend == "sqlite" else None

    def __repr__(self) -> str:
        return f"Storage({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- transactions --------------------------------------------------------------------------

    def transaction(self, *, readonly: bool = False) -> AbstractContextManager[Tx]:
        """One database transaction: committed if the block succeeds, rolled back otherwise.

        Errors of the database become StorageError; other exceptions (NonceError, ...) pass
        through unchanged after the rollback. ``readonly`` only relaxes SQLite's locking (it
        is not enforced). Inside a call of :meth:`submit`, the block is a part of the group's
        transaction (:meth:`_Group.part`), returned as it is (one context manager fewer per
        decision).
        """
        if self._closed:
            raise StorageError("storage is closed")
        group = self._group.current() if self._group is not None else None
        if group is not None:
            return group.part()
        return self._own_transaction(readonly)

    @contextmanager
    def _own_transaction(self, readonly: bool) -> Iterator[Tx]:
        """:meth:`transaction` outside a group: this process's and this database's own."""
        if readonly:
            with self._transaction(self._ro_engine) as tx:
                yield tx
            return
        with self._writer(), self._transaction(self._engine) as tx:
            yield tx

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """SQLite: this process's writer lock, then the one between processes (both bounded by
        the busy timeout: a stuck writer gives StorageError, not a hang). PostgreSQL: nothing."""
        lock = self._write_lock
        if lock is None:
            yield
            return
        if not lock.acquire(timeout=self._busy_timeout):
            raise StorageError("database busy: another writer of this process holds it too long")
        file_locked = False
        try:
            if self._lock_fd is not None:
                # Writers of other processes (uvicorn workers, CLI) queue in the kernel and wake
                # as soon as the lock is released, instead of in SQLite's sleeping busy handler.
                file_locked = self._flock_writer()
            yield
        finally:
            if file_locked and self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            lock.release()

    @contextmanager
    def _transaction(self, engine: Engine) -> Iterator[Tx]:
        """One transaction on ``engine`` (the caller holds the locks it needs)."""
        try:
            with engine.begin() as conn:
                tx = Tx(conn, self.dialect, self._nonces, fast_path=self._fast_path)
                try:
                    yield tx
                finally:
                    tx._end()
        except SQLAlchemyError as exc:
            raise _storage_error(exc) from None
        except self._driver_errors as exc:  # from the hot paths run on the driver connection
            raise _storage_error(exc) from None

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` (which opens its transactions with :meth:`transaction`) so that its writes
        are committed together with those of other calls (group commit), and return a future of
        its result, set only once its writes are committed (durable, with ``synchronous=FULL``).

        SQLite: one thread of this process runs the calls waiting, up to
        :data:`GROUP_COMMIT_MAX`, in one transaction; each :meth:`transaction` block inside a
        call is a savepoint of it, rolled back alone when its block raises, exactly as a
        transaction of its own would be. One sync of the WAL then acknowledges them all, and
        the event loop never waits for it. If the shared commit fails, every call of the group
        gets the StorageError (none of their writes happened). PostgreSQL: ``fn`` runs in a
        thread of its own with its own transactions (the server groups commits itself).
        """
        if self._closed:
            raise StorageError("storage is closed")
        if self._group is None:
            future: concurrent.futures.Future[T] = concurrent.futures.Future()
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to the caller through the future
                future.set_exception(exc)
            return future
        return self._group.submit(fn)

    async def run(self, fn: Callable[[], T]) -> T:
        """:meth:`submit` from an event loop: ``fn``'s result once its writes are committed.
        SQLite: the outcomes of a group reach the loop together, in one call."""
        if self._closed:
            raise StorageError("storage is closed")
        if self._group is None:
            return fn()
        return await self._group.submit_async(fn)

    def set_busy_hint(self, busy: Callable[[], int]) -> None:
        """``busy()``: how many requests this process is answering now (the service's count).
        A group of :meth:`submit` calls then waits up to :data:`GROUP_COMMIT_WAIT` for the
        calls of the others still in progress, so that one sync of the WAL acknowledges more
        of them (each sync costs this process CPU time as well as time)."""
        if self._group is not None:
            self._group.busy = busy

    def set_nonce_key(self, key: bytes) -> None:
        """Use ``key`` for nonces from now on (nonces issued under the old key stop verifying)."""
        self._nonces = NonceMinter(key)

    def issue_nonce(self, *, now: datetime, ttl: timedelta, purpose: str = "attest") -> bytes:
        """A fresh nonce; no transaction is needed, since nothing is written until it is used."""
        return self._nonces.issue(now=now, ttl=ttl, purpose=purpose)

    def _flock_writer(self) -> bool:
        """Take the cross-process writer lock within the busy timeout, else StorageError.

        Polls a non-blocking flock in steps of 0.1 ms growing to 0.5 ms: a waiter wakes within
        half a millisecond of the release (SQLite's own busy handler sleeps up to 100 ms).
        """
        assert self._lock_fd is not None
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.0001
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StorageError(
                        "database busy: another process holds the write lock too long"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.0005)

    # -- schema --------------------------------------------------------------------------------

    def _alembic_config(self) -> Config:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        return cfg

    def head_revision(self) -> str:
        """The newest schema revision this code knows."""
        from alembic.script import ScriptDirectory

        with self._head_lock:
            if self._head_revision is None:
                head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
                if head is None:
                    raise StorageError("no schema migrations found")
                self._head_revision = head
            return self._head_revision

    def current_revision(self) -> str | None:
        """The schema revision of the database (None before the first migration)."""
        from alembic.runtime.migration import MigrationContext

        try:
            with self._ro_engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise _storage_error(exc) from None

    def migrate(self) -> None:
        """Bring the schema to the newest revision (safe to run again, and concurrently)."""
        if self._closed:
            raise StorageError("storage is closed")
        from alembic import command
        from alembic.util import CommandError

        cfg = self._alembic_config()
        try:
            with self._engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise _storage_error(exc) from None
        except CommandError as exc:
            raise StorageError(f"schema migration failed: {exc}") from None

    def check(self, *, now: datetime | None = None, timeout: float = READINESS_TIMEOUT) -> None:
        """Readiness: within ``timeout`` seconds, the database answers, its schema is at the
        newest revision, and it takes a write as a decision does (a nonce of purpose
        ``readiness``, spent and committed, ended at once and purged with the others).

        A database that refuses writes (read-only, disk full, corrupt) raises its StorageError;
        one that does not answer in time (a lock held, a server paused) raises StorageError
        ``storage_timeout``, and so does every check while that probe still waits: a stalled
        database holds one probe thread, never a caller.
        """
        if self._closed:
            raise StorageError("storage is closed")
        with self._probe_lock:
            probe = self._probe
            waiting = probe is not None and probe.is_alive()
            if not waiting:
                probe = self._probe = _Probe(self, now or datetime.now(UTC))
                probe.start()
        assert probe is not None
        if not waiting:
            probe.join(timeout)
        if probe.is_alive():
            raise StorageError(
                f"the database did not take a write within {timeout:g} s"
                + (" (an earlier readiness probe is still waiting)" if waiting else ""),
                code="storage_timeout",
            )
        if probe.error is not None:
            raise probe.error

    def _probe_write(self, now: datetime) -> None:
        """The readiness probe itself (in a :class:`_Probe` thread)."""
        self._check_schema()
        nonce = self.issue_nonce(now=now, ttl=timedelta(seconds=1), purpose=_PROBE_PURPOSE)
        with self.transaction() as tx:
            tx.consume_nonce(nonce, now=now, purpose=_PROBE_PURPOSE)

    def _check_schema(self) -> None:
        try:
            with self._ro_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = self.current_revision()
        except SQLAlchemyError as exc:
            raise _storage_error(exc) from None
        head = self.head_revision()
        if current != head:
            raise StorageError(
                f"database schema is at revision {current or 'none'}, expected {head}: "
                "run the migrations",
                code="storage_schema_outdated",
            )

    def close(self) -> None:
        """Close every pooled connection; the Storage cannot be used afterwards."""
        self._closed = True
        if self._group is not None:
            self._group.stop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._engine.dispose()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Group:
    """One group commit in progress: the SQLite connection of its transaction."""

    def __init__(self, conn: Connection, storage: Storage) -> None:
        self.conn = conn
        self.raw: Any = conn.connection.driver_connection
        self.storage = storage
        self.broken: StorageError | None = None
        self._savepoints = 0

    def part(self) -> AbstractContextManager[Tx]:
        """A block of the group's transaction: the group's first block runs without a savepoint
        (:meth:`_first_part`), every later one in a savepoint of its own (:meth:`_savepoint`)."""
        if self.broken is not None:
            raise self.broken
        self._savepoints += 1
        if self._savepoints == 1:
            return self._first_part()
        return self._savepoint(f"veritee_part_{self._savepoints}")

    def _tx(self) -> Tx:
        s = self.storage
        return Tx(self.conn, s.dialect, s._nonces, fast_path=s._fast_path, driver=self.raw)

    @contextmanager
    def _savepoint(self, name: str) -> Iterator[Tx]:
        """A savepoint of the group's transaction: released when the block succeeds, rolled back
        (only its own writes) when it raises; database errors become StorageError."""
        try:
            self.raw.execute(f"SAVEPOINT {name}")
            tx = self._tx()
            try:
                yield tx
            finally:
                tx._end()
            self.raw.execute(f"RELEASE {name}")
        except BaseException as exc:
            try:
                self.raw.execute(f"ROLLBACK TO {name}")
                self.raw.execute(f"RELEASE {name}")
            except (SQLAlchemyError, sqlite3.Error) as undo:
                # The transaction cannot be trusted any more: the whole group fails.
                self.broken = _storage_error(undo)
            if isinstance(exc, SQLAlchemyError | sqlite3.Error):
                raise _storage_error(exc) from None
            raise

    @contextmanager
    def _first_part(self) -> Iterator[Tx]:
        """The group's first block, which needs no savepoint: nothing was written before it in
        the group's transaction. When it raises, the transaction is rolled back and begun again
        (the writer locks are still held), which undoes its writes and only them."""
        try:
            tx = self._tx()
            try:
                yield tx
            finally:
                tx._end()
        except BaseException as exc:
            try:
                if self.conn.in_transaction():  # begun by a statement run through SQLAlchemy
                    self.conn.rollback()
                if self.raw.in_transaction:
                    self.raw.execute("ROLLBACK")
                self.raw.execute("BEGIN IMMEDIATE")
            except (SQLAlchemyError, sqlite3.Error) as undo:
                self.broken = _storage_error(undo)  # the whole group fails
            if isinstance(exc, SQLAlchemyError | sqlite3.Error):
                raise _storage_error(exc) from None
            raise


class _LoopFuture:
    """The outcome of a call of :meth:`_GroupCommit.submit_async`: held by the commit thread
    until its group is done, then set on ``future`` (of ``loop``) by :func:`_wake`."""

    __slots__ = ("future", "loop", "outcome")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.outcome: tuple[bool, Any] | None = None

    def set_running_or_notify_cancel(self) -> bool:
        return not self.future.cancelled()  # the caller gave up before its call ran: not run

    def done(self) -> bool:
        return self.outcome is not None

    def set_result(self, value: Any) -> None:
        self.outcome = (True, value)

    def set_exception(self, exc: BaseException | None) -> None:
        self.outcome = (False, exc)


_Call = tuple[Callable[[], Any], "concurrent.futures.Future[Any] | _LoopFuture"]


def _wake(calls: list[_Call]) -> None:
    """Hand the outcomes of a group's :class:`_LoopFuture` calls to their loops: one call into
    each loop for the whole group (instead of one per call)."""
    loops: dict[asyncio.AbstractEventLoop, list[_LoopFuture]] = {}
    for _, f in calls:
        if isinstance(f, _LoopFuture) and f.outcome is not None:
            loops.setdefault(f.loop, []).append(f)
    for loop, answered in loops.items():
        try:
            loop.call_soon_threadsafe(_deliver, answered)
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            pass


def _deliver(answered: list[_LoopFuture]) -> None:
    for f in answered:
        if f.future.done() or f.outcome is None:  # cancelled meanwhile: the caller is gone
            continue
        ok, value = f.outcome
        if ok:
            f.future.set_result(value)
        else:
            f.future.set_exception(value)


def _batch_scheduling() -> None:
    """Run the calling thread as ``SCHED_BATCH`` where the OS has it (Linux; no privilege needed).

    The commit thread is woken by each request that hands it a call. Under the default policy the
    wake-up preempts whatever runs on the core, often the thread answering the next request.
    ``SCHED_BATCH`` only drops that wake-up preemption: the thread still runs at once on an idle
    core, and it keeps its fair share. It waits, at most to the end of the running thread's slice,
    for a core to free up. The calls that come meanwhile join its group. Measured with
    ``bench_service.py --workers 2`` on a 2-core host shared with the load generator (runs with
    both workers busy): 1.1-1.7 -> 0.3-0.6 preemptions and 3-4 % less service CPU per round trip,
    p99 unchanged (docs/bench-notes/service.md, eleventh session). A thread that an operator's
    choice put under another policy (``chrt``, systemd's ``CPUSchedulingPolicy``: real-time,
    idle or batch already) keeps it; where the call fails, or elsewhere, the policy is unchanged."""
    setter, batch = getattr(os, "sched_setscheduler", None), getattr(os, "SCHED_BATCH", None)
    if setter is None or batch is None:
        return
    try:
        if os.sched_getscheduler(0) == os.SCHED_OTHER:  # (pid 0: the calling thread, on Linux)
            setter(0, batch, os.sched_param(0))
    except OSError:
        pass


class _GroupCommit:
    """The thread that runs :meth:`Storage.submit`'s calls in shared SQLite transactions.

    Started at the first call; the calls that arrive while a group commits form the next group.
    A group also waits, up to :data:`GROUP_COMMIT_WAIT`, while more requests are in progress
    in this process than it holds calls (``busy``, :meth:`Storage.set_busy_hint`): those are
    about to submit theirs (an attest spends most of its time verifying before it writes).
    A lone call waits for nobody.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.busy: Callable[[], int] = lambda: 0
        # the connection the commit thread keeps for its groups (see _run_group)
        self._conn: Connection | None = None

    def current(self) -> _Group | None:
        """The group being run by the calling thread (None on any other thread)."""
        group: _Group | None = getattr(self._local, "group", None)
        return group

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self.current() is not None:  # a call made from inside a call: part of this group
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
            return future
        self._start()
        self._queue.put((fn, future))
        return future

    def submit_async(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """:meth:`submit` for a caller on an event loop: an asyncio future of that loop, set
        with the others of its group by one call into the loop."""
        call = _LoopFuture(asyncio.get_running_loop())
        self._start()
        self._queue.put((fn, call))
        return call.future

    def _start(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="veritee-group-commit", daemon=True
                    )
                    self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        _batch_scheduling()
        while True:
            first = self._queue.get()
            if first is None:
                self._release()
                return
            calls = [first]
            deadline = 0.0
            while len(calls) < GROUP_COMMIT_MAX:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    if self.busy() <= len(calls):
                        break
                    now = time.monotonic()
                    deadline = deadline or now + GROUP_COMMIT_WAIT
                    if now >= deadline:
                        break
                    try:
                        more = self._queue.get(timeout=deadline - now)
                    except queue.Empty:
                        break
                if more is None:
                    self._queue.put(None)  # stop after this group
                    break
                calls.append(more)
            self._commit(calls)

    def _more(self, calls: list[_Call]) -> None:
        """Add the calls waiting now to ``calls`` (up to :data:`GROUP_COMMIT_MAX`), without
        waiting: those that came while the group waited for the writer locks."""
        while len(calls) < GROUP_COMMIT_MAX:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                return
            if more is None:
                self._queue.put(None)  # stop after this group
                return
            calls.append(more)

    def _commit(self, calls: list[_Call]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        storage = self._storage
        try:
            # The writer locks first, then the calls that came meanwhile (while another process
            # committed): they share this commit instead of waiting for the next one.
            with storage._writer():
                self._more(calls)
                calls[:] = [(fn, f) for fn, f in calls if f.set_running_or_notify_cancel()]
                self._run_group(calls, outcomes)
        except BaseException as exc:
            failure = exc if isinstance(exc, StorageError) else _storage_error(exc)
            for i, (_, future) in enumerate(calls):
                # A call that failed on its own keeps its own error; none of the others happened.
                ok, value = outcomes[i] if i < len(outcomes) else (True, None)
                if not future.done():
                    future.set_exception(failure if ok else value)
            _wake(calls)
            return
        for (_, future), (ok, value) in zip(calls, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        _wake(calls)

    def _run_group(self, calls: list[_Call], outcomes: list[tuple[bool, Any]]) -> None:
        """Run ``calls`` in one transaction (the writer locks held), each one's outcome into
        ``outcomes``; raises when the transaction as a whole fails.

        The transaction is begun and committed on the driver connection of a connection this
        thread keeps (SQLAlchemy's checkout, begin and commit cost about ten times the bare
        ``BEGIN IMMEDIATE``/``COMMIT``). A statement a call runs through SQLAlchemy joins it
        (the ``begin`` hook begins nothing while the group holds the connection); SQLAlchemy's
        commit then ends it. After any failure the transaction is rolled back, and a connection
        whose rollback fails is discarded."""
        try:
            conn = self._connection()
            raw: Any = conn.connection.driver_connection
            raw.execute("BEGIN IMMEDIATE")
        except (SQLAlchemyError, sqlite3.Error) as exc:
            self._release(discard=True)
            raise _storage_error(exc) from None
        try:
            group = _Group(conn, self._storage)
            self._local.group = group
            try:
                for fn, _ in calls:
                    try:
                        outcomes.append((True, fn()))
                    except BaseException as exc:  # the caller's own outcome
                        outcomes.append((False, exc))
            finally:
                self._local.group = None
            if group.broken is not None:
                raise group.broken
            if conn.in_transaction():  # begun by a statement run through SQLAlchemy
                conn.commit()
            else:
                raw.execute("COMMIT")
        except BaseException as exc:
            self._undo(conn, raw)
            if isinstance(exc, SQLAlchemyError | sqlite3.Error):
                raise _storage_error(exc) from None
            raise

    def _connection(self) -> Connection:
        """The connection this thread runs its groups on (a new one after a failure)."""
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            self._release(discard=True)
            conn = self._conn = self._storage._engine.connect()
            conn.connection.info[_GROUP_HELD] = True
        return conn

    def _undo(self, conn: Connection, raw: Any) -> None:
        """Roll back a failed group's transaction; discard the connection if that fails."""
        try:
            if conn.in_transaction():
                conn.rollback()
            if raw.in_transaction:
                raw.execute("ROLLBACK")
        except Exception:  # the connection's state is unknown: never reuse it
            self._release(discard=True)

    def _release(self, *, discard: bool = False) -> None:
        """Give the kept connection back to the pool (``discard``: close it for good)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not conn.invalidated:
                conn.connection.info.pop(_GROUP_HELD, None)
                if discard:
                    conn.invalidate()
            conn.close()
        except Exception:  # noqa: S110 - a broken connection is dropped either way
            pass


class _Probe(threading.Thread):
    """One readiness probe; ``error`` is what it raised (None: the database took the write)."""

    def __init__(self, storage: Storage, now: datetime) -> None:
        super().__init__(name="veritee-readiness-probe", daemon=True)
        self._storage, self._now = storage, now
        self.error: StorageError | None = None

    def run(self) -> None:
        try:
            self._storage._probe_write(self._now)
        except StorageError as exc:
            self.error = exc
        except Exception as exc:  # NonceError, UsageError: a probe that cannot run is not ready
            self.error = StorageError(f"readiness probe failed: {type(exc).__name__}")


def verify_audit_chain(storage: Storage) -> AuditReport:
    """Recompute the whole audit chain in seq order (one consistent read).

    The report names the first broken entry and why: a gap in seq, a prev link that is not the
    previous entry's hash, or content that does not match its entry hash.
    """
    with storage.transaction(readonly=True) as tx:
        return tx.verify_audit_chain()


def _use_wal(cur: Any, busy_timeout: float) -> None:
    """Put the database in WAL mode (it stays so, in the file) unless it already is.

    Switching a new database to WAL needs it to itself for a moment, and SQLite answers
    "database is locked" at once, without its busy handler, when other connections switch it at
    the same time (several workers or CLI commands opening a new database). So: read the mode
    first, and retry the switch within the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            mode = cur.execute("PRAGMA journal_mode").fetchone()
            if mode is not None and str(mode[0]).lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _install_sqlite_hooks(engine: Engine, busy_timeout: float) -> None:
    """Connection pragmas and explicit BEGIN for pysqlite (SQLAlchemy's documented recipe)."""
    busy_ms = max(0, int(busy_timeout * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module: we emit BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            _use_wal(cur, busy_timeout)
            cur.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # On the driver connection: the statement needs none of SQLAlchemy's execution
        # machinery, which cost more than the BEGIN itself. Its errors are sqlite3.Error,
        # which Storage.transaction turns into StorageError like any other.
        raw = conn.connection.driver_connection
        assert raw is not None
        if raw.in_transaction and conn.connection.info.get(_GROUP_HELD):
            return  # the group commit's transaction, begun on the driver connection: joined
        raw.execute("BEGIN" if conn.get_execution_options().get(_READONLY) else "BEGIN IMMEDIATE")
