"""A security domain on disk: its CA, policy, key-broker and token keys, admin credential, database.

``veritee init`` creates one; the service and the CLI open it. Each key has one role, so that one
compromise gives one power (issue 13). Layout of the data folder (format 2)::

    domain.json          name, creation time, format, key ids (no secrets)
    ca_key.pem           0600  ECDSA P-384: the domain CA key (admission certificates, the
                               service's TLS certificate, the key broker's certificate)
    domain_ca.pem              self-signed domain CA certificate (give this to workloads)
    policy_key.pem       0600  ECDSA P-384: signs appraisal policies, nothing else
    broker_key.pem       0600  ECDSA P-256: the key broker's signing key (release envelopes,
                               freshness-counter answers)
    broker_cert.pem            its certificate, issued by the domain CA (re-issued when it nears
                               expiry)
    token_key.pem        0600  ECDSA P-256: signs EAR attestation-result tokens (ES256)
    admin_token.hmac     0600  what the service checks the admin credential against: a salted
                               HMAC-SHA256 of it (the service never reads the credential itself)
    admin_token          0600  the admin bearer credential: the operator's copy, read by the CLI
                               only (``veritee init --admin-token-file`` puts it elsewhere; the
                               service runs without it)
    veritee.db                 the embedded SQLite database (unless --db names another)
    collateral/                vendor collateral the service reads (see `veritee collateral fetch`)

Format 1 (earlier builds) had one key, ``policy_key.pem``, for both the CA and policies.
Opening such a folder migrates it, once, under a file lock: the key stays the CA key (copied to
``ca_key.pem``; every workload's ``domain_ca.pem`` stays valid), a new policy key is made, and a
broker key and certificate are added. Policies stored before, signed by the old key, stay valid
as stored (``legacy_policy_key_id`` in ``domain.json``) until they are re-signed; new policies
must be signed by the new policy key. Folders copied to several replicas: migrate one copy
(``veritee init --upgrade --data DIR``) and copy it to the others, or each copy would make its
own policy key.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from veritee import certs, oids
from veritee.binding import key_id
from veritee.errors import UsageError

if TYPE_CHECKING:
    from veritee.appraisal import SignedPolicy
    from veritee.keybroker.release import EnvelopeSigner

__all__ = [
    "AdminVerifier",
    "Domain",
    "default_data_dir",
    "issue_admission_certificate",
    "issue_broker_certificate",
    "write_private",
]

POLICY_KEY = "policy_key.pem"
CA_KEY = "ca_key.pem"
CA_CERT = "domain_ca.pem"
BROKER_KEY = "broker_key.pem"
BROKER_CERT = "broker_cert.pem"
FORMAT = 2
LOCK_FILE = ".domain.lock"
BROKER_CERT_LIFETIME = dt.timedelta(days=365)
#: Re-issue the broker certificate when it has less than this left.
BROKER_CERT_RENEW = dt.timedelta(days=30)
TOKEN_KEY = "token_key.pem"  # noqa: S105 - a file name
ADMIN_TOKEN = "admin_token"  # noqa: S105 - a file name
ADMIN_VERIFIER = "admin_token.hmac"
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
    return key_id(public_key, length=32)


@dataclass
class Domain:
    """An opened domain: keys loaded in memory, paths known."""

    path: Path
    name: str
    #: The domain CA key: signs certificates only.
    ca_key: ec.EllipticCurvePrivateKey
    ca_certificate: x509.Certificate
    #: Signs appraisal policies only.
    policy_key: ec.EllipticCurvePrivateKey
    #: The key broker's signing key and its certificate (issued by the domain CA).
    broker_key: ec.EllipticCurvePrivateKey
    broker_certificate: x509.Certificate
    token_key: ec.EllipticCurvePrivateKey
    admin_verifier: AdminVerifier
    #: The key that signed policies before the keys were split (the CA key), or None.
    legacy_policy_key: ec.EllipticCurvePublicKey | None = None
    _derived: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def verify_policy(self, document: bytes, *, stored: bool) -> SignedPolicy:
        """Check a signed policy envelope against the policy key; return it.

        ``stored=True`` is for documents already in the database: those signed before the
        keys were split, by :attr:`legacy_policy_key`, are accepted too until re-signed. A
        policy being installed must be signed by the policy key (``policy_wrong_key``).
        """
        from veritee.appraisal import SignedPolicy
        from veritee.errors import PolicyError

        try:
            return SignedPolicy.from_bytes(document, self.policy_key.public_key())
        except PolicyError as exc:
            if exc.code != "policy_wrong_key" or not stored or self.legacy_policy_key is None:
                raise
        return SignedPolicy.from_bytes(document, self.legacy_policy_key)

    @functools.cached_property
    def broker_certificate_pem(self) -> str:
        return self.broker_certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @functools.cached_property
    def envelope_signer(self) -> EnvelopeSigner:
        """What signs release envelopes (:mod:`veritee.keybroker.release`): the broker key."""
        from veritee.keybroker.release import EnvelopeSigner

        return EnvelopeSigner(self.broker_key, self.broker_certificate_pem)

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
        """Whether ``token`` is the admin credential (constant time)."""
        return self.admin_verifier.check(token)

    def admin_token(self) -> str:
        """Read the admin credential (for local CLI use)."""
        return (self.path / ADMIN_TOKEN).read_text().strip()

    @classmethod
    def create(cls, path: Path, *, name: str = "veritee-domain", now: dt.datetime,
               admin_token_file: Path | None = None) -> Domain:  # fmt: skip
        """Create a new domain under ``path``; refuses to overwrite an existing one.

        The admin credential goes to ``admin_token_file`` (default ``path/admin_token``); the
        folder keeps only its verifier (module docstring)."""
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (path / DOMAIN_FILE).exists():
            raise UsageError(f"a domain already exists in {path}")
        ca_key = ec.generate_private_key(ec.SECP384R1())
        policy_key = ec.generate_private_key(ec.SECP384R1())
        token_key = ec.generate_private_key(ec.SECP256R1())
        ca = _ca_certificate(ca_key, name, now)
        admin = secrets.token_urlsafe(32)
        write_private(path / CA_KEY, _pem_private(ca_key))
        write_private(path / POLICY_KEY, _pem_private(policy_key))
        write_private(path / TOKEN_KEY, _pem_private(token_key))
        write_private(admin_token_file or path / ADMIN_TOKEN, (admin + "\n").encode())
        AdminVerifier.make(admin).write(path / ADMIN_VERIFIER)
        (path / CA_CERT).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        _ensure_broker(path, ca_key, ca, name, now)
        (path / "collateral").mkdir(exist_ok=True)
        meta: dict[str, Any] = {
            "name": name,
            "created_at": now.isoformat(),
            "format": FORMAT,
            "ca_key_id": _kid(ca_key.public_key()),
            "policy_key_id": _kid(policy_key.public_key()),
            "token_kid": _kid(token_key.public_key()),
        }
        _write_meta(path, meta)
        return cls.open(path)

    @classmethod
    def open(cls, path: Path, *, now: dt.datetime | None = None) -> Domain:
        """Open the domain in ``path``, migrating a format-1 folder first (module docstring)."""
        if not (path / DOMAIN_FILE).is_file():
            raise UsageError(f"no domain in {path}: run `veritee init --data {path}` first")
        now = now or dt.datetime.now(dt.UTC)
        meta = _read_meta(path)
        if (
            meta.get("format") != FORMAT
            or not (path / BROKER_CERT).is_file()
            or _broker_due(path, now)
        ):
            meta = upgrade(path, now=now)
        ca = x509.load_pem_x509_certificate((path / CA_CERT).read_bytes())
        ca_key = _load_ec_key(path / CA_KEY)
        if _spki(ca_key.public_key()) != _spki(ca.public_key()):
            raise UsageError(f"{path / CA_KEY} is not the key of {path / CA_CERT}")
        verifier = AdminVerifier.open(path)
        legacy = ca.public_key() if meta.get("legacy_policy_key_id") else None
        if legacy is not None and not isinstance(legacy, ec.EllipticCurvePublicKey):
            raise UsageError(f"{path / CA_CERT} does not hold an EC key")
        return cls(
            path=path,
            name=str(meta.get("name", "veritee-domain")),
            ca_key=ca_key,
            ca_certificate=ca,
            policy_key=_load_ec_key(path / POLICY_KEY),
            broker_key=_load_ec_key(path / BROKER_KEY),
            broker_certificate=x509.load_pem_x509_certificate((path / BROKER_CERT).read_bytes()),
            token_key=_load_ec_key(path / TOKEN_KEY),
            admin_verifier=verifier,
            legacy_policy_key=legacy,
        )


@dataclass(frozen=True)
class AdminVerifier:
    """The admin credential as the service keeps it: HMAC-SHA256 under a random salt.

    The credential is 32 random bytes (``secrets.token_urlsafe``), so a fast keyed hash is
    enough: there is nothing to guess. A folder of an earlier build has only the credential
    (``admin_token``); :meth:`open` then makes the verifier from it, once, under the domain's
    file lock (a migration: the credential stays the same).
    """

    salt: bytes
    mac: bytes

    @classmethod
    def make(cls, token: str) -> AdminVerifier:
        salt = secrets.token_bytes(32)
        return cls(salt, _admin_mac(salt, token))

    def check(self, token: str) -> bool:
        h = crypto_hmac.HMAC(self.salt, hashes.SHA256())
        h.update(token.encode())
        try:
            h.verify(self.mac)  # constant time
        except InvalidSignature:
            return False
        return True

    def write(self, path: Path) -> None:
        doc = {"alg": "hmac-sha256", "salt": self.salt.hex(), "mac": self.mac.hex()}
        write_private(path, (json.dumps(doc) + "\n").encode())

    @classmethod
    def open(cls, folder: Path) -> AdminVerifier:
        """Read ``folder``'s verifier, making it from the credential if only that is there."""
        path = folder / ADMIN_VERIFIER
        if not path.is_file():
            with open(folder / LOCK_FILE, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not path.is_file():
                    try:
                        token = (folder / ADMIN_TOKEN).read_text().strip()
                    except OSError:
                        raise UsageError(
                            f"no admin credential verifier in {folder} ({ADMIN_VERIFIER})"
                        ) from None
                    cls.make(token).write(path)
        try:
            doc = json.loads(path.read_text())
            if doc.get("alg") != "hmac-sha256":
                raise ValueError("unknown alg")
            return cls(bytes.fromhex(doc["salt"]), bytes.fromhex(doc["mac"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"{path} is not an admin credential verifier") from None


def _admin_mac(salt: bytes, token: str) -> bytes:
    h = crypto_hmac.HMAC(salt, hashes.SHA256())
    h.update(token.encode())
    return h.finalize()


def _spki(key: ec.EllipticCurvePublicKey | Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / DOMAIN_FILE).read_text())
    except ValueError:
        raise UsageError(f"{path / DOMAIN_FILE} is not JSON") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{path / DOMAIN_FILE} is not a JSON object")
    return meta


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    tmp = path / (DOMAIN_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path / DOMAIN_FILE)


def _broker_due(path: Path, now: dt.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate((path / BROKER_CERT).read_bytes())
    except (OSError, ValueError):
        return True
    return cert.not_valid_after_utc - now < BROKER_CERT_RENEW


def upgrade(path: Path, *, now: dt.datetime) -> dict[str, Any]:
    """Bring the domain folder ``path`` to format 2; idempotent, under a file lock.

    Every step looks at the files, not at ``domain.json`` alone, so a migration cut short by a
    crash resumes where it stopped: the CA key is whichever key matches ``domain_ca.pem``.
    Returns the new ``domain.json`` contents.
    """
    with open(path / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        meta = _read_meta(path)
        ca = x509.load_pem_x509_certificate((path / CA_CERT).read_bytes())
        ca_spki = _spki(ca.public_key())
        # 1. The CA key: format 1 kept it in policy_key.pem.
        if not (path / CA_KEY).is_file():
            old = _load_ec_key(path / POLICY_KEY)
            if _spki(old.public_key()) != ca_spki:
                raise UsageError(f"neither {CA_KEY} nor {POLICY_KEY} in {path} is the CA's key")
            write_private(path / CA_KEY, _pem_private(old))
        ca_key = _load_ec_key(path / CA_KEY)
        if _spki(ca_key.public_key()) != ca_spki:
            raise UsageError(f"{path / CA_KEY} is not the key of {path / CA_CERT}")
        # 2. A policy key of its own; policies signed by the old one stay valid as stored.
        if _spki(_load_ec_key(path / POLICY_KEY).public_key()) == ca_spki:
            meta["legacy_policy_key_id"] = _kid(ca_key.public_key())
            meta["policy_key_split_at"] = now.isoformat()
            _write_meta(path, meta)  # recorded before the new key replaces the old file
            policy_key = ec.generate_private_key(ec.SECP384R1())
            write_private(path / POLICY_KEY, _pem_private(policy_key))
        # 3. The key broker's signing key and certificate.
        _ensure_broker(path, ca_key, ca, str(meta.get("name", "veritee-domain")), now)
        meta["format"] = FORMAT
        meta["ca_key_id"] = _kid(ca_key.public_key())
        meta["policy_key_id"] = _kid(_load_ec_key(path / POLICY_KEY).public_key())
        _write_meta(path, meta)
        return meta


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, name: str, now: dt.datetime
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veritee"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} domain CA"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )


def _ensure_broker(
    path: Path,
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    name: str,
    now: dt.datetime,
) -> None:
    """Make the broker key if missing; (re-)issue its certificate if missing or near expiry."""
    if (path / BROKER_KEY).is_file():
        key = _load_ec_key(path / BROKER_KEY)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(path / BROKER_KEY, _pem_private(key))
    if (path / BROKER_CERT).is_file() and not _broker_due(path, now):
        current = x509.load_pem_x509_certificate((path / BROKER_CERT).read_bytes())
        if _spki(current.public_key()) == _spki(key.public_key()):
            return
    cert = issue_broker_certificate(ca_key, ca, key.public_key(), name=name, now=now)
    tmp = path / (BROKER_CERT + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path / BROKER_CERT)


def issue_broker_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    *,
    name: str,
    now: dt.datetime,
    lifetime: dt.timedelta = BROKER_CERT_LIFETIME,
) -> x509.Certificate:
    """The key broker's certificate: end entity, digitalSignature, EKU veritee release signing."""
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veritee"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"{name} key broker"),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + lifetime, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            certs.SIGNING_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([oids.RELEASE_SIGNING]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
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
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
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
            x509.AuthorityKeyIdentifier.from_issuer_public_key(domain.ca_key.public_key()),
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
    return builder.sign(domain.ca_key, hashes.SHA384())
