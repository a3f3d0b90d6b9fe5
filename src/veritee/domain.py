"""A security domain on disk: its policy key and CA, token key, admin credential and database.

``veritee init`` creates one; the service and the CLI open it. Layout of the data folder::

    domain.json          name, creation time, key ids (no secrets)
    policy_key.pem       0600  ECDSA P-384: signs policies and is the domain CA key
    domain_ca.pem              self-signed domain CA certificate (give this to workloads)
    token_key.pem        0600  ECDSA P-256: signs EAR attestation-result tokens (ES256)
    admin_token          0600  the admin bearer credential
    veritee.db                 the embedded SQLite database (unless --db names another)
    collateral/                vendor collateral the service reads (see `veritee collateral fetch`)
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from veritee import oids
from veritee.errors import UsageError

__all__ = ["Domain", "default_data_dir", "issue_admission_certificate", "write_private"]

POLICY_KEY = "policy_key.pem"
CA_CERT = "domain_ca.pem"
TOKEN_KEY = "token_key.pem"  # noqa: S105 - a file name
ADMIN_TOKEN = "admin_token"  # noqa: S105 - a file name
DOMAIN_FILE = "domain.json"
CA_LIFETIME = dt.timedelta(days=3650)


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/veritee`` (``~/.local/share/veritee`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "veritee"


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"{path} does not hold an EC private key")
    return key


def _kid(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:32]


@dataclass
class Domain:
    """An opened domain: keys loaded in memory, paths known."""

    path: Path
    name: str
    policy_key: ec.EllipticCurvePrivateKey
    ca_certificate: x509.Certificate
    token_key: ec.EllipticCurvePrivateKey
    admin_token_sha256: bytes
    _derived: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    @functools.cached_property
    def token_kid(self) -> str:
        """Key id of the token key (SHA-256 of its SPKI, truncated), as in the JWKS."""
        return _kid(self.token_key.public_key())

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose of the service (nonce tags, KBS session cookies).

        Derived from the token key with HKDF-SHA256 (``info`` names the purpose), so every
        process and replica holding the domain's keys shares it without another file;
        rotating the token key rotates it.
        """
        key = self._derived.get(purpose)
        if key is None:
            scalar = self.token_key.private_numbers().private_value.to_bytes(32, "big")
            info = b"veritee/v1 " + purpose.encode()
            key = HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(scalar)
            self._derived[purpose] = key
        return key

    @functools.cached_property
    def nonce_key(self) -> bytes:
        """The key of the service's challenge nonces (``veritee.service.storage.nonces``)."""
        return self.derive_key("nonce key")

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.path / 'veritee.db'}"

    @property
    def collateral_dir(self) -> Path:
        return self.path / "collateral"

    @property
    def ca_pem(self) -> bytes:
        return self.ca_certificate.public_bytes(serialization.Encoding.PEM)

    def check_admin(self, token: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), self.admin_token_sha256)

    def admin_token(self) -> str:
        """Read the admin credential (for local CLI use)."""
        return (self.path / ADMIN_TOKEN).read_text().strip()

    @classmethod
    def create(cls, path: Path, *, name: str = "veritee-domain", now: dt.datetime) -> Domain:
        """Create a new domain under ``path``; refuses to overwrite an existing one."""
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (path / DOMAIN_FILE).exists():
            raise UsageError(f"a domain already exists in {path}")
        policy_key = ec.generate_private_key(ec.SECP384R1())
        token_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veritee"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{name} domain CA"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(policy_key.public_key())
        ca = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(policy_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(policy_key, hashes.SHA384())
        )
        admin = secrets.token_urlsafe(32)
        write_private(path / POLICY_KEY, _pem_private(policy_key))
        write_private(path / TOKEN_KEY, _pem_private(token_key))
        write_private(path / ADMIN_TOKEN, (admin + "\n").encode())
        (path / CA_CERT).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (path / "collateral").mkdir(exist_ok=True)
        meta: dict[str, Any] = {
            "name": name,
            "created_at": now.isoformat(),
            "policy_key_id": _kid(policy_key.public_key()),
            "token_kid": _kid(token_key.public_key()),
            "format": 1,
        }
        (path / DOMAIN_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return cls.open(path)

    @classmethod
    def open(cls, path: Path) -> Domain:
        if not (path / DOMAIN_FILE).is_file():
            raise UsageError(f"no domain in {path}: run `veritee init --data {path}` first")
        meta = json.loads((path / DOMAIN_FILE).read_text())
        ca = x509.load_pem_x509_certificate((path / CA_CERT).read_bytes())
        admin = (path / ADMIN_TOKEN).read_text().strip()
        return cls(
            path=path,
            name=str(meta.get("name", "veritee-domain")),
            policy_key=_load_ec_key(path / POLICY_KEY),
            ca_certificate=ca,
            token_key=_load_ec_key(path / TOKEN_KEY),
            admin_token_sha256=hashlib.sha256(admin.encode()).digest(),
        )


def issue_admission_certificate(
    domain: Domain,
    public_key: ec.EllipticCurvePublicKey,
    *,
    claims: dict[str, Any],
    now: dt.datetime,
    lifetime: dt.timedelta,
    dns_name: str = "workload.veritee.internal",
) -> x509.Certificate:
    """An X.509 admission certificate for an attested workload key, issued by the domain CA.

    Carries the attested measurement, platform and profile in veritee's extensions
    (:mod:`veritee.oids`), so peers can check them on an attested channel.
    """
    measurement = str(claims.get("measurement") or "")
    platform = str(claims.get("platform") or "")
    profile = claims.get("profile")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veritee"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, domain.name[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{platform} workload {measurement[:16]}"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(domain.ca_certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=30))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(domain.policy_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.UnrecognizedExtension(oids.MEASUREMENT, oids.encode_utf8_string(measurement)),
            critical=False,
        )
        .add_extension(
            x509.UnrecognizedExtension(oids.PLATFORM, oids.encode_utf8_string(platform)),
            critical=False,
        )
    )
    if profile:
        # The attested profile (veritee.binding.attested_profile), which evidence.verify adds to
        # every format's claims.
        builder = builder.add_extension(
            x509.UnrecognizedExtension(oids.PROFILE, oids.encode_utf8_string(str(profile))),
            critical=False,
        )
    return builder.sign(domain.policy_key, hashes.SHA384())
