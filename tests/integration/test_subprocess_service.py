"""The real thing: `veritee init` and `veritee serve` as subprocesses, spoken to over HTTP(S)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from veritee.platforms.simulated import SimulatedPlatform
from veritee.sdk.trust import Trust

VERITEE = [sys.executable, "-m", "veritee.cli"]
M = "ab" * 48


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*VERITEE, *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"veritee {' '.join(args)} failed: {r.stdout}\n{r.stderr}")
    return r


def _wait_ready(url: str, proc: subprocess.Popen[bytes], verify: object = True) -> None:
    deadline = time.monotonic() + 120  # several workers each import the app; slow on a loaded machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''!r}")
        try:
            if httpx.get(url + "/readyz", timeout=1, verify=verify).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if the server has not exited within ``timeout`` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def signed_policy(tmp_path: Path, data: Path, key_id: str, measurement: str) -> Path:
    """A policy admitting one simulated measurement, signed with `veritee policy sign`."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nname: it\nplatforms:\n  simulated:\n    measurements: ['{measurement}']\n"
        f"    platform_keys: ['{key_id}']\n    allow_debug: true\n"
    )
    signed = tmp_path / "signed.json"
    _run("policy", "sign", str(policy), "--data", str(data), "-o", str(signed))
    return signed


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    data = tmp_path / "domain"
    _run("init", "--data", str(data))
    port = _port()
    proc = subprocess.Popen(
        [*VERITEE, "serve", "--data", str(data), "--port", str(port), "--tls"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )
    url = f"https://127.0.0.1:{port}"
    import ssl

    ctx = ssl.create_default_context(cafile=str(data / "domain_ca.pem"))
    try:
        _wait_ready(url, proc, verify=ctx)
        yield url, data, proc
    finally:
        stop(proc)


def test_end_to_end_over_https(served: tuple[str, Path, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, data, _ = served
    sim_dir = tmp_path / "sim"
    key_id = SimulatedPlatform(sim_dir, measurement=M).key_id
    signed = signed_policy(tmp_path, data, key_id, M)
    # a client that trusts another CA refuses the server (usage error, exit 2)
    other = tmp_path / "other"
    _run("init", "--data", str(other))
    r = _run("policy", "install", str(signed), "--data", str(data), "--url", url,
             "--ca", str(other / "domain_ca.pem"), check=False)
    assert r.returncode == 2, r.stderr
    assert f"the service's TLS certificate did not verify against CA {other / 'domain_ca.pem'}" in r.stderr
    assert "ConnectError" not in r.stderr
    r = _run("policy", "install", str(signed), "--data", str(data), "--admin-token", "wrong", "--url", url, check=False)
    assert r.returncode == 2 and "admin_invalid" in r.stderr
    _run("policy", "install", str(signed), "--data", str(data), "--url", url)
    trust = Trust(url, data / "domain_ca.pem", platform="simulated", store=tmp_path / "store",
                  measurement=M, platform_dir=sim_dir)
    cert = trust.certify()
    assert trust.certify() == cert  # kept until near expiry
    # a new Trust on the same store (a restart) needs no new certificate
    again = Trust(url, data / "domain_ca.pem", platform="simulated", store=tmp_path / "store",
                  measurement=M, platform_dir=sim_dir)
    assert again.certify() == cert
    result = trust.attest()
    assert result["accepted"] is True
    trust.close()
    again.close()
    r = _run("audit", "verify", "--data", str(data))
    assert "intact" in r.stdout


def test_unlisted_workload_refused_over_http(served: tuple[str, Path, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, data, _ = served
    from veritee.errors import VerificationError

    trust = Trust(url, data / "domain_ca.pem", platform="simulated", store=tmp_path / "s",
                  measurement=M, platform_dir=tmp_path / "sim")
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
        _run("init", "--data", str(data))
        port = _port()
        proc = subprocess.Popen(
            [*VERITEE, "serve", "--data", str(data), "--port", str(port), "--db", db_url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        import psycopg

        try:
            _wait_ready(url, proc)
            h = {"Authorization": "Bearer " + (data / "admin_token").read_text().strip()}
            with httpx.Client(base_url=url, timeout=10) as c:
                assert c.get("/v1/admin/audit/verify", headers=h).status_code == 200
                with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                    admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false')
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db_name,)
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
