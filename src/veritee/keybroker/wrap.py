"""Encrypting a released secret to the workload's ephemeral key (and the matching decrypt).

Two envelopes:

* **HPKE** (RFC 9180, base mode, single shot) with the suite
  DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM. ``info`` binds the secret name,
  version and the release nonce (:func:`release_info`), so a ciphertext for one release does not
  decrypt as another. The blob is ``enc (32 bytes) || ciphertext``.
* **JWE** (RFC 7516) with ``enc = A256GCM`` and ``alg`` one of
  ``ECDH-ES+A256KW`` (P-256, P-384 or P-521 recipient; Concat KDF of RFC 7518 §4.6.2 with
  SHA-256, then AES key wrap, RFC 3394), ``RSA-OAEP-256`` (OAEP with SHA-256 and MGF1-SHA-256),
  ``RSA-OAEP`` (the same SHA-256 OAEP: what older Confidential Containers guests ask for under
  this name, which differs from RFC 7518's SHA-1) and ``RSA1_5`` (encryption only, for legacy
  guests that ask for it, as Trustee's KBS still serves them). Compact (five dot-separated
  parts) and flattened JSON (RFC 7516 §7.2.2, what the Trustee KBS protocol returns)
  serializations. The AAD is ``ASCII(BASE64URL(UTF8(protected header)))`` (RFC 7516 §5.1
  step 14).

The protected header is written as Trustee's KBS and the ``kbs-types`` crate write it
(:func:`protected_header_bytes`): ``alg``, ``enc``, then every other member in sorted order, the
members of nested objects (``epk``) sorted too, no whitespace, UTF-8. A guest that decodes the
header and serializes it again to compute the AAD (``ProtectedHeader::generate_aad``, a
serde_json map) gets the very bytes that were authenticated.

:func:`jwe_decrypt` follows RFC 8725 and RFC 7516: it refuses ``RSA1_5`` (RSAES-PKCS1-v1_5 is
open to padding-oracle attacks on the decrypting side), refuses a ``crit`` header (no extension
is understood here, RFC 7515 §4.1.11) and a ``zip`` header (no compression is done here, so a
compressed payload would come back wrong), and takes the algorithm only from the protected
header, never from the recipient's key or a caller's guess.

Why our own code and not a JOSE library: both maintained candidates were weighed. jwcrypto
(1.6.1) happens to sort header members but decides the protected-header bytes itself, has no
place for the SHA-256 ``RSA-OAEP`` variant older guests need, and would add a dependency for
~150 lines whose cryptography is already ``cryptography``'s (ECDH, Concat KDF, AES key wrap,
AES-GCM, OAEP). joserfc (1.8.0) writes the header in insertion order and builds ``epk`` itself,
which is exactly the layout that broke guests (issue 12 item 5). The header bytes are a
compatibility contract with the guests, so this module owns them. jwcrypto is used in the tests
as an independent implementation: it decrypts what this module encrypts and the reverse.
"""

from __future__ import annotations

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

from veritee._codec import b64url, b64url_decode
from veritee.errors import MalformedError, UsageError, VerificationError

__all__ = [
    "HPKE_SUITE_NAME",
    "JWE_ALGS",
    "JWE_DECRYPT_ALGS",
    "Jwe",
    "b64url",
    "b64url_decode",
    "concat_kdf",
    "hpke_open",
    "hpke_seal",
    "jwe_decrypt",
    "jwe_encrypt",
    "jwk_from_public_key",
    "protected_header_bytes",
    "public_key_from_jwk",
    "release_info",
]

HPKE_SUITE_NAME = "HPKE-Base-X25519-SHA256-AES256GCM"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_INFO_TAG = b"veritee-release-v1"
X25519_ENC_SIZE = 32
JWE_ENC = "A256GCM"
#: What :func:`jwe_encrypt` writes (to a key that asks for it).
JWE_ALGS = ("ECDH-ES+A256KW", "RSA-OAEP", "RSA-OAEP-256", "RSA1_5")
#: What :func:`jwe_decrypt` accepts: never RSA1_5 (RFC 8725 §3.2).
JWE_DECRYPT_ALGS = ("ECDH-ES+A256KW", "RSA-OAEP", "RSA-OAEP-256")
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
#: A protected header larger than this is refused before it is parsed.
MAX_HEADER_BYTES = 8 * 1024

RecipientPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
RecipientPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


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
    """Load an EC (P-256/P-384/P-521) or RSA public JWK; refuses anything else, naming the field."""
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
        if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
            raise MalformedError(
                f"RSA modulus must be {MIN_RSA_BITS} to {MAX_RSA_BITS} bits", field="jwk.n"
            )
        if e < 3 or e % 2 == 0:
            raise MalformedError("RSA exponent is invalid", field="jwk.e")
        return rsa.RSAPublicNumbers(e, n).public_key()
    raise MalformedError(f"unsupported key type {str(kty)[:16]!r}", field="jwk.kty")


def jwk_from_public_key(key: RecipientPublicKey, *, alg: str | None = None) -> dict[str, str]:
    """The public JWK of ``key`` (as Trustee's ``tee-pubkey``), with ``alg`` if given."""
    out: dict[str, str]
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = _CURVE_NAMES.get(key.curve.name)
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
        raw = b64url_decode(self.protected_b64, "protected")
        if len(raw) > MAX_HEADER_BYTES:
            raise MalformedError("JWE protected header is too large", field="protected")
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise MalformedError("JWE protected header is not JSON", field="protected") from None
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
        """RFC 7516 §7.2.2 flattened JSON, as Trustee's KBS answers a resource request.

        No ``aad`` member: in RFC 7516 that is *additional* AAD (the AEAD input would become
        ``protected || "." || aad``), which Trustee does not send and guests ignore.
        """
        return {
            "protected": self.protected_b64,
            "encrypted_key": b64url(self.encrypted_key),
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
            if "aad" in token or "unprotected" in token or "header" in token:
                raise MalformedError(
                    "only the protected header is accepted (no aad, unprotected or header)",
                    field="jwe",
                )
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


def protected_header_bytes(header: Mapping[str, Any]) -> bytes:
    """The protected header as Trustee's KBS and ``kbs-types`` serialize it.

    ``alg`` and ``enc`` first, then every other member sorted by name, nested objects sorted
    too (a serde_json map is ordered by key), no whitespace, UTF-8 (not ``\\u`` escapes).
    """
    if "alg" not in header or "enc" not in header:
        raise UsageError("a JWE protected header needs alg and enc")
    ordered = {"alg": header["alg"], "enc": header["enc"]}
    ordered.update(sorted((k, v) for k, v in header.items() if k not in ("alg", "enc")))
    # sort_keys sorts nested objects; the top level is already in the required order, and
    # json.dumps keeps the top level's insertion order only without sort_keys: so dump the
    # members one by one.
    members = ",".join(
        json.dumps(k, ensure_ascii=False)
        + ":"
        + json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        for k, v in ordered.items()
    )
    return ("{" + members + "}").encode("utf-8")


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
            if k in header or k in ("crit", "zip"):
                raise UsageError(f"extra JWE header {k!r} would override a required one")
            header[k] = v
    protected_b64 = b64url(protected_header_bytes(header))
    iv = secrets.token_bytes(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected_b64.encode("ascii"))
    return Jwe(protected_b64, encrypted_key, iv, sealed[:-16], sealed[-16:])


def _check_header(header: Mapping[str, Any]) -> str:
    """The protected header's ``alg`` once ``enc``, ``crit`` and ``zip`` are acceptable."""
    if "crit" in header:
        # RFC 7515 §4.1.11 (by RFC 7516 §4.1.13): a recipient MUST reject a JWE whose crit lists
        # a parameter it does not understand; this code understands no extension at all.
        crit = header["crit"]
        names = ", ".join(str(n)[:32] for n in crit[:4]) if isinstance(crit, list) else "?"
        raise VerificationError(
            f"JWE names critical header parameters that are not understood here ({names})",
            code="jwe_crit_unsupported",
        )
    if "zip" in header:
        raise MalformedError("compressed JWE payloads are not supported", field="protected.zip")
    enc = header.get("enc")
    if enc != JWE_ENC:
        raise MalformedError(f"unsupported enc {str(enc)[:16]!r}", field="protected.enc")
    alg = header.get("alg")
    if alg == "RSA1_5":
        raise VerificationError(
            "JWE alg RSA1_5 is refused (RSAES-PKCS1-v1_5, RFC 8725 §3.2); use RSA-OAEP-256",
            code="jwe_alg_refused",
        )
    if alg not in JWE_DECRYPT_ALGS:
        raise MalformedError(f"unsupported alg {str(alg)[:32]!r}", field="protected.alg")
    return str(alg)


def jwe_decrypt(token: str | Mapping[str, Any] | Jwe, private_key: RecipientPrivateKey) -> bytes:
    """Decrypt a JWE made by :func:`jwe_encrypt` (or any JWE using the same algorithms).

    Raises :class:`MalformedError` (unparsable, unsupported ``enc``/``alg``/``zip``),
    :class:`VerificationError` ``jwe_alg_refused`` (RSA1_5), ``jwe_crit_unsupported`` (a
    ``crit`` header) or ``envelope_invalid`` (other key, tampered), :class:`UsageError` (the
    key does not fit the algorithm).
    """
    jwe = token if isinstance(token, Jwe) else Jwe.parse(token)
    header = jwe.header
    alg = _check_header(header)
    failure = VerificationError(
        "JWE does not decrypt (other key or tampered)", code="envelope_invalid"
    )
    try:
        if alg == "ECDH-ES+A256KW":
            if not isinstance(private_key, ec.EllipticCurvePrivateKey):
                raise UsageError("ECDH-ES+A256KW needs an EC private key")
            epk_jwk = header.get("epk")
            epk = public_key_from_jwk(epk_jwk if isinstance(epk_jwk, Mapping) else {})
            if (
                not isinstance(epk, ec.EllipticCurvePublicKey)
                or epk.curve.name != private_key.curve.name
            ):
                raise MalformedError("epk is not on the recipient's curve", field="protected.epk")
            z = private_key.exchange(ec.ECDH(), epk)
            cek = keywrap.aes_key_unwrap(concat_kdf(z, alg, 256), jwe.encrypted_key)
        else:
            if not isinstance(private_key, rsa.RSAPrivateKey):
                raise UsageError(f"{alg} needs an RSA private key")
            cek = private_key.decrypt(jwe.encrypted_key, _oaep())
        if len(cek) != 32 or len(jwe.iv) != 12 or len(jwe.tag) != 16:
            raise failure
        return AESGCM(cek).decrypt(
            jwe.iv, jwe.ciphertext + jwe.tag, jwe.protected_b64.encode("ascii")
        )
    except (InvalidTag, keywrap.InvalidUnwrap, ValueError):
        raise failure from None
