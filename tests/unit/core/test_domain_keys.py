"""A domain's keys: one role each (issue 13.8), format-1 folders migrated; keys derived for the
service, one per purpose, the same in every process."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import oids
from veritee.appraisal import load_policy, sign_policy
from veritee.domain import BROKER_CERT_RENEW, Domain, issue_admission_certificate
from veritee.errors import PolicyError, UsageError


def test_derived_keys_are_per_purpose_and_shared_by_every_opener(tmp_path: Path) -> None:
    d = Domain.create(tmp_path / "d", name="t", now=dt.datetime.now(dt.UTC))
    again = Domain.open(d.path)  # another worker or replica with the same data folder
    assert d.nonce_key == again.nonce_key == d.derive_key("nonce key")
    assert len(d.nonce_key) == 32
    assert d.derive_key("kbs session cookie") == again.derive_key("kbs session cookie")
    assert d.derive_key("kbs session cookie") != d.nonce_key
    other = Domain.create(tmp_path / "o", name="t", now=dt.datetime.now(dt.UTC))
    assert other.nonce_key != d.nonce_key


# --- issue 13.8: one key, one role; format-1 folders are migrated ------------------------------

V1 = Path(__file__).resolve().parents[2] / "data" / "domain-v1"
NOW = dt.datetime.now(dt.UTC)


def _spki(key: object) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )  # type: ignore[attr-defined]


def _policy(name: str = "p") -> bytes:
    doc = {"version": 1, "name": name, "platforms": {"simulated": {
        "measurements": ["ab" * 48], "platform_keys": ["00" * 32]}}}  # fmt: skip
    return json.dumps(doc).encode()


def test_each_key_has_one_role(tmp_path: Path) -> None:
    d = Domain.create(tmp_path / "d", name="t", now=NOW)
    keys = [d.ca_key, d.policy_key, d.broker_key, d.token_key]
    assert len({_spki(k.public_key()) for k in keys}) == 4
    assert _spki(d.ca_certificate.public_key()) == _spki(d.ca_key.public_key())
    assert d.legacy_policy_key is None
    # The broker's certificate: issued by the CA, for release signing only, not a CA.
    b = d.broker_certificate
    b.verify_directly_issued_by(d.ca_certificate)
    assert _spki(b.public_key()) == _spki(d.broker_key.public_key())
    assert list(b.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        oids.RELEASE_SIGNING
    ]
    assert b.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # Admission certificates are signed by the CA key, policies by the policy key only.
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_admission_certificate(d, key.public_key(), claims={"platform": "simulated",
                                       "measurement": "ab" * 48}, now=NOW, lifetime=dt.timedelta(hours=1))  # fmt: skip
    cert.verify_directly_issued_by(d.ca_certificate)
    policy = load_policy(_policy())
    assert d.verify_policy(sign_policy(policy, d.policy_key), stored=False).policy.name == "p"
    for wrong in (d.ca_key, d.broker_key):
        if isinstance(wrong.curve, ec.SECP384R1):
            with pytest.raises(PolicyError) as e:
                d.verify_policy(sign_policy(policy, wrong), stored=True)
            assert e.value.code == "policy_wrong_key"
    meta = json.loads((d.path / "domain.json").read_text())
    assert meta["format"] == 2 and "legacy_policy_key_id" not in meta


def _v1_copy(tmp_path: Path) -> Path:
    path = tmp_path / "v1"
    shutil.copytree(V1, path)
    return path


def test_a_format_1_folder_is_migrated_and_keeps_its_ca(tmp_path: Path) -> None:
    path = _v1_copy(tmp_path)
    old_key_pem = (path / "policy_key.pem").read_bytes()
    ca_pem = (path / "domain_ca.pem").read_bytes()
    d = Domain.open(path)
    # The CA stays: every workload's domain_ca.pem is still the domain's.
    assert (path / "domain_ca.pem").read_bytes() == ca_pem
    assert (path / "ca_key.pem").read_bytes() == old_key_pem
    assert (path / "ca_key.pem").stat().st_mode & 0o077 == 0
    assert (path / "policy_key.pem").read_bytes() != old_key_pem
    assert _spki(d.policy_key.public_key()) != _spki(d.ca_key.public_key())
    assert d.legacy_policy_key is not None and _spki(d.legacy_policy_key) == _spki(
        d.ca_key.public_key()
    )
    d.broker_certificate.verify_directly_issued_by(d.ca_certificate)
    # A policy the format-1 domain signed stays valid as stored, not for a new install.
    old = (V1 / "policy-signed-in-format-1.json").read_bytes()
    assert d.verify_policy(old, stored=True).policy.name == "stored-before-the-split"
    with pytest.raises(PolicyError) as e:
        d.verify_policy(old, stored=False)
    assert e.value.code == "policy_wrong_key"
    assert d.verify_policy(sign_policy(load_policy(_policy()), d.policy_key), stored=False)
    meta = json.loads((path / "domain.json").read_text())
    assert meta["format"] == 2 and meta["name"] == "format-1" and meta["legacy_policy_key_id"]
    # Opening again changes nothing.
    policy_pem = (path / "policy_key.pem").read_bytes()
    again = Domain.open(path)
    assert (path / "policy_key.pem").read_bytes() == policy_pem
    assert again.legacy_policy_key is not None and again.admin_token() == d.admin_token()


def test_a_migration_cut_short_resumes(tmp_path: Path) -> None:
    """A crash after the CA key was copied but before the policy key was replaced."""
    path = _v1_copy(tmp_path)
    shutil.copy(path / "policy_key.pem", path / "ca_key.pem")
    d = Domain.open(path)
    assert _spki(d.policy_key.public_key()) != _spki(d.ca_key.public_key())
    assert d.legacy_policy_key is not None


def test_concurrent_opens_migrate_once(tmp_path: Path) -> None:
    path = _v1_copy(tmp_path)
    opened: list[Domain] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            opened.append(Domain.open(path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(opened) == 4
    assert len({_spki(d.policy_key.public_key()) for d in opened}) == 1


def test_a_folder_whose_keys_do_not_match_its_ca_is_refused(tmp_path: Path) -> None:
    path = _v1_copy(tmp_path)
    other = Domain.create(tmp_path / "other", name="o", now=NOW)
    shutil.copy(other.path / "policy_key.pem", path / "policy_key.pem")
    with pytest.raises(UsageError):
        Domain.open(path)
    fresh = Domain.create(tmp_path / "fresh", name="f", now=NOW)
    shutil.copy(other.path / "ca_key.pem", fresh.path / "ca_key.pem")
    with pytest.raises(UsageError):
        Domain.open(fresh.path)
    (fresh.path / "domain.json").write_text("[]")
    with pytest.raises(UsageError):
        Domain.open(fresh.path)


def test_the_broker_certificate_is_renewed_before_it_expires(tmp_path: Path) -> None:
    d = Domain.create(tmp_path / "d", name="t", now=NOW)
    first = d.broker_certificate
    later = first.not_valid_after_utc - BROKER_CERT_RENEW + dt.timedelta(days=1)
    renewed = Domain.open(d.path, now=later).broker_certificate
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    assert _spki(renewed.public_key()) == _spki(first.public_key())  # the same broker key
    assert Domain.open(d.path, now=later).broker_certificate.serial_number == renewed.serial_number
