"""Memory after warm-up: does the service's heap grow under steady load (issue 12 item 12)?

In one process (the app in-process, SQLite): ``--warmup`` certify + attest round trips, then
``--rounds`` rounds of ``--cycles`` more; after each round the Python heap's net growth since
the warm-up (tracemalloc, allocations through PyMem) and the process's resident size are
printed, then the lines that grew most. Second, the largest cache by memory, the verified
admission certificates of certified releases (``service.release._verified_admission``, 4096
entries), is filled with distinct certificates and its resident cost printed (the certificates
are cryptography's Rust objects, which tracemalloc does not see).

    python bench/bench_memory.py [--warmup 300] [--cycles 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.service.conftest import GOOD, Env

from veritee.binding import spki_der
from veritee.domain import Domain, issue_admission_certificate
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service import release
from veritee.service.app import create_app
from veritee.service.settings import Settings


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cycle(env: Env) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    body = env.attest_body(nonce=env.nonce(), spki=spki_der(key.public_key()))
    body["public_key"] = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert env.client.post("/v1/certify", json=body).status_code == 200
    assert env.client.post("/v1/attest", json=env.attest_body()).status_code == 200


def round_trips(warmup: int, cycles: int, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    domain = Domain.create(tmp / "domain", name="bench", now=dt.datetime.now(dt.UTC))
    app = create_app(Settings(data_dir=domain.path))
    with TestClient(app) as client:
        env = Env(
            domain, client, SimulatedPlatform(tmp / "sim", measurement=GOOD), tmp / "sim", None
        )
        env.install_policy()
        for _ in range(warmup):
            cycle(env)
        gc.collect()
        tracemalloc.start(1)
        base = tracemalloc.take_snapshot()
        print(f"after warm-up ({warmup}): RSS {rss_mib():.1f} MiB", flush=True)
        for r in range(rounds):
            for _ in range(cycles):
                cycle(env)
            gc.collect()
            now = tracemalloc.take_snapshot()
            grown = sum(s.size_diff for s in now.compare_to(base, "filename"))
            print(f"after {(r + 1) * cycles} more: heap {grown / 1e6:+.2f} MB since warm-up, "
                  f"RSS {rss_mib():.1f} MiB", flush=True)  # fmt: skip
        for s in now.compare_to(base, "lineno")[:5]:
            print(f"  {s.size_diff / 1e3:+.1f} kB  {s.traceback.format()[-1].strip()}")
        tracemalloc.stop()


def admission_cache() -> None:
    now = dt.datetime.now(dt.UTC)
    domain = Domain.create(Path(tempfile.mkdtemp()) / "d", name="bench", now=now)
    key = ec.generate_private_key(ec.SECP256R1())
    size = release._verified_admission.cache_info().maxsize or 0
    claims = {"measurement": GOOD, "platform": "simulated", "profile": "development"}
    pems = [
        issue_admission_certificate(
            domain, key.public_key(), claims=claims, now=now, lifetime=dt.timedelta(hours=1)
        )
        .public_bytes(serialization.Encoding.PEM)
        .decode()
        for _ in range(size)
    ]
    gc.collect()
    before = rss_mib()
    for pem in pems:
        release._verified_admission(pem, domain.ca_certificate)
    gc.collect()
    grown = rss_mib() - before
    print(f"verified admission certificates: {size} entries cost {grown:.1f} MiB "
          f"({grown * 1024 / size:.1f} KiB each)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    round_trips(args.warmup, args.cycles, args.rounds)
    admission_cache()


if __name__ == "__main__":
    main()
