"""Trust.seal / Trust.unseal: purposes and contexts, and the SDK's own sealed keys (issue 13.2);
Trust's folders and its documented parameters (issue 18.9).

The Trust here never reaches its service: sealing is local.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.unit.sdk.sdk_pki import TestCA

from veritee.errors import SealingError, UsageError
from veritee.logs.handler import PENDING_MAGIC, load_pending
from veritee.profiles import Profile
from veritee.sdk import sealing
from veritee.sdk.trust import Trust

M = "5e" * 48
V1 = Path(__file__).resolve().parents[2] / "data" / "sealed-v1"


def _trust(tmp_path: Path, profile: Profile = Profile.STAGING, measurement: str = M,
           platform_dir: Path | None = None) -> Trust:  # fmt: skip
    return Trust("https://certifier.invalid:8400", TestCA().cert, platform="simulated",
                 store=tmp_path / "store", measurement=measurement, profile=profile,
                 platform_dir=platform_dir or tmp_path / "sim")  # fmt: skip


def _pending_key_blob(trust: Trust) -> bytes:
    trust.logger.info("before the control plane is up")
    pending = next((trust.store_path / "logs").rglob("pending*.sealed"))
    data = pending.read_bytes()
    assert data[:8] == PENDING_MAGIC
    n = int.from_bytes(data[8:12], "big")
    return data[12 : 12 + n]


def test_the_log_buffer_key_does_not_open_through_trust_unseal(tmp_path: Path) -> None:
    """The host swaps an application's sealed file for the log's sealed buffer key: the
    application's unseal must refuse it rather than hand out the log key."""
    trust = _trust(tmp_path)
    blob = _pending_key_blob(trust)
    with pytest.raises(SealingError):
        trust.unseal(blob)
    for context in (b"", b"veritee-log-pending-v1"):
        with pytest.raises(SealingError):
            trust.unseal(blob, context=context)
    with pytest.raises(UsageError):
        trust.unseal(blob, purpose=sealing.PURPOSE_LOG_PENDING)
    # The SDK itself still recovers its records from the buffer.
    pending = next((trust.store_path / "logs").rglob("pending*.sealed"))
    records = load_pending(
        pending, sealing.Sealer(trust.platform, sealing.PURPOSE_LOG_PENDING).unseal
    )
    assert len(records) == 1 and b"before the control plane is up" in records[0]
    trust.close()


def test_the_key_store_does_not_open_through_trust_unseal(tmp_path: Path) -> None:
    trust = _trust(tmp_path)
    trust.keystore.load_or_create_key()
    blob = trust.keystore.path.read_bytes()
    with pytest.raises(SealingError) as e:
        trust.unseal(blob)
    assert e.value.code == "sealed_purpose_mismatch"
    trust.close()


def test_blobs_swapped_between_contexts_do_not_open(tmp_path: Path) -> None:
    trust = _trust(tmp_path)
    password = trust.seal(b"hunter2", context=b"db-password")
    motd = trust.seal(b"hello", context=b"motd")
    assert trust.unseal(password, context=b"db-password") == b"hunter2"
    with pytest.raises(SealingError):
        trust.unseal(password, context=b"motd")  # the host put one file in the other's place
    backup = trust.seal(b"backup", purpose="backup")
    with pytest.raises(SealingError) as e:
        trust.unseal(backup)
    assert e.value.code == "sealed_purpose_mismatch"
    assert trust.unseal(backup, purpose="backup") == b"backup"
    assert trust.unseal(motd, context=b"motd") == b"hello"
    trust.close()


def test_development_instance_cannot_unseal_production_data(tmp_path: Path) -> None:
    prod = _trust(tmp_path / "p", Profile.PRODUCTION, platform_dir=tmp_path / "sim")
    blob = prod.seal(b"production only")
    dev = _trust(tmp_path / "d", Profile.DEVELOPMENT, platform_dir=tmp_path / "sim")
    with pytest.raises(SealingError) as e:
        dev.unseal(blob)
    assert e.value.code == "sealed_other_profile"
    assert prod.unseal(blob) == b"production only"
    prod.close()
    dev.close()


def test_version_1_data_stays_readable(tmp_path: Path) -> None:
    shutil.copytree(V1 / "platform", tmp_path / "platform")
    m = (V1 / "measurement.txt").read_text().strip()
    trust = _trust(tmp_path, Profile.PRODUCTION, measurement=m, platform_dir=tmp_path / "platform")
    assert trust.unseal((V1 / "app.sealed").read_bytes()) == b"sealed by veritee 0.x, format 1"
    shutil.copy(V1 / "pending.sealed", tmp_path / "pending.sealed")
    sealer = sealing.Sealer(trust.platform, sealing.PURPOSE_LOG_PENDING)
    assert load_pending(tmp_path / "pending.sealed", sealer.unseal) == [
        b"first pending record",
        b"second pending record",
    ]
    trust.close()


def test_two_measurements_share_one_store_folder(tmp_path: Path) -> None:
    """A code edit is a new measurement: it gets its own key store beside the old one (issue 18
    item 2), and the old version still opens its own."""
    old = _trust(tmp_path)
    old.keystore.put("who", b"old")
    old_key = old.keystore.load_or_create_key()
    old.close()
    edited = _trust(tmp_path, measurement="ed" * 48)  # raised SealingError before
    assert edited.keystore.get("who") is None
    edited.keystore.put("who", b"edited")
    assert edited.keystore.path != old.keystore.path
    assert edited.keystore.path.parent.name == f"simulated-staging-{'ed' * 48}"
    edited.close()
    again = _trust(tmp_path)
    assert again.keystore.get("who") == b"old"
    assert again.keystore.private_key().private_numbers() == old_key.private_numbers()  # type: ignore[union-attr]
    # Another profile seals with another key: its own store too.
    assert _trust(tmp_path, profile=Profile.PRODUCTION).keystore.get("who") is None


def test_a_tampered_key_store_says_what_happened(tmp_path: Path) -> None:
    t = _trust(tmp_path)
    t.keystore.put("who", b"me")
    path = t.keystore.path
    t.close()
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(SealingError) as e:
        _trust(tmp_path)
    msg = str(e.value)
    assert e.value.code == "unseal_failed"
    assert str(path) in msg and "modified or replaced" in msg and "sealing='domain'" in msg
    assert path.read_bytes() == bytes(blob)  # left untouched


def test_a_key_store_of_the_earlier_layout_moves_to_its_measurement(tmp_path: Path) -> None:
    from veritee.sdk.keystore import KeyStore

    first = _trust(tmp_path)
    first.keystore.put("who", b"legacy")
    own = first.keystore.path
    first.close()
    legacy = tmp_path / "store" / "keystore.bin"
    shutil.move(own, legacy)  # as the SDK laid it out before
    other = _trust(tmp_path, measurement="ed" * 48)  # not its own: left alone
    assert other.keystore.get("who") is None and legacy.exists()
    other.close()
    again = _trust(tmp_path)
    assert again.keystore.get("who") == b"legacy" and not legacy.exists() and own.exists()
    assert isinstance(again.keystore, KeyStore)


def test_platform_dir_expands_the_home_folder_as_store_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``platform_dir="~/..."`` (as the README shows) is the home folder's, not a folder named
    ``~`` in the working directory: the platform key would otherwise change with the cwd."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    trust = Trust("https://certifier.invalid:8400", TestCA().cert, platform="simulated",
                  store="~/store", measurement=M, profile=Profile.DEVELOPMENT,
                  platform_dir="~/sim")  # fmt: skip
    trust.close()
    assert not (tmp_path / "~").exists()
    assert (tmp_path / "home" / "sim").is_dir() and (tmp_path / "home" / "store").is_dir()


def test_help_trust_documents_every_constructor_parameter() -> None:
    """``help(Trust)`` names each parameter of ``Trust(...)`` (issue 18 item 9)."""
    import inspect

    doc = Trust.__doc__ or ""
    params = [p for p in inspect.signature(Trust.__init__).parameters if p != "self"]
    assert [p for p in params if f"``{p}``" not in doc] == []
