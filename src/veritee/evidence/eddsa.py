"""Ed25519 verification (RFC 8032 §5.1) in pure Python, with the hash as a parameter.

Why not ``cryptography``: RISC-V Keystone signs with the orlp/ed25519 code in which SHA3-512
replaces SHA-512 everywhere (key expansion, the nonce ``r`` and the challenge ``k``), so no RFC
8032 library verifies its signatures. The curve arithmetic is RFC 8032's; only ``hash`` differs.
With :data:`SHA512` this is RFC 8032's Ed25519 (the tests run its §7.1 vectors and compare with
``cryptography`` on random keys); :data:`SHA3_512` is Keystone's variant.

:func:`verify` follows RFC 8032 §5.1.7:

1. the signature is 64 bytes, ``R`` its first 32, ``S`` its last 32 as a little-endian integer;
   ``S >= L`` is refused (no malleable second signature);
2. ``A`` (the public key) and ``R`` are decoded as points (§5.1.3), refusing every non-canonical
   or invalid encoding: ``y >= p``, an ``x`` that does not exist (``y`` not on the curve), and
   ``x = 0`` with the sign bit set; and points of small order (below);
3. ``k = hash(R || A || M)`` as a little-endian integer, reduced modulo ``L``;
4. the **cofactorless** equation ``[S]B = R + [k]A``, checked as orlp/ed25519 (Keystone's own
   verifier), OpenSSL and ``cryptography`` do: the canonical encoding of ``[S]B - [k]A`` must
   equal the 32 bytes of ``R``. Cofactorless is the stricter of the two equations §5.1.7 allows
   (a signature with a small-order component that only the cofactored ``[8]`` form would accept
   is refused), so every signature this accepts, Keystone's verifier accepts too.

Beyond RFC 8032, points of small order (order dividing 8: ``[8]P`` is the identity) are refused
as ``A`` (``key_invalid``) and as ``R`` (``signature_malformed``), as libsodium does: with such a
key, the all-zero "signature" (R of order 4, S = 0) holds for a quarter of all messages, so an
all-zero key and signature would pass for one in sixteen Keystone reports. No honest key or
``R = [r]B`` is of small order.

Speed: Python integers in extended coordinates (Hisil-Wong-Carter-Dawson, RFC 8032 §5.1.4);
``[S]B`` from a fixed-base table of ``j * 16^i * B`` built once on first use (at most 64 mixed
additions, no doublings, one batched inversion to build); ``[k]A`` by a 4-bit window (256
doublings, 64 additions), or, for a key in steady use (Keystone's SM key signs every report of
its device until it reboots), from the key's own fixed-base table, built at its fourth use (a
key seen a few times never costs a table, so fresh keys cannot make the verifier build them).
Decoded keys and tables are kept in bounded caches. No secret is handled here: verification is
variable-time.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from veritee._lru import Lru
from veritee.errors import VerificationError

__all__ = [
    "SHA3_512",
    "SHA512",
    "HashFn",
    "L",
    "P",
    "base_mult",
    "decode_point",
    "encode_point",
    "public_key_valid",
    "verify",
]

#: A hash with 64-byte output: bytes in, digest out.
HashFn = Callable[[bytes], bytes]


def SHA512(data: bytes) -> bytes:
    """RFC 8032's hash."""
    return hashlib.sha512(data).digest()


def SHA3_512(data: bytes) -> bytes:
    """Keystone's hash (FIPS 202 SHA3-512)."""
    return hashlib.sha3_512(data).digest()


#: The field prime 2^255 - 19 and the prime order of the base point (RFC 8032 §5.1).
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
#: The curve constant d = -121665/121666 and sqrt(-1) mod p.
D = (-121665 * pow(121666, -1, P)) % P
D2 = (2 * D) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
#: The base point B (RFC 8032 §5.1): y = 4/5, x positive (even).
_BY = (4 * pow(5, -1, P)) % P

# A point in extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z.
Point = tuple[int, int, int, int]
# A point in affine "Niels" form for mixed addition: (y + x, y - x, 2*d*x*y).
Niels = tuple[int, int, int]

_IDENTITY: Point = (0, 1, 1, 0)


def _recover_x(y: int, sign: int) -> int | None:
    """RFC 8032 §5.1.3 steps 2-4: the x of y with the given sign bit, or None."""
    if y >= P:
        return None
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    v3 = v * v * v % P
    x = u * v3 * pow(u * v3 * v3 * v % P, (P - 5) // 8, P) % P
    vx2 = v * x * x % P
    if vx2 == u:
        pass
    elif vx2 == (-u) % P:
        x = x * SQRT_M1 % P
    else:
        return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = P - x
    return x


def decode_point(data: bytes) -> Point | None:
    """RFC 8032 §5.1.3: the point ``data`` encodes, or None when it is not a canonical encoding
    of a curve point (wrong length, ``y >= p``, no such ``x``, or ``x = 0`` with the sign bit)."""
    if len(data) != 32:
        return None
    n = int.from_bytes(data, "little")
    sign = n >> 255
    y = n & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def _small_order(pt: Point) -> bool:
    """[8]P is the identity (X = 0, Y = Z)."""
    x, y, z, _ = _double(_double(_double(pt)))
    return x % P == 0 and (y - z) % P == 0


def public_key_valid(data: bytes) -> bool:
    """``data`` is a canonical encoding of a curve point that is not of small order."""
    pt = decode_point(data)
    return pt is not None and not _small_order(pt)


def encode_point(pt: Point) -> bytes:
    """RFC 8032 §5.1.2: y little-endian with x's low bit in the top bit."""
    x, y, z, _ = pt
    zi = pow(z, -1, P)
    x = x * zi % P
    y = y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _add(p1: Point, p2: Point) -> Point:
    """Extended-coordinates addition (RFC 8032 §5.1.4, a = -1)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * D2 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _add_niels(p1: Point, q: Niels) -> Point:
    """Mixed addition of an extended point and an affine Niels point (Z2 = 1)."""
    x1, y1, z1, t1 = p1
    ypx, ymx, xy2d = q
    a = (y1 - x1) * ymx % P
    b = (y1 + x1) * ypx % P
    c = t1 * xy2d % P
    d = 2 * z1
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _double(p1: Point) -> Point:
    """Extended-coordinates doubling (RFC 8032 §5.1.4)."""
    x1, y1, z1, _ = p1
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    s = x1 + y1
    e = h - s * s % P
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _neg(pt: Point) -> Point:
    x, y, z, t = pt
    return ((-x) % P, y, z, (-t) % P)


def _to_niels_batch(points: list[Point]) -> list[Niels]:
    """Affine Niels forms of ``points`` with one inversion (Montgomery's batch trick)."""
    prefix = [1]
    for pt in points:
        prefix.append(prefix[-1] * pt[2] % P)
    inv = pow(prefix[-1], -1, P)
    out: list[Niels] = [(1, 1, 0)] * len(points)
    for i in range(len(points) - 1, -1, -1):
        x, y, z, _ = points[i]
        zi = inv * prefix[i] % P  # 1 / z_i
        inv = inv * z % P
        x = x * zi % P
        y = y * zi % P
        out[i] = ((y + x) % P, (y - x) % P, D2 * x * y % P)
    return out


#: A fixed-base table: ``table[i][j] = j * 16^i * Q`` in Niels form (j = 0..15, i = 0..63).
CombTable = tuple[tuple[Niels, ...], ...]


def _comb_table(q: Point) -> CombTable:
    """The fixed-base table of ``q``: 64 * 15 additions and one inversion."""
    points: list[Point] = []
    step = q
    for _ in range(64):
        acc = step
        points.append(acc)
        for _j in range(2, 16):
            acc = _add(acc, step)
            points.append(acc)
        for _k in range(4):
            step = _double(step)
    niels = _to_niels_batch(points)
    identity: Niels = (1, 1, 0)  # (y+x, y-x, 2dxy) of the identity
    return tuple((identity, *niels[15 * i : 15 * i + 15]) for i in range(64))


def _comb_mult(s: int, table: CombTable) -> Point:
    """[s]Q for 0 <= s < 2^256 from Q's fixed-base table (at most 64 mixed additions)."""
    acc = _IDENTITY
    for i in range(64):
        nibble = (s >> (4 * i)) & 15
        if nibble:
            acc = _add_niels(acc, table[i][nibble])
    return acc


@functools.cache
def _base_table() -> CombTable:
    """The base point's fixed-base table, built once on first use."""
    bx = _recover_x(_BY, 0)
    assert bx is not None
    return _comb_table((bx, _BY, 1, bx * _BY % P))


def _base_mult(s: int) -> Point:
    """[s]B for 0 <= s < 2^256 (64 mixed additions)."""
    return _comb_mult(s, _base_table())


def base_mult(s: int) -> bytes:
    """The encoding of [s mod L]B (a public key from its clamped scalar, or R from r)."""
    return encode_point(_base_mult(s % L))


@functools.lru_cache(maxsize=64)
def _key_table(public_key: bytes) -> tuple[Point, ...] | None:
    """``-A`` decoded and its multiples ``j * (-A)`` for j = 0..15, or None for an invalid key
    (not a canonical point encoding, or of small order).

    Cached: a fleet has few device and security-monitor keys."""
    a = decode_point(public_key)
    if a is None or _small_order(a):
        return None
    neg = _neg(a)
    table = [_IDENTITY, neg]
    for _ in range(14):
        table.append(_add(table[-1], neg))
    return tuple(table)


#: How often each recent key verified something, and the fixed-base tables of keys in steady use.
#: A table costs about ten window multiplications to build, so it is built when a key reaches
#: :data:`_TABLE_AFTER` uses, and again every :data:`_REBUILD_EVERY` uses if it was evicted:
#: fresh keys never cost a table, and more recurring keys than the cache holds (a large fleet
#: in rotation) cost at most one build per key per 256 uses instead of one per use.
_USES: Lru[bytes, int] = Lru(4096)
_COMB_TABLES: Lru[bytes, CombTable] = Lru(32)
_TABLE_AFTER = 4
_REBUILD_EVERY = 256


def _neg_a_mult(k: int, public_key: bytes, window: tuple[Point, ...]) -> Point:
    """[k](-A): from -A's fixed-base table when the key is in steady use, else by the window."""
    table = _COMB_TABLES.get(public_key)
    if table is not None:
        return _comb_mult(k, table)
    uses = (_USES.get(public_key) or 0) + 1
    _USES.put(public_key, uses)
    if uses != _TABLE_AFTER and uses % _REBUILD_EVERY:
        return _var_mult(k, window)
    table = _comb_table(window[1])
    _COMB_TABLES.put(public_key, table)
    return _comb_mult(k, table)


def _var_mult(k: int, table: tuple[Point, ...]) -> Point:
    """[k]Q for 0 <= k < 2^256 by a 4-bit fixed window over ``table[j] = j * Q``."""
    acc = _IDENTITY
    for i in range(63, -1, -1):
        acc = _double(_double(_double(_double(acc))))
        nibble = (k >> (4 * i)) & 15
        if nibble:
            acc = _add(acc, table[nibble])
    return acc


def verify(public_key: bytes, message: bytes, signature: bytes, *, hash: HashFn) -> None:
    """Check an Ed25519 signature whose hash is ``hash`` (RFC 8032 §5.1.7, cofactorless; see
    the module docstring). Returns None when it verifies; raises
    :class:`~veritee.errors.VerificationError` with code ``key_invalid`` (the public key is not a
    canonical point encoding, or of small order), ``signature_malformed`` (not 64 bytes, ``R``
    not a canonical point encoding or of small order, or ``S >= L``) or ``signature_invalid`` (the equation does not hold)."""
    if len(signature) != 64:
        raise VerificationError(
            f"an Ed25519 signature is 64 bytes, got {len(signature)}", code="signature_malformed"
        )
    r_bytes = bytes(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        raise VerificationError("the signature's S is not below the group order L",
                                code="signature_malformed")  # fmt: skip
    table = _key_table(bytes(public_key))
    if table is None:
        raise VerificationError("the public key is not a canonical encoding of a curve point",
                                code="key_invalid")  # fmt: skip
    r_point = decode_point(r_bytes)
    if r_point is None or _small_order(r_point):
        raise VerificationError("the signature's R is not a canonical encoding of a curve point "
                                "of large order", code="signature_malformed")  # fmt: skip
    digest = hash(r_bytes + bytes(public_key) + bytes(message))
    if len(digest) != 64:
        raise ValueError("hash must give 64 bytes")
    k = int.from_bytes(digest, "little") % L
    check = _neg_a_mult(k, bytes(public_key), table)  # [k](-A)
    x, y, z, t = _base_mult(s)
    check = _add(check, (x, y, z, t))  # [S]B - [k]A
    if encode_point(check) != r_bytes:
        raise VerificationError("the Ed25519 signature does not verify", code="signature_invalid")
