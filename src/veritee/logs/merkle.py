"""Merkle tree hashing, inclusion and consistency proofs after RFC 9162 (Certificate Transparency
version 2.0), section 2.1, with SHA-256.

* leaf hash ``MTH({d0}) = SHA-256(0x00 || d0)``, node hash ``SHA-256(0x01 || left || right)``
  (§2.1.1); the hash of an empty tree is ``SHA-256()``.
* ``MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` with ``k`` the largest power of two
  smaller than ``n``. Building levels bottom-up and promoting a lone last node unchanged gives the
  same, left-balanced tree; :class:`MerkleTree` uses that for O(log n) proofs.
* inclusion proofs: PATH (§2.1.3.1), verified by the algorithm of §2.1.3.2;
* consistency proofs: PROOF / SUBPROOF (§2.1.4.1), verified by the algorithm of §2.1.4.2.

:class:`CompactRange` is the writer's side: it keeps only the roots of the perfect subtrees
(at most log2(n) hashes) and yields the current root in O(log n).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

__all__ = [
    "HASH_SIZE",
    "CompactRange",
    "MerkleTree",
    "empty_root",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def empty_root() -> bytes:
    return hashlib.sha256(b"").digest()


class CompactRange:
    """Roots of the perfect subtrees covering leaves ``[0, size)``, largest first."""

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    def append(self, lhash: bytes) -> None:
        """Add a leaf by its leaf hash (already ``leaf_hash(data)``)."""
        node = lhash
        n = self._size
        while n & 1:
            node = node_hash(self._stack.pop(), node)
            n >>= 1
        self._stack.append(node)
        self._size += 1

    def root(self) -> bytes:
        if not self._stack:
            return empty_root()
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


class MerkleTree:
    """All levels of a tree over given leaf hashes; proofs for any earlier tree size too."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._leaves = list(leaf_hashes)
        levels = [self._leaves]
        while len(levels[-1]) > 1:
            prev = levels[-1]
            nxt = [node_hash(prev[i], prev[i + 1]) for i in range(0, len(prev) - 1, 2)]
            if len(prev) % 2:
                nxt.append(prev[-1])
            levels.append(nxt)
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._leaves)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        n = self.size if size is None else size
        self._check_size(n)
        if n == self.size:
            return self._levels[-1][0] if n else empty_root()
        return self._mth(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 §2.1.3.1."""
        n = self.size if size is None else size
        self._check_size(n)
        if not 0 <= index < n:
            raise ValueError(f"leaf index {index} outside tree of size {n}")
        if n == self.size:
            proof: list[bytes] = []
            idx = index
            for level in self._levels[:-1]:
                sib = idx ^ 1
                if sib < len(level):
                    proof.append(level[sib])
                idx >>= 1
            return proof
        return self._path(index, 0, n)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1."""
        n = self.size if new_size is None else new_size
        self._check_size(n)
        if not 0 < old_size <= n:
            raise ValueError(f"old size {old_size} outside 1..{n}")
        return self._subproof(old_size, 0, n, True)

    # -- internals ---------------------------------------------------------------------------

    def _check_size(self, n: int) -> None:
        if not 0 <= n <= self.size:
            raise ValueError(f"tree size {n} outside 0..{self.size}")

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return empty_root()
        # an aligned perfect subtree is stored in the levels
        if n & (n - 1) == 0 and start % n == 0:
            return self._levels[n.bit_length() - 1][start // n]
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self._mth(start, start + k), self._mth(start + k, end))

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = 1 << ((n - 1).bit_length() - 1)
        if m < k:
            return [*self._path(m, start, start + k), self._mth(start + k, end)]
        return [*self._path(m - k, start + k, end), self._mth(start, start + k)]

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self._mth(start, end)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self._mth(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._mth(start, start + k)]


def verify_inclusion(
    lhash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` put leaf hash ``lhash`` at ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = lhash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (``new_size``, ``new_root``) an append-only extension of
    (``old_size``, ``old_root``)?"""
    if old_size < 1 or old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # exact power of two: the old root is the first node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)
