"""The release envelope: which key a workload presented, and the secret encrypted to it.

A workload presents an ephemeral public key with its release request, in one of these forms:

* an X25519 key (raw 32 bytes in base64, or a JWK ``{"kty": "OKP", "crv": "X25519", "x"}``):
  the secret comes back as HPKE (:func:`veritee.keybroker.wrap.hpke_seal`) with ``info`` binding
  name, version and nonce;
* an EC P-256/P-384 or RSA JWK: the secret comes back as a compact JWE whose protected header
  (authenticated as AAD) names the secret, version and nonce.

The evidence must bind this key (:func:`veritee.binding.report_data_for`: nonce, SPKI DER of the
key, profile), so :attr:`Recipient.spki` is what the service checks against.

Every envelope is signed by the key broker (issue 13): ``"signature"`` is ECDSA P-256/SHA-256
(DER, base64) by the broker key over :func:`envelope_message` (the recipient key, the secret's
name and version, the nonce and the ciphertext), and ``"signer"`` is the broker's certificate
(PEM), issued by the domain CA with the extended key usage :data:`veritee.oids.RELEASE_SIGNING`.
A host on the path can encrypt a secret of its choosing to the workload's public key, but it
cannot sign it: :func:`open_envelope` checks the signature and the certificate against the
domain CA before it decrypts anything. :func:`open_envelope` is the workload side (used by the SDK).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

from veritee import oids
from veritee.binding import spki_der
from veritee.errors import MalformedError, VerificationError
from veritee.keybroker.wrap import (
    HPKE_SUITE_NAME,
    Jwe,
    b64url,
    b64url_decode,
    hpke_open,
    hpke_seal,
    jwe_decrypt,
    jwe_encrypt,
    public_key_from_jwk,
    release_info,
)

__all__ = [
    "ENVELOPE_TAG",
    "POP_TAG",
    "EnvelopeSigner",
    "Recipient",
    "envelope_message",
    "open_envelope",
    "parse_recipient",
    "possession_message",
    "seal_envelope",
    "verify_broker_certificate",
    "x25519_jwk",
]

EnvelopeKind = Literal["hpke", "jwe"]


@dataclass(frozen=True)
class Recipient:
    """The workload's ephemeral key as presented, and the envelope it gets."""

    envelope: EnvelopeKind
    key: x25519.X25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    alg: str | None
    spki: bytes


def x25519_jwk(key: x25519.X25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "X25519", "x": b64url(raw)}


def _x25519(raw: bytes) -> x25519.X25519PublicKey:
    if len(raw) != 32:
        raise MalformedError("an X25519 public key is 32 bytes", field="public_key")
    return x25519.X25519PublicKey.from_public_bytes(raw)


def parse_recipient(value: Any) -> Recipient:
    """Read the ``public_key`` of a release request (see the module docstring)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise MalformedError("public_key is not base64", field="public_key") from None
        key = _x25519(raw)
        return Recipient("hpke", key, None, spki_der(key))
    if isinstance(value, Mapping):
        if value.get("kty") == "OKP":
            if value.get("crv") != "X25519":
                raise MalformedError("only X25519 OKP keys are accepted", field="public_key.crv")
            key = _x25519(b64url_decode(value.get("x", ""), "public_key.x"))
            return Recipient("hpke", key, None, spki_der(key))
        jkey = public_key_from_jwk(value)
        alg = value.get("alg")
        return Recipient("jwe", jkey, alg if isinstance(alg, str) else None, spki_der(jkey))
    raise MalformedError("public_key must be base64 X25519 or a JWK object", field="public_key")


ENVELOPE_TAG = b"veritee-release-envelope-v1"
#: Largest ``signer`` certificate (PEM) an envelope may carry.
MAX_SIGNER_PEM = 8192


def envelope_message(
    *, recipient_spki: bytes, name: str, version: int, nonce: bytes, payload: bytes
) -> bytes:
    """What the broker signs: ``ENVELOPE_TAG || SHA-256(recipient SPKI) || SHA-256(name) ||
    u64(version) || SHA-256(nonce) || SHA-256(payload)``; the payload is the HPKE ciphertext
    (raw bytes) or the compact JWE (ASCII)."""
    return (
        ENVELOPE_TAG
        + hashlib.sha256(recipient_spki).digest()
        + hashlib.sha256(name.encode("utf-8")).digest()
        + version.to_bytes(8, "big")
        + hashlib.sha256(nonce).digest()
        + hashlib.sha256(payload).digest()
    )


@dataclass(frozen=True)
class EnvelopeSigner:
    """The key broker's signing key and its certificate (PEM), from the domain."""

    key: ec.EllipticCurvePrivateKey
    certificate_pem: str

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.key.sign(message, ec.ECDSA(hashes.SHA256()))).decode("ascii")


def seal_envelope(
    recipient: Recipient,
    value: bytes,
    *,
    name: str,
    version: int,
    nonce: bytes,
    signer: EnvelopeSigner,
) -> dict[str, Any]:
    """The JSON envelope returned by a release, signed by the key broker."""
    out: dict[str, Any]
    if recipient.envelope == "hpke":
        assert isinstance(recipient.key, x25519.X25519PublicKey)
        blob = hpke_seal(value, recipient.key, info=release_info(name, version, nonce))
        out = {
            "envelope": "hpke",
            "suite": HPKE_SUITE_NAME,
            "name": name,
            "version": version,
            "ciphertext": base64.b64encode(blob).decode("ascii"),
        }
        payload = blob
    else:
        assert not isinstance(recipient.key, x25519.X25519PublicKey)
        jwe = jwe_encrypt(
            value,
            recipient.key,
            alg=recipient.alg,
            extra_header={
                "veritee_secret": name,
                "veritee_version": version,
                "veritee_nonce": nonce.hex(),
            },
        )
        compact = jwe.compact()
        out = {"envelope": "jwe", "name": name, "version": version, "jwe": compact}
        payload = compact.encode("ascii")
    message = envelope_message(
        recipient_spki=recipient.spki, name=name, version=version, nonce=nonce, payload=payload
    )
    out["signature"] = signer.sign(message)
    out["signer"] = signer.certificate_pem
    return out


#: Key broker certificates whose issuer signature, purpose and key were checked, by the SHA-256
#: of the certificate's PEM bytes and of the domain CA's DER: (not before, not after, key). Only
#: successes are kept; the validity window is checked against ``at`` on every call. A workload
#: meets the same broker certificate on every release: its signature check (a P-384 verify,
#: ~0.7 ms) was most of the SDK's CPU per release.
_BROKER_KEYS: OrderedDict[tuple[bytes, bytes], tuple[datetime, datetime, ec.EllipticCurvePublicKey]]
_BROKER_KEYS = OrderedDict()
_BROKER_KEYS_MAX = 32
_BROKER_KEYS_LOCK = threading.Lock()


def verify_broker_certificate(
    pem: Any, ca_certificate: x509.Certificate, *, at: datetime
) -> ec.EllipticCurvePublicKey:
    """The key broker's public key, from its certificate, if the domain CA issued it for
    release signing and it is valid at ``at``; :class:`VerificationError` otherwise.

    The checks that do not depend on ``at`` are made once per certificate and CA (by the
    digests of their bytes, at most ``_BROKER_KEYS_MAX`` kept); the validity window on every call."""
    if not isinstance(pem, str) or not 0 < len(pem) <= MAX_SIGNER_PEM:
        raise MalformedError("envelope signer must be a PEM certificate", field="signer")
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    raw = pem.encode("ascii", "replace")
    cache_key = (
        hashlib.sha256(raw).digest(),
        hashlib.sha256(ca_certificate.public_bytes(serialization.Encoding.DER)).digest(),
    )
    with _BROKER_KEYS_LOCK:
        checked = _BROKER_KEYS.get(cache_key)
        if checked is not None:
            _BROKER_KEYS.move_to_end(cache_key)
    if checked is None:
        checked = _checked_broker_certificate(raw, ca_certificate)  # raises on any failure
        with _BROKER_KEYS_LOCK:
            _BROKER_KEYS[cache_key] = checked
            while len(_BROKER_KEYS) > _BROKER_KEYS_MAX:
                _BROKER_KEYS.popitem(last=False)
    not_before, not_after, key = checked
    if not not_before <= at <= not_after:
        raise VerificationError(
            "the envelope's signer certificate is not valid now", code="envelope_signer_untrusted"
        )
    return key


def _checked_broker_certificate(
    raw: bytes, ca_certificate: x509.Certificate
) -> tuple[datetime, datetime, ec.EllipticCurvePublicKey]:
    """The checks of :func:`verify_broker_certificate` that do not depend on the time."""
    try:
        cert = x509.load_pem_x509_certificate(raw)
    except ValueError:
        raise MalformedError("envelope signer is not a PEM certificate", field="signer") from None
    try:
        cert.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise VerificationError(
            "the envelope's signer is not a key broker of this domain",
            code="envelope_signer_untrusted",
        ) from None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        eku, bc = None, None
    if eku is None or oids.RELEASE_SIGNING not in eku or bc is None or bc.ca:
        raise VerificationError(
            "the envelope's signer certificate is not for release signing",
            code="envelope_signer_untrusted",
        )
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError(
            "the envelope's signer key is not an EC key", code="envelope_signer_untrusted"
        )
    return cert.not_valid_before_utc, cert.not_valid_after_utc, key


def _check_signature(
    envelope: Mapping[str, Any],
    private_key: x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    name: str,
    version: int,
    nonce: bytes,
    payload: bytes,
    ca_certificate: x509.Certificate,
    at: datetime,
) -> None:
    signature = envelope.get("signature")
    if signature is None or envelope.get("signer") is None:
        raise VerificationError(
            "the envelope is not signed by the key broker", code="envelope_unsigned"
        )
    broker = verify_broker_certificate(envelope.get("signer"), ca_certificate, at=at)
    if not isinstance(signature, str) or len(signature) > 200:
        raise MalformedError("envelope signature must be base64", field="signature")
    try:
        sig = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError("envelope signature is not base64", field="signature") from None
    message = envelope_message(
        recipient_spki=spki_der(private_key.public_key()),
        name=name,
        version=version,
        nonce=nonce,
        payload=payload,
    )
    try:
        broker.verify(sig, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError(
            "the envelope's signature does not verify: it was not made by the key broker for "
            "this key, secret, version, nonce and ciphertext",
            code="envelope_signature_invalid",
        ) from None


def open_envelope(
    envelope: Mapping[str, Any],
    private_key: x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    name: str,
    nonce: bytes,
    ca_certificate: x509.Certificate,
    at: datetime,
) -> bytes:
    """Workload side: check a release envelope is the key broker's, for ``name`` and ``nonce``
    and this key, then decrypt it.

    Raises :class:`VerificationError` (``envelope_unsigned``, ``envelope_signer_untrusted``,
    ``envelope_signature_invalid``, ``envelope_invalid``) or :class:`MalformedError`.
    """
    if not isinstance(envelope, Mapping):
        raise MalformedError("the release answer is not a JSON object", field="envelope")
    if envelope.get("name") != name:
        raise VerificationError("the envelope is for another secret", code="envelope_invalid")
    version = envelope.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**63:
        raise MalformedError("envelope version must be an integer", field="version")
    kind = envelope.get("envelope")
    if kind == "hpke":
        if not isinstance(private_key, x25519.X25519PrivateKey):
            raise VerificationError(
                "an HPKE envelope needs the X25519 key", code="envelope_invalid"
            )
        try:
            blob = base64.b64decode(str(envelope.get("ciphertext", "")), validate=True)
        except (binascii.Error, ValueError):
            raise MalformedError("ciphertext is not base64", field="ciphertext") from None
        _check_signature(envelope, private_key, name=name, version=version, nonce=nonce,
                         payload=blob, ca_certificate=ca_certificate, at=at)  # fmt: skip
        return hpke_open(blob, private_key, info=release_info(name, version, nonce))
    if kind == "jwe":
        if isinstance(private_key, x25519.X25519PrivateKey):
            raise VerificationError(
                "a JWE envelope needs an EC or RSA key", code="envelope_invalid"
            )
        compact = str(envelope.get("jwe", ""))
        _check_signature(envelope, private_key, name=name, version=version, nonce=nonce,
                         payload=compact.encode("ascii", "replace"), ca_certificate=ca_certificate,
                         at=at)  # fmt: skip
        jwe = Jwe.parse(compact)
        header = jwe.header
        if (
            header.get("veritee_secret") != name
            or header.get("veritee_version") != version
            or not hmac.compare_digest(str(header.get("veritee_nonce", "")), nonce.hex())
        ):
            raise VerificationError(
                "the JWE is bound to another secret, version or nonce", code="envelope_invalid"
            )
        return jwe_decrypt(jwe, private_key)
    raise MalformedError("unknown envelope kind", field="envelope")


POP_TAG = b"veritee-release-pop-v1"


def possession_message(name: str, nonce: bytes, recipient_spki: bytes) -> bytes:
    """What a certified workload signs to release ``name`` with its admission certificate.

    ``POP_TAG || SHA-256(name) || nonce || SHA-256(recipient SPKI)``: the signature binds the
    secret, the fresh nonce and the key the secret will be encrypted to.
    """
    return (
        POP_TAG
        + hashlib.sha256(name.encode()).digest()
        + nonce
        + hashlib.sha256(recipient_spki).digest()
    )
