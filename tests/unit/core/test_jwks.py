"""JWKs, JWKS and RFC 7638 thumbprints (veritee.tokens): what a relying party reads the domain's
keys with, and refuses when a key or a set is malformed."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk as jwcrypto_jwk

from veritee._codec import b64url, b64url_decode
from veritee.errors import MalformedError, VerificationError
from veritee.tokens import (
    jwk_of,
    jwk_thumbprint,
    jwks_keys,
    key_binding,
    public_key_of_jwk,
    sign_jwt,
    token_key,
)

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMs"
    "tn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5"
    "hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc7638_example_thumbprint() -> None:
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert jwk_thumbprint(jwk) == RFC7638_THUMBPRINT
    assert jwk_thumbprint(public_key_of_jwk(jwk)) == RFC7638_THUMBPRINT  # type: ignore[arg-type]


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_ec_thumbprint_agrees_with_jwcrypto(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve).public_key()
    theirs = jwcrypto_jwk.JWK.from_pyca(key).thumbprint()
    assert jwk_thumbprint(key) == theirs
    assert jwk_thumbprint(key_binding(key)["jwk"]) == theirs


def test_rsa_thumbprint_agrees_with_jwcrypto() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    assert jwk_thumbprint(key) == jwcrypto_jwk.JWK.from_pyca(key).thumbprint()


def _off_by_one(coordinate: str) -> str:
    """The coordinate with the low bit of its value flipped: (x, y ^ 1) is never on the curve
    (that would need y ^ 1 == p - y)."""
    value = bytearray(b64url_decode(coordinate, "y"))
    value[-1] ^= 1
    return b64url(bytes(value))


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _second_spelling(coordinate: str) -> str:
    """The same bytes spelled with an unused low bit of the last character set (43 characters
    carry 258 bits for 256)."""
    return coordinate[:-1] + _ALPHABET[_ALPHABET.index(coordinate[-1]) | 1]


def _ec_jwk() -> dict[str, str]:
    return jwk_of(ec.generate_private_key(ec.SECP256R1()).public_key(), "k1")


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda j: j.update(kty="oct"), "jwk.kty"),
        (lambda j: j.update(crv="secp256k1"), "jwk.crv"),
        (lambda j: j.update(x=j["x"][:-2]), "jwk.x"),  # truncated coordinate
        (lambda j: j.update(x=j["x"] + "=="), "jwk.x"),  # padded base64url
        (lambda j: j.update(y=_off_by_one(j["y"])), "jwk.x"),  # off the curve
        (lambda j: j.update(y=_second_spelling(j["y"])), "jwk.y"),  # unused bits set
        (lambda j: j.update(x="!" * 43), "jwk.x"),
        (lambda j: j.update(d="AAAA"), "jwk"),  # a private member
        (lambda j: j.pop("y"), "jwk.y"),
        (lambda j: j.update(x=12), "jwk.x"),
    ],
)
def test_malformed_jwk_refused(mutate: object, field: str) -> None:
    jwk = _ec_jwk()
    mutate(jwk)  # type: ignore[operator]
    with pytest.raises(MalformedError) as e:
        public_key_of_jwk(jwk)
    assert e.value.field == field  # type: ignore[attr-defined]


def test_jwks_keys_by_kid_and_malformed_sets() -> None:
    a, b = _ec_jwk(), jwk_of(ec.generate_private_key(ec.SECP384R1()).public_key(), "k2")
    enc = dict(jwk_of(ec.generate_private_key(ec.SECP256R1()).public_key(), "k3"), use="enc")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_jwk = dict(key_binding(rsa_key)["jwk"], kid="k4")
    keys = jwks_keys({"keys": [a, b, enc, rsa_jwk]})
    assert sorted(keys) == ["k1", "k2"]  # encryption and RSA keys do not sign EARs
    for bad in ([], {"keys": {}}, {"keys": [a, dict(a)]}, {"keys": [{k: v for k, v in a.items() if k != "kid"}]},
                {"keys": [a] * 65}, {"keys": ["x"]}):  # fmt: skip
        with pytest.raises(MalformedError):
            jwks_keys(bad)


def test_token_key_selection() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    keys = jwks_keys({"keys": [jwk_of(key.public_key(), "k1")]})
    assert token_key(sign_jwt({"a": 1}, key, kid="k1"), keys)[0] == "k1"
    with pytest.raises(VerificationError) as e:
        token_key(sign_jwt({"a": 1}, key, kid="k9"), keys)
    assert e.value.code == "ear_key_unknown"
    with pytest.raises(MalformedError):
        token_key("not a token", keys)
