"""Test helpers for the SDK tests: an in-test platform and a test domain CA.

The CA issues admission certificates of the same shape as the domain CA
(veritee.domain.issue_admission_certificate): ECDSA P-384 CA key, P-256 workload keys, the
MEASUREMENT/PLATFORM/PROFILE UTF8String extensions, SAN, EKU clientAuth+serverAuth, KeyUsage,
BasicConstraints CA=false, AKI. Each test run makes fresh keys: nothing here is a constant secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from veritee import oids
from veritee.platforms.base import MonotonicCounter, SealingMode
from veritee.profiles import Profile


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def measurement_of(label: str) -> str:
    """A 48-byte measurement (hex) derived from a label."""
    return hashlib.sha384(label.encode()).hexdigest()


@dataclass
class HkdfPlatform:
    """A Platform for tests: sealing keys are HKDF over a per-'install' secret, binding the
    measurement, profile, debug state and context (the contract of veritee.platforms.base)."""

    measurement: str
    secret: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    name: str = "test-tee"
    profile: Profile = Profile.PRODUCTION
    debug: bool = False
    sealing_mode: SealingMode = SealingMode.PLATFORM

    def evidence(self, report_data: bytes) -> bytes:
        return b"test-evidence:" + report_data

    def sealing_key(self, context: bytes) -> bytes:
        state = f"|{self.profile.value}|{int(self.debug)}|".encode()
        return HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"test-platform",
            info=bytes.fromhex(self.measurement) + state + context,
        ).derive(self.secret)

    def monotonic_counter(self, label: str) -> MonotonicCounter | None:
        return None


class TestCA:
    """A self-signed ECDSA P-384 domain CA for tests."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "test domain CA") -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veritee-test"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        t = now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(t - dt.timedelta(days=1))
            .not_valid_after(t + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA384())
        )

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        measurement: str | None,
        platform: str | None = "simulated",
        profile: str | None = "production",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        dns_name: str = "workload.veritee.internal",
        ca: bool = False,
        raw_measurement: bytes | None = None,
    ) -> x509.Certificate:
        """An admission certificate; a claim given as None is left out (for negative tests)."""
        t = now()
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test workload")]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or t - dt.timedelta(seconds=30))
            .not_valid_after(not_after or t + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if raw_measurement is not None:
            b = b.add_extension(
                x509.UnrecognizedExtension(oids.MEASUREMENT, raw_measurement), critical=False
            )
        elif measurement is not None:
            b = b.add_extension(
                x509.UnrecognizedExtension(oids.MEASUREMENT, oids.encode_utf8_string(measurement)),
                critical=False,
            )
        for oid, value in ((oids.PLATFORM, platform), (oids.PROFILE, profile)):
            if value is not None:
                b = b.add_extension(
                    x509.UnrecognizedExtension(oid, oids.encode_utf8_string(value)),
                    critical=False,
                )
        return b.sign(self.key, hashes.SHA384())

    def workload(
        self, measurement: str, **kwargs: object
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A fresh P-256 workload key and its admission certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        return key, self.issue(key.public_key(), measurement=measurement, **kwargs)  # type: ignore[arg-type]
