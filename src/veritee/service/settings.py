"""Service settings: where the domain lives, which database, limits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from veritee.collateral.fetch import DEFAULT_AMD_KDS, DEFAULT_INTEL_PCS, FetchConfig
from veritee.collateral.freshness import Backoff
from veritee.evidence.trust import TrustRoot

__all__ = ["DEFAULT_ISSUER", "Settings"]

#: The ``iss`` of EAR tokens unless configured (``veritee serve --issuer``).
DEFAULT_ISSUER = "veritee"
__all__ = ["CollateralFetch", "Settings"]


@dataclass(frozen=True)
class CollateralFetch:
    """Where and how the service fetches collateral (:mod:`veritee.service.collateral_refresh`).

    ``pccs``: an Intel PCCS that serves the PCS API v4 paths (it then replaces ``pcs``, and its
    ``/sgx/certification/v4/rootcacrl`` is the root CA CRL); ``kds`` and ``pcs`` point at AMD
    KDS and Intel PCS or a stand-in.
    """

    kds: str = DEFAULT_AMD_KDS
    pcs: str = DEFAULT_INTEL_PCS
    pccs: str | None = None
    #: The Intel SGX Root CA CRL (default: the PCCS's, else the root's CRL distribution point).
    intel_root_crl: str | None = None
    #: Seconds one HTTP request may take.
    timeout: float = 10.0
    #: Fetch, when an attestation needs it, what the domain lacks (bounded by ``lazy_wait``).
    lazy: bool = True
    #: Seconds an attestation waits for a fetch it triggered (others share that fetch).
    lazy_wait: float = 20.0
    #: Seconds between the background checks of what is due (each worker; one fetches: leases).
    check_seconds: float = 300.0
    #: Items are fetched again at half their window, and at least this often (new revocations).
    interval: dt.timedelta = dt.timedelta(hours=24)
    #: ... and at most this often (a vendor that publishes nothing newer is not asked in a loop).
    minimum: dt.timedelta = dt.timedelta(minutes=10)
    backoff: Backoff = field(default_factory=Backoff)

    def fetch_config(self) -> FetchConfig:
        pcs = (self.pccs or self.pcs).rstrip("/")
        root_crl = self.intel_root_crl or (
            f"{pcs}/sgx/certification/v4/rootcacrl" if self.pccs else None
        )
        return FetchConfig(
            amd_kds=self.kds, intel_pcs=pcs, intel_root_crl=root_crl, timeout=self.timeout
        )


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
    #: Fetch and refresh collateral from AMD KDS / Intel PCS / a PCCS (None: never fetch; only
    #: the collateral folder decides).
    collateral_fetch: CollateralFetch | None = None
    #: /readyz says ``degraded`` when collateral is this close to its nextUpdate.
    collateral_warn_before: dt.timedelta = dt.timedelta(hours=48)
    #: The service's clock (None: the system clock). Tests pass their own.
    clock: Callable[[], dt.datetime] | None = None


def fetch_settings(
    on: bool, *, pccs: str | None = None, kds: str | None = None, pcs: str | None = None
) -> CollateralFetch | None:
    """The fetch settings ``veritee serve`` passes (None when fetching is off); each URL must
    be http(s) (UsageError otherwise)."""
    from veritee.errors import UsageError

    for name, url in (("--pccs", pccs), ("--kds", kds), ("--pcs", pcs)):
        if url is not None and not url.startswith(("https://", "http://")):
            raise UsageError(f"{name} {url!r} is not an http(s) URL")
    if not on:
        return None
    base = CollateralFetch()
    return CollateralFetch(pccs=pccs, kds=kds or base.kds, pcs=pcs or base.pcs)
