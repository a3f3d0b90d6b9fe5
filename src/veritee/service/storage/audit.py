"""The append-only, hash-chained audit log.

Every entry has the fields ``seq`` (1, 2, 3, ... without gaps), ``at`` (ISO 8601 UTC text with
microseconds and a ``Z``), ``kind`` (e.g. ``attest``, ``certify``, ``policy.put``,
``secret.release``, ``secret.deny``, ``nonce.reject``), ``actor``, ``subject``, ``decision``
(``accept``, ``reject`` or null) and ``details`` (a JSON object). The chain::

    canonical(x)  = JSON of x with sorted keys, separators (",", ":"), ASCII only, no NaN
    body          = canonical({"seq", "at", "kind", "actor", "subject", "decision", "details"})
    entry_hash[n] = SHA-256(prev_hash[n] || UTF-8(body[n]))
    prev_hash[n]  = entry_hash[n-1];  prev_hash[1] = 32 zero bytes

so anyone holding an export of the log can recompute it. Appends are serialized across processes
and replicas: on PostgreSQL by ``pg_advisory_xact_lock`` taken before reading the head, on SQLite
by the write lock of ``BEGIN IMMEDIATE``. Triggers created by the migration refuse UPDATE and
DELETE on the table (and TRUNCATE on PostgreSQL).

**Details must never hold secrets, evidence, keys or tokens.** Callers put hashes (SHA-256 hex)
and identifiers there. Details are limited to :data:`MAX_DETAILS_BYTES` of canonical JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, text

from veritee._codec import canonical_json
from veritee._frozen import maker
from veritee.errors import StorageError, UsageError

from .models import AUDIT_LOG

__all__ = [
    "ADVISORY_LOCK_AUDIT",
    "DECISIONS",
    "GENESIS_HASH",
    "MAX_DETAILS_BYTES",
    "AuditEntry",
    "AuditReport",
    "canonical_json",
    "entry_hash",
    "iso_utc",
]

GENESIS_HASH = bytes(32)
MAX_DETAILS_BYTES = 16 * 1024
DECISIONS = frozenset({"accept", "reject"})
# pg_advisory_xact_lock key serializing audit appends: b"veritee" read as a big-endian integer.
ADVISORY_LOCK_AUDIT = int.from_bytes(b"veritee", "big")
_STREAM_BATCH = 1000


def iso_utc(moment: datetime) -> str:
    """``moment`` as ISO 8601 UTC text with microseconds, e.g. ``2025-01-02T03:04:05.000006Z``."""
    if moment.tzinfo is UTC and moment.year >= 1000:
        # already UTC (the service's clock): its own ISO text without the "+00:00"
        return moment.isoformat("T", "microseconds")[:-6] + "Z"
    if moment.tzinfo is None:
        raise UsageError("audit time must be timezone-aware")
    u = moment.astimezone(UTC)
    if u.year < 1000:  # strftime's %Y does not pad those to four digits here: keep its text
        return u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return u.replace(tzinfo=None).isoformat("T", "microseconds") + "Z"


def entry_hash(
    prev_hash: bytes,
    *,
    seq: int,
    at: str,
    kind: str,
    actor: str,
    subject: str,
    decision: str | None,
    details: Mapping[str, Any],
) -> bytes:
    """SHA-256(prev_hash || canonical JSON of the entry's fields)."""
    body = canonical_json(
        {
            "seq": seq,
            "at": at,
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "decision": decision,
            "details": details,
        }
    )
    return hashlib.sha256(prev_hash + body.encode("utf-8")).digest()


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log."""

    seq: int
    at: str
    kind: str
    actor: str
    subject: str
    decision: str | None
    details: Mapping[str, Any] = field(hash=False)
    prev_hash: bytes
    entry_hash: bytes

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (hashes in hex), e.g. for the admin API or an export."""
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "actor": self.actor,
            "subject": self.subject,
            "decision": self.decision,
            "details": dict(self.details),
            "prev_hash": self.prev_hash.hex(),
            "entry_hash": self.entry_hash.hex(),
        }


#: ``AuditEntry(*fields)`` without the dataclass's ``__init__`` (one per decision appended).
_make_entry = maker(AuditEntry)


@dataclass(frozen=True)
class AuditReport:
    """Outcome of :func:`verify_audit_chain`: ``first_broken`` names the first bad ``seq``."""

    ok: bool
    count: int
    first_broken: int | None
    message: str
    head_seq: int = 0
    head_hash: bytes = GENESIS_HASH


def _check_text(name: str, value: str, limit: int) -> None:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise UsageError(f"audit {name} must be a non-empty string of at most {limit} characters")


def append_entry(
    conn: Connection,
    dialect: str,
    *,
    raw: Any = None,
    kind: str,
    actor: str,
    subject: str,
    decision: str | None,
    details: Mapping[str, Any],
    now: datetime,
) -> AuditEntry:
    """Append one entry in the caller's transaction (see the module docstring for the chain).

    ``raw``: the driver connection of ``conn`` (sqlite3 or psycopg) to run the statements on
    directly (same transaction, less overhead); None to go through SQLAlchemy. On psycopg the
    lock and the head read are one round trip.
    """
    _check_text("kind", kind, 64)
    _check_text("actor", actor, 200)
    _check_text("subject", subject, 400)
    if decision is not None and decision not in DECISIONS:
        raise UsageError(f"audit decision must be one of {sorted(DECISIONS)} or None")
    if not isinstance(details, Mapping):
        raise UsageError("audit details must be a JSON object")
    try:
        details_text = canonical_json(details)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"audit details are not JSON-serializable: {exc}") from None
    if len(details_text) > MAX_DETAILS_BYTES:
        raise UsageError(
            f"audit details are {len(details_text)} bytes, more than {MAX_DETAILS_BYTES}: "
            "put hashes in the audit log, not payloads"
        )
    parsed: dict[str, Any] = json.loads(details_text)
    at = iso_utc(now)
    pg = dialect == "postgresql"
    head: Any
    if pg and raw is not None:
        # One message, two statements: the head is read after the lock is held, with a
        # snapshot of its own (READ COMMITTED); one round trip instead of two.
        read = raw.execute(_PG_LOCK_HEAD)
        if not read.nextset():
            raise StorageError("the audit head was not read")
        head = read.fetchone()
    elif pg:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_AUDIT})
        head = conn.execute(_HEAD).first()
    elif raw is not None:
        head = raw.execute(_SQLITE_HEAD).fetchone()
    else:
        head = conn.execute(_HEAD).first()
    if head is None:
        seq, prev = 1, GENESIS_HASH
    else:
        seq, prev = int(head[0]) + 1, bytes(head[1])
    digest = entry_hash(
        prev,
        seq=seq,
        at=at,
        kind=kind,
        actor=actor,
        subject=subject,
        decision=decision,
        details=parsed,
    )
    if raw is not None:
        raw.execute(
            _PG_INSERT if pg else _SQLITE_INSERT,
            (seq, at, kind, actor, subject, decision, details_text, prev, digest),
        )
        return _make_entry(seq, at, kind, actor, subject, decision, parsed, prev, digest)
    conn.execute(
        _INSERT,
        {
            "seq": seq,
            "at": at,
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "decision": decision,
            "details": details_text,
            "prev_hash": prev,
            "entry_hash": digest,
        },
    )
    return _make_entry(seq, at, kind, actor, subject, decision, parsed, prev, digest)


_HEAD = select(AUDIT_LOG.c.seq, AUDIT_LOG.c.entry_hash).order_by(AUDIT_LOG.c.seq.desc()).limit(1)
_INSERT = AUDIT_LOG.insert()
_SQLITE_HEAD = "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_SQLITE_INSERT = (
    "INSERT INTO audit_log (seq, at, kind, actor, subject, decision, details, prev_hash, "
    "entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: No parameters: psycopg sends the text as one simple-protocol message, both statements run
#: in order (the key is a constant of this module, not an input).
_PG_LOCK_HEAD = f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_AUDIT}); {_SQLITE_HEAD}"
_PG_INSERT = _SQLITE_INSERT.replace("?", "%s")
_COLUMNS = (
    AUDIT_LOG.c.seq,
    AUDIT_LOG.c.at,
    AUDIT_LOG.c.kind,
    AUDIT_LOG.c.actor,
    AUDIT_LOG.c.subject,
    AUDIT_LOG.c.decision,
    AUDIT_LOG.c.details,
    AUDIT_LOG.c.prev_hash,
    AUDIT_LOG.c.entry_hash,
)


def audit_head(conn: Connection) -> tuple[int, bytes]:
    """(last seq, its entry hash); (0, genesis) for an empty log."""
    head = conn.execute(_HEAD).first()
    if head is None:
        return 0, GENESIS_HASH
    return int(head[0]), bytes(head[1])


def _raw_rows(conn: Connection, after_seq: int, limit: int) -> list[Any]:
    stmt = select(*_COLUMNS).where(AUDIT_LOG.c.seq > after_seq).order_by(AUDIT_LOG.c.seq)
    return list(conn.execute(stmt.limit(limit)).all())


def read_entries(conn: Connection, after_seq: int, limit: int) -> list[AuditEntry]:
    """Entries with seq > ``after_seq`` in order; raises StorageError on an unreadable entry."""
    if limit < 1 or limit > 10_000:
        raise UsageError("audit limit must be between 1 and 10000")
    out = []
    for row in _raw_rows(conn, after_seq, limit):
        try:
            details = json.loads(row.details)
        except ValueError:
            raise StorageError(f"audit entry {row.seq} has corrupt details") from None
        out.append(
            AuditEntry(
                int(row.seq),
                row.at,
                row.kind,
                row.actor,
                row.subject,
                row.decision,
                details,
                bytes(row.prev_hash),
                bytes(row.entry_hash),
            )
        )
    return out


def _stream(conn: Connection) -> Iterator[Any]:
    after = 0
    while True:
        rows = _raw_rows(conn, after, _STREAM_BATCH)
        yield from rows
        if len(rows) < _STREAM_BATCH:
            return
        after = int(rows[-1].seq)


def verify_rows(conn: Connection) -> AuditReport:
    """Walk the whole log in seq order and recompute every link and hash."""
    prev = GENESIS_HASH
    expected = 1
    count = 0
    for row in _stream(conn):
        seq = int(row.seq)
        if seq != expected:
            return AuditReport(
                False,
                count,
                expected,
                f"gap in seq: entry {expected} is missing (next entry is {seq})",
            )
        if not hmac.compare_digest(bytes(row.prev_hash), prev):
            return AuditReport(
                False,
                count,
                seq,
                f"prev link mismatch at entry {seq}: prev_hash is not the hash of entry {seq - 1}",
            )
        try:
            details = json.loads(row.details)
        except ValueError:
            return AuditReport(False, count, seq, f"entry {seq} has details that are not JSON")
        digest = entry_hash(
            prev,
            seq=seq,
            at=row.at,
            kind=row.kind,
            actor=row.actor,
            subject=row.subject,
            decision=row.decision,
            details=details,
        )
        if not hmac.compare_digest(digest, bytes(row.entry_hash)):
            return AuditReport(
                False,
                count,
                seq,
                f"hash mismatch at entry {seq}: its content does not match its entry_hash",
            )
        prev = digest
        count += 1
        expected += 1
    return AuditReport(True, count, None, f"{count} entries, chain intact", count, prev)
