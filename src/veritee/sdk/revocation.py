"""Revoked admission certificates, as the domain publishes them: its CRL (issue 12.2).

The Certifier Service publishes at ``GET /v1/crl`` an X.509 v2 CRL (RFC 5280, DER) signed by
the domain CA, listing every revoked admission certificate that has not expired (by serial, and
every certificate of a revoked measurement). An attested channel checks its peer against it
(:mod:`veritee.sdk.channel`, ``revocations=``):

- :class:`RevocationList`: one CRL, checked when it is made: it parses, is signed by the domain
  CA, names it as issuer, and is current (``thisUpdate`` <= now <= ``nextUpdate``). Give one to
  a channel when you get the CRL some other way (a file, a relying party's own fetch).
- :class:`ServiceRevocations`: fetches the CRL from the service (through the SDK's ``httpx``
  client) at most every ``refresh`` (30 s by default) and when the one held is no longer current.
  This is what :class:`veritee.sdk.trust.Trust` uses for ``connect`` and ``serve``. A
  revocation therefore reaches a channel within ``refresh``. If no current CRL can be had, the
  check fails closed (``crl_unavailable``).

A revoked peer is refused with ``certificate_revoked``.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol, runtime_checkable

import httpx
from cryptography import x509

from veritee import certs
from veritee.errors import MalformedError, VerificationError

__all__ = ["CRL_PATH", "RevocationCheck", "RevocationList", "ServiceRevocations"]

CRL_PATH = "/v1/crl"
#: How far ahead of this clock the service's clock may be (a CRL made "in the future").
CLOCK_SKEW = dt.timedelta(minutes=5)
#: A CRL larger than this is refused (a domain's CRL lists revoked, unexpired certificates).
MAX_CRL_BYTES = 8 * 1024 * 1024


@runtime_checkable
class RevocationCheck(Protocol):
    """What a channel asks: raise :class:`VerificationError` unless ``serial`` may be used."""

    def check(self, serial: int, at: dt.datetime) -> None: ...


class RevocationList:
    """A domain CRL, verified against the domain CA certificate (see the module docstring)."""

    def __init__(
        self, crl: x509.CertificateRevocationList, ca_certificate: x509.Certificate
    ) -> None:
        if crl.issuer != ca_certificate.subject:
            raise VerificationError(
                "the CRL is not issued by the domain CA", code="crl_issuer_mismatch"
            )
        try:
            valid = crl.is_signature_valid(ca_certificate.public_key())  # type: ignore[arg-type]
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise VerificationError("the CRL is not signed by the domain CA", code="crl_invalid")
        self.this_update = crl.last_update_utc
        self.next_update = crl.next_update_utc
        self.serials = frozenset(r.serial_number for r in crl)

    @classmethod
    def from_der(cls, data: bytes, ca_certificate: x509.Certificate) -> RevocationList:
        """Parse and verify a DER CRL (``MalformedError`` / ``VerificationError``)."""
        if len(data) > MAX_CRL_BYTES:
            raise MalformedError(f"CRL larger than {MAX_CRL_BYTES} bytes", code="oversized")
        return cls(certs.load_der_crl(data, "crl"), ca_certificate)

    def is_current(self, at: dt.datetime) -> bool:
        """``thisUpdate`` <= ``at`` (allowing :data:`CLOCK_SKEW`) <= ``nextUpdate``."""
        return self.this_update <= at + CLOCK_SKEW and (
            self.next_update is not None and at <= self.next_update
        )

    def check(self, serial: int, at: dt.datetime) -> None:
        """``crl_expired`` if this CRL is not current at ``at``; ``certificate_revoked`` if it
        lists ``serial``."""
        if not self.is_current(at):
            raise VerificationError("the domain CRL is not current", code="crl_expired")
        if serial in self.serials:
            raise VerificationError(
                f"the peer's admission certificate {serial:x} is revoked",
                code="certificate_revoked",
            )


class ServiceRevocations:
    """The service's CRL, fetched at most every ``refresh`` (see the module docstring)."""

    def __init__(
        self,
        client: httpx.Client,
        ca_certificate: x509.Certificate,
        *,
        refresh: dt.timedelta = dt.timedelta(seconds=30),
    ) -> None:
        self._client = client
        self._ca = ca_certificate
        self.refresh = refresh
        self._lock = threading.Lock()
        self._held: RevocationList | None = None
        self._fetched_at: dt.datetime | None = None

    def current(self, at: dt.datetime) -> RevocationList:
        """A current CRL: the one held if fetched less than ``refresh`` ago, else a new one."""
        with self._lock:
            held, fetched = self._held, self._fetched_at
            if (
                held is not None
                and fetched is not None
                and held.is_current(at)
                and (at - fetched < self.refresh)
            ):
                return held
            try:
                r = self._client.get(CRL_PATH)
                if r.status_code != 200:
                    raise VerificationError(f"HTTP {r.status_code}", code="crl_unavailable")
                fresh = RevocationList.from_der(r.content, self._ca)
            except (httpx.HTTPError, VerificationError, MalformedError) as e:
                detail = (
                    e.message
                    if isinstance(e, VerificationError | MalformedError)
                    else type(e).__name__
                )
                raise VerificationError(
                    f"no current revocation list of the domain: {detail}", code="crl_unavailable"
                ) from None
            self._held, self._fetched_at = fresh, at
            return fresh

    def check(self, serial: int, at: dt.datetime) -> None:
        self.current(at).check(serial, at)
