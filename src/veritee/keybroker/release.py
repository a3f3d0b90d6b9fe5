"""The release envelope: which key a workload presented, and the secret encrypted to it.

A workload presents an ephemeral public key with its release request, in one of these forms:

* an X25519 key (raw 32 bytes in base64, or a JWK ``{"kty": "OKP", "crv": "X25519", "x"}``):
  the secret comes back as HPKE (:func:`veritee.keybroker.wrap.hpke_seal`) with ``info`` binding
  name, version and nonce;
* an EC P-256/P-384 or RSA JWK: the secret comes back as a compact JWE whose protected header
  (authenticated as AAD) names the secret, version and nonce.

The evidence must bind this key (:func:`veritee.binding.report_data_for`: nonce, SPKI DER of the
key, profile), so :attr:`Recipient.spki` is what the service checks against. :func:`open_envelope` is the workload side (used by the SDK).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

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
    "POP_TAG",
    "Recipient",
    "open_envelope",
    "parse_recipient",
    "possession_message",
    "seal_envelope",
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


def seal_envelope(
    recipient: Recipient, value: bytes, *, name: str, version: int, nonce: bytes
) -> dict[str, Any]:
    """The JSON envelope returned by a release."""
    if recipient.envelope == "hpke":
        assert isinstance(recipient.key, x25519.X25519PublicKey)
        blob = hpke_seal(value, recipient.key, info=release_info(name, version, nonce))
        return {
            "envelope": "hpke",
            "suite": HPKE_SUITE_NAME,
            "name": name,
            "version": version,
            "ciphertext": base64.b64encode(blob).decode("ascii"),
        }
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
    return {"envelope": "jwe", "name": name, "version": version, "jwe": jwe.compact()}


def open_envelope(
    envelope: Mapping[str, Any],
    private_key: x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    name: str,
    nonce: bytes,
) -> bytes:
    """Workload side: decrypt a release envelope and check it is for ``name`` and ``nonce``."""
    if envelope.get("name") != name:
        raise VerificationError("the envelope is for another secret", code="envelope_invalid")
    version = envelope.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
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
        return hpke_open(blob, private_key, info=release_info(name, version, nonce))
    if kind == "jwe":
        if isinstance(private_key, x25519.X25519PrivateKey):
            raise VerificationError(
                "a JWE envelope needs an EC or RSA key", code="envelope_invalid"
            )
        jwe = Jwe.parse(str(envelope.get("jwe", "")))
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
