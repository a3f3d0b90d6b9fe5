"""The real thing: `veritee init` and `veritee serve` as subprocesses, spoken to over HTTP(S)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.service import (
    MEASUREMENT,
    VERITEE,
    free_port,
    run_cli,
    signed_policy,
    stop,
    wait_ready,
)

from veritee.platforms.simulated import SimulatedPlatform
from veritee.sdk.trust import Trust


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    port = free_port()
    proc = subprocess.Popen(
        [*VERITEE, "serve", "--data", str(data), "--port", str(port), "--tls"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    url = f"https://127.0.0.1:{port}"
    import ssl

    ctx = ssl.create_default_context(cafile=str(data / "domain_ca.pem"))
    try:
        wait_ready(url, proc, verify=ctx)
        yield url, data, proc
    finally:
        stop(proc)


def test_end_to_end_over_https(
    served: tuple[str, Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, data, _ = served
    sim_dir = tmp_path / "sim"
    key_id = SimulatedPlatform(sim_dir, measurement=MEASUREMENT).key_id
    signed = signed_policy(tmp_path, data, key_id, MEASUREMENT)
    # a client that trusts another CA refuses the server (usage error, exit 2)
    other = tmp_path / "other"
    run_cli("init", "--data", str(other))
    r = run_cli(
        "policy",
        "install",
        str(signed),
        "--data",
        str(data),
        "--url",
        url,
        "--ca",
        str(other / "domain_ca.pem"),
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert (
        f"the service's TLS certificate did not verify against CA {other / 'domain_ca.pem'}"
        in r.stderr
    )
    assert "ConnectError" not in r.stderr
    r = run_cli(
        "policy",
        "install",
        str(signed),
        "--data",
        str(data),
        "--admin-token",
        "wrong",
        "--url",
        url,
        check=False,
    )
    assert r.returncode == 2 and "admin_invalid" in r.stderr
    run_cli("policy", "install", str(signed), "--data", str(data), "--url", url)
    trust = Trust(
        url,
        data / "domain_ca.pem",
        platform="simulated",
        store=tmp_path / "store",
        measurement=MEASUREMENT,
        platform_dir=sim_dir,
    )
    cert = trust.certify()
    assert trust.certify() == cert  # kept until near expiry
    # a new Trust on the same store (a restart) needs no new certificate
    again = Trust(
        url,
        data / "domain_ca.pem",
        platform="simulated",
        store=tmp_path / "store",
        measurement=MEASUREMENT,
        platform_dir=sim_dir,
    )
    assert again.certify() == cert
    result = trust.attest()
    assert result["accepted"] is True
    trust.close()
    again.close()
    r = run_cli("audit", "verify", "--data", str(data))
    assert "intact" in r.stdout


def test_unlisted_workload_refused_over_http(
    served: tuple[str, Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, data, _ = served
    from veritee.errors import VerificationError

    trust = Trust(
        url,
        data / "domain_ca.pem",
        platform="simulated",
        store=tmp_path / "s",
        measurement=MEASUREMENT,
        platform_dir=tmp_path / "sim",
    )
    with pytest.raises(VerificationError) as e:
        trust.certify()
    assert [r["code"] for r in e.value.reasons] == ["no_policy"]  # type: ignore[attr-defined]
    trust.close()


def test_postgres_going_away_mid_service_gives_503_then_recovers(tmp_path: Path) -> None:
    """PostgreSQL refuses connections while the service runs: 503 problems, no crash, no partial state."""
    from tests.pgutil import PG_ADMIN, temporary_database

    with temporary_database() as db_url:
        db_name = db_url.rsplit("/", 1)[1]
        data = tmp_path / "domain"
        run_cli("init", "--data", str(data))
        port = free_port()
        proc = subprocess.Popen(
            [*VERITEE, "serve", "--data", str(data), "--port", str(port), "--db", db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        import psycopg

        try:
            wait_ready(url, proc)
            h = {"Authorization": "Bearer " + (data / "admin_token").read_text().strip()}
            with httpx.Client(base_url=url, timeout=10) as c:
                assert c.get("/v1/admin/audit/verify", headers=h).status_code == 200
                with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                    admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false')
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                        (db_name,),
                    )
                try:
                    statuses = set()
                    for _ in range(3):
                        r = c.get("/v1/admin/audit/verify", headers=h)
                        statuses.add(r.status_code)
                        if r.status_code == 503:
                            body = r.json()
                            assert body["code"] == "storage_unavailable"
                            assert "password" not in r.text.lower()
                    assert statuses == {503}
                    assert c.get("/readyz").status_code == 503
                    assert c.get("/healthz").status_code == 200
                    # A challenge writes nothing, so it is still served; its use would fail.
                    assert c.post("/v1/challenge").status_code == 200
                finally:
                    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                        admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true')
                assert proc.poll() is None
                ok = [c.get("/v1/admin/audit/verify", headers=h).status_code for _ in range(3)]
                assert ok[-1] == 200
                assert c.get("/v1/admin/audit/verify", headers=h).json()["ok"] is True
        finally:
            stop(proc)
