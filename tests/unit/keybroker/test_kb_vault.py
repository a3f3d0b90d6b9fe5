"""Secrets at rest: KEKs, envelope encryption, tamper detection."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from veritee.errors import MalformedError, OversizedError, UsageError, VerificationError
from veritee.keybroker import kek as kek_mod
from veritee.keybroker import vault
from veritee.keybroker.kek import AesGcmKek, EnvKek, FileKek, KeyEncryptionKey
from veritee.keybroker.vault import SealedVersion, SecretBytes, open_blob, seal


def test_public_surface() -> None:
    for mod in (kek_mod, vault):
        for name in mod.__all__:
            assert hasattr(mod, name), name


def test_file_kek_created_0600_and_stable(tmp_path: Path) -> None:
    k1 = FileKek.in_data_dir(tmp_path / "data")
    path = tmp_path / "data" / kek_mod.KEK_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    k2 = FileKek(path)
    assert k1.kek_id == k2.kek_id
    assert isinstance(k1, KeyEncryptionKey)
    blob = k1.wrap(b"d" * 32, b"aad")
    assert k2.unwrap(blob, b"aad") == b"d" * 32
    assert "kek_id" in repr(k1) and path.read_bytes().hex() not in repr(k1)


def test_file_kek_refuses_wrong_size(tmp_path: Path) -> None:
    p = tmp_path / "bad.kek"
    p.write_bytes(b"short")
    with pytest.raises(UsageError):
        FileKek(p)


def test_env_kek() -> None:
    key = os.urandom(32)
    env = {"VERITEE_KEK": base64.b64encode(key).decode()}
    assert EnvKek(environ=env).kek_id == AesGcmKek(key).kek_id
    url = {"K": base64.urlsafe_b64encode(key).decode().rstrip("=")}
    assert EnvKek("K", environ=url).kek_id == AesGcmKek(key).kek_id
    with pytest.raises(UsageError, match="not set"):
        EnvKek(environ={})
    with pytest.raises(UsageError, match="32 bytes"):
        EnvKek(environ={"VERITEE_KEK": base64.b64encode(b"x" * 16).decode()})
    with pytest.raises(UsageError, match="base64"):
        EnvKek(environ={"VERITEE_KEK": "!!!not base64!!!"})


def test_kek_unwrap_binds_aad() -> None:
    k = AesGcmKek(os.urandom(32))
    blob = k.wrap(b"k" * 32, b"name|1")
    with pytest.raises(VerificationError) as e:
        k.unwrap(blob, b"name|2")
    assert e.value.code == "secret_tampered"
    with pytest.raises(VerificationError):
        AesGcmKek(os.urandom(32)).unwrap(blob, b"name|1")
    with pytest.raises(VerificationError):
        k.unwrap(blob[:5], b"name|1")


def test_seal_roundtrip_fresh_dek_per_version() -> None:
    k = AesGcmKek(os.urandom(32))
    s1 = seal(k, "db/password", 1, b"hunter2")
    s2 = seal(k, "db/password", 2, b"hunter2")
    assert s1.wrapped_dek != s2.wrapped_dek and s1.ciphertext != s2.ciphertext
    assert b"hunter2" not in s1.to_bytes()
    parsed = SealedVersion.from_bytes(s1.to_bytes())
    assert parsed == s1
    assert open_blob(k, "db/password", 1, s1.to_bytes()).reveal() == b"hunter2"
    assert len(s1.digest) == 64


def test_sealed_blob_moved_to_other_name_or_version_fails() -> None:
    k = AesGcmKek(os.urandom(32))
    blob = seal(k, "a", 1, b"v").to_bytes()
    for name, version in (("b", 1), ("a", 2)):
        with pytest.raises(VerificationError) as e:
            open_blob(k, name, version, blob)
        assert e.value.code == "secret_tampered"


@pytest.mark.parametrize("flip", [0, 10, 30, -1, -20])
def test_every_tamper_detected_never_garbage(flip: int) -> None:
    k = AesGcmKek(os.urandom(32))
    blob = bytearray(seal(k, "s", 3, b"the value " * 10).to_bytes())
    blob[flip] ^= 0x01
    with pytest.raises(VerificationError) as e:
        open_blob(k, "s", 3, bytes(blob))
    assert e.value.code in ("secret_tampered", "kek_mismatch")
    assert "the value" not in str(e.value)


def test_truncated_and_trailing_blobs() -> None:
    k = AesGcmKek(os.urandom(32))
    blob = seal(k, "s", 1, b"v").to_bytes()
    for cut in (0, 4, 9, 20, len(blob) - 1):
        with pytest.raises(MalformedError) as e:
            SealedVersion.from_bytes(blob[:cut])
        assert e.value.field is not None
        with pytest.raises(VerificationError):
            open_blob(k, "s", 1, blob[:cut])
    with pytest.raises(MalformedError, match="trailing"):
        SealedVersion.from_bytes(blob + b"x")


def test_other_kek_reports_mismatch() -> None:
    blob = seal(AesGcmKek(os.urandom(32)), "s", 1, b"v").to_bytes()
    with pytest.raises(VerificationError) as e:
        open_blob(AesGcmKek(os.urandom(32)), "s", 1, blob)
    assert e.value.code == "kek_mismatch"


def test_names_and_limits() -> None:
    k = AesGcmKek(os.urandom(32))
    for good in ("a", "repo/type/tag", "default/key/k1.pem", "A-b_c.9"):
        assert vault.validate_name(good) == good
    for bad in ("", "/a", "a/", "a/b/c/d", "../x", "a b", "é", "a" * 65, "a/.."):
        with pytest.raises(UsageError):
            seal(k, bad, 1, b"v")
    with pytest.raises(OversizedError):
        seal(k, "big", 1, b"x" * (vault.MAX_SECRET_BYTES + 1))
    with pytest.raises(UsageError):
        seal(k, "s", 0, b"x")


def test_secret_bytes_redacts() -> None:
    s = SecretBytes(b"topsecret")
    assert "topsecret" not in repr(s) and "topsecret" not in str(s) and "redacted" in repr(s)
    assert s == SecretBytes(b"topsecret") and s != SecretBytes(b"other")
    assert len(s) == 9 and s.reveal() == b"topsecret"
