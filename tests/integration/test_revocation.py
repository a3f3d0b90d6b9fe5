"""Admission that can be withdrawn (issue 12.2), against `veritee serve --workers 2` and two
replicas on PostgreSQL.

The soak found `/release-certified` handing out a secret, for as long as the certificate lived,
to a workload whose measurement the policy had dropped. Here a certified release re-appraises
the certificate's claims under the policy in force; certificates are revoked by serial and by
measurement (CLI and admin API, audited, in force at once on every worker and replica); the CRL
at /v1/crl is signed by the domain CA; the SDK's attested channels refuse revoked peers.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from tests.fakes.service import POLICY_CACHE_SECONDS, run_cli, start_service, stop

from veritee.domain import Domain
from veritee.errors import VerificationError
from veritee.platforms.simulated import SimulatedPlatform
from veritee.sdk.trust import Trust

A, B, C = "a1" * 48, "b2" * 48, "c3" * 48
VALUE = b"certified release value"


def _policy(tmp_path: Path, data: Path, name: str, measurements: list[str]) -> Path:
    key_id = SimulatedPlatform(tmp_path / "sim", measurement=A).key_id
    src = tmp_path / f"{name}.yaml"
    listed = ", ".join(f"'{m}'" for m in measurements)
    src.write_text(
        f"version: 1\nname: {name}\nplatforms:\n  simulated:\n    measurements: [{listed}]\n"
        f"    platform_keys: ['{key_id}']\n    allow_debug: true\n"
    )
    out = tmp_path / f"{name}.signed.json"
    run_cli("policy", "sign", str(src), "--data", str(data), "-o", str(out))
    return out


def _install(tmp_path: Path, data: Path, url: str, name: str, measurements: list[str]) -> None:
    run_cli("policy", "install", str(_policy(tmp_path, data, name, measurements)), "--data", str(data),
         "--url", url)  # fmt: skip


def _trust(url: str, data: Path, tmp_path: Path, measurement: str, store: str) -> Trust:
    return Trust(url, data / "domain_ca.pem", platform="simulated", store=tmp_path / store,
                 measurement=measurement, platform_dir=tmp_path / "sim")  # fmt: skip


def _refused(trust: Trust) -> list[str]:
    with pytest.raises(VerificationError) as e:
        trust.get_secret("app/key", with_certificate=True)
    assert e.value.code == "release_denied", e.value
    return [r["code"] for r in e.value.reasons]  # type: ignore[attr-defined]


def _crl(url: str, data: Path) -> tuple[httpx.Response, x509.CertificateRevocationList]:
    r = httpx.get(url + "/v1/crl", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(r.content)
    ca = Domain.open(data).ca_certificate
    assert crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    return r, crl


def test_certified_release_revocation_crl_and_channels_on_two_workers(tmp_path: Path) -> None:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    url, proc = start_service(data, "--workers", "2")
    admin = {"Authorization": "Bearer " + Domain.open(data).admin_token()}
    trusts: list[Trust] = []
    try:
        _install(tmp_path, data, url, "all", [A, B, C])
        secret = {"value": base64.b64encode(VALUE).decode(),
                  "policy": {"allOf": [{"claim": "measurement", "in": [A, B, C]}]}}  # fmt: skip
        assert (
            httpx.put(url + "/v1/admin/secrets/app/key", json=secret, headers=admin).status_code
            == 200
        )
        ta, tb, tc1, tc2 = (_trust(url, data, tmp_path, m, s) for m, s in
                            ((A, "a"), (B, "b"), (C, "c1"), (C, "c2")))  # fmt: skip
        trusts += [ta, tb, tc1, tc2]
        for t in trusts:
            assert t.get_secret("app/key", with_certificate=True) == VALUE
        serial_a = format(ta.certify().serial_number, "x")
        serial_b = tb.certify().serial_number

        # 1. The policy in force drops A: A's still-valid certificate gets nothing, on any worker.
        _install(tmp_path, data, url, "all", [B, C])  # "all" v2
        time.sleep(POLICY_CACHE_SECONDS + 0.5)
        for _ in range(6):
            assert "measurement_not_allowed" in _refused(ta)
        assert tb.get_secret("app/key", with_certificate=True) == VALUE
        _install(tmp_path, data, url, "all", [A, B, C])  # v3
        time.sleep(POLICY_CACHE_SECONDS + 0.5)
        assert ta.get_secret("app/key", with_certificate=True) == VALUE

        # 2. Revoked by serial (CLI): refused at once by every worker, audited, on the CRL.
        r = run_cli("certificate", "revoke", "--serial", serial_a, "--reason", "key leaked",
                 "--url", url, "--data", str(data))  # fmt: skip
        assert f"revoked: serial {serial_a}" in r.stdout
        for _ in range(6):
            assert "certificate_revoked" in _refused(ta)
        again = run_cli(
            "certificate", "revoke", "--serial", serial_a, "--url", url, "--data", str(data)
        )
        assert "already revoked" in again.stdout

        # 3. Revoked by measurement (API): B's certificate too, and no new one for B.
        r2 = httpx.post(url + "/v1/admin/revocations", json={"measurement": B}, headers=admin)
        assert r2.status_code == 200 and r2.json()["new"] is True, r2.text
        assert "certificate_revoked" in _refused(tb)
        with pytest.raises(VerificationError) as e:
            tb.certify(force=True)
        assert e.value.code == "measurement_revoked"
        _, crl = _crl(url, data)
        assert {int(serial_a, 16), serial_b} <= {x.serial_number for x in crl}
        listed = run_cli("certificate", "revocations", "--url", url, "--data", str(data)).stdout
        assert f"serial\t{serial_a}" in listed and f"measurement\t{B}" in listed
        assert tc1.get_secret("app/key", with_certificate=True) == VALUE  # others unaffected
        audit = httpx.get(url + "/v1/admin/audit", params={"limit": 1000}, headers=admin).json()
        revokes = [e for e in audit["entries"] if e["kind"] == "certificate.revoke"]
        assert [e["subject"] for e in revokes] == [f"serial:{serial_a}", f"measurement:{B}"]

        # 4. Attested channels refuse a revoked peer, on either side.
        served = threading.Event()

        def handler(conn: Any) -> None:
            conn.send(conn.recv())
            served.set()

        srv = tc2.serve("127.0.0.1", 0, handler, allowed_measurements={A, C})
        with tc1.connect("127.0.0.1", srv.port) as conn:
            conn.send(b"ping")
            assert conn.recv() == b"ping"
        with pytest.raises(VerificationError) as e:
            ta.connect("127.0.0.1", srv.port, allowed_measurements={C})
        assert e.value.code == "refused_by_peer" and "certificate_revoked" in e.value.message
        revoked_srv = ta.serve("127.0.0.1", 0, handler, allowed_measurements={C})
        with pytest.raises(VerificationError) as e:
            tc1.connect("127.0.0.1", revoked_srv.port, allowed_measurements={A})
        assert e.value.code == "certificate_revoked"
    finally:
        for t in trusts:
            t.close()
        stop(proc)


@pytest.mark.postgres
def test_revocation_and_policy_hold_on_the_other_replica(tmp_path: Path) -> None:
    from tests.pgutil import temporary_database

    with temporary_database() as db_url:
        first = tmp_path / "replica-a"
        run_cli("init", "--data", str(first))
        second = tmp_path / "replica-b"
        shutil.copytree(first, second)
        procs: list[subprocess.Popen[bytes]] = []
        trust: Trust | None = None
        try:
            a, proc = start_service(first, "--db", db_url)
            procs.append(proc)
            b, proc = start_service(second, "--db", db_url)
            procs.append(proc)
            admin = {"Authorization": "Bearer " + Domain.open(first).admin_token()}
            _install(tmp_path, first, a, "all", [A, B])
            secret = {"value": base64.b64encode(VALUE).decode(),
                      "policy": {"allOf": [{"claim": "measurement", "in": [A, B]}]}}  # fmt: skip
            assert (
                httpx.put(a + "/v1/admin/secrets/app/key", json=secret, headers=admin).status_code
                == 200
            )
            time.sleep(POLICY_CACHE_SECONDS + 0.5)
            trust = _trust(b, first, tmp_path, A, "a")  # decided by replica b
            assert trust.get_secret("app/key", with_certificate=True) == VALUE
            _install(tmp_path, first, a, "all", [B])  # through replica a
            time.sleep(POLICY_CACHE_SECONDS + 0.5)
            assert "measurement_not_allowed" in _refused(trust)
            _install(tmp_path, first, a, "all", [A, B])
            time.sleep(POLICY_CACHE_SECONDS + 0.5)
            assert trust.get_secret("app/key", with_certificate=True) == VALUE
            serial = format(trust.certify().serial_number, "x")
            r = httpx.post(a + "/v1/admin/revocations", json={"serial": serial}, headers=admin)
            assert r.status_code == 200, r.text
            assert "certificate_revoked" in _refused(trust)  # at once, on replica b
            _, crl = _crl(b, first)
            assert int(serial, 16) in {x.serial_number for x in crl}
        finally:
            if trust is not None:
                trust.close()
            for proc in procs:
                stop(proc)
