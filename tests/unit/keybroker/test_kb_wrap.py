"""Envelopes: HPKE (RFC 9180) and JWE (RFC 7516/7518), checked against independent code."""

from __future__ import annotations

import base64
import hashlib
import json
import struct

import pytest
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.keybroker import wrap
from veritee.keybroker.wrap import (
    Jwe,
    concat_kdf,
    hpke_open,
    hpke_seal,
    jwe_decrypt,
    jwe_encrypt,
    jwk_from_public_key,
    public_key_from_jwk,
    release_info,
)


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_public_surface() -> None:
    for name in wrap.__all__:
        assert hasattr(wrap, name), name


def test_concat_kdf_rfc7518_appendix_c() -> None:
    # RFC 7518 Appendix C: ECDH-ES key agreement, A128GCM, apu "Alice", apv "Bob".
    z = bytes(
        [158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156,
         251, 49, 110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196]
    )  # fmt: skip
    derived = concat_kdf(z, "A128GCM", 128, apu=b"Alice", apv=b"Bob")
    assert wrap.b64url(derived) == "VqqN6vgjbSBcIijNcacQGg"


def test_hpke_roundtrip_and_binding() -> None:
    sk = x25519.X25519PrivateKey.generate()
    info = release_info("db/password", 3, b"\x01" * 32)
    blob = hpke_seal(b"s3cret", sk.public_key(), info=info)
    assert len(blob) == 32 + len(b"s3cret") + 16
    assert hpke_open(blob, sk, info=info) == b"s3cret"
    for other in (
        release_info("db/password", 4, b"\x01" * 32),
        release_info("db/passwor", 3, b"\x01" * 32),
        release_info("db/password", 3, b"\x02" * 32),
    ):
        with pytest.raises(VerificationError):
            hpke_open(blob, sk, info=other)
    with pytest.raises(VerificationError):
        hpke_open(blob, x25519.X25519PrivateKey.generate(), info=info)
    tampered = bytearray(blob)
    tampered[40] ^= 1
    with pytest.raises(VerificationError):
        hpke_open(bytes(tampered), sk, info=info)
    with pytest.raises(MalformedError):
        hpke_open(blob[:20], sk, info=info)


def test_release_info_is_unambiguous() -> None:
    assert release_info("ab", 1, b"c") != release_info("a", 1, b"bc")


def _independent_ecdh_es_a256kw_decrypt(token: str, sk: ec.EllipticCurvePrivateKey) -> bytes:
    """Written from RFC 7516 §5.2 / RFC 7518 §4.6 as a KBS guest does, not via veritee code."""
    prot, ek, iv, ct, tag = token.split(".")
    header = json.loads(_b64d(prot))
    assert header["alg"] == "ECDH-ES+A256KW" and header["enc"] == "A256GCM"
    epk = header["epk"]
    pub = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_b64d(epk["x"]), "big"),
        int.from_bytes(_b64d(epk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    z = sk.exchange(ec.ECDH(), pub)
    alg = b"ECDH-ES+A256KW"
    other = struct.pack(">I", len(alg)) + alg + struct.pack(">II", 0, 0) + struct.pack(">I", 256)
    kek = hashlib.sha256(b"\x00\x00\x00\x01" + z + other).digest()
    cek = keywrap.aes_key_unwrap(kek, _b64d(ek))
    return AESGCM(cek).decrypt(_b64d(iv), _b64d(ct) + _b64d(tag), prot.encode("ascii"))


def test_jwe_ecdh_es_interop_with_independent_decryptor() -> None:
    sk = ec.generate_private_key(ec.SECP256R1())
    jwk = jwk_from_public_key(sk.public_key(), alg="ECDH-ES+A256KW")
    token = jwe_encrypt(b"resource bytes", jwk).compact()
    assert _independent_ecdh_es_a256kw_decrypt(token, sk) == b"resource bytes"
    assert jwe_decrypt(token, sk) == b"resource bytes"


def test_jwe_flattened_matches_kbs_response_shape() -> None:
    sk = ec.generate_private_key(ec.SECP256R1())
    flat = jwe_encrypt(b"x", sk.public_key()).flattened()
    assert set(flat) == {"protected", "encrypted_key", "aad", "iv", "ciphertext", "tag"}
    header = json.loads(_b64d(flat["protected"]))
    assert list(header)[:2] == ["alg", "enc"] and header["epk"]["crv"] == "P-256"
    assert jwe_decrypt(flat, sk) == b"x"


@pytest.mark.parametrize("alg", ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"])
def test_jwe_rsa(alg: str) -> None:
    sk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwk_from_public_key(sk.public_key(), alg=alg)
    jwe = jwe_encrypt(b"payload", jwk)
    assert jwe.header["alg"] == alg
    assert jwe_decrypt(jwe.compact(), sk) == b"payload"
    if alg == "RSA-OAEP":  # as the guest components decrypt it: OAEP with SHA-256
        oaep = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
        cek = sk.decrypt(jwe.encrypted_key, oaep)
        assert (
            AESGCM(cek).decrypt(jwe.iv, jwe.ciphertext + jwe.tag, jwe.protected_b64.encode())
            == b"payload"
        )


def test_jwe_p384() -> None:
    sk = ec.generate_private_key(ec.SECP384R1())
    assert jwe_decrypt(jwe_encrypt(b"p", sk.public_key()).compact(), sk) == b"p"


def test_jwe_tamper_and_wrong_key() -> None:
    sk = ec.generate_private_key(ec.SECP256R1())
    jwe = jwe_encrypt(b"value", sk.public_key())
    parts = jwe.compact().split(".")
    for i in (1, 2, 3, 4):
        raw = bytearray(_b64d(parts[i]))
        raw[0] ^= 1
        bad = parts.copy()
        bad[i] = wrap.b64url(bytes(raw))
        with pytest.raises((VerificationError, MalformedError)):
            jwe_decrypt(".".join(bad), sk)
    # changing the protected header breaks the AAD
    hdr = jwe.header | {"kid": "x"}
    bad = parts.copy()
    bad[0] = wrap.b64url(json.dumps(hdr).encode())
    with pytest.raises(VerificationError):
        jwe_decrypt(".".join(bad), sk)
    with pytest.raises(VerificationError):
        jwe_decrypt(jwe.compact(), ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(MalformedError):
        Jwe.parse("a.b.c")


def test_jwk_validation() -> None:
    sk = ec.generate_private_key(ec.SECP256R1())
    jwk = jwk_from_public_key(sk.public_key())
    assert public_key_from_jwk(jwk).public_numbers() == sk.public_key().public_numbers()
    off_curve = dict(
        jwk, y=wrap.b64url((int.from_bytes(_b64d(jwk["y"]), "big") ^ 1).to_bytes(32, "big"))
    )
    with pytest.raises(MalformedError, match="curve"):
        public_key_from_jwk(off_curve)
    for bad, field in (
        ({"kty": "OKP"}, "jwk.kty"),
        (dict(jwk, crv="P-521"), "jwk.crv"),
        (dict(jwk, x="AAAA"), "jwk.x"),
        ({"kty": "RSA", "n": wrap.b64url(b"\x01" * 64), "e": "AQAB"}, "jwk.n"),
    ):
        with pytest.raises(MalformedError) as e:
            public_key_from_jwk(bad)
        assert e.value.field == field
    with pytest.raises(UsageError):
        jwe_encrypt(b"x", jwk, alg="dir")
    with pytest.raises(UsageError):
        jwe_encrypt(b"x", sk.public_key(), alg="RSA-OAEP")
