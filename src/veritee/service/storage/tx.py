"""What one database transaction can do: nonces, policies, certificates, key stores, secrets,
audit.

A :class:`Tx` is handed out by :meth:`veritee.service.storage.Storage.transaction` and is valid
only inside that ``with`` block. Every method runs in the same transaction, so e.g. consuming a
nonce and appending its audit entry either both happen or neither does.

Nonces are issued without a write (:mod:`.nonces`: a MAC'd lifetime) and are single use by
the primary key of ``nonces``: consumption inserts the nonce's expiry and SHA-256 (``INSERT ...
ON CONFLICT DO NOTHING``; the expiry is read from the nonce's own bytes, so a nonce has one key)
and a row count of 0 means it was used already. The key's uniqueness holds for
concurrent consumers in any thread, process or replica; a consumer whose transaction rolls back
leaves the nonce unused. Rows are purged once their nonce's lifetime has ended.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from veritee.collateral.marks import Mark, Marks
from veritee.errors import NonceError, UsageError

from . import audit
from .models import (
    CERTIFICATES,
    COLLATERAL_FETCHED,
    COLLATERAL_MARKS,
    DOMAIN_FACTS,
    KBS_SESSIONS,
    KEY_STORES,
    NONCES,
    POLICIES,
    REFVALUE_ENTRIES,
    REFVALUE_SOURCES,
    REVOCATIONS,
    SEALING_ROOTS,
    SECRETS,
    StoredCertificate,
    StoredFetched,
    StoredPolicy,
    StoredRefValueEntry,
    StoredRefValueSource,
    StoredRevocation,
    StoredSecret,
    StoredSecretInfo,
    UTCDateTime,
    sqlite_time,
)
from .nonces import NONCE_BYTES, NonceMinter, _aware

#: The domain fact counting reloads of the collateral folder.
COLLATERAL_GENERATION = "collateral_generation"
REFVALUE_GENERATION = "refvalue_generation"

__all__ = ["COLLATERAL_GENERATION", "NONCE_BYTES", "REFVALUE_GENERATION", "SecretReads", "Tx"]

# pg_advisory_xact_lock key serializing version numbering of policies and secrets.
ADVISORY_LOCK_VERSIONS = int.from_bytes(b"veritev", "big")

_N = NONCES.c


class _Ended:
    """Stands in for the connection of a finished transaction (it may serve another by now)."""

    def __getattr__(self, name: str) -> Any:
        raise UsageError("this transaction has ended; use the Tx only inside its with block")


_ENDED: Any = _Ended()


def _name(kind: str, value: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise UsageError(f"{kind} must be a non-empty string of at most {limit} characters")
    return value


class Tx:
    """Operations inside one transaction (see the module docstring)."""

    __slots__ = ("_conn", "_dialect", "_nonces", "_pg", "_raw")

    def __init__(
        self,
        conn: Connection,
        dialect: str,
        nonces: NonceMinter,
        *,
        fast_path: bool = True,
        driver: Any = None,
    ) -> None:
        """``driver``: ``conn``'s driver connection when the caller has it at hand (the group
        commit's), else looked up."""
        self._conn = conn
        self._dialect = dialect
        self._nonces = nonces
        # SQLite hot paths (nonces, audit appends) run on the driver connection, in the same
        # transaction: SQLAlchemy's per-statement overhead was most of a round trip (see
        # docs/bench-notes/storage.md). PostgreSQL keeps SQLAlchemy's disconnect handling.
        # The same holds for psycopg on PostgreSQL: the hot statements run on the driver
        # connection (same transaction), each a network round trip SQLAlchemy added ~0.2 ms
        # of CPU to. Its errors are psycopg.Error, which Storage.transaction maps like the
        # rest; a dead connection is invalidated by SQLAlchemy at the rollback that follows.
        if not fast_path:
            driver = None
        elif driver is None:
            driver = conn.connection.driver_connection
        self._raw: Any = driver if dialect == "sqlite" else None
        self._pg: Any = driver if dialect == "postgresql" else None

    def _end(self) -> None:
        """Called when the transaction is over: any later use raises UsageError."""
        self._conn = _ENDED
        if self._raw is not None:
            self._raw = _ENDED
        if self._pg is not None:
            self._pg = _ENDED

    # -- nonces --------------------------------------------------------------------------------

    def issue_nonce(self, *, now: datetime, ttl: timedelta, purpose: str = "attest") -> bytes:
        """A fresh 32-byte nonce valid for ``ttl`` (nothing is written: see :mod:`.nonces`)."""
        return self._nonces.issue(now=now, ttl=ttl, purpose=purpose)

    def consume_nonce(self, nonce: bytes, *, now: datetime, purpose: str = "attest") -> None:
        """Mark ``nonce`` used, exactly once; only its SHA-256 is stored.

        Raises NonceError with code ``nonce_unknown`` (not issued by this domain for this
        purpose), ``nonce_expired`` or ``nonce_reused``.
        """
        issued, expires = self._nonces.check(nonce, now=now, purpose=purpose)
        key = hashlib.sha256(nonce).digest()
        if self._raw is not None:
            count = self._raw.execute(
                _SQLITE_SPEND_NONCE,
                (key, purpose, sqlite_time(issued), sqlite_time(expires), sqlite_time(now)),
            ).rowcount
        elif self._pg is not None:
            row = self._pg.execute(_PG_SPEND_NONCE, (key, purpose, issued, expires, now)).fetchone()
            count = 0 if row is None else 1
        else:
            inserted = self._conn.execute(
                _SPEND_NONCE[self._dialect],
                {
                    "nonce_sha256": key,
                    "purpose": purpose,
                    "issued_at": issued,
                    "expires_at": expires,
                    "used_at": now,
                },
            ).first()
            count = 0 if inserted is None else 1
        if count != 1:
            raise NonceError("nonce already used", code="nonce_reused")

    def purge_nonces(self, *, now: datetime, limit: int | None = None) -> int:
        """Delete the records of nonces whose lifetime has ended (at most ``limit`` of them, so
        that a large purge can be split into short transactions); returns how many."""
        _aware("now", now)
        if limit is None:
            return int(self._conn.execute(_PURGE_NONCES, {"now": now}).rowcount)
        return int(self._conn.execute(_PURGE_SOME_NONCES, {"now": now, "n": limit}).rowcount)

    # -- policies ------------------------------------------------------------------------------

    def _version_lock(self) -> None:
        if self._dialect == "postgresql":
            self._conn.execute(
                text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_VERSIONS}
            )

    def put_policy(
        self,
        *,
        name: str,
        document: bytes,
        digest: str,
        actor: str,
        now: datetime,
        kind: str = "appraisal",
    ) -> int:
        """Store a new version of policy ``name`` (already signature-checked); it becomes the
        version of ``name`` in force. Other names' policies stay in force as they are (a domain
        holds several at once, :meth:`policies_in_force`). Returns the new version number (1
        for a new name).
        """
        _name("policy name", name)
        _name("policy kind", kind, 32)
        _name("policy actor", actor)
        _name("policy digest", digest, 128)
        _aware("now", now)
        if not isinstance(document, bytes) or not document:
            raise UsageError("policy document must be non-empty bytes")
        self._version_lock()
        p = POLICIES.c
        current = self._conn.execute(
            select(func.max(p.version)).where(p.kind == kind, p.name == name)
        ).scalar()
        version = int(current or 0) + 1
        self._conn.execute(
            update(POLICIES)
            .where(p.kind == kind, p.name == name, p.active.is_(True))
            .values(active=False)
        )
        self._conn.execute(
            POLICIES.insert().values(
                kind=kind,
                name=name,
                version=version,
                document=document,
                digest=digest,
                actor=actor,
                created_at=now,
                active=True,
            )
        )
        return version

    def active_policy(
        self, name: str | None = None, kind: str = "appraisal"
    ) -> StoredPolicy | None:
        """The newest version of policy ``name``; with ``name`` None, the policy in force that
        was installed last."""
        p = POLICIES.c
        if name is None:
            stmt = select(POLICIES).where(p.kind == kind, p.active.is_(True))
        else:
            stmt = select(POLICIES).where(p.kind == kind, p.name == name)
        row = self._conn.execute(stmt.order_by(p.id.desc()).limit(1)).first()
        return None if row is None else _policy(row)

    def retire_policy(self, name: str, kind: str = "appraisal") -> StoredPolicy | None:
        """Take policy ``name`` out of force (its versions stay stored; installing it again
        puts the new version in force). Returns the version retired, None if none was in force."""
        _name("policy name", name)
        p = POLICIES.c
        row = self._conn.execute(
            select(POLICIES).where(p.kind == kind, p.name == name, p.active.is_(True))
        ).first()
        if row is None:
            return None
        self._conn.execute(
            update(POLICIES)
            .where(p.kind == kind, p.name == name, p.active.is_(True))
            .values(active=False)
        )
        return _policy(row)

    def policies_in_force(self, kind: str = "appraisal") -> list[StoredPolicy]:
        """Every policy in force: the newest version of each name (a name whose newest version
        was retired before several policies could be held at once stays retired), by name."""
        p = POLICIES.c
        rows = self._conn.execute(
            select(POLICIES).where(p.kind == kind, p.active.is_(True)).order_by(p.name, p.id)
        ).all()
        return [_policy(r) for r in rows]

    def policy_version(
        self, name: str, version: int, kind: str = "appraisal"
    ) -> StoredPolicy | None:
        """A given version of policy ``name``, active or not."""
        p = POLICIES.c
        row = self._conn.execute(
            select(POLICIES).where(p.kind == kind, p.name == name, p.version == version)
        ).first()
        return None if row is None else _policy(row)

    def policy_versions(self, name: str, kind: str = "appraisal") -> list[StoredPolicy]:
        """Every stored version of policy ``name``, oldest first (empty for an unknown name)."""
        p = POLICIES.c
        rows = self._conn.execute(
            select(POLICIES).where(p.kind == kind, p.name == name).order_by(p.version)
        ).all()
        return [_policy(r) for r in rows]

    def list_policies(self, kind: str | None = None) -> list[StoredPolicy]:
        """Every stored version, ordered by kind, name, version."""
        p = POLICIES.c
        stmt = select(POLICIES)
        if kind is not None:
            stmt = stmt.where(p.kind == kind)
        rows = self._conn.execute(stmt.order_by(p.kind, p.name, p.version)).all()
        return [_policy(r) for r in rows]

    # -- KBS sessions --------------------------------------------------------------------------

    def put_kbs_session(self, session_id: bytes, *, token: str, expires_at: datetime) -> None:
        """Record an attested KBS session (only the SHA-256 of its id is stored)."""
        _aware("expires_at", expires_at)
        self._conn.execute(
            KBS_SESSIONS.insert().values(
                session_sha256=hashlib.sha256(session_id).digest(),
                token=token,
                expires_at=expires_at,
            )
        )

    def kbs_session(self, session_id: bytes, *, now: datetime) -> str | None:
        """The token of an attested KBS session that has not expired, else None."""
        _aware("now", now)
        row = self._conn.execute(
            _KBS_SESSION, {"key": hashlib.sha256(session_id).digest(), "now": now}
        ).first()
        return None if row is None else str(row.token)

    def purge_kbs_sessions(self, *, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` expired KBS sessions; returns how many."""
        _aware("now", now)
        return int(self._conn.execute(_PURGE_SOME_KBS_SESSIONS, {"now": now, "n": limit}).rowcount)

    # -- certificates --------------------------------------------------------------------------

    def record_certificate(
        self,
        *,
        serial: int,
        subject_key_sha256: str,
        measurement: str,
        platform: str,
        not_before: datetime,
        not_after: datetime,
        pem: str,
    ) -> None:
        """Record an issued admission certificate (a serial can be recorded once)."""
        if not isinstance(serial, int) or serial <= 0 or serial.bit_length() > 160:
            raise UsageError("certificate serial must be a positive integer of at most 160 bits")
        _aware("not_before", not_before)
        _aware("not_after", not_after)
        self._conn.execute(
            CERTIFICATES.insert().values(
                serial_hex=format(serial, "x"),
                subject_key_sha256=subject_key_sha256,
                measurement=measurement,
                platform=platform,
                not_before=not_before,
                not_after=not_after,
                pem=pem,
            )
        )

    def certificate(self, serial: int) -> StoredCertificate | None:
        """The recorded certificate with this serial, if any."""
        row = self._conn.execute(
            select(CERTIFICATES).where(CERTIFICATES.c.serial_hex == format(serial, "x"))
        ).first()
        if row is None:
            return None
        return StoredCertificate(
            int(row.serial_hex, 16),
            row.subject_key_sha256,
            row.measurement,
            row.platform,
            row.not_before,
            row.not_after,
            row.pem,
        )

    def list_certificates(self, *, limit: int = 200) -> list[StoredCertificate]:
        """The recorded certificates, the most recently issued first (at most ``limit``)."""
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise UsageError("certificate limit must be between 1 and 10000")
        c = CERTIFICATES.c
        rows = self._conn.execute(
            select(CERTIFICATES).order_by(c.not_before.desc(), c.serial_hex).limit(limit)
        ).all()
        return [
            StoredCertificate(int(r.serial_hex, 16), r.subject_key_sha256, r.measurement,
                              r.platform, r.not_before, r.not_after, r.pem)
            for r in rows
        ]  # fmt: skip

    # -- revocations (issue 12.2) --------------------------------------------------------------

    def revoke(self, kind: str, value: str, *, reason: str, actor: str, now: datetime) -> bool:
        """Revoke admission certificates: ``kind`` ``serial`` (lowercase hex) or ``measurement``
        (lowercase hex). True if new, False if that value was revoked already."""
        if kind not in ("serial", "measurement"):
            raise UsageError("a revocation is by serial or by measurement")
        _name("revoked value", value)
        _name("revocation actor", actor)
        _aware("now", now)
        if not isinstance(reason, str) or len(reason) > 400:
            raise UsageError("a revocation reason is text of at most 400 characters")
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        stmt = (
            insert(REVOCATIONS)
            .values(kind=kind, value=value, reason=reason, actor=actor, revoked_at=now)
            .on_conflict_do_nothing(index_elements=[REVOCATIONS.c.kind, REVOCATIONS.c.value])
            .returning(REVOCATIONS.c.id)
        )
        return self._conn.execute(stmt).first() is not None

    def revocations(self) -> list[StoredRevocation]:
        """Every revocation, oldest first."""
        r = REVOCATIONS.c
        rows = self._conn.execute(
            select(r.kind, r.value, r.reason, r.actor, r.revoked_at).order_by(r.id)
        ).all()
        return [StoredRevocation(*row) for row in rows]

    def revocation(self, kind: str, value: str) -> StoredRevocation | None:
        """The revocation of this serial or measurement, if any."""
        r = REVOCATIONS.c
        row = self._conn.execute(
            select(r.kind, r.value, r.reason, r.actor, r.revoked_at)
            .where(r.kind == kind, r.value == value)
        ).first()  # fmt: skip
        return None if row is None else StoredRevocation(*row)

    def revocation_of(self, serial_hex: str, measurement: str) -> StoredRevocation | None:
        """The revocation that covers a certificate with this serial and measurement, if any
        (one indexed read: a certified decision makes it every time)."""
        params = _revocation_params(serial_hex, measurement)
        driver = self._raw if self._raw is not None else self._pg
        if driver is not None:  # hot path: every certified release reads it
            sqlite = self._raw is not None
            raw = driver.execute(
                _SQLITE_REVOCATION if sqlite else _PG_REVOCATION, params
            ).fetchone()
            if raw is None:
                return None
            at = datetime.fromisoformat(raw[4]).replace(tzinfo=UTC) if sqlite else raw[4]
            return StoredRevocation(raw[0], raw[1], raw[2], raw[3], at.astimezone(UTC))
        row = self._conn.execute(
            _REVOCATION_OF, dict(zip(("k1", "v1", "k2", "v2"), params, strict=True))
        ).first()
        return None if row is None else StoredRevocation(*row)

    def revoked_serials(self, *, now: datetime) -> list[tuple[int, datetime]]:
        """(serial, revocation time) of every revoked certificate that has not expired: those
        revoked by serial (unknown serials too), and the recorded certificates of a revoked
        measurement. For the domain's CRL."""
        _aware("now", now)
        r, c = REVOCATIONS.c, CERTIFICATES.c
        by_serial = self._conn.execute(
            select(r.value, r.revoked_at, c.not_after)
            .select_from(REVOCATIONS.outerjoin(CERTIFICATES, c.serial_hex == r.value))
            .where(r.kind == "serial")
        ).all()
        by_measurement = self._conn.execute(
            select(c.serial_hex, r.revoked_at)
            .select_from(REVOCATIONS.join(CERTIFICATES, c.measurement == r.value))
            .where(r.kind == "measurement", c.not_after > now)
        ).all()
        out: dict[int, datetime] = {}
        for value, at, not_after in by_serial:
            if not_after is None or not_after > now:
                out[int(value, 16)] = at
        for value, at in by_measurement:
            serial = int(value, 16)
            out[serial] = min(at, out.get(serial, at))
        return sorted(out.items())

    # -- key stores (issue 13: rollback) -------------------------------------------------------

    def advance_key_generation(
        self, store_sha256: str, *, generation: int, subject_key_sha256: str, now: datetime
    ) -> bool:
        """Record that the key of ``generation`` of a workload's key store is being certified.

        Returns False, and changes nothing, if a higher generation of that store was certified
        before (the key is superseded: the store was rolled back). Atomic for concurrent
        certifications (``INSERT ... ON CONFLICT DO UPDATE ... WHERE``).
        """
        _aware("now", now)
        if not isinstance(generation, int) or generation < 1 or generation.bit_length() > 63:
            raise UsageError("a key generation is an integer 1..2**63-1")
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        stmt = insert(KEY_STORES).values(
            store_sha256=store_sha256, generation=generation,
            subject_key_sha256=subject_key_sha256, counter=0, updated_at=now,
        )  # fmt: skip
        upsert = stmt.on_conflict_do_update(
            index_elements=[KEY_STORES.c.store_sha256],
            set_={
                "generation": stmt.excluded.generation,
                "subject_key_sha256": stmt.excluded.subject_key_sha256,
                "updated_at": stmt.excluded.updated_at,
            },
            where=KEY_STORES.c.generation <= stmt.excluded.generation,
        ).returning(KEY_STORES.c.store_sha256)
        return self._conn.execute(upsert).first() is not None

    def increment_key_store_counter(self, store_sha256: str, *, now: datetime) -> int:
        """Add one to a key store's freshness counter; the new value (UsageError if unknown)."""
        _aware("now", now)
        row = self._conn.execute(
            update(KEY_STORES)
            .where(KEY_STORES.c.store_sha256 == store_sha256)
            .values(counter=KEY_STORES.c.counter + 1, updated_at=now)
            .returning(KEY_STORES.c.counter)
        ).first()
        if row is None:
            raise UsageError("no such key store")
        return int(row[0])

    def key_store(self, store_sha256: str) -> tuple[int, str, int] | None:
        """(generation, subject_key_sha256, counter) recorded for a key store, or None."""
        row = self._conn.execute(
            select(
                KEY_STORES.c.generation, KEY_STORES.c.subject_key_sha256, KEY_STORES.c.counter
            ).where(KEY_STORES.c.store_sha256 == store_sha256)
        ).first()
        return None if row is None else (int(row[0]), str(row[1]), int(row[2]))

    # -- domain facts (issue 12.4) ---------------------------------------------------------------

    def domain_fact(self, name: str) -> str | None:
        """The recorded value of fact ``name`` (e.g. ``kek_id``), or None."""
        f = DOMAIN_FACTS.c
        row = self._conn.execute(select(f.value).where(f.name == name)).first()
        return None if row is None else str(row[0])

    def record_domain_fact(self, name: str, value: str, *, now: datetime) -> str:
        """Record fact ``name`` unless it is recorded already; returns the recorded value
        (ours, or the one a concurrent replica committed first)."""
        _name("fact name", name, 64)
        _name("fact value", value)
        _aware("now", now)
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        self._conn.execute(
            insert(DOMAIN_FACTS).values(name=name, value=value, recorded_at=now)
            .on_conflict_do_nothing(index_elements=[DOMAIN_FACTS.c.name])
        )  # fmt: skip
        recorded = self.domain_fact(name)
        if recorded is None:  # pragma: no cover - the row was just inserted or existed
            raise UsageError(f"domain fact {name!r} was not recorded")
        return recorded

    def advance_collateral_generation(self, *, now: datetime) -> str:
        """Count one more reload of the domain's collateral (fact ``collateral_generation``):
        every worker and replica that sees the count change reads its collateral folder again
        (:meth:`veritee.service.context.ServiceContext.collateral`). Returns the new count."""
        _aware("now", now)
        value = str(int(self.domain_fact(COLLATERAL_GENERATION) or "0") + 1)
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        self._conn.execute(
            insert(DOMAIN_FACTS).values(name=COLLATERAL_GENERATION, value=value, recorded_at=now)
            .on_conflict_do_update(index_elements=[DOMAIN_FACTS.c.name],
                                   set_={"value": value, "recorded_at": now})
        )  # fmt: skip
        return value

    # -- high-water marks of the domain's collateral (issue 11 item 3) ---------------------------

    def collateral_marks(self) -> Marks:
        """The recorded marks (:mod:`veritee.collateral.marks`): the newest collateral accepted."""
        c = COLLATERAL_MARKS.c
        rows = self._conn.execute(select(c.kind, c.subject, c.value, c.source)).all()
        return Marks.of(Mark(str(r[0]), str(r[1]), int(r[2]), str(r[3])) for r in rows)

    def raise_collateral_marks(self, marks: Iterable[Mark], *, now: datetime) -> list[Mark]:
        """Record each of ``marks`` that is newer than the recorded one (or the first for its
        subject); a mark is never lowered, whatever replicas do concurrently (each write is
        ``value < new``). Returns the marks that raised a record."""
        _aware("now", now)
        c = COLLATERAL_MARKS.c
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        raised: list[Mark] = []
        for m in Marks.of(marks).values():
            _name("mark kind", m.kind, 16)
            _name("mark subject", m.subject)
            source = m.source[-400:]
            added = self._conn.execute(
                insert(COLLATERAL_MARKS).values(kind=m.kind, subject=m.subject, value=m.value,
                                                source=source, recorded_at=now)
                .on_conflict_do_nothing(index_elements=[c.kind, c.subject]).returning(c.kind)
            ).first() is not None  # fmt: skip
            if not added:
                added = self._conn.execute(
                    update(COLLATERAL_MARKS)
                    .where(c.kind == m.kind, c.subject == m.subject, c.value < m.value)
                    .values(value=m.value, source=source, recorded_at=now).returning(c.kind)
                ).first() is not None  # fmt: skip
            if added:
                raised.append(m)
        return raised

    # -- fetched collateral (issue 16: collateral that stays fresh) -------------------------------

    def fetched_collateral(self, *, with_data: bool = True) -> list[StoredFetched]:
        """Every item of fetched collateral (``data`` None: never fetched yet, or left out)."""
        f = COLLATERAL_FETCHED.c
        cols = [f.path, f.data if with_data else f.sha256, f.sha256, f.fetched_at, f.checked_at,
                f.next_try, f.failures, f.last_error]  # fmt: skip
        rows = self._conn.execute(select(*cols).order_by(f.path)).all()
        return [
            StoredFetched(
                path=str(r[0]), data=bytes(r[1]) if with_data and r[1] is not None else None,
                sha256=r[2], fetched_at=r[3], checked_at=r[4], next_try=r[5],
                failures=int(r[6] or 0), last_error=r[7],
            )
            for r in rows
        ]  # fmt: skip

    def fetched_item(self, path: str) -> StoredFetched | None:
        return next((i for i in self.fetched_collateral() if i.path == path), None)

    def _fetch_row(self, path: str) -> None:
        _name("collateral path", path)
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        self._conn.execute(
            insert(COLLATERAL_FETCHED).values(path=path, failures=0)
            .on_conflict_do_nothing(index_elements=[COLLATERAL_FETCHED.c.path])
        )  # fmt: skip

    def take_fetch_lease(self, path: str, *, holder: str, until: datetime, now: datetime) -> bool:
        """Take the lease on fetching ``path`` until ``until`` unless another fetcher (worker,
        replica) holds an unexpired one; True if taken. Creates the item's row if needed."""
        _name("collateral path", path)
        _name("lease holder", holder, 64)
        _aware("now", now)
        _aware("until", until)
        f = COLLATERAL_FETCHED.c
        self._fetch_row(path)
        taken = self._conn.execute(
            update(COLLATERAL_FETCHED)
            .where(f.path == path, (f.lease_until.is_(None)) | (f.lease_until < now) | (f.lease_holder == holder))
            .values(lease_until=until, lease_holder=holder).returning(f.path)
        ).first()  # fmt: skip
        return taken is not None

    def record_fetch_success(
        self, path: str, *, data: bytes | None, now: datetime, next_try: datetime
    ) -> None:
        """A fetch of ``path`` succeeded: store ``data`` (None: unchanged, keep what is stored),
        reset the failures, release the lease, check again from ``next_try``."""
        _aware("now", now)
        _aware("next_try", next_try)
        f = COLLATERAL_FETCHED.c
        values: dict[str, Any] = {"checked_at": now, "next_try": next_try, "failures": 0,
                                  "last_error": None, "lease_until": None, "lease_holder": None}  # fmt: skip
        if data is not None:
            values |= {"data": data, "sha256": hashlib.sha256(data).hexdigest(), "fetched_at": now}
        self._fetch_row(path)
        self._conn.execute(update(COLLATERAL_FETCHED).where(f.path == path).values(**values))

    def record_fetch_failure(
        self, path: str, *, error: str, now: datetime, next_try: datetime
    ) -> int:
        """A fetch of ``path`` failed (what is stored stays): count it, keep ``error`` (a reason
        code and message, never a payload), release the lease, retry from ``next_try``.
        Returns the consecutive failures."""
        _aware("now", now)
        _aware("next_try", next_try)
        f = COLLATERAL_FETCHED.c
        self._fetch_row(path)
        row = self._conn.execute(
            update(COLLATERAL_FETCHED).where(f.path == path)
            .values(failures=f.failures + 1, last_error=error[:400], next_try=next_try,
                    lease_until=None, lease_holder=None)
            .returning(f.failures)
        ).first()  # fmt: skip
        return 0 if row is None else int(row[0])

    def kek_ids_in_use(self) -> set[str]:
        """The KEK identifiers that wrapped stored secrets and sealing roots."""
        rows = self._conn.execute(
            select(SECRETS.c.kek_id).distinct().union(select(SEALING_ROOTS.c.kek_id).distinct())
        ).all()
        return {str(r[0]) for r in rows}

    # -- the key broker's sealing root (domain-released sealing) -------------------------------

    def sealing_root(self) -> tuple[int, str, bytes] | None:
        """(generation, kek_id, wrapped root) of the newest sealing root, or None."""
        r = SEALING_ROOTS.c
        row = self._conn.execute(
            select(r.generation, r.kek_id, r.wrapped_root).order_by(r.generation.desc()).limit(1)
        ).first()
        return None if row is None else (int(row[0]), str(row[1]), bytes(row[2]))

    def add_sealing_root(
        self, *, generation: int, kek_id: str, wrapped_root: bytes, now: datetime
    ) -> bool:
        """Store sealing root ``generation`` (wrapped by the KEK) unless it exists; True if
        stored. Concurrent creators (workers, replicas) agree on the first one committed."""
        _aware("now", now)
        _name("KEK id", kek_id, 64)
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        stmt = (
            insert(SEALING_ROOTS)
            .values(generation=generation, kek_id=kek_id, wrapped_root=wrapped_root, created_at=now)
            .on_conflict_do_nothing(index_elements=[SEALING_ROOTS.c.generation])
            .returning(SEALING_ROOTS.c.generation)
        )
        return self._conn.execute(stmt).first() is not None

    # -- secrets -------------------------------------------------------------------------------

    def put_secret_version(
        self,
        *,
        name: str,
        policy: str,
        kek_id: str,
        wrapped_dek: bytes,
        ciphertext: bytes,
        now: datetime,
        keep_old_policies: bool = False,
    ) -> int:
        """Store a new version of secret ``name``; returns its number (continues after deletes).

        ``keep_old_policies``: older versions stay releasable under their own policies alone
        (by default a release of an older version must also satisfy this version's policy).
        """
        _name("secret name", name)
        _name("secret kek_id", kek_id)
        _aware("now", now)
        if not isinstance(policy, str) or not policy:
            raise UsageError("secret release policy must be non-empty JSON text")
        if (
            not isinstance(wrapped_dek, bytes)
            or not isinstance(ciphertext, bytes)
            or not (wrapped_dek and ciphertext)
        ):
            raise UsageError("secret wrapped_dek and ciphertext must be non-empty bytes")
        self._version_lock()
        s = SECRETS.c
        current = self._conn.execute(select(func.max(s.version)).where(s.name == name)).scalar()
        version = int(current or 0) + 1
        self._conn.execute(
            SECRETS.insert().values(
                name=name,
                version=version,
                policy=policy,
                kek_id=kek_id,
                wrapped_dek=wrapped_dek,
                ciphertext=ciphertext,
                created_at=now,
                deleted_at=None,
                keep_old_policies=bool(keep_old_policies),
            )
        )
        return version

    def spend_and_read_secret(
        self,
        nonce: bytes,
        *,
        now: datetime,
        purpose: str,
        name: str,
        version: int | None = None,
        certificate: tuple[str, str] | None = None,
    ) -> SecretReads:
        """What a release reads: spend ``nonce`` (:meth:`consume_nonce`; ``b""``: no nonce),
        read version ``version`` of secret ``name`` (:meth:`secret_version`; None: the
        latest) and, for a version asked for by number, the latest one too, and the
        revocation covering ``certificate`` ((serial hex, measurement), :meth:`revocation_of`).
        Raises NonceError as :meth:`consume_nonce` does, before any read is returned.

        On PostgreSQL a release of the latest version is one statement (the nonce's insert
        and the reads in one ``WITH``: one round trip instead of two or three)."""
        if self._pg is None or not nonce or version is not None:
            if nonce:
                self.consume_nonce(nonce, now=now, purpose=purpose)
            stored = self.secret_version(name, version)
            latest = None if version is None or stored is None else self.secret_version(name)
            revoked = None if certificate is None else self.revocation_of(*certificate)
            return SecretReads(stored, latest, revoked)
        # unknown and expired nonces are refused before any statement, as by consume_nonce
        issued, expires = self._nonces.check(nonce, now=now, purpose=purpose)
        spend = (hashlib.sha256(nonce).digest(), purpose, issued, expires, now)
        if certificate is None:
            raw = self._pg.execute(_PG_SPEND_READ, (*spend, name)).fetchone()
        else:
            params = (*spend, name, *_revocation_params(*certificate))
            raw = self._pg.execute(_PG_SPEND_READ_REVOKED, params).fetchone()
        if raw is None or raw[0] != 1:
            raise NonceError("nonce already used", code="nonce_reused")
        stored = None if raw[1] is None else _secret_row(raw[1:9], sqlite=False)
        revoked = None
        if certificate is not None and raw[9] is not None:
            kind, value, reason, actor, at = raw[9:14]
            revoked = StoredRevocation(kind, value, reason, actor, at.astimezone(UTC))
        return SecretReads(stored, None, revoked)

    def secret_version(self, name: str, version: int | None = None) -> StoredSecret | None:
        """Version ``version`` of secret ``name`` (default: the latest); None if absent/deleted."""
        driver = self._raw if self._raw is not None else self._pg
        if driver is not None:  # hot path: the release route reads a secret per request
            sqlite = self._raw is not None
            params: tuple[Any, ...]
            if version is None:
                stmt, params = (
                    (_SQLITE_LATEST_VERSION_ROW if sqlite else _PG_LATEST_VERSION_ROW),
                    (name,),
                )
            else:
                stmt, params = (_SQLITE_VERSION_ROW if sqlite else _PG_VERSION_ROW), (name, version)
            return _secret_row(driver.execute(stmt, params).fetchone(), sqlite=sqlite)
        if version is None:
            row = self._conn.execute(_SECRET_LATEST, {"name": name}).first()
        else:
            row = self._conn.execute(_SECRET_VERSION, {"name": name, "version": version}).first()
        if row is None:
            return None
        return StoredSecret(
            row.name,
            row.version,
            row.policy,
            row.kek_id,
            bytes(row.wrapped_dek),
            bytes(row.ciphertext),
            row.created_at,
            bool(row.keep_old_policies),
        )

    def list_secrets(self) -> list[StoredSecretInfo]:
        """Secrets with at least one version not deleted, by name."""
        s = SECRETS.c
        stmt = (
            select(
                s.name,
                func.max(s.version),
                func.count(),
                func.min(s.created_at),
                func.max(s.created_at),
            )
            .where(s.deleted_at.is_(None))
            .group_by(s.name)
            .order_by(s.name)
        )
        out = []
        for name, latest, count, first, last in self._conn.execute(stmt).all():
            out.append(StoredSecretInfo(name, int(latest), int(count), first, last))
        return out

    def delete_secret(self, name: str, *, now: datetime) -> int:
        """Soft-delete every version of ``name``; returns how many versions were deleted."""
        _aware("now", now)
        s = SECRETS.c
        result = self._conn.execute(
            update(SECRETS).where(s.name == name, s.deleted_at.is_(None)).values(deleted_at=now)
        )
        return int(result.rowcount)

    # -- reference values (issue 17) --------------------------------------------------------------

    def add_refvalue_source(
        self,
        source: Mapping[str, Any],
        entries: Iterable[tuple[str, str, str, str]],
        *,
        actor: str,
        now: datetime,
    ) -> int | None:
        """Register a CoRIM in a set with its entries ((value, alg, mkey, environment) each).
        Returns its id, or None when the same file (SHA-256) is in that set already. Counts one
        more reference-value generation (caches everywhere read the sets again)."""
        _aware("now", now)
        _name("refvalue actor", actor)
        rows = list(entries)
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        stmt = (
            insert(REFVALUE_SOURCES)
            .values(**source, entry_count=len(rows), actor=actor, added_at=now)
            .on_conflict_do_nothing(
                index_elements=[REFVALUE_SOURCES.c.set_name, REFVALUE_SOURCES.c.sha256]
            )
            .returning(REFVALUE_SOURCES.c.id)
        )
        got = self._conn.execute(stmt).first()
        if got is None:
            return None
        source_id = int(got[0])
        if rows:
            self._conn.execute(
                REFVALUE_ENTRIES.insert(),
                [
                    {"source_id": source_id, "set_name": source["set_name"], "value": v.lower(), "alg": a,
                     "mkey": k, "environment": e}
                    for v, a, k, e in rows
                ],
            )  # fmt: skip
        self._advance_fact(REFVALUE_GENERATION, now)
        return source_id

    def refvalue_sources(self, set_name: str | None = None) -> list[StoredRefValueSource]:
        """Registered CoRIMs (of one set, or all), oldest first."""
        cols = [c for c in REFVALUE_SOURCES.c if c.name != "document"]
        q = select(*cols).order_by(REFVALUE_SOURCES.c.id)
        if set_name is not None:
            q = q.where(REFVALUE_SOURCES.c.set_name == set_name)
        return [StoredRefValueSource(**row._mapping) for row in self._conn.execute(q)]

    def refvalue_source(
        self, source_id: int
    ) -> tuple[StoredRefValueSource, list[StoredRefValueEntry]] | None:
        """One registered CoRIM and its entries."""
        cols = [c for c in REFVALUE_SOURCES.c if c.name != "document"]
        row = self._conn.execute(select(*cols).where(REFVALUE_SOURCES.c.id == source_id)).first()
        if row is None:
            return None
        e = REFVALUE_ENTRIES.c
        entries = self._conn.execute(
            select(e.source_id, e.set_name, e.value, e.alg, e.mkey, e.environment)
            .where(e.source_id == source_id).order_by(e.id)
        ).all()  # fmt: skip
        return StoredRefValueSource(**row._mapping), [StoredRefValueEntry(*x) for x in entries]

    def withdraw_refvalue_source(self, source_id: int, *, reason: str, now: datetime) -> bool:
        """Withdraw a registered CoRIM: its values stop counting at once. False if it was
        withdrawn already. Counts one more reference-value generation."""
        _aware("now", now)
        if not isinstance(reason, str) or len(reason) > 400:
            raise UsageError("a withdrawal reason is text of at most 400 characters")
        s = REFVALUE_SOURCES.c
        result = self._conn.execute(
            update(REFVALUE_SOURCES)
            .where(s.id == source_id, s.withdrawn_at.is_(None))
            .values(withdrawn_at=now, withdrawn_reason=reason)
        )
        if result.rowcount:
            self._advance_fact(REFVALUE_GENERATION, now)
        return bool(result.rowcount)

    def refvalue_set(
        self, set_name: str, *, now: datetime
    ) -> list[tuple[str, int, str, str | None]]:
        """The values of a set that count at ``now`` (not withdrawn, not expired, begun):
        (value, source id, file name, CoRIM id) each. The sources are read first (a few rows),
        then the set's values on the driver connection (a set may hold 100,000 values, and
        SQLAlchemy's per-row cost was most of the read)."""
        _aware("now", now)
        s, e = REFVALUE_SOURCES.c, REFVALUE_ENTRIES.c
        live = {
            int(i): (str(f), c)
            for i, f, c in self._conn.execute(
                select(s.id, s.file_name, s.corim_id).where(
                    s.set_name == set_name,
                    s.withdrawn_at.is_(None),
                    (s.expires_at.is_(None)) | (s.expires_at > now),
                    (s.not_before.is_(None)) | (s.not_before <= now),
                )
            ).all()
        }
        if not live:
            return []
        driver = self._raw if self._raw is not None else self._pg
        if driver is not None:
            mark = "?" if self._raw is not None else "%s"
            rows = driver.execute(f"SELECT value, source_id FROM refvalue_entries WHERE set_name = {mark}",  # noqa: S608
                                  (set_name,)).fetchall()  # fmt: skip
        else:
            rows = self._conn.execute(
                select(e.value, e.source_id).where(e.set_name == set_name)
            ).all()
        return [(v, sid, *live[sid]) for v, sid in rows if sid in live]

    def refvalue_set_changes_after(self, set_name: str, *, now: datetime) -> datetime | None:
        """The next time a source of the set expires or begins to count (after ``now``)."""
        s = REFVALUE_SOURCES.c
        live = (s.set_name == set_name) & s.withdrawn_at.is_(None)
        ends = self._conn.execute(
            select(func.min(s.expires_at)).where(live, s.expires_at > now)
        ).scalar()
        starts = self._conn.execute(
            select(func.min(s.not_before)).where(live, s.not_before > now)
        ).scalar()
        times = [t for t in (ends, starts) if t is not None]
        return min(times) if times else None

    def _advance_fact(self, name: str, now: datetime) -> str:
        value = str(int(self.domain_fact(name) or "0") + 1)
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        self._conn.execute(
            insert(DOMAIN_FACTS).values(name=name, value=value, recorded_at=now)
            .on_conflict_do_update(index_elements=[DOMAIN_FACTS.c.name],
                                   set_={"value": value, "recorded_at": now})
        )  # fmt: skip
        return value

    # -- audit ---------------------------------------------------------------------------------

    def append_audit(
        self,
        *,
        kind: str,
        actor: str,
        subject: str,
        decision: str | None,
        details: Mapping[str, Any],
        now: datetime,
    ) -> audit.AuditEntry:
        """Append to the hash chain. ``details``: hashes and identifiers only, never secrets."""
        return audit.append_entry(
            self._conn,
            self._dialect,
            raw=self._raw if self._pg is None else self._pg,
            kind=kind,
            actor=actor,
            subject=subject,
            decision=decision,
            details=details,
            now=now,
        )

    def audit_entries(self, *, after_seq: int = 0, limit: int = 100) -> list[audit.AuditEntry]:
        """Entries with ``seq > after_seq``, oldest first, at most ``limit``."""
        return audit.read_entries(self._conn, after_seq, limit)

    def audit_head(self) -> tuple[int, bytes]:
        """(last seq, its entry hash): publish it elsewhere to anchor the chain."""
        return audit.audit_head(self._conn)

    def verify_audit_chain(self) -> audit.AuditReport:
        """Recompute the whole chain as seen by this transaction."""
        return audit.verify_rows(self._conn)


class SecretReads(NamedTuple):
    """What :meth:`Tx.spend_and_read_secret` read."""

    #: The version asked for (None: absent or deleted).
    stored: StoredSecret | None
    #: The latest version, when a version was asked for by number and exists (else None).
    latest: StoredSecret | None
    #: The revocation covering the certificate given, if any.
    revoked: StoredRevocation | None


def _revocation_params(serial_hex: str, measurement: str) -> tuple[str, str, str, str]:
    return ("serial", serial_hex.lower(), "measurement", measurement.lower())


def _secret_row(raw: Any, *, sqlite: bool) -> StoredSecret | None:
    """A secret's row read on the driver connection (the columns of ``_PG_VERSION_ROW``)."""
    if raw is None:
        return None
    # SQLite gives naive UTC text; psycopg an aware datetime (timestamptz).
    created = datetime.fromisoformat(raw[6]).replace(tzinfo=UTC) if sqlite else raw[6]
    return StoredSecret(
        raw[0],
        int(raw[1]),
        raw[2],
        raw[3],
        bytes(raw[4]),
        bytes(raw[5]),
        created.astimezone(UTC),
        bool(raw[7]),
    )


def _policy(row: Any) -> StoredPolicy:
    return StoredPolicy(
        row.kind,
        row.name,
        row.version,
        bytes(row.document),
        row.digest,
        row.actor,
        row.created_at,
        bool(row.active),
        int(row.id),
    )


_NOW = bindparam("now", type_=UTCDateTime())
# INSERT ... ON CONFLICT DO NOTHING RETURNING, in each dialect: no row back = a reused nonce.
_SPEND_NONCE = {
    "postgresql": pg_insert(NONCES)
    .on_conflict_do_nothing(index_elements=["expires_at", "nonce_sha256"])
    .returning(_N.nonce_sha256),
    "sqlite": sqlite_insert(NONCES)
    .on_conflict_do_nothing(index_elements=["expires_at", "nonce_sha256"])
    .returning(_N.nonce_sha256),
}
_PURGE_NONCES = NONCES.delete().where(_N.expires_at <= _NOW)
_PURGE_SOME_NONCES = NONCES.delete().where(
    tuple_(_N.expires_at, _N.nonce_sha256).in_(
        select(_N.expires_at, _N.nonce_sha256)
        .where(_N.expires_at <= _NOW)
        .order_by(_N.expires_at)
        .limit(bindparam("n"))
    )
)
_KBS_SESSION = select(KBS_SESSIONS.c.token).where(
    KBS_SESSIONS.c.session_sha256 == bindparam("key"), KBS_SESSIONS.c.expires_at > _NOW
)
_PURGE_SOME_KBS_SESSIONS = KBS_SESSIONS.delete().where(
    KBS_SESSIONS.c.session_sha256.in_(
        select(KBS_SESSIONS.c.session_sha256)
        .where(KBS_SESSIONS.c.expires_at <= _NOW)
        .limit(bindparam("n"))
    )
)
# Built once (the release hot path reads a secret per request).
_SECRET_LATEST = (
    select(SECRETS)
    .where(SECRETS.c.name == bindparam("name"), SECRETS.c.deleted_at.is_(None))
    .order_by(SECRETS.c.version.desc())
    .limit(1)
)
_SECRET_VERSION = select(SECRETS).where(
    SECRETS.c.name == bindparam("name"),
    SECRETS.c.version == bindparam("version"),
    SECRETS.c.deleted_at.is_(None),
)
_R = REVOCATIONS.c
_REVOCATION_OF = (
    select(_R.kind, _R.value, _R.reason, _R.actor, _R.revoked_at)
    .where(
        ((_R.kind == bindparam("k1")) & (_R.value == bindparam("v1")))
        | ((_R.kind == bindparam("k2")) & (_R.value == bindparam("v2")))
    )
    .order_by(_R.id)
    .limit(1)
)
_REVOCATION_SQL = (
    "SELECT kind, value, reason, actor, revoked_at FROM revocations "
    "WHERE (kind = {p} AND value = {p}) OR (kind = {p} AND value = {p}) ORDER BY id LIMIT 1"
)
_SQLITE_REVOCATION = _REVOCATION_SQL.format(p="?")
_PG_REVOCATION = _REVOCATION_SQL.format(p="%s")
_PG_SPEND_NONCE = (
    "INSERT INTO nonces (nonce_sha256, purpose, issued_at, expires_at, used_at) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (expires_at, nonce_sha256) DO NOTHING RETURNING 1"
)
_PG_LATEST_VERSION_ROW = (
    "SELECT name, version, policy, kek_id, wrapped_dek, ciphertext, created_at, keep_old_policies "
    "FROM secrets "
    "WHERE name = %s AND deleted_at IS NULL ORDER BY version DESC LIMIT 1"
)
_PG_VERSION_ROW = (
    "SELECT name, version, policy, kek_id, wrapped_dek, ciphertext, created_at, keep_old_policies "
    "FROM secrets "
    "WHERE name = %s AND version = %s AND deleted_at IS NULL"
)
# A release's reads on PostgreSQL, in one statement: the nonce's insert (1 if it was unused,
# 0 if used: ON CONFLICT DO NOTHING), the latest version of the secret (NULLs if none) and,
# for a certified release, the revocation covering its certificate (NULLs if none). The
# INSERT of a WITH runs exactly once whether or not its rows are read. Built from this
# module's constant texts only (S608).
_SPENT = f"WITH spent AS ({_PG_SPEND_NONCE}) SELECT (SELECT count(*) FROM spent), "  # noqa: S608
_PG_SPEND_READ = (
    f"{_SPENT}s.* FROM (SELECT 1) AS one LEFT JOIN LATERAL ({_PG_LATEST_VERSION_ROW}) AS s ON true"
)
_PG_SPEND_READ_REVOKED = (
    f"{_SPENT}s.*, r.* FROM (SELECT 1) AS one "
    f"LEFT JOIN LATERAL ({_PG_LATEST_VERSION_ROW}) AS s ON true "
    f"LEFT JOIN LATERAL ({_PG_REVOCATION}) AS r ON true"
)
_SQLITE_SPEND_NONCE = (
    "INSERT INTO nonces (nonce_sha256, purpose, issued_at, expires_at, used_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (expires_at, nonce_sha256) DO NOTHING"
)
_SQLITE_LATEST_VERSION_ROW = (
    "SELECT name, version, policy, kek_id, wrapped_dek, ciphertext, created_at, keep_old_policies "
    "FROM secrets "
    "WHERE name = ? AND deleted_at IS NULL ORDER BY version DESC LIMIT 1"
)
_SQLITE_VERSION_ROW = (
    "SELECT name, version, policy, kek_id, wrapped_dek, ciphertext, created_at, keep_old_policies "
    "FROM secrets "
    "WHERE name = ? AND version = ? AND deleted_at IS NULL"
)
