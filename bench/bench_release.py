"""End-to-end secret releases per second and p99 latency, SQLite and PostgreSQL.

Each release is what a workload does: POST /v1/challenge, simulated evidence binding the nonce
and a fresh X25519 key, POST /v1/secrets/{name}/release, HPKE decrypt. The server is
``veritee serve`` in a subprocess (``--workers`` processes); clients are threads here.

    .venv/bin/python bench/bench_release.py [--releases 600] [--clients 8] [--workers 2]
        [--runs 3] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Prints, per database: releases/s (median of runs), p50/p99 latency, and the ratio to the goal.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for, spki_der
from veritee.domain import Domain
from veritee.keybroker.release import open_envelope, x25519_jwk
from veritee.platforms.simulated import SimulatedPlatform

GOAL = 300.0
MEAS = "ab" * 48


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = "veritee_bench_" + secrets.token_hex(4)
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def _drop_pg(admin_url: str, name: str) -> None:
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _one(client: httpx.Client, platform: SimulatedPlatform) -> float:
    from cryptography.hazmat.primitives.asymmetric import x25519

    t0 = time.perf_counter()
    nonce = bytes.fromhex(client.post("/v1/challenge").json()["nonce"])
    key = x25519.X25519PrivateKey.generate()
    ev = platform.evidence(report_data_for(nonce, spki_der(key.public_key())))
    r = client.post(
        "/v1/secrets/bench/key/release",
        json={
            "evidence": base64.b64encode(ev).decode(),
            "nonce": nonce.hex(),
            "format": "simulated",
            "public_key": x25519_jwk(key.public_key()),
        },
    )
    if r.status_code != 200:
        raise RuntimeError(f"release failed: {r.status_code} {r.text[:200]}")
    assert open_envelope(r.json(), key, name="bench/key", nonce=nonce) == b"bench-secret"
    return time.perf_counter() - t0


def run(
    db_url: str | None, *, releases: int, clients: int, workers: int, runs: int
) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="veritee-bench-"))
    domain = Domain.create(tmp / "domain", name="bench", now=dt.datetime.now(dt.UTC))
    platform = SimulatedPlatform(tmp / "sim", measurement=MEAS)
    port = _port()
    cmd = [str(Path(sys.executable).with_name("veritee")), "serve", "--data", str(domain.path),
           "--port", str(port), "--workers", str(workers)]  # fmt: skip
    if db_url:
        cmd += ["--db", db_url]
    env = dict(os.environ, VERITEE_LOG_LEVEL="warning")
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(base + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(
                "server did not start: "
                + (server.stderr.read(2000).decode() if server.stderr else "")
            )
        admin = {"Authorization": f"Bearer {domain.admin_token()}"}
        doc = {"version": 1, "name": "bench", "platforms": {"simulated": {
            "measurements": [MEAS], "platform_keys": [platform.key_id], "allow_debug": True}}}  # fmt: skip
        env_bytes = sign_policy(load_policy(json.dumps(doc)), domain.policy_key)
        httpx.put(base + "/v1/admin/policy", content=env_bytes, headers=admin).raise_for_status()
        policy = {"allOf": [{"claim": "measurement", "equals": MEAS}]}
        httpx.put(base + "/v1/admin/secrets/bench/key", headers=admin,
                  json={"value": base64.b64encode(b"bench-secret").decode(), "policy": policy},
                  ).raise_for_status()  # fmt: skip
        rates, p50s, p99s = [], [], []
        for _ in range(runs):
            latencies: list[float] = []
            lock = threading.Lock()
            per = releases // clients

            def worker() -> None:
                with httpx.Client(base_url=base, timeout=30) as c:
                    _one(c, platform)  # warm the connection
                    mine = [_one(c, platform) for _ in range(per)]
                with lock:
                    latencies.extend(mine)

            threads = [threading.Thread(target=worker) for _ in range(clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            latencies.sort()
            rates.append(len(latencies) / elapsed)
            p50s.append(latencies[len(latencies) // 2] * 1000)
            p99s.append(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000)
        return {"rate": statistics.median(rates), "p50_ms": statistics.median(p50s),
                "p99_ms": statistics.median(p99s)}  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--releases", type=int, default=600)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--no-postgres", action="store_true")
    a = ap.parse_args()
    results = {
        "sqlite": run(None, releases=a.releases, clients=a.clients, workers=a.workers, runs=a.runs)
    }
    if not a.no_postgres:
        url, name = _pg_database(a.postgres)
        try:
            results["postgresql"] = run(url, releases=a.releases, clients=a.clients,
                                        workers=a.workers, runs=a.runs)  # fmt: skip
        finally:
            _drop_pg(a.postgres, name)
    print(f"end-to-end releases (challenge + evidence + release + HPKE decrypt), "
          f"{a.clients} clients, {a.workers} server workers, median of {a.runs} runs")  # fmt: skip
    for db, r in results.items():
        print(f"{db:11s} {r['rate']:7.1f} releases/s  p50 {r['p50_ms']:6.1f} ms  "
              f"p99 {r['p99_ms']:6.1f} ms  goal ratio {r['rate'] / GOAL:4.2f}x (goal {GOAL:.0f}/s)")  # fmt: skip


if __name__ == "__main__":
    main()
