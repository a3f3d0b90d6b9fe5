"""One key, one role (issue 13.8): the domain CA key does not sign policies, and a domain folder
of format 1 (one key for both) keeps working after it is migrated."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from tests.service.conftest import GOOD, Env, default_policy

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.settings import Settings
from veritee.service.storage import Storage

V1 = Path(__file__).resolve().parents[1] / "data" / "domain-v1"


def _ca_key(folder: Path) -> ec.EllipticCurvePrivateKey:
    """The private key of domain_ca.pem, wherever the folder's layout keeps it."""
    ca = (folder / "domain_ca.pem").read_bytes()
    from cryptography import x509

    want = (
        x509.load_pem_x509_certificate(ca)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for f in sorted(folder.glob("*.pem")):
        try:
            key = serialization.load_pem_private_key(f.read_bytes(), password=None)
        except (ValueError, TypeError):
            continue
        if (
            isinstance(key, ec.EllipticCurvePrivateKey)
            and key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == want
        ):
            return key
    raise AssertionError("no CA key in the folder")


def test_a_policy_signed_with_the_ca_key_is_refused(env: Env) -> None:
    """Whoever holds the CA key (it signs every admission and TLS certificate) must not be able
    to install an appraisal policy."""
    ca_key = _ca_key(env.domain.path)
    forged = sign_policy(load_policy(json.dumps(default_policy(env.platform))), ca_key)
    r = env.client.put("/v1/admin/policy", content=forged, headers=env.admin)
    assert r.status_code == 400 and r.json()["code"] == "policy_wrong_key", r.text
    env.install_policy()  # the policy key still works


def _attest(client: TestClient, platform: SimulatedPlatform) -> Any:
    nonce = bytes.fromhex(client.post("/v1/challenge").json()["nonce"])
    ev = platform.evidence(report_data_for(nonce, b"", profile=platform.profile))
    return client.post("/v1/attest", json={"evidence": base64.b64encode(ev).decode(),
                                           "nonce": nonce.hex(), "format": "simulated"}).json()  # fmt: skip


def test_a_format_1_domain_keeps_its_stored_policy_after_migration(tmp_path: Path) -> None:
    folder = tmp_path / "domain"
    shutil.copytree(V1, folder)
    platform = SimulatedPlatform(tmp_path / "sim", measurement=GOOD)
    # What the format-1 service had stored: a policy signed by its only key.
    old_key = _ca_key(folder)
    legacy = sign_policy(load_policy(json.dumps(default_policy(platform))), old_key)
    storage = Storage(f"sqlite:///{folder / 'veritee.db'}")
    storage.migrate()
    with storage.transaction() as tx:
        tx.put_policy(name="test", document=legacy, digest=hashlib.sha256(legacy).hexdigest(),
                      actor="admin", now=dt.datetime.now(dt.UTC))  # fmt: skip
    storage.close()
    app = create_app(
        Settings(data_dir=folder, policy_cache_seconds=0)
    )  # opens (migrates) the domain
    domain = Domain.open(folder)
    assert domain.legacy_policy_key is not None
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    with TestClient(app) as client:
        assert _attest(client, platform)["accepted"] is True  # decided under the stored policy
        assert client.get("/v1/admin/policy", headers=admin).json()["version"] == 1
        r = client.put("/v1/admin/policy", content=legacy, headers=admin)
        assert r.status_code == 400 and r.json()["code"] == "policy_wrong_key"
        resigned = sign_policy(load_policy(json.dumps(default_policy(platform))), domain.policy_key)
        r = client.put("/v1/admin/policy", content=resigned, headers=admin)
        assert r.status_code == 200, r.text
        assert _attest(client, platform)["accepted"] is True
