"""End-to-end secret releases per second and p99 latency, SQLite and PostgreSQL.

Each release is what a workload does: POST /v1/challenge, simulated evidence binding the nonce
and a fresh X25519 key, POST /v1/secrets/{name}/release (appraise, consume nonce, release
policy, decrypt at rest, audit: one transaction), HPKE-decrypt the answer. The service is
``veritee serve`` in its own process; the load comes from a lean asyncio HTTP/1.1 client with a
bounded number of requests in flight (see _common.Conn).

    python bench/bench_release.py [--releases 2000] [--concurrency 8] [--workers 1] [--runs 3]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    Conn,
    cpu_seconds,
    drop_pg_database,
    make_pg_database,
    service_pids,
    start_service,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import x25519

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for, spki_der
from veritee.domain import Domain
from veritee.keybroker.release import open_envelope, x25519_jwk
from veritee.platforms.simulated import SimulatedPlatform

GOAL = 300.0
MEAS = "ab" * 48
NAME = "bench/key"
#: The domain CA the workloads pin: release envelopes are signed by its key broker.
CA: list[x509.Certificate] = []


async def one(conn: Conn, platform: SimulatedPlatform) -> float:
    t0 = time.perf_counter()
    _, raw = await conn.post("/v1/challenge")
    nonce = bytes.fromhex(json.loads(raw)["nonce"])
    key = x25519.X25519PrivateKey.generate()
    ev = platform.evidence(
        report_data_for(nonce, spki_der(key.public_key()), profile=platform.profile)
    )
    body = {
        "evidence": base64.b64encode(ev).decode(),
        "nonce": nonce.hex(),
        "format": "simulated",
        "public_key": x25519_jwk(key.public_key()),
    }
    status, raw = await conn.post(f"/v1/secrets/{NAME}/release", json.dumps(body).encode())
    if status != 200:
        raise SystemExit(f"release failed: {status} {raw[:200]!r}")
    opened = open_envelope(json.loads(raw), key, name=NAME, nonce=nonce, ca_certificate=CA[0],
                           at=dt.datetime.now(dt.UTC))  # fmt: skip
    if opened != b"bench-secret":
        raise SystemExit("released value does not decrypt to the stored secret")
    return time.perf_counter() - t0


class Certified:
    """A workload holding an admission certificate: releases by proof of possession."""

    def __init__(self, url: str, platform: SimulatedPlatform) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.key = ec.generate_private_key(ec.SECP256R1())
        nonce = bytes.fromhex(httpx.post(url + "/v1/challenge").json()["nonce"])
        ev = platform.evidence(
            report_data_for(nonce, spki_der(self.key.public_key()), profile=platform.profile)
        )
        pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        r = httpx.post(
            url + "/v1/certify",
            json={
                "evidence": base64.b64encode(ev).decode(),
                "nonce": nonce.hex(),
                "format": "simulated",
                "public_key": pem.decode(),
            },
        )
        r.raise_for_status()
        self.cert = r.json()["certificate"]

    async def one(self, conn: Conn, _: SimulatedPlatform) -> float:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        from veritee.keybroker.release import possession_message

        t0 = time.perf_counter()
        _, raw = await conn.post("/v1/challenge")
        nonce = bytes.fromhex(json.loads(raw)["nonce"])
        eph = x25519.X25519PrivateKey.generate()
        sig = self.key.sign(
            possession_message(NAME, nonce, spki_der(eph.public_key())), ec.ECDSA(hashes.SHA256())
        )
        body = {
            "certificate": self.cert,
            "nonce": nonce.hex(),
            "public_key": x25519_jwk(eph.public_key()),
            "signature": base64.b64encode(sig).decode(),
        }
        status, raw = await conn.post(
            f"/v1/secrets/{NAME}/release-certified", json.dumps(body).encode()
        )
        if status != 200:
            raise SystemExit(f"certified release failed: {status} {raw[:200]!r}")
        opened = open_envelope(json.loads(raw), eph, name=NAME, nonce=nonce, ca_certificate=CA[0],
                               at=dt.datetime.now(dt.UTC))  # fmt: skip
        if opened != b"bench-secret":
            raise SystemExit("released value does not decrypt to the stored secret")
        return time.perf_counter() - t0


async def load(
    url: str,
    platform: SimulatedPlatform,
    count: int,
    concurrency: int,
    pids: list[int],
    fn: Any = one,
) -> dict[str, float]:
    host, port = url.split("//")[1].split(":")
    conns = [Conn(host, int(port)) for _ in range(concurrency)]
    for c in conns:
        await fn(c, platform)  # warm every connection
    latencies: list[float] = []
    queue = iter(range(count))

    async def worker(conn: Conn) -> None:
        for _ in queue:
            latencies.append(await fn(conn, platform))

    cpu0, client0, t0 = cpu_seconds(pids), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pids) - cpu0
    client_cpu = time.process_time() - client0
    for c in conns:
        await c.close()
    latencies.sort()
    return {
        "rate": count / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "server_cpu_ms": 1000 * cpu / count,
        "client_cpu_ms": 1000 * client_cpu / count,
    }


def run(
    db_url: str | None,
    *,
    releases: int,
    concurrency: int,
    workers: int,
    runs: int,
    via: str = "evidence",
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="veritee-bench-") as tmp:
        domain = Domain.create(Path(tmp) / "domain", name="bench", now=dt.datetime.now(dt.UTC))
        CA[:] = [domain.ca_certificate]
        platform = SimulatedPlatform(Path(tmp) / "sim", measurement=MEAS)
        proc, url = start_service(domain.path, db_url, workers)
        try:
            admin = {"Authorization": f"Bearer {domain.admin_token()}"}
            doc = {
                "version": 1,
                "name": "bench",
                "platforms": {
                    "simulated": {
                        "measurements": [MEAS],
                        "platform_keys": [platform.key_id],
                        "allow_debug": True,
                    }
                },
            }
            httpx.put(
                url + "/v1/admin/policy",
                content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key),
                headers=admin,
            ).raise_for_status()
            policy = {"allOf": [{"claim": "measurement", "equals": MEAS}]}
            httpx.put(
                f"{url}/v1/admin/secrets/{NAME}",
                headers=admin,
                json={"value": base64.b64encode(b"bench-secret").decode(), "policy": policy},
            ).raise_for_status()
            pids = service_pids(proc)
            fn = Certified(url, platform).one if via == "certificate" else one
            results = [
                asyncio.run(load(url, platform, releases, concurrency, pids, fn))
                for _ in range(runs)
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    return {**med, "runs": [round(r["rate"], 1) for r in results]}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--releases", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument(
        "--via",
        choices=["evidence", "certificate"],
        default="evidence",
        help="fresh evidence per release, or admission certificate + proof of possession",
    )
    a = ap.parse_args()
    kw: dict[str, Any] = {
        "releases": a.releases,
        "concurrency": a.concurrency,
        "workers": a.workers,
        "runs": a.runs,
        "via": a.via,
    }
    results = {"sqlite": run(None, **kw)}
    if not a.no_postgres:
        try:
            url, name = make_pg_database(a.postgres)
        except Exception as e:  # no server here: say so and go on
            print(f"PostgreSQL not reachable ({type(e).__name__}); skipped")
        else:
            try:
                results["postgresql"] = run(url, **kw)
            finally:
                drop_pg_database(a.postgres, name)
    how = "evidence" if a.via == "evidence" else "admission certificate + proof of possession"
    print(
        f"end-to-end releases (challenge + {how} + release + HPKE decrypt), {a.concurrency} in flight, "
        f"{a.workers} server worker(s), median of {a.runs} runs of {a.releases}"
    )
    for db, r in results.items():
        print(
            f"  {db:11s} {r['rate']:7.1f} releases/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
            f"CPU/release: service {r['server_cpu_ms']:4.2f} ms, load generator {r['client_cpu_ms']:4.2f} ms  "
            f"goal ratio {r['rate'] / GOAL:4.2f}x  runs {r['runs']}"
        )


if __name__ == "__main__":
    main()
