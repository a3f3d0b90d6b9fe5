"""Who may sign a log: the workload key an admission certificate of the tenant's domain certifies.

A tree head proves only that the holder of a key signed it. The tenant learns that the key is
the attested workload's from the admission certificate the domain CA issued for it, after the
workload's evidence was verified and appraised (:mod:`veritee.admission`). So before
trusting a log, the tenant checks, in order:

1. the certificate is issued by the domain CA the tenant trusts (its signature, checked with the
   CA's key): ``certificate_wrong_issuer``;
2. it is an end-entity admission certificate whose claims parse (``admission_*`` codes);
3. its measurement is one the tenant expects (``log_signer_measurement_not_allowed``), its
   platform too when the tenant names platforms (``log_signer_platform_not_allowed``), and its
   profile when the tenant names profiles (``log_signer_profile_not_allowed``).

What depends on the log, :func:`veritee.logs.tenant.check_segments` checks with the
:class:`AdmittedSigner`: the log's profile is the one the certificate attests, and the
certificate is valid at the time of the latest verified head (finding ``signer``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import certs
from veritee.admission import AdmissionInfo, normalize_measurement
from veritee.errors import VerificationError
from veritee.logs.runs import ADMISSION_FILE
from veritee.profiles import Profile

__all__ = ["ADMISSION_FILE", "AdmittedSigner", "admitted_signer", "load_certificate"]


@dataclass(frozen=True)
class AdmittedSigner:
    """A log-signing key with the admission claims that bind it to an attested workload."""

    public_key: ec.EllipticCurvePublicKey
    info: AdmissionInfo


def load_certificate(data: bytes, field: str) -> x509.Certificate:
    """A PEM or DER certificate (MalformedError naming ``field`` otherwise)."""
    if b"-----BEGIN" in data:
        return certs.load_pem_certificate(data, field)
    return certs.load_der_certificate(data, field)


def admitted_signer(
    certificate: x509.Certificate,
    ca_certificate: x509.Certificate,
    *,
    measurements: Iterable[str] | None,
    platforms: Iterable[str] | None = None,
    profiles: Iterable[Profile | str] | None = None,
) -> AdmittedSigner:
    """Check an admission certificate as a log signer (module docstring, steps 1-3).

    ``measurements=None`` accepts any measurement the domain admitted (the caller says so on
    purpose); an empty collection accepts none. Raises :class:`VerificationError`.
    """
    try:  # 1. issued by the domain CA
        certificate.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise VerificationError(
            "the signer's certificate is not issued by the given domain CA",
            code="certificate_wrong_issuer",
        ) from None
    info = AdmissionInfo.from_certificate(certificate)  # 2. an admission certificate
    if measurements is not None:  # 3. the workload the tenant expects
        allowed = {normalize_measurement(m) for m in measurements}
        if info.measurement not in allowed:
            raise VerificationError(
                f"the signer's measurement {info.measurement[:16]}... is not one of the "
                f"{len(allowed)} expected",
                code="log_signer_measurement_not_allowed",
            )
    if platforms is not None and info.platform not in set(platforms):
        raise VerificationError(
            f"the signer runs on platform {info.platform!r}, not an expected one",
            code="log_signer_platform_not_allowed",
        )
    if profiles is not None and info.profile not in {Profile.parse(str(p)) for p in profiles}:
        shown = info.profile.value if info.profile else "not attested"
        raise VerificationError(
            f"the signer's attested profile ({shown}) is not an expected one",
            code="log_signer_profile_not_allowed",
        )
    return AdmittedSigner(info.public_key, info)
