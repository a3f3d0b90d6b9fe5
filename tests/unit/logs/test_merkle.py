"""RFC 9162 §2.1 Merkle hashing and proofs, against the published RFC 6962 reference roots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veritee.logs.merkle import (
    CompactRange,
    MerkleTree,
    empty_root,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# The eight inputs and roots used by every Certificate Transparency implementation's tests.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATH_0_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def _mth(data: list[bytes]) -> bytes:
    """MTH written straight from the RFC's recursive definition."""
    if not data:
        return empty_root()
    if len(data) == 1:
        return leaf_hash(data[0])
    k = 1 << ((len(data) - 1).bit_length() - 1)
    return node_hash(_mth(data[:k]), _mth(data[k:]))


def test_reference_roots() -> None:
    tree = MerkleTree([leaf_hash(d) for d in CT_LEAVES])
    cr = CompactRange()
    assert cr.root().hex() == CT_ROOTS[0]
    for n in range(9):
        assert tree.root(n).hex() == CT_ROOTS[n]
        if n:
            cr.append(leaf_hash(CT_LEAVES[n - 1]))
            assert cr.root().hex() == CT_ROOTS[n]


def test_reference_inclusion_path() -> None:
    tree = MerkleTree([leaf_hash(d) for d in CT_LEAVES])
    assert [p.hex() for p in tree.inclusion_proof(0)] == CT_PATH_0_8


@pytest.mark.parametrize("n", range(1, 34))
def test_every_proof_in_every_size(n: int) -> None:
    data = [bytes([i, i * 3 % 256]) for i in range(n)]
    tree = MerkleTree([leaf_hash(d) for d in data])
    for size in range(1, n + 1):
        root = _mth(data[:size])
        assert tree.root(size) == root
        for i in range(size):
            proof = tree.inclusion_proof(i, size)
            assert verify_inclusion(leaf_hash(data[i]), i, size, proof, root)
            assert not verify_inclusion(leaf_hash(b"other"), i, size, proof, root)
            if size > 1:
                assert not verify_inclusion(leaf_hash(data[i]), (i + 1) % size, size, proof, root)
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert verify_consistency(old, size, _mth(data[:old]), root, proof)
            if old < size:
                assert not verify_consistency(old, size, leaf_hash(b"x"), root, proof)
                assert not verify_consistency(old, size, _mth(data[:old]), leaf_hash(b"x"), proof)
                if proof:
                    bad = [*proof[:-1], leaf_hash(b"y")]
                    assert not verify_consistency(old, size, _mth(data[:old]), root, bad)


def test_consistency_with_a_different_history_fails() -> None:
    a = [leaf_hash(bytes([i])) for i in range(10)]
    b = list(a)
    b[3] = leaf_hash(b"rewritten")
    ta, tb = MerkleTree(a), MerkleTree(b)
    proof = tb.consistency_proof(6, 10)
    assert not verify_consistency(6, 10, ta.root(6), tb.root(10), proof)


def test_bad_arguments() -> None:
    tree = MerkleTree([leaf_hash(b"a")])
    with pytest.raises(ValueError, match="outside"):
        tree.inclusion_proof(1)
    with pytest.raises(ValueError, match="outside"):
        tree.consistency_proof(0)
    assert not verify_inclusion(leaf_hash(b"a"), 5, 1, [], tree.root())
    assert not verify_consistency(2, 1, tree.root(), tree.root(), [])


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70))
def test_compact_range_equals_full_tree(data: list[bytes]) -> None:
    cr = CompactRange()
    for d in data:
        cr.append(leaf_hash(d))
    assert cr.root() == _mth(data) == MerkleTree([leaf_hash(d) for d in data]).root()
    assert cr.size == len(data)
