"""KeyStore: sealed at rest, survives restarts, refuses tampering, renewal logic."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.unit.sdk.sdk_pki import HkdfPlatform, TestCA, measurement_of, now

from veritee.errors import SealingError, UsageError
from veritee.sdk import keystore as keystore_mod
from veritee.sdk.keystore import KeyStore

PEM = serialization.Encoding.PEM


@pytest.fixture
def platform() -> HkdfPlatform:
    return HkdfPlatform(measurement_of("ks-workload"))


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_all_exported() -> None:
    for name in keystore_mod.__all__:
        assert hasattr(keystore_mod, name)


def test_empty_store_writes_nothing(tmp_path: Path, platform: HkdfPlatform) -> None:
    ks = KeyStore(tmp_path / "ks.bin", platform)
    assert ks.private_key() is None and ks.certificate() is None and ks.ca_certificate() is None
    assert ks.get("x") is None and ks.names() == []
    assert not (tmp_path / "ks.bin").exists()


def test_persists_across_restart(tmp_path: Path, platform: HkdfPlatform, ca: TestCA) -> None:
    path = tmp_path / "sub" / "ks.bin"
    ks = KeyStore(path, platform)
    key = ks.load_or_create_key()
    assert isinstance(key.curve, ec.SECP256R1)
    cert = ca.issue(key.public_key(), measurement=platform.measurement)
    ks.save_certificate(cert.public_bytes(PEM), ca_certificate=ca.cert.public_bytes(PEM))
    ks.put("log-key", b"\x01" * 32)
    ks.put("other", b"")

    # At rest: 0600, sealed, neither the key nor the item in the clear.
    raw = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert raw.startswith(b"VTSB")
    assert _key_bytes(key)[-32:] not in raw and b"\x01" * 32 not in raw
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind

    again = KeyStore(path, platform)  # the "restart"
    assert _key_bytes(again.load_or_create_key()) == _key_bytes(key)
    assert again.certificate() == cert
    assert again.ca_certificate() == ca.cert
    assert again.chain() == []
    assert again.get("log-key") == b"\x01" * 32 and again.get("other") == b""
    assert again.names() == ["log-key", "other"]
    assert not again.needs_renewal(now())
    assert again.delete("other") and not again.delete("other")
    assert KeyStore(path, platform).names() == ["log-key"]


def test_other_measurement_cannot_open(tmp_path: Path, platform: HkdfPlatform) -> None:
    path = tmp_path / "ks.bin"
    KeyStore(path, platform).load_or_create_key()
    other = HkdfPlatform(measurement_of("other-workload"), secret=platform.secret)
    with pytest.raises(SealingError) as e:
        KeyStore(path, other)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("mutation", ["flip", "truncate", "empty", "garbage"])
def test_tampered_store_refused_and_kept(
    tmp_path: Path, platform: HkdfPlatform, mutation: str
) -> None:
    path = tmp_path / "ks.bin"
    KeyStore(path, platform).put("secret", b"s3cret")
    raw = bytearray(path.read_bytes())
    if mutation == "flip":
        raw[len(raw) // 2] ^= 0x80
    elif mutation == "truncate":
        raw = raw[:-5]
    elif mutation == "empty":
        raw = bytearray()
    else:
        raw = bytearray(b"\x00garbage" * 10)
    path.write_bytes(bytes(raw))
    with pytest.raises(SealingError) as e:
        KeyStore(path, platform)
    assert str(path) in str(e.value) and "untouched" in str(e.value)
    assert path.read_bytes() == bytes(raw)  # not silently overwritten


def test_sealed_blob_for_another_purpose_is_not_a_store(
    tmp_path: Path, platform: HkdfPlatform
) -> None:
    from veritee.sdk.sealing import seal

    path = tmp_path / "ks.bin"
    path.write_bytes(seal(platform, b"not a key store", purpose="app"))
    with pytest.raises(SealingError) as e:
        KeyStore(path, platform)
    assert e.value.code == "sealed_purpose_mismatch"


def test_certificate_must_match_key(tmp_path: Path, platform: HkdfPlatform, ca: TestCA) -> None:
    ks = KeyStore(tmp_path / "ks.bin", platform)
    stranger = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(stranger.public_key(), measurement=platform.measurement)
    with pytest.raises(UsageError) as e:
        ks.save_certificate(cert.public_bytes(PEM))  # no key yet
    assert e.value.code == "certificate_key_mismatch"
    ks.load_or_create_key()
    with pytest.raises(UsageError):
        ks.save_certificate(cert.public_bytes(PEM))
    with pytest.raises(UsageError) as e:
        ks.save_certificate(b"not pem")
    assert e.value.code == "certificate_invalid"
    assert ks.certificate() is None


def test_renewal_logic(tmp_path: Path, platform: HkdfPlatform, ca: TestCA) -> None:
    ks = KeyStore(tmp_path / "ks.bin", platform)
    t = now()
    assert ks.needs_renewal(t)  # no key, no certificate
    key = ks.load_or_create_key()
    assert ks.needs_renewal(t)  # no certificate
    cert = ca.issue(
        key.public_key(),
        measurement=platform.measurement,
        not_before=t - dt.timedelta(minutes=1),
        not_after=t + dt.timedelta(hours=1),
    )
    ks.save_certificate(cert.public_bytes(PEM))
    not_after = cert.not_valid_after_utc
    assert not ks.needs_renewal(t)
    assert not ks.needs_renewal(t, margin=dt.timedelta(minutes=30))
    assert ks.needs_renewal(t, margin=dt.timedelta(minutes=61))
    assert ks.needs_renewal(not_after - dt.timedelta(minutes=4))  # default margin 5 min
    assert not ks.needs_renewal(not_after - dt.timedelta(minutes=6))
    assert ks.needs_renewal(not_after + dt.timedelta(seconds=1))
    assert ks.needs_renewal(t - dt.timedelta(minutes=2))  # before not_before
    with pytest.raises(UsageError):
        ks.needs_renewal(dt.datetime.now())  # naive
    # A new key drops the certificate issued for the old one.
    new_key = ks.rotate_key()
    assert _key_bytes(new_key) != _key_bytes(key)
    assert ks.certificate() is None and ks.needs_renewal(t)


def test_item_names_checked(tmp_path: Path, platform: HkdfPlatform) -> None:
    ks = KeyStore(tmp_path / "ks.bin", platform)
    for bad in ("", "x" * 129):
        with pytest.raises(UsageError):
            ks.put(bad, b"v")
    with pytest.raises(UsageError):
        ks.put("name", "not bytes")  # type: ignore[arg-type]


def test_with_simulated_platform(tmp_path: Path) -> None:
    from veritee.platforms.simulated import SimulatedPlatform

    plat = SimulatedPlatform(tmp_path / "plat", measurement=measurement_of("app"))
    path = tmp_path / "ks.bin"
    key = KeyStore(path, plat).load_or_create_key()
    again = SimulatedPlatform(tmp_path / "plat", measurement=measurement_of("app"))
    assert _key_bytes(KeyStore(path, again).load_or_create_key()) == _key_bytes(key)
    upgraded = SimulatedPlatform(tmp_path / "plat", measurement=measurement_of("app v2"))
    with pytest.raises(SealingError):
        KeyStore(path, upgraded)


# --- issue 13: the profile and debug state are part of what opens a store --------------------


def test_development_instance_cannot_open_the_production_store(tmp_path: Path) -> None:
    """The host starts a development (debug) instance of the same measurement on the same
    platform install, pointed at the production key store: it must not get the key."""
    from veritee.platforms.simulated import SimulatedPlatform
    from veritee.profiles import Profile

    m = measurement_of("payments")
    prod = SimulatedPlatform(tmp_path / "sim", measurement=m, profile=Profile.PRODUCTION)
    path = tmp_path / "ks.bin"
    KeyStore(path, prod).load_or_create_key()
    dev = SimulatedPlatform(tmp_path / "sim", measurement=m, profile=Profile.DEVELOPMENT)
    assert dev.debug
    with pytest.raises(SealingError):
        KeyStore(path, dev)
    staging = SimulatedPlatform(tmp_path / "sim", measurement=m, profile=Profile.STAGING)
    with pytest.raises(SealingError):
        KeyStore(path, staging)
    assert KeyStore(path, prod).private_key() is not None


def test_format_1_store_opens_and_is_resealed(tmp_path: Path) -> None:
    import shutil

    from cryptography.hazmat.primitives import serialization

    from veritee.platforms.simulated import SimulatedPlatform
    from veritee.profiles import Profile
    from veritee.sdk.sealing import SealedHeader

    v1 = Path(__file__).resolve().parents[2] / "data" / "sealed-v1"
    shutil.copytree(v1 / "platform", tmp_path / "platform")
    path = tmp_path / "keystore.bin"
    shutil.copy(v1 / "keystore.sealed", path)
    m = (v1 / "measurement.txt").read_text().strip()
    p = SimulatedPlatform(tmp_path / "platform", measurement=m, profile=Profile.PRODUCTION)
    ks = KeyStore(path, p)
    key = ks.private_key()
    assert key is not None
    assert (
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == (v1 / "keystore-public-key.pem").read_bytes()
    )
    assert ks.get("item") == b"value one"
    hdr = SealedHeader.from_bytes(path.read_bytes())
    assert hdr.version == 2 and hdr.purpose == "veritee.keystore"
    assert KeyStore(path, p).get("item") == b"value one"


# --- issue 13.1: id, key generation and write count ------------------------------------------


def test_generation_follows_the_key(tmp_path: Path, platform: HkdfPlatform) -> None:
    path = tmp_path / "ks.bin"
    ks = KeyStore(path, platform)
    with pytest.raises(UsageError):
        ks.proof()  # no key yet
    ks.load_or_create_key()
    first = ks.proof()
    assert first.generation == 1 and len(first.store_id) == 16
    ks.load_or_create_key()  # the same key: the same generation
    assert ks.proof() == first
    ks.rotate_key()
    assert ks.proof().generation == 2 and ks.proof().store_id == first.store_id
    seq = ks.seq
    ks.put("x", b"1")
    assert ks.seq == seq + 1
    again = KeyStore(path, platform)
    assert again.proof() == ks.proof() and again.seq == ks.seq
    assert KeyStore(tmp_path / "other.bin", platform).load_or_create_key() is not None
    assert KeyStore(tmp_path / "other.bin", platform).proof().store_id != first.store_id


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 2, "id": b"short", "gen": 1, "seq": 1, "key": None},
        {"v": 2, "id": b"\x01" * 16, "gen": -1, "seq": 1, "key": None},
        {"v": 2, "id": b"\x01" * 16, "gen": True, "seq": 1, "key": None},
        {"v": 2, "id": b"\x01" * 16, "gen": 0, "seq": "1", "key": None},
        {"v": 2, "id": b"\x01" * 16, "gen": 1, "seq": 1, "key": None},  # generation without key
        {"v": 2, "id": b"\x01" * 16, "gen": 0, "seq": 1, "key": b"k"},  # key without generation
        {"v": 3, "id": b"\x01" * 16, "gen": 0, "seq": 1, "key": None},
        {"v": 2, "gen": 0, "seq": 0, "key": None},
    ],
)
def test_malformed_contents_are_refused(
    tmp_path: Path, platform: HkdfPlatform, doc: dict[str, object]
) -> None:
    import cbor2

    from veritee.sdk.sealing import PURPOSE_KEYSTORE, seal

    path = tmp_path / "ks.bin"
    blob = seal(platform, cbor2.dumps(doc), purpose=PURPOSE_KEYSTORE)
    path.write_bytes(blob)
    with pytest.raises(SealingError) as e:
        KeyStore(path, platform)
    assert e.value.code == "keystore_corrupt"
    assert path.read_bytes() == blob


def test_format_1_contents_get_an_id_and_generation_1(
    tmp_path: Path, platform: HkdfPlatform
) -> None:
    import cbor2

    from veritee.sdk.sealing import PURPOSE_KEYSTORE, seal

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "ks.bin"
    path.write_bytes(seal(platform, cbor2.dumps(
        {"v": 1, "key": der, "cert": None, "chain": [], "ca": None, "items": {"a": b"b"}}),
        purpose=PURPOSE_KEYSTORE))  # fmt: skip
    ks = KeyStore(path, platform)
    assert ks.proof().generation == 1 and ks.get("a") == b"b"
    assert KeyStore(path, platform).proof() == ks.proof()  # rewritten in format 2 once


# --- issue 13.1: a freshness counter ---------------------------------------------------------


from veritee.errors import StorageError  # noqa: E402


class _Counter:
    """A MonotonicCounter with the contract's semantics (0 until first incremented), in memory:
    it stands for the TPM's or the service's (those are tested against the real thing)."""

    def __init__(self, fail: bool = False) -> None:
        self.value = 0
        self.fail = fail

    def read(self) -> int:
        if self.fail:
            raise StorageError("counter unreachable", code="service_unreachable")
        return self.value

    def increment(self) -> int:
        if self.fail:
            raise StorageError("counter unreachable", code="service_unreachable")
        self.value += 1
        return self.value


def test_a_counter_catches_every_older_copy(tmp_path: Path, platform: HkdfPlatform) -> None:
    from veritee.platforms.base import MonotonicCounter

    counter = _Counter()
    assert isinstance(counter, MonotonicCounter)
    path = tmp_path / "ks.bin"
    ks = KeyStore(path, platform)
    ks.load_or_create_key()
    before_tie = path.read_bytes()
    ks.attach_counter(counter)
    assert ks.fresh and counter.value == 1
    ks.put("a", b"1")
    one = path.read_bytes()
    ks.put("a", b"2")
    assert counter.value == 3 and ks.fresh
    for old in (before_tie, one):
        path.write_bytes(old)
        with pytest.raises(SealingError) as e:
            KeyStore(path, platform).attach_counter(counter)
        assert e.value.code == "keystore_rolled_back"


def test_a_write_whose_step_failed_is_finished_later(
    tmp_path: Path, platform: HkdfPlatform
) -> None:
    counter = _Counter()
    path = tmp_path / "ks.bin"
    ks = KeyStore(path, platform)
    ks.attach_counter(counter)
    counter.fail = True
    ks.put("a", b"1")  # on disk; the counter could not step
    assert not ks.fresh and ks.get("a") == b"1"
    with pytest.raises(StorageError):
        ks.sync_counter()
    counter.fail = False
    again = KeyStore(path, platform)  # e.g. after a restart
    again.attach_counter(counter)
    assert again.fresh and counter.value == 2


def test_a_counter_behind_the_store_is_refused(tmp_path: Path, platform: HkdfPlatform) -> None:
    counter = _Counter()
    path = tmp_path / "ks.bin"
    ks = KeyStore(path, platform)
    ks.attach_counter(counter)
    for _ in range(3):
        ks.put("a", b"x")
    with pytest.raises(SealingError) as e:
        KeyStore(path, platform).attach_counter(_Counter())  # reset, or another store's
    assert e.value.code == "keystore_counter_mismatch"
    assert ks.counter_label.startswith("veritee-keystore-")
