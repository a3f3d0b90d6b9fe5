"""`veritee certificate revoke|revocations|crl` against a real service (uvicorn in a thread)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509

from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.service.app import create_app
from veritee.service.runner import start_in_thread
from veritee.service.settings import Settings

_register()


def test_revoke_list_and_fetch_the_crl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    domain = Domain.create(tmp_path / "domain", name="cli", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path)))
    runner = CliRunner()
    args = ["--url", server.url, "--data", str(domain.path)]
    try:
        r = runner.invoke(
            cli, ["certificate", "revoke", "--serial", "0x1A2b", "--reason", "lost", *args]
        )
        assert r.exit_code == 0 and "revoked: serial 1a2b" in r.output, r.output
        r = runner.invoke(cli, ["certificate", "revoke", "--measurement", "AB" * 48, *args])
        assert r.exit_code == 0 and f"measurement {'ab' * 48}" in r.output, r.output
        r = runner.invoke(cli, ["certificate", "revoke", *args])
        assert r.exit_code == 2 and "exactly one of" in r.output
        r = runner.invoke(cli, ["certificate", "revoke", "--serial", "xyz", *args])
        assert r.exit_code == 2 and "serial is not hex" in r.output
        r = runner.invoke(cli, ["certificate", "revocations", *args])
        assert "serial\t1a2b" in r.output and "lost" in r.output and "measurement\t" in r.output
        r = runner.invoke(cli, ["certificate", "crl", *args])
        assert r.exit_code == 0 and r.output.split() == ["1a2b"], r.output
        out = tmp_path / "domain.crl"
        r = runner.invoke(cli, ["certificate", "crl", "-o", str(out), *args])
        assert r.exit_code == 0, r.output
        crl = x509.load_der_x509_crl(out.read_bytes())
        assert crl.is_signature_valid(domain.ca_certificate.public_key())  # type: ignore[arg-type]
        assert [x.serial_number for x in crl] == [0x1A2B]
        r = runner.invoke(cli, ["certificate", "revocations", "--url", server.url, "--admin-token",
                                "wrong", "--data", str(domain.path)])  # fmt: skip
        assert r.exit_code == 1 and "admin_invalid" in r.output
    finally:
        server.stop()


def _certified_domain(tmp_path: Path) -> tuple[Domain, Any, list[Any]]:
    """A domain and its service with two admission certificates issued through the real flow."""
    import json

    from veritee.appraisal import load_policy, sign_policy
    from veritee.platforms.simulated import SimulatedPlatform
    from veritee.sdk.trust import Trust

    domain = Domain.create(tmp_path / "domain", name="certs", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)))
    sim = tmp_path / "sim"
    ms = ["ab" * 48, "cd" * 48]
    key = SimulatedPlatform(sim, measurement=ms[0]).key_id
    doc = {"version": 1, "name": "p", "certificate_lifetime": 600, "platforms": {"simulated": {
        "measurements": ms, "platform_keys": [key], "allow_debug": True}}}  # fmt: skip
    envelope = sign_policy(load_policy(json.dumps(doc)), domain.policy_key)
    import httpx

    h = {"Authorization": f"Bearer {domain.admin_token()}"}
    assert (
        httpx.put(server.url + "/v1/admin/policy", content=envelope, headers=h).status_code == 200
    )
    certs = []
    for i, m in enumerate(ms):
        t = Trust(server.url, domain.ca_pem, platform="simulated", store=tmp_path / f"store{i}", measurement=m,
                  platform_dir=sim)  # fmt: skip
        certs.append(t.certify())
        t.close()
    return domain, server, certs


def test_cert_list_states_and_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from cryptography.hazmat.primitives.serialization import Encoding

    from veritee.service.storage import Storage

    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    domain, server, certs = _certified_domain(tmp_path)
    runner = CliRunner()
    args = ["--url", server.url, "--data", str(domain.path)]
    try:
        # an expired and an expiring certificate recorded in the same database (issued earlier)
        now = dt.datetime.now(dt.UTC)
        store = Storage(domain.database_url)
        with store.transaction() as tx:
            pem = certs[0].public_bytes(Encoding.PEM).decode()
            tx.record_certificate(serial=0xE1, subject_key_sha256="00" * 32, measurement="ef" * 48,
                                  platform="simulated", not_before=now - dt.timedelta(hours=2),
                                  not_after=now - dt.timedelta(hours=1), pem=pem)  # fmt: skip
            tx.record_certificate(serial=0xE2, subject_key_sha256="00" * 32, measurement="ef" * 48,
                                  platform="simulated", not_before=now - dt.timedelta(hours=1),
                                  not_after=now + dt.timedelta(minutes=5), pem=pem)  # fmt: skip
        store.close()
        for group in ("cert", "certificate"):
            r = runner.invoke(cli, [group, "list", "--json", *args])
            assert r.exit_code == 0, r.output
            rows = {c["serial"]: c for c in json.loads(r.output)["certificates"]}
            assert rows["e1"]["state"] == "expired" and rows["e2"]["state"] == "expiring"
            for c in certs:
                assert rows[format(c.serial_number, "x")]["state"] == "valid"
        # revoke one by serial (cert revoke is certificate revoke): it lists as revoked, with why
        serial = format(certs[1].serial_number, "x")
        r = runner.invoke(
            cli, ["cert", "revoke", "--serial", serial, "--reason", "key lost", *args]
        )
        assert r.exit_code == 0 and f"revoked: serial {serial}" in r.output
        r = runner.invoke(cli, ["cert", "list", "--state", "revoked", "--json", *args])
        rows = json.loads(r.output)["certificates"]
        assert [c["serial"] for c in rows] == [serial]
        assert rows[0]["revoked"]["by"] == "serial" and rows[0]["revoked"]["reason"] == "key lost"
        r = runner.invoke(cli, ["cert", "list", *args])
        assert r.exit_code == 0
        for word in ("valid", "expiring", "expired", "revoked", serial, "e1", "e2"):
            assert word in r.output, word
        assert "1 expired, 1 expiring, 1 revoked, 1 valid" in r.output
        r = runner.invoke(cli, ["cert", "crl", *args])
        assert r.exit_code == 0 and serial in r.output.split()
        r = runner.invoke(cli, ["cert", "list", "--state", "nope", *args])
        assert r.exit_code == 2
        r = runner.invoke(cli, ["cert", "list", "--limit", "0", *args])
        assert r.exit_code == 2
        import httpx

        h = {"Authorization": f"Bearer {domain.admin_token()}"}
        for params in ({"state": "bogus"}, {"limit": "0"}, {"limit": "10001"}, {"limit": "x"}):
            assert (
                httpx.get(
                    server.url + "/v1/admin/certificates", params=params, headers=h
                ).status_code
                == 400
            )
        assert httpx.get(server.url + "/v1/admin/certificates").status_code == 401
    finally:
        server.stop()


def test_certificate_state_rules() -> None:
    from veritee.service.operations import certificate_state
    from veritee.service.storage.models import StoredCertificate, StoredRevocation

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = StoredCertificate(0x10, "00", "ab" * 48, "simulated", t0, t0 + dt.timedelta(hours=4), "")
    at = t0 + dt.timedelta(hours=1)
    assert certificate_state(cert, [], at) == ("valid", None)
    assert certificate_state(cert, [], t0 + dt.timedelta(hours=3, minutes=1))[0] == "expiring"
    assert certificate_state(cert, [], t0 + dt.timedelta(hours=4))[0] == "expired"
    by_measurement = StoredRevocation("measurement", "ab" * 48, "", "admin", t0)
    assert certificate_state(cert, [by_measurement], at) == ("revoked", by_measurement)
    other = StoredRevocation("serial", "11", "", "admin", t0)
    assert certificate_state(cert, [other], at)[0] == "valid"
    # revoked wins over expired
    assert (
        certificate_state(
            cert, [StoredRevocation("serial", "10", "", "admin", t0)], t0 + dt.timedelta(days=1)
        )[0]
        == "revoked"
    )
