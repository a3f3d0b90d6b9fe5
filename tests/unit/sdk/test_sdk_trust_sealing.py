"""Trust.seal / Trust.unseal: purposes and contexts, and the SDK's own sealed keys (issue 13.2).

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
    records = load_pending(pending, sealing.Sealer(trust.platform, sealing.PURPOSE_LOG_PENDING).unseal)
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
