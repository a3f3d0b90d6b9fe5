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
    """Trustee's ``kbs_types::Response``: no ``aad`` member (in RFC 7516 it would be extra AAD)."""
    sk = ec.generate_private_key(ec.SECP256R1())
    flat = jwe_encrypt(b"x", sk.public_key()).flattened()
    assert set(flat) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    header = json.loads(_b64d(flat["protected"]))
    assert list(header) == ["alg", "enc", "epk"] and header["epk"]["crv"] == "P-256"
    assert jwe_decrypt(flat, sk) == b"x"


def _key(k: str) -> str:
    return json.dumps(k, ensure_ascii=False)


def kbs_types_aad(protected_b64: str) -> bytes:
    """The AAD a guest computes: ``kbs_types::ProtectedHeader::generate_aad`` re-serializes the
    decoded header (``alg``, ``enc``, then the other members from a serde_json map, which is
    ordered by key at every level) and base64url-encodes it. Written from the crate's source."""
    header = json.loads(_b64d(protected_b64))

    def value(v: object) -> str:
        if isinstance(v, dict):
            return "{" + ",".join(_key(k) + ":" + value(v[k]) for k in sorted(v)) + "}"
        if isinstance(v, list):
            return "[" + ",".join(value(x) for x in v) + "]"
        return json.dumps(v, ensure_ascii=False)

    rest = {k: header[k] for k in header if k not in ("alg", "enc")}
    text = '{"alg":' + value(header["alg"]) + ',"enc":' + value(header["enc"])
    text += "".join("," + _key(k) + ":" + value(rest[k]) for k in sorted(rest)) + "}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=")


def _guest_decrypt(flat: dict[str, str], sk: ec.EllipticCurvePrivateKey) -> bytes:
    """Decrypt as guest-components' ``TeeKeyPair::decrypt_response`` does: the CEK from the
    header's epk, the AAD from the *re-serialized* header (never the bytes received)."""
    header = json.loads(_b64d(flat["protected"]))
    epk = header["epk"]
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[epk["crv"]]
    pub = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_b64d(epk["x"]), "big"), int.from_bytes(_b64d(epk["y"]), "big"), curve
    ).public_key()
    z = sk.exchange(ec.ECDH(), pub)
    alg = b"ECDH-ES+A256KW"
    other = struct.pack(">I", len(alg)) + alg + struct.pack(">II", 0, 0) + struct.pack(">I", 256)
    kek = hashlib.sha256(b"\x00\x00\x00\x01" + z + other).digest()
    cek = keywrap.aes_key_unwrap(kek, _b64d(flat["encrypted_key"]))
    return AESGCM(cek).decrypt(
        _b64d(flat["iv"]), _b64d(flat["ciphertext"]) + _b64d(flat["tag"]),
        kbs_types_aad(flat["protected"]),
    )  # fmt: skip


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_guest_decrypts_after_reserializing_the_header_sorted(curve: ec.EllipticCurve) -> None:
    """Issue 12 item 5: the guest rebuilds the AAD from a serde_json map (``crv, kty, x, y``);
    a header written ``kty, crv, x, y`` then authenticates other bytes and nothing decrypts.
    Extra members (the SDK's release binding) must survive the same round trip."""
    sk = ec.generate_private_key(curve)
    jwk = jwk_from_public_key(sk.public_key(), alg="ECDH-ES+A256KW")
    for extra in (
        None,
        {"veritee_secret": "a/b", "veritee_version": 3, "apu": "", "kid": "k\u00e9"},
    ):
        flat = jwe_encrypt(b"resource", jwk, extra_header=extra).flattened()
        assert kbs_types_aad(flat["protected"]) == flat["protected"].encode()
        assert _guest_decrypt(flat, sk) == b"resource"


def test_p521_tee_pubkey_as_attestation_agent_exports_it() -> None:
    """Issue 12 item 6: ``ECDH-ES+A256KW`` with ``crv: P-521`` (66-byte coordinates)."""
    sk = ec.generate_private_key(ec.SECP521R1())
    jwk = jwk_from_public_key(sk.public_key(), alg="ECDH-ES+A256KW")
    assert jwk["crv"] == "P-521" and len(_b64d(jwk["x"])) == len(_b64d(jwk["y"])) == 66
    assert public_key_from_jwk(jwk).public_numbers() == sk.public_key().public_numbers()
    flat = jwe_encrypt(b"k", jwk).flattened()
    assert json.loads(_b64d(flat["protected"]))["epk"]["crv"] == "P-521"
    assert jwe_decrypt(flat, sk) == b"k"
    with pytest.raises(MalformedError):  # P-521 coordinates of the wrong size
        public_key_from_jwk(dict(jwk, x=jwk["x"][:-4]))


@pytest.mark.parametrize("alg", ["RSA-OAEP", "RSA-OAEP-256"])
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


def test_rsa1_5_is_still_written_for_legacy_guests_but_never_decrypted() -> None:
    """Issue 13 item 7: RFC 8725 §3.2. Trustee still encrypts RSA1_5 to a guest that asks for
    it; veritee's own decryptor refuses it (a PKCS#1 v1.5 decryptor is a padding oracle)."""
    sk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwe = jwe_encrypt(b"payload", jwk_from_public_key(sk.public_key(), alg="RSA1_5"))
    assert jwe.header["alg"] == "RSA1_5"
    cek = sk.decrypt(jwe.encrypted_key, padding.PKCS1v15())  # the guest's side
    assert (
        AESGCM(cek).decrypt(jwe.iv, jwe.ciphertext + jwe.tag, jwe.protected_b64.encode())
        == b"payload"
    )
    with pytest.raises(VerificationError) as e:
        jwe_decrypt(jwe.compact(), sk)
    assert e.value.code == "jwe_alg_refused"


def _resealed(header: dict[str, object], sk: ec.EllipticCurvePrivateKey) -> str:
    """A JWE to ``sk`` whose protected header (authenticated) is ``header`` plus a real epk."""
    eph = ec.generate_private_key(sk.curve)
    z = eph.exchange(ec.ECDH(), sk.public_key())
    cek = AESGCM.generate_key(bit_length=256)
    full = {**header, "epk": jwk_from_public_key(eph.public_key())}
    prot = wrap.b64url(json.dumps(full).encode())
    ek = keywrap.aes_key_wrap(concat_kdf(z, "ECDH-ES+A256KW", 256), cek)
    iv = b"\x07" * 12
    sealed = AESGCM(cek).encrypt(iv, b"inner", prot.encode())
    return ".".join(
        [
            prot,
            wrap.b64url(ek),
            wrap.b64url(iv),
            wrap.b64url(sealed[:-16]),
            wrap.b64url(sealed[-16:]),
        ]
    )


def test_crit_and_zip_are_refused_even_when_the_jwe_authenticates() -> None:
    """RFC 7516 §4.1.13 / RFC 7515 §4.1.11: a recipient that does not understand a critical
    parameter must reject the JWE; zip would hand back compressed bytes as the plaintext."""
    sk = ec.generate_private_key(ec.SECP256R1())
    base = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM"}
    assert jwe_decrypt(_resealed(base, sk), sk) == b"inner"
    for crit in (["exp"], ["b64"], [], "exp"):
        with pytest.raises(VerificationError) as e:
            jwe_decrypt(_resealed({**base, "crit": crit, "exp": 1}, sk), sk)
        assert e.value.code == "jwe_crit_unsupported"
    with pytest.raises(MalformedError, match="zip"):
        jwe_decrypt(_resealed({**base, "zip": "DEF"}, sk), sk)
    with pytest.raises(UsageError):
        jwe_encrypt(b"x", sk.public_key(), extra_header={"crit": ["x"]})


def test_flattened_jwe_with_members_outside_the_protected_header_is_refused() -> None:
    sk = ec.generate_private_key(ec.SECP256R1())
    flat = jwe_encrypt(b"x", sk.public_key()).flattened()
    for extra in ({"aad": flat["protected"]}, {"unprotected": {"crit": ["x"]}}, {"header": {}}):
        with pytest.raises(MalformedError):
            jwe_decrypt({**flat, **extra}, sk)


@pytest.mark.parametrize(
    "bad",
    [
        "[" * 100_000 + "]" * 100_000,  # nesting past the parser's recursion limit
        '{"alg": ' + "9" * 5000 + "}",  # an integer past int's digit limit
        "\xff\xfe",  # not UTF-8
        "[1]",
        "{" + '"a":1,' * 2000 + '"b":2}',  # larger than the header limit
    ],
)
def test_malformed_protected_headers_are_malformed_errors(bad: str) -> None:
    sk = ec.generate_private_key(ec.SECP256R1())
    good = jwe_encrypt(b"x", sk.public_key()).compact().split(".")
    raw = bad.encode("latin-1")
    token = ".".join([wrap.b64url(raw), *good[1:]])
    with pytest.raises(MalformedError):
        jwe_decrypt(token, sk)


def test_b64url_decoding_is_strict() -> None:
    assert wrap.b64url_decode("AQID", "f") == b"\x01\x02\x03"
    for bad in ("AQ=", "AQ+D", "AQ/D", "A Q", "A", "AQID!", "=="):
        with pytest.raises(MalformedError):
            wrap.b64url_decode(bad, "f")


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
        (dict(jwk, crv="P-192"), "jwk.crv"),
        (dict(jwk, crv="P-521"), "jwk.x"),
        (dict(jwk, x="AAAA"), "jwk.x"),
        ({"kty": "RSA", "n": wrap.b64url(b"\x01" * 64), "e": "AQAB"}, "jwk.n"),
        ({"kty": "RSA", "n": wrap.b64url(b"\x01" * 1100), "e": "AQAB"}, "jwk.n"),
    ):
        with pytest.raises(MalformedError) as e:
            public_key_from_jwk(bad)
        assert e.value.field == field
    with pytest.raises(UsageError):
        jwe_encrypt(b"x", jwk, alg="dir")
    with pytest.raises(UsageError):
        jwe_encrypt(b"x", sk.public_key(), alg="RSA-OAEP")
