"""The pure-Python Ed25519 of :mod:`veritee.evidence.eddsa`: RFC 8032 §7.1's vectors with
SHA-512, agreement with ``cryptography`` on random keys and messages, every §5.1.7 rejection
(S >= L, non-canonical and invalid point encodings), and the SHA3-512 variant Keystone uses."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from tests.fakes import keystone as fake

from veritee.errors import VerificationError
from veritee.evidence import eddsa
from veritee.evidence.eddsa import SHA3_512, SHA512, L, P

# RFC 8032 §7.1 (Ed25519): name, secret key (seed), public key, message, signature.
TEST_1024_MESSAGE = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca"
    "c60c905c15fc910840b94c00a0b9d0"
)
RFC8032 = [
    ("TEST 1",
     "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("TEST 2",
     "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("TEST 3",
     "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("TEST 1024",
     "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e", TEST_1024_MESSAGE,
     "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
     "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03"),
    ("TEST SHA(abc)",
     "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]  # fmt: skip
IDS = [v[0] for v in RFC8032]


def _code(public: bytes, message: bytes, signature: bytes, hash: eddsa.HashFn = SHA512) -> str:
    with pytest.raises(VerificationError) as e:
        eddsa.verify(public, message, signature, hash=hash)
    return e.value.code


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.mark.parametrize(("name", "seed", "public", "message", "signature"), RFC8032, ids=IDS)
def test_rfc8032_vectors_verify_with_sha512(
    name: str, seed: str, public: str, message: str, signature: str
) -> None:
    # The vector itself, checked by cryptography (so a typo here cannot pass unnoticed) ...
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))
    assert _raw_public(key).hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature
    # ... verifies with ours, and our signing (the test helper) gives the same key and signature.
    eddsa.verify(
        bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature), hash=SHA512
    )
    pair = fake.expand_seed(bytes.fromhex(seed), hash=SHA512)
    assert pair.public.hex() == public
    assert pair.sign(bytes.fromhex(message), hash=SHA512).hex() == signature


@pytest.mark.parametrize(("name", "seed", "public", "message", "signature"), RFC8032, ids=IDS)
def test_rfc8032_vectors_refused_with_another_hash_or_message(
    name: str, seed: str, public: str, message: str, signature: str
) -> None:
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert _code(pk, msg, sig, hash=SHA3_512) == "signature_invalid"
    assert _code(pk, msg + b"\0", sig) == "signature_invalid"
    for i in (0, 31, 32, 63):  # a bit of R or of S (S stays below L: its top bits are clear)
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert _code(pk, msg, bytes(bad)) in ("signature_invalid", "signature_malformed")


def test_agrees_with_cryptography_on_random_keys_and_messages() -> None:
    for n in range(24):
        key = Ed25519PrivateKey.generate()
        pk = _raw_public(key)
        msg = os.urandom(n * 37 % 300)
        sig = key.sign(msg)
        eddsa.verify(pk, msg, sig, hash=SHA512)
        # A signature over another message: both refuse.
        other = msg + b"x"
        assert _code(pk, other, sig) == "signature_invalid"
        with pytest.raises(InvalidSignature):
            Ed25519PublicKey.from_public_bytes(pk).verify(sig, other)
        # Our signing verifies with cryptography.
        seed = os.urandom(32)
        pair = fake.expand_seed(seed, hash=SHA512)
        theirs = Ed25519PrivateKey.from_private_bytes(seed)
        assert _raw_public(theirs) == pair.public
        Ed25519PublicKey.from_public_bytes(pair.public).verify(pair.sign(msg, hash=SHA512), msg)


def test_s_at_or_above_the_group_order_is_refused() -> None:
    _, _, public, message, signature = RFC8032[0]
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    s = int.from_bytes(sig[32:], "little")
    # S + L is the same scalar mod L: the equation would hold; the range check refuses it.
    for bad_s in (s + L, L, 2**256 - 1):
        bad = sig[:32] + bad_s.to_bytes(32, "little")
        assert _code(pk, msg, bad) == "signature_malformed"


def _encode(y: int, sign: int) -> bytes:
    return (y | (sign << 255)).to_bytes(32, "little")


def _non_square_y() -> int:
    """A y for which no x exists (u/v is not a square mod p)."""
    y = 2
    while eddsa.decode_point(_encode(y, 0)) is not None:
        y += 1
    return y


def test_point_decoding_refuses_non_canonical_and_invalid_encodings() -> None:
    assert eddsa.decode_point(_encode(1, 0)) == (0, 1, 1, 0)  # the identity, x = 0
    assert eddsa.decode_point(_encode(1, 1)) is None  # x = 0 with the sign bit set
    assert eddsa.decode_point(_encode(P - 1, 1)) is None  # y = -1: x = 0, sign bit set
    assert eddsa.decode_point(_encode(P - 1, 0)) is not None  # the point of order 2
    for y in (P, P + 1, 2**255 - 1):  # y >= p: y + p would alias y
        assert eddsa.decode_point(_encode(y, 0)) is None
        assert eddsa.decode_point(_encode(y, 1)) is None
    assert eddsa.decode_point(_encode(_non_square_y(), 0)) is None
    assert eddsa.decode_point(b"\x01" * 31) is None  # wrong length
    # Round trip on real points.
    for n in (1, 2, 3, 12345, L - 1):
        enc = eddsa.base_mult(n)
        pt = eddsa.decode_point(enc)
        assert pt is not None and eddsa.encode_point(pt) == enc


def test_invalid_public_key_and_r_encodings_are_refused() -> None:
    _, _, public, message, signature = RFC8032[1]
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    bad_points = [_encode(1, 1), _encode(P, 0), _encode(P + 2, 1), _encode(_non_square_y(), 0)]
    for bad in bad_points:
        assert _code(bad, msg, sig) == "key_invalid"
        assert _code(pk, msg, bad + sig[32:]) == "signature_malformed"
    # Non-canonical y of the public key (y + p, same point): refused, not reduced.
    y = int.from_bytes(pk, "little") & ((1 << 255) - 1)
    if y + P < 2**255:
        assert _code(_encode(y + P, pk[31] >> 7), msg, sig) == "key_invalid"
    # R = the base point's y + p would alias B: refused as non-canonical.
    assert _code(pk, msg, _encode(1 + P, 0) + sig[32:]) == "signature_malformed"


def test_signature_length_is_checked() -> None:
    _, _, public, message, signature = RFC8032[2]
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    for bad in (b"", sig[:63], sig + b"\0"):
        assert _code(pk, msg, bad) == "signature_malformed"


def _torsion_point() -> tuple[eddsa.Point, int]:
    """A point of small order (the torsion part [L]Q of some decoded Q) and its order."""
    identity = _encode(1, 0)
    for y in range(2, 4000):
        pt = eddsa.decode_point(_encode(y, 0))
        if pt is None:
            continue
        small = eddsa._var_mult(L, _multiples(pt))
        if eddsa.encode_point(small) == identity:
            continue
        for order in (2, 4, 8):
            if eddsa.encode_point(eddsa._var_mult(order, _multiples(small))) == identity:
                return small, order
    raise AssertionError("no point with a torsion component found")


def test_cofactorless_equation_refuses_a_small_order_component() -> None:
    """A public key with a small-order component T (A' = A + T) and a signer that uses A' in
    k = H(R || A' || M): then [S]B - [k]A' = R - [k]T, which is R only when order(T) divides
    k. The cofactored equation ([8]...) would accept it; the cofactorless one (ours, Keystone's
    orlp/ed25519, OpenSSL's) refuses it."""
    t, order = _torsion_point()
    assert order == 8 or order in (2, 4)
    pair = fake.expand_seed(b"\x07" * 32, hash=SHA512)
    a = int.from_bytes(pair.secret[:32], "little")
    a_point = eddsa.decode_point(pair.public)
    assert a_point is not None
    a_prime = eddsa.encode_point(eddsa._add(a_point, t))
    assert eddsa.decode_point(a_prime) is not None  # a valid encoding: refused by the equation
    for attempt in range(40):
        msg = b"small order %d" % attempt
        r = int.from_bytes(hashlib.sha512(pair.secret[32:] + msg).digest(), "little") % L
        r_enc = eddsa.base_mult(r)
        k = int.from_bytes(SHA512(r_enc + a_prime + msg), "little") % L
        sig = r_enc + ((r + k * a) % L).to_bytes(32, "little")
        if k % order == 0:  # [k]T is the identity: an honest signature for A'
            eddsa.verify(a_prime, msg, sig, hash=SHA512)
            continue
        assert _code(a_prime, msg, sig) == "signature_invalid"
        # The cofactored equation holds: [8]([S]B - [k]A') == [8]R.
        s_pt = eddsa._base_mult((r + k * a) % L)
        ap = eddsa.decode_point(a_prime)
        assert ap is not None
        lhs = eddsa._add(s_pt, eddsa._var_mult(k, _multiples(eddsa._neg(ap))))
        r_pt = eddsa.decode_point(r_enc)
        assert r_pt is not None
        eight = eddsa._var_mult(8, _multiples(lhs)), eddsa._var_mult(8, _multiples(r_pt))
        assert eddsa.encode_point(eight[0]) == eddsa.encode_point(eight[1])
        return
    raise AssertionError("no message with order(T) not dividing k in 40 tries")


def _multiples(pt: eddsa.Point) -> tuple[eddsa.Point, ...]:
    table = [eddsa._IDENTITY]
    for _ in range(15):
        table.append(eddsa._add(table[-1], pt))
    return tuple(table)


def test_keystone_variant_is_sha3_512_throughout() -> None:
    """The SHA3-512 variant: our signing verifies with our verifier, not with RFC 8032's; the
    published test device key's scalar gives the published public key."""
    dev = fake.dev_key()
    assert eddsa.base_mult(int.from_bytes(dev.secret[:32], "little")) == dev.public
    msg = b"\x11" * 96
    sig = dev.sign(msg)
    eddsa.verify(dev.public, msg, sig, hash=SHA3_512)
    assert _code(dev.public, msg, sig, hash=SHA512) == "signature_invalid"
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(dev.public).verify(sig, msg)
    # Keystone's key pair from a seed: SHA3-512(seed), clamped (keypair.c).
    seed = b"\x42" * 32
    pair = fake.expand_seed(seed)
    h = hashlib.sha3_512(seed).digest()
    assert pair.secret[32:] == h[32:]
    eddsa.verify(pair.public, b"m", pair.sign(b"m"), hash=SHA3_512)


def test_small_order_keys_and_r_are_refused() -> None:
    """All eight points of order dividing 8: refused as a key (with an all-zero-S signature that
    would otherwise verify for some messages) and as R."""
    t, order = _torsion_point()
    if order != 8:  # the torsion part found has order 2 or 4: take a generator of all eight
        pytest.skip("no order-8 point found by the search")  # pragma: no cover
    small = [eddsa.encode_point(eddsa._var_mult(j, _multiples(t))) for j in range(8)]
    assert len(set(small)) == 8
    _, _, public, message, signature = RFC8032[1]
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    for enc in small:
        assert not eddsa.public_key_valid(enc)
        assert _code(enc, msg, sig) == "key_invalid"
        assert _code(enc, msg, small[2] + bytes(32)) == "key_invalid"
        assert _code(pk, msg, enc + sig[32:]) == "signature_malformed"
    assert eddsa.public_key_valid(pk)
    # What the check prevents: with A and R of order 4 and S = 0, -[k]A == R for k = 3 mod 4.
    a_pt = eddsa.decode_point(bytes(32))  # y = 0: x = sqrt(-1), a point of order 4
    assert a_pt is not None and bytes(32) in small
    hits = 0
    for i in range(16):
        m = b"m%d" % i
        k = int.from_bytes(SHA3_512(bytes(32) + bytes(32) + m), "little") % L
        neg_ka = eddsa._var_mult(k, _multiples(eddsa._neg(a_pt)))
        hits += eddsa.encode_point(neg_ka) == bytes(32)
        assert _code(bytes(32), m, bytes(64), hash=SHA3_512) == "key_invalid"
    assert hits  # the equation alone would have accepted some of them


def test_fixed_base_tables_agree_with_the_window_method() -> None:
    for seed in (b"\x01" * 32, b"\x02" * 32):
        q = eddsa.decode_point(fake.expand_seed(seed, hash=SHA512).public)
        assert q is not None
        table = eddsa._comb_table(q)
        window = _multiples(q)
        for k in (
            0,
            1,
            15,
            16,
            2**252,
            L - 1,
            2**256 - 1,
            *(int.from_bytes(os.urandom(32), "little") for _ in range(6)),
        ):
            assert eddsa.encode_point(eddsa._comb_mult(k, table)) == eddsa.encode_point(
                eddsa._var_mult(k, window)
            )
    assert eddsa.encode_point(eddsa._base_mult(L)) == _encode(1, 0)  # [L]B is the identity


def test_a_key_in_steady_use_gets_a_table_and_still_refuses_forgeries() -> None:
    pair = fake.expand_seed(os.urandom(32), hash=SHA3_512)
    msgs = [b"report %d" % i for i in range(2 * eddsa._TABLE_AFTER)]
    for i, msg in enumerate(msgs):
        sig = pair.sign(msg)
        if i == 0:  # a key seen for the first time costs no table
            assert eddsa._COMB_TABLES.get(pair.public) is None
        eddsa.verify(pair.public, msg, sig, hash=SHA3_512)
        assert _code(pair.public, msg + b"!", sig, hash=SHA3_512) == "signature_invalid"
        bad = bytearray(sig)
        bad[40] ^= 1
        assert _code(pair.public, msg, bytes(bad), hash=SHA3_512) == "signature_invalid"
    assert eddsa._COMB_TABLES.get(pair.public) is not None
