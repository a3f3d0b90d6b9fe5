"""The Certifier Service's evidence of itself (``veritee serve --attest-self PLATFORM``).

At start the service opens its platform's attester driver (the simulated one in development,
whose measurement is then that of the ``veritee`` package it runs, :func:`veritee.platforms.measure.measure`)
and produces evidence whose report data binds the statement of the keys it uses
(:func:`veritee.service_proof.key_statement`, :func:`veritee.binding.service_report_data`): a
platform that cannot attest stops the start (the operator asked for it). ``GET
/v1/domain/evidence`` serves it; each request compares the statement with the keys in use and
produces new evidence when they differ (the keys rotated). Relying parties check it with
:func:`veritee.service_proof.verify_service_evidence`.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from veritee.binding import service_report_data
from veritee.domain import Domain
from veritee.errors import UsageError
from veritee.service_proof import key_statement

__all__ = ["BINDING_FORMULA", "ServiceAttester", "open_service_platform"]

log = logging.getLogger(__name__)

BINDING_FORMULA = 'SHA-512("veritee-service-v1" || 0x00 || canonical JSON of statement)'
#: What the simulated platform measures for the service: the package it runs.
SIMULATED_SERVICE_MEASURES = "veritee"


def open_service_platform(name: str, state_dir: Path) -> Any:
    """The attester driver the service attests itself with: ``simulated`` (its key under
    ``state_dir``; it measures the veritee package), a hardware platform
    (:data:`veritee.platforms.detect.HARDWARE`), or ``auto`` (the TEE found; none is an error,
    never a silent stand-in)."""
    from veritee.platforms.detect import HARDWARE, detect, open_hardware

    if name == "auto":
        found = detect()
        if found is None:
            raise UsageError("--attest-self auto: no TEE found here; name the platform (simulated for "
                             "development)", code="platform_absent")  # fmt: skip
        name = found
    if name == "simulated":
        from veritee.platforms.measure import measure
        from veritee.platforms.simulated import SimulatedPlatform

        return SimulatedPlatform(state_dir, measurement=measure(SIMULATED_SERVICE_MEASURES))
    if name not in (*HARDWARE, "azure"):
        raise UsageError(f"--attest-self {name!r}: not a platform; known: auto, simulated, {', '.join(HARDWARE)}",
                         code="platform_unknown")  # fmt: skip
    return open_hardware(name, state_dir=state_dir)


def tls_public_key(certificate_file: Path | None) -> Any:
    """The public key of the service's TLS certificate (PEM file), or None without TLS."""
    if certificate_file is None:
        return None
    try:
        return x509.load_pem_x509_certificate(certificate_file.read_bytes()).public_key()
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the TLS certificate {certificate_file}: {e}") from None


class ServiceAttester:
    """The service's evidence document, produced again whenever the keys in use change."""

    def __init__(
        self, platform: Any, domain: Domain, *, issuer: str, tls_certificate: Path | None
    ) -> None:
        self.platform = platform
        self.domain = domain
        self.issuer = issuer
        self.tls_certificate = tls_certificate
        self._tls_key = tls_public_key(tls_certificate)
        self._tls_pem = tls_certificate.read_text() if tls_certificate is not None else None
        self._lock = threading.Lock()
        self._document: dict[str, Any] | None = None
        self.document()  # at start: a platform that cannot attest stops the service here

    def statement(self) -> dict[str, Any]:
        d = self.domain
        return key_statement(issuer=self.issuer, admission=d.ca_key.public_key(), broker=d.broker_key.public_key(),
                             tokens=[d.token_key.public_key()], tls=self._tls_key)  # fmt: skip

    def document(self) -> dict[str, Any]:
        """The current evidence document (module docstring)."""
        statement = self.statement()
        with self._lock:
            if self._document is not None and self._document["statement"] == statement:
                return self._document
            evidence = self.platform.evidence(service_report_data(statement))
            collateral = dict(getattr(self.platform, "collateral", dict)())
            platform_key = getattr(self.platform, "public_key", None)
            if self.platform.name == "simulated" and platform_key is not None:
                # the platform key, for information: a relying party trusts it only through its policy
                collateral.setdefault(
                    "platform_key.pem",
                    platform_key.public_bytes(
                        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                    ),
                )
            from veritee.tokens import jwk_of

            d = self.domain
            self._document = {
                "format": self.platform.name,
                "evidence": base64.b64encode(evidence).decode(),
                "statement": statement,
                "binding": BINDING_FORMULA,
                "produced_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                "collateral": [
                    {"name": n, "data": base64.b64encode(v).decode()}
                    for n, v in sorted(collateral.items())
                ],
                "keys": {
                    "jwks": {"keys": [jwk_of(d.token_key.public_key(), d.token_kid)]},
                    "ca_certificate": d.ca_pem.decode(),
                    "broker_certificate": d.broker_certificate_pem,
                    "tls_certificate": self._tls_pem,
                },
            }
            log.info(
                "service evidence produced (%s, %s)",
                self.platform.name,
                statement["keys"]["tokens"][0][:12],
            )
            return self._document
