"""TPM 2.0 structures and credential protection, shared by the enrollment service and the attester.

Pure code, no TPM needed: it parses a ``TPMT_PUBLIC`` (TPM 2.0 Library, Part 2, 12.2.4), computes
an object's Name (Part 1, 16), and implements the service side of TPM2_MakeCredential (Part 1,
24 "Credential Protection"; Part 3, 12.6), so the Certifier Service can prove that an attestation
key (AK) lives in the same TPM as a certified endorsement key (EK) without a TPM of its own:

1. ``seed``: random (RSA EK: encrypted with RSA-OAEP, the EK's nameAlg, label ``"IDENTITY\\0"``),
   or agreed by one-pass ECDH with an ephemeral key (ECC EK: ``seed = KDFe(nameAlg, Z,
   "IDENTITY", ephemeral.x, EK.x)``; the ephemeral point is the encrypted secret);
2. ``symKey = KDFa(nameAlg, seed, "STORAGE", AK Name, "", EK symmetric key bits)``;
   ``encIdentity = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(credential))``;
3. ``HMACkey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)``;
   ``outerHMAC = HMAC(HMACkey, encIdentity || AK Name)``;
4. the credential blob (``TPM2B_ID_OBJECT`` contents) is ``TPM2B_DIGEST(outerHMAC) ||
   encIdentity``; TPM2_ActivateCredential gives the credential back only inside the TPM holding
   the EK's private key, and only if the AK with that Name is loaded there.

KDFa is SP 800-108 counter-mode HMAC (Part 1, 11.4.10.2); KDFe is SP 800-56A's concatenation KDF
(Part 1, 11.4.10.3). All big-endian. Parse errors raise :class:`~veritee.errors.MalformedError`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

from veritee.errors import MalformedError

__all__ = [
    "ALG_AES",
    "ALG_CFB",
    "ALG_ECC",
    "ALG_ECDSA",
    "ALG_NULL",
    "ALG_RSA",
    "ALG_RSASSA",
    "ALG_SHA256",
    "ATTR_DECRYPT",
    "ATTR_FIXED_PARENT",
    "ATTR_FIXED_TPM",
    "ATTR_RESTRICTED",
    "ATTR_SENSITIVE_DATA_ORIGIN",
    "ATTR_SIGN",
    "HASH_ALGS",
    "TpmPublic",
    "kdfa",
    "kdfe",
    "make_credential",
    "parse_public",
    "tpm2b",
]

ALG_RSA, ALG_ECC, ALG_NULL = 0x0001, 0x0023, 0x0010
ALG_AES, ALG_CFB = 0x0006, 0x0043
ALG_RSASSA, ALG_RSAPSS, ALG_ECDSA = 0x0014, 0x0016, 0x0018
ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512 = 0x0004, 0x000B, 0x000C, 0x000D
#: TPM_ALG_ID -> (hashlib name, cryptography hash class)
HASH_ALGS: dict[int, tuple[str, type[hashes.HashAlgorithm]]] = {
    ALG_SHA1: ("sha1", hashes.SHA1),
    ALG_SHA256: ("sha256", hashes.SHA256),
    ALG_SHA384: ("sha384", hashes.SHA384),
    ALG_SHA512: ("sha512", hashes.SHA512),
}
CURVES: dict[int, ec.EllipticCurve] = {
    0x0003: ec.SECP256R1(),
    0x0004: ec.SECP384R1(),
    0x0005: ec.SECP521R1(),
}

# TPMA_OBJECT bits (Part 2, 8.3)
ATTR_FIXED_TPM = 1 << 1
ATTR_FIXED_PARENT = 1 << 4
ATTR_SENSITIVE_DATA_ORIGIN = 1 << 5
ATTR_USER_WITH_AUTH = 1 << 6
ATTR_ADMIN_WITH_POLICY = 1 << 7
ATTR_RESTRICTED = 1 << 16
ATTR_DECRYPT = 1 << 17
ATTR_SIGN = 1 << 18

MAX_PUBLIC = 1024


def tpm2b(data: bytes) -> bytes:
    """A TPM2B: 2-byte big-endian size, then the bytes."""
    if len(data) > 0xFFFF:
        raise ValueError("TPM2B content too long")
    return len(data).to_bytes(2, "big") + data


class _Be:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.at, self.what = data, 0, what

    def take(self, n: int, field: str) -> bytes:
        if n > len(self.data) - self.at:
            raise MalformedError(
                f"truncated at {field}", field=f"{self.what}.{field}", offset=self.at
            )
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def u(self, n: int, field: str) -> int:
        return int.from_bytes(self.take(n, field), "big")

    def b(self, field: str) -> bytes:
        return self.take(self.u(2, field + ".size"), field)


@dataclass(frozen=True)
class TpmPublic:
    """A parsed TPMT_PUBLIC (RSA or ECC key)."""

    raw: bytes
    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    #: (algorithm, key bits, mode) of the symmetric definition, or None (TPM_ALG_NULL).
    symmetric: tuple[int, int, int] | None
    scheme: int
    scheme_hash: int | None
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey

    @property
    def name(self) -> bytes:
        """The object's Name: nameAlg || H_nameAlg(TPMT_PUBLIC) (Part 1, 16)."""
        digest = hashlib.new(HASH_ALGS[self.name_alg][0], self.raw).digest()
        return self.name_alg.to_bytes(2, "big") + digest

    def spki_der(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def has(self, *bits: int) -> bool:
        return all(self.attributes & b for b in bits)


def parse_public(blob: bytes, what: str = "public") -> TpmPublic:
    """Parse a marshalled TPMT_PUBLIC (no TPM2B size prefix) of an RSA or ECC key."""
    if not isinstance(blob, bytes) or not 0 < len(blob) <= MAX_PUBLIC:
        raise MalformedError(f"a TPMT_PUBLIC is 1..{MAX_PUBLIC} bytes", field=what)
    r = _Be(blob, what)
    kind, name_alg, attributes = r.u(2, "type"), r.u(2, "nameAlg"), r.u(4, "objectAttributes")
    if name_alg not in HASH_ALGS:
        raise MalformedError(f"unsupported nameAlg 0x{name_alg:04x}", field=f"{what}.nameAlg")
    auth_policy = r.b("authPolicy")
    symmetric: tuple[int, int, int] | None = None
    sym_alg = r.u(2, "symmetric.algorithm")
    if sym_alg != ALG_NULL:
        symmetric = (sym_alg, r.u(2, "symmetric.keyBits"), r.u(2, "symmetric.mode"))
    scheme, scheme_hash = r.u(2, "scheme"), None
    if scheme != ALG_NULL:
        scheme_hash = r.u(2, "scheme.hashAlg")
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    try:
        if kind == ALG_RSA:
            bits = r.u(2, "keyBits")
            exponent = r.u(4, "exponent") or 65537
            modulus = r.b("unique.rsa")
            if len(modulus) * 8 != bits:
                raise MalformedError(
                    "RSA modulus size differs from keyBits", field=f"{what}.unique"
                )
            key = rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
        elif kind == ALG_ECC:
            curve = CURVES.get(r.u(2, "curveID"))
            if r.u(2, "kdf") != ALG_NULL:
                r.u(2, "kdf.hashAlg")
            x, y = r.b("unique.x"), r.b("unique.y")
            if curve is None:
                raise MalformedError("unsupported ECC curve", field=f"{what}.curveID")
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()
        else:
            raise MalformedError(f"unsupported key type 0x{kind:04x}", field=f"{what}.type")
    except ValueError as e:
        raise MalformedError(f"the public key is invalid: {e}", field=what) from None
    if r.at != len(blob):
        raise MalformedError(f"{len(blob) - r.at} trailing bytes", field=what)
    return TpmPublic(blob, kind, name_alg, attributes, auth_policy, symmetric, scheme,
                     scheme_hash, key)  # fmt: skip


def kdfa(
    name_alg: int, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int
) -> bytes:
    """KDFa (Part 1, 11.4.10.2): SP 800-108 counter mode with HMAC-nameAlg;
    ``label`` without its terminating zero (the KDF adds the separator)."""
    if bits % 8 or bits <= 0:
        raise ValueError("KDFa output must be a positive number of bytes")
    return KBKDFHMAC(
        algorithm=HASH_ALGS[name_alg][1](), mode=Mode.CounterMode, length=bits // 8, rlen=4,
        llen=4, location=CounterLocation.BeforeFixed, label=label, context=context_u + context_v,
        fixed=None,
    ).derive(key)  # fmt: skip


def kdfe(name_alg: int, z: bytes, label: bytes, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """KDFe (Part 1, 11.4.10.3): H(counter || Z || label || 0 || partyU || partyV), concatenated."""
    return ConcatKDFHash(
        algorithm=HASH_ALGS[name_alg][1](), length=bits // 8,
        otherinfo=label + b"\x00" + party_u + party_v,
    ).derive(z)  # fmt: skip


def _coordinate(value: int, curve: ec.EllipticCurve) -> bytes:
    return value.to_bytes((curve.key_size + 7) // 8, "big")


def _seed(ek: TpmPublic, label: bytes) -> tuple[bytes, bytes]:
    """(seed, encrypted secret): the secret is what TPM2B_ENCRYPTED_SECRET holds."""
    digest_bytes = hashlib.new(HASH_ALGS[ek.name_alg][0]).digest_size
    algorithm = HASH_ALGS[ek.name_alg][1]()
    if isinstance(ek.key, rsa.RSAPublicKey):
        seed = os.urandom(digest_bytes)
        oaep = padding.OAEP(padding.MGF1(algorithm), algorithm, label + b"\x00")
        return seed, ek.key.encrypt(seed, oaep)
    curve = ek.key.curve
    ephemeral = ec.generate_private_key(curve)
    z = ephemeral.exchange(ec.ECDH(), ek.key)
    point = ephemeral.public_key().public_numbers()
    ex, ey = _coordinate(point.x, curve), _coordinate(point.y, curve)
    vx = _coordinate(ek.key.public_numbers().x, curve)
    seed = kdfe(ek.name_alg, z, label, ex, vx, digest_bytes * 8)
    return seed, tpm2b(ex) + tpm2b(ey)


def make_credential(ek: TpmPublic, object_name: bytes, credential: bytes) -> tuple[bytes, bytes]:
    """TPM2_MakeCredential done in software: (credential blob, encrypted secret), both without
    their TPM2B size prefix (``TPM2B_ID_OBJECT.credential``, ``TPM2B_ENCRYPTED_SECRET.secret``).

    ``ek`` must be a storage key with an AES-CFB symmetric definition (every TCG EK template
    has one); ``credential`` at most the nameAlg's digest size (the TPM refuses more).
    """
    if ek.symmetric is None or ek.symmetric[0] != ALG_AES or ek.symmetric[2] != ALG_CFB:
        raise MalformedError("the EK has no AES-CFB symmetric definition", field="ek.symmetric")
    if not ek.has(ATTR_RESTRICTED, ATTR_DECRYPT):
        raise MalformedError(
            "the EK is not a restricted decryption key", field="ek.objectAttributes"
        )
    digest_size = hashlib.new(HASH_ALGS[ek.name_alg][0]).digest_size
    if not 0 < len(credential) <= digest_size:
        raise ValueError(f"a credential is 1..{digest_size} bytes")
    seed, secret = _seed(ek, b"IDENTITY")
    sym_bits = ek.symmetric[1]
    sym_key = kdfa(ek.name_alg, seed, b"STORAGE", object_name, b"", sym_bits)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = encryptor.update(tpm2b(credential)) + encryptor.finalize()
    hmac_key = kdfa(ek.name_alg, seed, b"INTEGRITY", b"", b"", digest_size * 8)
    outer = hmac.new(hmac_key, enc_identity + object_name, HASH_ALGS[ek.name_alg][0]).digest()
    return tpm2b(outer) + enc_identity, secret
