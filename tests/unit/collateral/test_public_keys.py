"""Bare public keys as collateral (PEM ``PUBLIC KEY``), e.g. an Arm CCA platform key."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.collateral import Collateral
from veritee.errors import MalformedError


def _pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_public_keys_are_collected_from_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "cpak.pub").write_bytes(_pem())
    (tmp_path / "two.pem").write_bytes(_pem() + _pem())
    bag = Collateral.from_paths([tmp_path])
    assert len(bag.public_keys) == 3 and not bag.certificates
    assert len(bag.joined(Collateral.from_blobs([("x", _pem())])).public_keys) == 4


@pytest.mark.parametrize("bad", [
    b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
    b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    b"-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACID\n",  # never ends
    b"-----BEGIN SOMETHING ELSE-----\nAAAA\n-----END SOMETHING ELSE-----\n",
])  # fmt: skip
def test_bad_public_key_pem_is_named(bad: bytes) -> None:
    with pytest.raises(MalformedError) as e:
        Collateral.from_blobs([("cpak.pub", bad)])
    assert e.value.field == "cpak.pub"
