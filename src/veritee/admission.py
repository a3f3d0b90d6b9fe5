"""Reading the claims out of an admission certificate, and checking a peer against an allow-list.

An admission certificate is an X.509 end-entity certificate issued by the domain CA for a
workload key after its evidence was verified and appraised. Besides the usual fields it carries
three non-critical extensions under :data:`veritee.oids.ARC`, each a DER UTF8String:

=================  ==========================  =====================================
OID                name                        value
=================  ==========================  =====================================
``ARC.1``          :data:`oids.MEASUREMENT`    measurement, hex (16..64 bytes)
``ARC.2``          :data:`oids.PLATFORM`       platform name (``sev-snp``, ``simulated``)
``ARC.3``          :data:`oids.PROFILE`        profile (``development`` ... ``production``)
=================  ==========================  =====================================

The parser is strict: a missing, duplicated or malformed claim raises
:class:`VerificationError`, because a certificate without them says nothing about what runs.
Parsing does not check the signature or the chain; that is the TLS stack's job (or the caller's).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import certs, oids
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.profiles import Profile

__all__ = ["AdmissionInfo", "normalize_measurement", "verify_peer"]

#: Measurement sizes we accept, in bytes (SGX MRENCLAVE 32 ... SNP/TDX/Nitro 48 ... 64).
MIN_MEASUREMENT_BYTES = 16
MAX_MEASUREMENT_BYTES = 64

_PLATFORM_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")

_CLAIMS: tuple[tuple[str, x509.ObjectIdentifier], ...] = (
    ("measurement", oids.MEASUREMENT),
    ("platform", oids.PLATFORM),
)


def normalize_measurement(value: str) -> str:
    """Lower-case hex of a measurement; :class:`UsageError` if it is not 16..64 bytes of hex."""
    if (
        not isinstance(value, str)
        or _HEX_RE.fullmatch(value) is None
        or len(value) % 2
        or not MIN_MEASUREMENT_BYTES * 2 <= len(value) <= MAX_MEASUREMENT_BYTES * 2
    ):
        raise UsageError(
            f"measurement must be {MIN_MEASUREMENT_BYTES}..{MAX_MEASUREMENT_BYTES} bytes of hex",
            code="measurement_malformed",
        )
    return value.lower()


def _claim(cert: x509.Certificate, name: str, oid: x509.ObjectIdentifier) -> str:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        raise VerificationError(
            f"admission certificate has no {name} claim (extension {oid.dotted_string})",
            code="admission_claim_missing",
        ) from None
    except ValueError as exc:  # duplicated or undecodable extensions
        raise VerificationError(
            f"admission certificate extensions do not parse: {exc}",
            code="admission_claim_malformed",
        ) from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise VerificationError(
            f"admission certificate {name} claim has an unexpected type",
            code="admission_claim_malformed",
        )
    try:
        return oids.decode_utf8_string(value.value)
    except (ValueError, UnicodeDecodeError):
        raise VerificationError(
            f"admission certificate {name} claim (extension {oid.dotted_string}) "
            "is not a DER UTF8String",
            code="admission_claim_malformed",
        ) from None


@dataclass(frozen=True)
class AdmissionInfo:
    """What an admission certificate says about the workload holding its key."""

    measurement: str
    platform: str
    #: The attested profile (veritee.binding.attested_profile); None only in certificates
    #: issued before every format's claims carried one (then only simulated ones had it).
    profile: Profile | None
    not_before: datetime
    not_after: datetime
    public_key: ec.EllipticCurvePublicKey
    serial_number: int
    #: SHA-256 (hex) of the certificate DER.
    fingerprint: str
    dns_names: tuple[str, ...]

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> AdmissionInfo:
        """Read the claims; raises :class:`VerificationError` if any is missing or malformed,
        if the key is not an EC key, or if the certificate is a CA certificate."""
        raw = {name: _claim(cert, name, oid) for name, oid in _CLAIMS}
        try:
            measurement = normalize_measurement(raw["measurement"])
        except UsageError:
            raise VerificationError(
                "admission certificate measurement claim is not "
                f"{MIN_MEASUREMENT_BYTES}..{MAX_MEASUREMENT_BYTES} bytes of hex",
                code="admission_claim_malformed",
            ) from None
        if _PLATFORM_RE.fullmatch(raw["platform"]) is None:
            raise VerificationError(
                "admission certificate platform claim is not a platform name",
                code="admission_claim_malformed",
            )
        profile: Profile | None = None
        try:
            cert.extensions.get_extension_for_oid(oids.PROFILE)
            has_profile = True
        except x509.ExtensionNotFound:
            has_profile = False
        except ValueError:
            has_profile = True  # let _claim report the malformed extension
        if has_profile:
            raw["profile"] = _claim(cert, "profile", oids.PROFILE)
        try:
            profile = Profile(raw["profile"]) if has_profile else None
        except ValueError:
            raise VerificationError(
                f"admission certificate profile claim {raw['profile'][:32]!r} is not a profile",
                code="admission_claim_malformed",
            ) from None
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is not None and bc.ca:
            raise VerificationError(
                "admission certificate is a CA certificate", code="admission_not_end_entity"
            )
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise VerificationError(
                "admission certificate key is not an EC key", code="admission_claim_malformed"
            )
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns_names = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            dns_names = ()
        return cls(
            measurement=measurement,
            platform=raw["platform"],
            profile=profile,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            public_key=key,
            serial_number=cert.serial_number,
            fingerprint=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
            dns_names=dns_names,
        )

    @classmethod
    def from_der(cls, der: bytes) -> AdmissionInfo:
        """Parse a DER certificate, then :meth:`from_certificate`."""
        try:
            cert = certs.load_der_certificate(der, "certificate")
        except MalformedError:
            raise VerificationError(
                "admission certificate is not DER X.509", code="admission_cert_malformed"
            ) from None
        return cls.from_certificate(cert)

    @classmethod
    def from_pem(cls, pem: bytes) -> AdmissionInfo:
        """Parse a PEM certificate, then :meth:`from_certificate`."""
        try:
            cert = certs.load_pem_certificate(pem, "certificate")
        except MalformedError:
            raise VerificationError(
                "admission certificate is not PEM X.509", code="admission_cert_malformed"
            ) from None
        return cls.from_certificate(cert)

    def is_valid_at(self, at: datetime) -> bool:
        """``not_before <= at <= not_after`` (``at`` must be timezone-aware)."""
        if at.tzinfo is None:
            raise UsageError("time must be timezone-aware", code="naive_datetime")
        return self.not_before <= at.astimezone(UTC) <= self.not_after


def verify_peer(
    info: AdmissionInfo,
    *,
    allowed_measurements: Iterable[str],
    allowed_platforms: Iterable[str] | None = None,
    allowed_profiles: Iterable[Profile | str] | None = None,
    at: datetime,
) -> None:
    """Check a peer's admission claims against a channel policy; raise if it is not allowed.

    1. the certificate is valid at ``at`` (``peer_certificate_expired`` / ``..._not_yet_valid``);
    2. its measurement is in ``allowed_measurements`` (``peer_measurement_not_allowed``);
       an empty collection allows nobody;
    3. its platform is in ``allowed_platforms`` if given (``peer_platform_not_allowed``);
    4. its profile is in ``allowed_profiles`` if given (``peer_profile_not_allowed``).

    Raises :class:`VerificationError` with the code named above.
    """
    if at.tzinfo is None:
        raise UsageError("time must be timezone-aware", code="naive_datetime")
    at = at.astimezone(UTC)
    if at > info.not_after:
        raise VerificationError(
            f"peer admission certificate expired at {info.not_after.isoformat()}",
            code="peer_certificate_expired",
        )
    if at < info.not_before:
        raise VerificationError(
            f"peer admission certificate is not valid before {info.not_before.isoformat()}",
            code="peer_certificate_not_yet_valid",
        )
    allowed = {normalize_measurement(m) for m in allowed_measurements}
    if info.measurement not in allowed:
        raise VerificationError(
            f"peer measurement {info.measurement[:16]}... is not in the channel allow-list "
            f"({len(allowed)} allowed)",
            code="peer_measurement_not_allowed",
        )
    if allowed_platforms is not None and info.platform not in set(allowed_platforms):
        raise VerificationError(
            f"peer platform {info.platform!r} is not allowed on this channel",
            code="peer_platform_not_allowed",
        )
    if allowed_profiles is not None and info.profile not in {
        Profile.parse(str(p)) for p in allowed_profiles
    }:
        raise VerificationError(
            f"peer profile {info.profile.value if info.profile else 'not attested'!r} "
            "is not allowed on this channel",
            code="peer_profile_not_allowed",
        )
