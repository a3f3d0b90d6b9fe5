"""Storage of the Certifier Service: SQLAlchemy 2 + Alembic, SQLite or PostgreSQL.

::

    storage = Storage(default_sqlite_url(data_dir))     # or "postgresql://user@host/db"
    storage.migrate()                                   # alembic upgrade head; idempotent
    with storage.transaction() as tx:                   # one transaction, StorageError on failure
        nonce = tx.issue_nonce(now=now, ttl=timedelta(minutes=5))
    with storage.transaction() as tx:
        tx.consume_nonce(nonce, now=now)                # NonceError: unknown / expired / reused
        tx.append_audit(kind="attest", actor=..., subject=..., decision="accept",
                        details={"evidence_sha256": ...}, now=now)
    verify_audit_chain(storage)                         # AuditReport(ok, count, first_broken, ...)

Audit details hold hashes and identifiers, never secrets, evidence, keys or tokens.
"""

from __future__ import annotations

from .audit import AuditEntry, AuditReport, canonical_json, entry_hash
from .models import StoredCertificate, StoredFetched, StoredPolicy, StoredSecret, StoredSecretInfo
from .storage import Storage, default_sqlite_url, verify_audit_chain
from .tx import Tx

__all__ = [
    "AuditEntry",
    "AuditReport",
    "Storage",
    "StoredCertificate",
    "StoredFetched",
    "StoredPolicy",
    "StoredSecret",
    "StoredSecretInfo",
    "Tx",
    "canonical_json",
    "default_sqlite_url",
    "entry_hash",
    "verify_audit_chain",
]
