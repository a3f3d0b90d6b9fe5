"""Encrypting a released secret to the workload's ephemeral key (and the matching decrypt).

Two envelopes:

* **HPKE** (RFC 9180, base mode, single shot) with the suite
  DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM. ``info`` binds the secret name,
  version and the release nonce (:func:`release_info`), so a ciphertext for one release does not
  decrypt as another. The blob is ``enc (32 bytes) || ciphertext``.
* **JWE** (RFC 7516) with ``enc = A256GCM`` and ``alg`` one of
  ``ECDH-ES+A256KW`` (P-256 / P-384 recipient; Concat KDF of RFC 7518 §4.6.2 with SHA-256, then
  AES key wrap, RFC 3394), ``RSA-OAEP`` and ``RSA-OAEP-256`` (both OAEP with SHA-256 and MGF1-
  SHA-256: Confidential Containers guest components decrypt ``RSA-OAEP`` this way, which differs
  from RFC 7518's SHA-1) and ``RSA1_5`` (legacy guests only). Compact (five dot-separated parts)
  and flattened JSON (RFC 7516 §7.2.2, what the Trustee KBS protocol returns) serializations.
  The AAD is ``ASCII(BASE64URL(UTF8(protected header)))`` as RFC 7516 §5.1 step 14 requires.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, keywrap
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from veritee.errors import MalformedError, UsageError, VerificationError

__all__ = [
    "HPKE_SUITE_NAME",
    "JWE_ALGS",
    "Jwe",
    "b64url",
    "b64url_decode",
    "concat_kdf",
    "hpke_open",
    "hpke_seal",
    "jwe_decrypt",
    "jwe_encrypt",
    "jwk_from_public_key",
    "public_key_from_jwk",
    "release_info",
]

HPKE_SUITE_NAME = "HPKE-Base-X25519-SHA256-AES256GCM"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_INFO_TAG = b"veritee-release-v1"
X25519_ENC_SIZE = 32
JWE_ENC = "A256GCM"
JWE_ALGS = ("ECDH-ES+A256KW", "RSA-OAEP", "RSA-OAEP-256", "RSA1_5")
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
}
MIN_RSA_BITS = 2048

RecipientPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
RecipientPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, field: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedError("expected a base64url string", field=field)
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedError("not valid base64url", field=field) from None


# --- HPKE ----------------------------------------------------------------------------------


def release_info(name: str, version: int, nonce: bytes) -> bytes:
    """HPKE ``info``: tag, then name, version and nonce, each length-prefixed (4 bytes BE)."""
    parts = (name.encode("utf-8"), str(version).encode("ascii"), nonce)
    return _INFO_TAG + b"".join(struct.pack(">I", len(p)) + p for p in parts)


def hpke_seal(plaintext: bytes, recipient: x25519.X25519PublicKey, *, info: bytes) -> bytes:
    """Encrypt to an X25519 public key; returns ``enc || ciphertext``."""
    return _SUITE.encrypt(plaintext, recipient, info=info)


def hpke_open(blob: bytes, private_key: x25519.X25519PrivateKey, *, info: bytes) -> bytes:
    """Decrypt an :func:`hpke_seal` blob; a wrong key, info or a flipped bit raises."""
    if len(blob) < X25519_ENC_SIZE + 16:
        raise MalformedError("HPKE envelope is too short", field="ciphertext")
    try:
        return _SUITE.decrypt(blob, private_key, info=info)
    except (InvalidTag, ValueError):
        raise VerificationError(
            "HPKE envelope does not decrypt (other key, other release, or tampered)",
            code="envelope_invalid",
        ) from None


# --- JWK -----------------------------------------------------------------------------------


def public_key_from_jwk(jwk: Mapping[str, Any]) -> RecipientPublicKey:
    """Load an EC (P-256/P-384) or RSA public JWK; refuses anything else, naming the field."""
    if not isinstance(jwk, Mapping):
        raise MalformedError("public key must be a JWK object", field="jwk")
    kty = jwk.get("kty")
    if kty == "EC":
        crv = jwk.get("crv")
        if crv not in _CURVES:
            raise MalformedError(f"unsupported curve {str(crv)[:16]!r}", field="jwk.crv")
        curve_cls, size = _CURVES[str(crv)]
        x = b64url_decode(jwk.get("x", ""), "jwk.x")
        y = b64url_decode(jwk.get("y", ""), "jwk.y")
        if len(x) != size or len(y) != size:
            raise MalformedError(f"{crv} coordinates must be {size} bytes", field="jwk.x")
        try:
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve_cls()
            ).public_key()
        except ValueError:
            raise MalformedError("EC point is not on the curve", field="jwk") from None
    if kty == "RSA":
        n = int.from_bytes(b64url_decode(jwk.get("n", ""), "jwk.n"), "big")
        e = int.from_bytes(b64url_decode(jwk.get("e", ""), "jwk.e"), "big")
        if n.bit_length() < MIN_RSA_BITS:
            raise MalformedError(f"RSA modulus below {MIN_RSA_BITS} bits", field="jwk.n")
        if e < 3 or e % 2 == 0:
            raise MalformedError("RSA exponent is invalid", field="jwk.e")
        return rsa.RSAPublicNumbers(e, n).public_key()
    raise MalformedError(f"unsupported key type {str(kty)[:16]!r}", field="jwk.kty")


def jwk_from_public_key(key: RecipientPublicKey, *, alg: str | None = None) -> dict[str, str]:
    """The public JWK of ``key`` (as Trustee's ``tee-pubkey``), with ``alg`` if given."""
    out: dict[str, str]
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(key.curve.name)
        if crv is None:
            raise UsageError(f"curve {key.curve.name} is not supported for JWE")
        size = _CURVES[crv][1]
        nums = key.public_numbers()
        out = {
            "kty": "EC",
            "crv": crv,
            "x": b64url(nums.x.to_bytes(size, "big")),
            "y": b64url(nums.y.to_bytes(size, "big")),
        }
    else:
        rnums = key.public_numbers()
        out = {
            "kty": "RSA",
            "n": b64url(rnums.n.to_bytes((rnums.n.bit_length() + 7) // 8, "big")),
            "e": b64url(rnums.e.to_bytes((rnums.e.bit_length() + 7) // 8, "big")),
        }
    if alg is not None:
        out["alg"] = alg
    return out


# --- JWE -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Jwe:
    """The parts of a JWE with one recipient."""

    protected_b64: str
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes
    tag: bytes

    @property
    def header(self) -> dict[str, Any]:
        parsed = json.loads(b64url_decode(self.protected_b64, "protected"))
        if not isinstance(parsed, dict):
            raise MalformedError("JWE protected header is not an object", field="protected")
        return parsed

    def compact(self) -> str:
        return ".".join(
            (
                self.protected_b64,
                b64url(self.encrypted_key),
                b64url(self.iv),
                b64url(self.ciphertext),
                b64url(self.tag),
            )
        )

    def flattened(self) -> dict[str, str]:
        """RFC 7516 §7.2.2 flattened JSON; ``aad`` as Trustee writes it (the AEAD input)."""
        return {
            "protected": self.protected_b64,
            "encrypted_key": b64url(self.encrypted_key),
            "aad": self.protected_b64,
            "iv": b64url(self.iv),
            "ciphertext": b64url(self.ciphertext),
            "tag": b64url(self.tag),
        }

    @classmethod
    def parse(cls, token: str | Mapping[str, Any]) -> Jwe:
        if isinstance(token, str):
            parts = token.split(".")
            if len(parts) != 5:
                raise MalformedError("compact JWE needs five parts", field="jwe")
            prot, ek, iv, ct, tag = parts
        elif isinstance(token, Mapping):
            prot = token.get("protected", "")
            ek, iv = token.get("encrypted_key", ""), token.get("iv", "")
            ct, tag = token.get("ciphertext", ""), token.get("tag", "")
        else:
            raise MalformedError("JWE must be a compact string or a JSON object", field="jwe")
        if not isinstance(prot, str) or not prot:
            raise MalformedError("missing protected header", field="protected")
        return cls(
            protected_b64=prot,
            encrypted_key=b64url_decode(ek, "encrypted_key"),
            iv=b64url_decode(iv, "iv"),
            ciphertext=b64url_decode(ct, "ciphertext"),
            tag=b64url_decode(tag, "tag"),
        )


def concat_kdf(z: bytes, alg_id: str, key_bits: int, apu: bytes = b"", apv: bytes = b"") -> bytes:
    """RFC 7518 §4.6.2: OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo."""
    alg = alg_id.encode("ascii")
    other = b"".join(
        (
            struct.pack(">I", len(alg)),
            alg,
            struct.pack(">I", len(apu)),
            apu,
            struct.pack(">I", len(apv)),
            apv,
            struct.pack(">I", key_bits),
        )
    )
    return ConcatKDFHash(hashes.SHA256(), key_bits // 8, otherinfo=other).derive(z)


def _default_alg(recipient: RecipientPublicKey) -> str:
    return "ECDH-ES+A256KW" if isinstance(recipient, ec.EllipticCurvePublicKey) else "RSA-OAEP"


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def jwe_encrypt(
    plaintext: bytes,
    recipient: RecipientPublicKey | Mapping[str, Any],
    *,
    alg: str | None = None,
    extra_header: Mapping[str, Any] | None = None,
) -> Jwe:
    """Encrypt ``plaintext`` with a fresh A256GCM key wrapped to ``recipient`` (key or JWK)."""
    if isinstance(recipient, Mapping):
        jwk_alg = recipient.get("alg")
        recipient = public_key_from_jwk(recipient)
        alg = alg or (jwk_alg if isinstance(jwk_alg, str) else None)
    alg = alg or _default_alg(recipient)
    if alg not in JWE_ALGS:
        raise UsageError(f"unsupported JWE alg {alg[:32]!r}; supported: {', '.join(JWE_ALGS)}")
    cek = AESGCM.generate_key(bit_length=256)
    header: dict[str, Any] = {"alg": alg, "enc": JWE_ENC}
    if alg == "ECDH-ES+A256KW":
        if not isinstance(recipient, ec.EllipticCurvePublicKey):
            raise UsageError("ECDH-ES+A256KW needs an EC recipient key")
        eph = ec.generate_private_key(recipient.curve)
        z = eph.exchange(ec.ECDH(), recipient)
        encrypted_key = keywrap.aes_key_wrap(concat_kdf(z, alg, 256), cek)
        header["epk"] = jwk_from_public_key(eph.public_key())
    else:
        if not isinstance(recipient, rsa.RSAPublicKey):
            raise UsageError(f"{alg} needs an RSA recipient key")
        pad: padding.AsymmetricPadding = padding.PKCS1v15() if alg == "RSA1_5" else _oaep()
        encrypted_key = recipient.encrypt(cek, pad)
    if extra_header:
        for k, v in extra_header.items():
            if k in header:
                raise UsageError(f"extra JWE header {k!r} would override a required one")
            header[k] = v
    protected_b64 = b64url(json.dumps(header, separators=(",", ":")).encode("utf-8"))
    iv = secrets.token_bytes(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected_b64.encode("ascii"))
    return Jwe(protected_b64, encrypted_key, iv, sealed[:-16], sealed[-16:])


def jwe_decrypt(token: str | Mapping[str, Any] | Jwe, private_key: RecipientPrivateKey) -> bytes:
    """Decrypt a JWE made by :func:`jwe_encrypt` (or any JWE using the same algorithms)."""
    jwe = token if isinstance(token, Jwe) else Jwe.parse(token)
    header = jwe.header
    alg, enc = header.get("alg"), header.get("enc")
    if enc != JWE_ENC:
        raise MalformedError(f"unsupported enc {str(enc)[:16]!r}", field="protected.enc")
    failure = VerificationError(
        "JWE does not decrypt (other key or tampered)", code="envelope_invalid"
    )
    try:
        if alg == "ECDH-ES+A256KW":
            if not isinstance(private_key, ec.EllipticCurvePrivateKey):
                raise UsageError("ECDH-ES+A256KW needs an EC private key")
            epk = public_key_from_jwk(header.get("epk") or {})
            if (
                not isinstance(epk, ec.EllipticCurvePublicKey)
                or epk.curve.name != private_key.curve.name
            ):
                raise MalformedError("epk is not on the recipient's curve", field="protected.epk")
            z = private_key.exchange(ec.ECDH(), epk)
            cek = keywrap.aes_key_unwrap(concat_kdf(z, alg, 256), jwe.encrypted_key)
        elif alg in ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5"):
            if not isinstance(private_key, rsa.RSAPrivateKey):
                raise UsageError(f"{alg} needs an RSA private key")
            pad: padding.AsymmetricPadding = padding.PKCS1v15() if alg == "RSA1_5" else _oaep()
            cek = private_key.decrypt(jwe.encrypted_key, pad)
        else:
            raise MalformedError(f"unsupported alg {str(alg)[:32]!r}", field="protected.alg")
        if len(cek) != 32 or len(jwe.iv) != 12 or len(jwe.tag) != 16:
            raise failure
        return AESGCM(cek).decrypt(
            jwe.iv, jwe.ciphertext + jwe.tag, jwe.protected_b64.encode("ascii")
        )
    except (InvalidTag, keywrap.InvalidUnwrap, ValueError):
        raise failure from None
