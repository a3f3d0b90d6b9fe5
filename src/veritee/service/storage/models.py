"""Tables of the Certifier Service database (SQLAlchemy Core), and the records read from them.

The schema is created by the Alembic revisions in ``migrations/versions/`` (written by hand; a
test checks that they agree with the tables here). Tables:

==================  ==========================================================================
``nonces``          challenge nonces: SHA-256 of the nonce as key, purpose, issued/expiry/used
``policies``        signed policy documents, versioned per (kind, name); the newest version of
                    each name is in force (``active``), several names at once
``certificates``    admission certificates issued by the domain CA
``revocations``     revoked admission certificates, by serial or by measurement
``secrets``         key-broker secrets: one row per version, envelope-encrypted, soft-deleted;
                    the newest version's policy also binds older versions unless it says not
``audit_log``       append-only, hash-chained audit entries (UPDATE/DELETE refused by triggers)
``key_stores``      workloads' key stores: highest certified key generation, freshness counter
``kbs_sessions``    attested Trustee KBS sessions: SHA-256 of the session id, the session's EAR
                    token and its expiry (purged once expired)
``domain_facts``    what every replica must agree on: the KEK's identifier (``kek_id``)
``sealing_roots``   the key broker's sealing root (domain-released sealing keys derive from it),
                    only wrapped by the KEK; one row per generation, never updated
``collateral_marks`` the newest DCAP collateral the domain accepted, per part and subject (FMSPC,
                    QE identity, CRL issuer): only ever raised, never rolled back
``refvalue_sources`` registered CoRIMs (issue 17): the named set they feed, the file, its SHA-256
                    and bytes, the signer (name, key SHA-256), who added it and when, expiry,
                    withdrawal (never deleted)
``refvalue_entries`` the reference values of each source: value (hex), algorithm, mkey and
                    environment, indexed by (set, value)
``collateral_fetched`` collateral the service fetched (KDS, PCS, PCCS), one row per cache path,
                    with its refresh state (failures, next try, a lease): shared by replicas
==================  ==========================================================================

Times are timezone-aware UTC datetimes in Python. PostgreSQL stores them as ``timestamptz``;
SQLite stores naive UTC text, which orders correctly as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)

__all__ = [
    "AUDIT_LOG",
    "CERTIFICATES",
    "COLLATERAL_FETCHED",
    "DOMAIN_FACTS",
    "KBS_SESSIONS",
    "KEY_STORES",
    "METADATA",
    "NONCES",
    "POLICIES",
    "REFVALUE_ENTRIES",
    "REFVALUE_SOURCES",
    "REVOCATIONS",
    "SEALING_ROOTS",
    "SECRETS",
    "StoredCertificate",
    "StoredFetched",
    "StoredPolicy",
    "StoredRefValueEntry",
    "StoredRefValueSource",
    "StoredRevocation",
    "StoredSecret",
    "StoredSecretInfo",
    "UTCDateTime",
    "sqlite_time",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

METADATA = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (naive UTC text on SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass a timezone-aware time")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def sqlite_time(moment: datetime) -> str:
    """``moment`` as SQLAlchemy stores it in SQLite: naive UTC ``YYYY-MM-DD HH:MM:SS.ffffff``.

    Used by the hot paths that bypass SQLAlchemy; text comparison then orders by time.
    """
    if moment.tzinfo is UTC:
        # already UTC: its own ISO text without the "+00:00" (the same text, without the copies)
        return moment.isoformat(" ", "microseconds")[:-6]
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the database; pass a timezone-aware time")
    # naive UTC in ISO form with a space and always six digits of microseconds: the same text
    # as the fields one by one (four-digit year, two-digit fields), formatted in C
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# Spent nonces, keyed by (expires_at, nonce_sha256): a nonce's lifetime is read from its own
# bytes (nonces.NonceMinter.check), so one nonce always has one key and a replay conflicts as
# with the hash alone; keys in time order make each insert land on the last page of one b-tree
# (WITHOUT ROWID on SQLite: the rows are the key's b-tree), which the purge by expires_at reads
# too. The hash alone as key put each insert on a random page of its index, plus the rowid
# table's page and the expires_at index's (migration 0012).
NONCES = Table(
    "nonces",
    METADATA,
    Column("nonce_sha256", LargeBinary(32), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("expires_at", "nonce_sha256"),
    sqlite_with_rowid=False,
)

POLICIES = Table(
    "policies",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("document", LargeBinary, nullable=False),
    Column("digest", String(128), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("active", Boolean(create_constraint=False), nullable=False),
    UniqueConstraint("kind", "name", "version"),
    Index(None, "kind", "active"),
)

CERTIFICATES = Table(
    "certificates",
    METADATA,
    # X.509 serials are up to 20 octets: too wide for BIGINT, so they are kept as lowercase hex.
    Column("serial_hex", String(42), primary_key=True),
    Column("subject_key_sha256", String(64), nullable=False),
    Column("measurement", String(200), nullable=False),
    Column("platform", String(32), nullable=False),
    Column("not_before", UTCDateTime(), nullable=False),
    Column("not_after", UTCDateTime(), nullable=False),
    Column("pem", Text, nullable=False),
    Index(None, "subject_key_sha256"),
    Index(None, "measurement"),
)

REVOCATIONS = Table(
    "revocations",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # "serial" (value: the certificate's serial, lowercase hex) or "measurement" (lowercase
    # hex: every admission certificate certifying it, issued before or after).
    Column("kind", String(16), nullable=False),
    Column("value", String(200), nullable=False),
    Column("reason", String(400), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=False),
    UniqueConstraint("kind", "value"),
)

SECRETS = Table(
    "secrets",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("policy", Text, nullable=False),
    Column("kek_id", String(200), nullable=False),
    Column("wrapped_dek", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime(), nullable=True),
    # True: releases of OLDER versions are decided by their own policies only (the operator
    # said so at rotation). False: they must also satisfy this (newer) version's policy.
    Column(
        "keep_old_policies",
        Boolean(create_constraint=False),
        nullable=False,
        server_default=false(),
    ),
    UniqueConstraint("name", "version"),
)

AUDIT_LOG = Table(
    "audit_log",
    METADATA,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    # ``at`` and ``details`` are kept as the exact text that was hashed.
    Column("at", String(40), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("decision", String(16), nullable=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("entry_hash", LargeBinary(32), nullable=False),
)

KEY_STORES = Table(
    "key_stores",
    METADATA,
    # SHA-256 (hex) of the store's identity: platform, attested profile and the store's random id
    # (veritee.service.keystores.store_identity). The measurement is not part of it, so that a
    # store that survives an upgrade (domain-released sealing) keeps its record.
    Column("store_sha256", String(64), primary_key=True),
    # The highest key generation certified for this store; lower ones are superseded.
    Column("generation", BigInteger, nullable=False),
    # SHA-256 (hex) of the SPKI of the key certified last at that generation.
    Column("subject_key_sha256", String(64), nullable=False),
    # The store's freshness counter (0 until the workload uses one).
    Column("counter", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


KBS_SESSIONS = Table(
    "kbs_sessions",
    METADATA,
    Column("session_sha256", LargeBinary(32), primary_key=True),
    Column("token", Text, nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index(None, "expires_at"),
)

SEALING_ROOTS = Table(
    "sealing_roots",
    METADATA,
    # 1, 2, ...: the newest is in use (veritee.keybroker.sealing_keys).
    Column("generation", Integer, primary_key=True, autoincrement=False),
    # The KEK that wrapped it, and the root wrapped by it (32 bytes, never stored in plaintext).
    Column("kek_id", String(64), nullable=False),
    Column("wrapped_root", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

DOMAIN_FACTS = Table(
    "domain_facts",
    METADATA,
    # What every replica of the domain must agree on, recorded by the first one that starts:
    # ``kek_id`` (the identifier of the KEK of the secrets, never the key); and
    # ``collateral_generation``, counting reloads of the collateral folder (every replica follows).
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
)


COLLATERAL_MARKS = Table(
    "collateral_marks",
    METADATA,
    # veritee.collateral.marks: kind tcb_info / qe_identity / pck_crl / root_crl, its subject
    # (FMSPC, QE identity id, CRL issuer) and value (tcbEvaluationDataNumber, or thisUpdate in
    # seconds since 1970). Only ever raised (Tx.raise_collateral_marks).
    Column("kind", String(16), primary_key=True),
    Column("subject", String(200), primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("source", String(400), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
)


REFVALUE_SOURCES = Table(
    "refvalue_sources",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("set_name", String(64), nullable=False),
    Column("file_name", String(400), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("document", LargeBinary, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("corim_id", String(200), nullable=True),
    Column("profile", String(400), nullable=True),
    Column("scheme", String(32), nullable=True),
    # the signer as the CoRIM's corim-meta names it, and the SHA-256 of the key that verified it
    # (NULL: an unsigned CoRIM an admin registered explicitly)
    Column("signer_name", String(200), nullable=True),
    Column("signer_key_sha256", String(64), nullable=True),
    Column("not_before", UTCDateTime(), nullable=True),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("entry_count", Integer, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("added_at", UTCDateTime(), nullable=False),
    Column("withdrawn_at", UTCDateTime(), nullable=True),
    Column("withdrawn_reason", String(400), nullable=True),
    UniqueConstraint("set_name", "sha256"),
)

REFVALUE_ENTRIES = Table(
    "refvalue_entries",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", Integer, nullable=False, index=True),
    Column("set_name", String(64), nullable=False),
    Column("value", String(256), nullable=False),  # lowercase hex
    Column("alg", String(40), nullable=False),
    Column("mkey", String(400), nullable=False),
    Column("environment", Text, nullable=False),  # JSON
    # covering: a set is read whole (its values and their sources) from the index alone
    Index("ix_refvalue_entries_set_name_source_id_value", "set_name", "source_id", "value"),
)


COLLATERAL_FETCHED = Table(
    "collateral_fetched",
    METADATA,
    # veritee.service.collateral_refresh: one item of fetched collateral per cache path
    # (``intel/tdx/<FMSPC>-<ca>.json``, ``amd/<product>/vcek_crl.der``, ...); ``data`` is None
    # until a fetch succeeded. Written only after the item passed the same checks as installed
    # collateral (signatures to the pinned roots, windows, high-water marks).
    Column("path", String(200), primary_key=True),
    Column("data", LargeBinary, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("fetched_at", UTCDateTime(), nullable=True),  # when ``data`` last changed
    Column("checked_at", UTCDateTime(), nullable=True),  # the last successful fetch
    Column("next_try", UTCDateTime(), nullable=True),  # refresh (or retry, backing off) from then
    Column("failures", Integer, nullable=False, default=0),  # consecutive failed fetches
    Column("last_error", String(400), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),  # one fetcher per item at a time
    Column("lease_holder", String(64), nullable=True),
)


@dataclass(frozen=True)
class StoredFetched:
    """One item of fetched collateral and its refresh state."""

    path: str
    data: bytes | None = field(repr=False)
    sha256: str | None
    fetched_at: datetime | None
    checked_at: datetime | None
    next_try: datetime | None
    failures: int
    last_error: str | None


@dataclass(frozen=True)
class StoredPolicy:
    """One version of a signed policy document (the signature was checked before storing)."""

    kind: str
    name: str
    version: int
    document: bytes = field(repr=False)
    digest: str
    actor: str
    created_at: datetime
    active: bool
    #: The row's id: unique per stored version, of every name (caches compare it).
    id: int = 0


@dataclass(frozen=True)
class StoredCertificate:
    """An admission certificate the domain CA issued."""

    serial: int
    subject_key_sha256: str
    measurement: str
    platform: str
    not_before: datetime
    not_after: datetime
    pem: str = field(repr=False)


@dataclass(frozen=True)
class StoredRevocation:
    """A revocation: ``kind`` ``serial`` or ``measurement``, and the revoked value (hex)."""

    kind: str
    value: str
    reason: str
    actor: str
    revoked_at: datetime


@dataclass(frozen=True)
class StoredSecret:
    """One version of a secret, still envelope-encrypted (``wrapped_dek`` under KEK ``kek_id``)."""

    name: str
    version: int
    policy: str
    kek_id: str
    wrapped_dek: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)
    created_at: datetime
    #: Set at rotation: older versions keep their own release policies (see ``SECRETS``).
    keep_old_policies: bool = False


@dataclass(frozen=True)
class StoredSecretInfo:
    """What listing shows of a secret: names and versions, never key material."""

    name: str
    latest_version: int
    versions: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredRefValueSource:
    """A registered CoRIM (one set's source of reference values) and its provenance."""

    id: int
    set_name: str
    file_name: str
    sha256: str
    kind: str
    corim_id: str | None
    profile: str | None
    scheme: str | None
    signer_name: str | None
    signer_key_sha256: str | None
    not_before: datetime | None
    expires_at: datetime | None
    entry_count: int
    actor: str
    added_at: datetime
    withdrawn_at: datetime | None
    withdrawn_reason: str | None

    def status(self, now: datetime) -> str:
        if self.withdrawn_at is not None:
            return "withdrawn"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.not_before is not None and now < self.not_before:
            return "not_yet_valid"
        return "active"


@dataclass(frozen=True)
class StoredRefValueEntry:
    """One reference value of a source: its value (hex), algorithm, mkey and environment."""

    source_id: int
    set_name: str
    value: str
    alg: str
    mkey: str
    environment: str
