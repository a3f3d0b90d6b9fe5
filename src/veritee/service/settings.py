"""Service settings: where the domain lives, which database, limits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from veritee.evidence.trust import TrustRoot

__all__ = ["DEFAULT_ISSUER", "Settings"]

#: The ``iss`` of EAR tokens unless configured (``veritee serve --issuer``).
DEFAULT_ISSUER = "veritee"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    #: SQLAlchemy URL; None = the embedded SQLite database in the data folder.
    database_url: str | None = None
    nonce_ttl: dt.timedelta = dt.timedelta(seconds=120)
    max_body_bytes: int = 1024 * 1024
    #: How long a policy read from the database is cached before it is checked again.
    policy_cache_seconds: float = 1.0
    issuer: str = DEFAULT_ISSUER
    #: Use TCB info, QE identity and CRLs an attester sends with its evidence (ranked below the
    #: domain's own collateral, which always wins for an FMSPC). Off: only the attester's
    #: certificates are used, as path candidates up to a pinned root (issue 11 item 3).
    accept_attester_collateral: bool = False
    #: The pinned vendor roots (None: the genuine ones, :meth:`TrustRoot.default`).
    trust_root: TrustRoot | None = None
    #: Seconds /readyz waits for the database to take its probe write before answering 503.
    readiness_timeout: float = 2.0
    #: One JSON line per request on the ``veritee.access`` logger (veritee.service.serving).
    access_log: bool = False
    #: The attester driver the service attests itself with (``veritee serve --attest-self``:
    #: ``simulated``, ``auto`` or a hardware platform); None: it publishes no evidence of itself.
    attest_self: str | None = None
    #: The driver's state (the simulated platform's key); None: ``<data>/service-platform``.
    attest_state_dir: Path | None = None
    #: The TLS certificate the service is served with (its key is bound by its evidence).
    tls_certificate: Path | None = None
