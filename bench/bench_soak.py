"""Soak: two replicas on one PostgreSQL database under steady load, memory sampled (issue 12 item 12).

Two ``veritee serve`` processes, each with its own copy of the domain folder, one PostgreSQL
database, as the README runs replicas. A paced load generator sends ``--rate`` operations per
second, alternating replicas, in a fixed mix: attestation (challenge + fresh evidence), secret
release with fresh evidence, release with an admission certificate (proof of possession) and
certification of a fresh key (so the verified-certificate cache sees new certificates all the
time). Every ``--sample`` seconds the resident size of each replica (its process and its
workers, summed) is printed. At the end: resident size when the warm-up ends and at the end, and
the slope after warm-up (least squares, MiB per minute) per replica.

    python bench/bench_soak.py [--minutes 60] [--warmup-minutes 5] [--rate 40] [--workers 1]
        [--sample 30] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _common import Conn, drop_pg_database, make_pg_database, service_pids, start_service
from bench_release import CA, MEAS, NAME, Certified
from bench_release import one as release_once
from bench_service import one_attest, one_certify

from veritee.appraisal import load_policy, sign_policy
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per minute."""
    if len(points) < 2:
        return float("nan")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return (
        60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
        if den
        else float("nan")
    )


async def paced(
    urls: list[str],
    platform: SimulatedPlatform,
    certified: list[Certified],
    rate: float,
    seconds: float,
    sample: float,
    pids: list[list[int]],
) -> tuple[list[list[tuple[float, float]]], dict[str, int], dict[str, int]]:
    addresses = [(u.split("//")[1].split(":")[0], int(u.rsplit(":", 1)[1])) for u in urls]
    ops = [one_attest, release_once, None, one_certify]  # None: certified release
    counts = {"attest": 0, "release": 0, "release-certified": 0, "certify": 0, "failed": 0}
    reasons: dict[str, int] = {}
    names = ["attest", "release", "release-certified", "certify"]
    samples: list[list[tuple[float, float]]] = [[] for _ in urls]
    t0 = time.monotonic()
    next_sample = t0
    inflight: set[asyncio.Task[None]] = set()
    sem = asyncio.Semaphore(16)

    async def do(i: int) -> None:
        replica = i % len(urls)
        kind = (i // len(urls)) % len(ops)
        async with sem:
            conn = Conn(*addresses[replica])
            try:
                fn = ops[kind]
                if fn is None:
                    await certified[replica].one(conn, platform)
                else:
                    await fn(conn, platform)
                counts[names[kind]] += 1
            except (SystemExit, OSError, asyncio.IncompleteReadError, ValueError) as e:
                counts["failed"] += 1
                # why, by kind: the operation and the error's class and first words (a status
                # line and a problem code; never a body with evidence or secrets)
                why = f"{names[kind]}: {type(e).__name__}: {' '.join(str(e).split())[:60]}"
                reasons[why] = reasons.get(why, 0) + 1
            finally:
                await conn.close()

    i = 0
    while (now := time.monotonic()) - t0 < seconds:
        if now >= next_sample:
            for r, p in enumerate(pids):
                samples[r].append((now - t0, rss_mib(p)))
            print(
                f"  t={now - t0:6.0f} s  "
                + "  ".join(
                    f"replica {'ab'[r]} {samples[r][-1][1]:6.1f} MiB" for r in range(len(urls))
                )
                + f"  ops {sum(counts.values()) - counts['failed']}  failed {counts['failed']}",
                flush=True,
            )
            next_sample += sample
        due = int((now - t0) * rate)
        while i < due:
            task = asyncio.create_task(do(i))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            i += 1
        await asyncio.sleep(min(0.05, 1 / rate))
    await asyncio.gather(*inflight)
    for r, p in enumerate(pids):
        samples[r].append((time.monotonic() - t0, rss_mib(p)))
    return samples, counts, reasons


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--warmup-minutes", type=float, default=5)
    ap.add_argument(
        "--rate", type=float, default=40, help="operations per second, both replicas together"
    )
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sample", type=float, default=30, help="seconds between memory samples")
    ap.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    db_url, db_name = make_pg_database(a.postgres)
    procs = []
    with tempfile.TemporaryDirectory(prefix="veritee-soak-") as tmp:
        try:
            first = Domain.create(Path(tmp) / "replica-a", name="soak", now=dt.datetime.now(dt.UTC))
            CA[:] = [first.ca_certificate]
            platform = SimulatedPlatform(Path(tmp) / "sim", measurement=MEAS)
            urls = []
            proc, url = start_service(first.path, db_url, a.workers)  # makes the KEK (secrets.kek)
            procs.append(proc)
            urls.append(url)
            second = Path(tmp) / "replica-b"  # the operator copies the domain folder, KEK included
            shutil.copytree(first.path, second, ignore=shutil.ignore_patterns("veritee.db*"))
            proc, url = start_service(second, db_url, a.workers)
            procs.append(proc)
            urls.append(url)
            admin = {"Authorization": f"Bearer {first.admin_token()}"}
            doc = {
                "version": 1,
                "name": "soak",
                "platforms": {
                    "simulated": {
                        "measurements": [MEAS],
                        "platform_keys": [platform.key_id],
                        "allow_debug": True,
                    }
                },
            }
            httpx.put(
                urls[0] + "/v1/admin/policy",
                content=sign_policy(load_policy(json.dumps(doc)), first.policy_key),
                headers=admin,
            ).raise_for_status()
            policy = {"allOf": [{"claim": "measurement", "equals": MEAS}]}
            httpx.put(
                f"{urls[0]}/v1/admin/secrets/{NAME}",
                headers=admin,
                json={"value": base64.b64encode(b"bench-secret").decode(), "policy": policy},
            ).raise_for_status()
            certified = [Certified(u, platform) for u in urls]
            pids = [service_pids(p) for p in procs]
            print(
                f"soak: 2 replicas x {a.workers} worker(s) on PostgreSQL, {a.rate:g} ops/s for {a.minutes:g} min "
                f"(warm-up {a.warmup_minutes:g} min), memory every {a.sample:g} s; started "
                f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
                flush=True,
            )
            samples, counts, reasons = asyncio.run(
                paced(urls, platform, certified, a.rate, a.minutes * 60, a.sample, pids)
            )
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=30)
            drop_pg_database(a.postgres, db_name)
    warm = a.warmup_minutes * 60
    print(f"operations: {json.dumps(counts)}")
    for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  failed {n:6d} x  {why}")
    for r, pts in enumerate(samples):
        after = [p for p in pts if p[0] >= warm]
        at_warm = after[0][1] if after else float("nan")
        print(
            f"replica {'ab'[r]}: {pts[0][1]:.1f} MiB at start, {at_warm:.1f} MiB after warm-up, "
            f"{pts[-1][1]:.1f} MiB at the end; max after warm-up {max((p[1] for p in after), default=float('nan')):.1f} MiB; "
            f"slope after warm-up {slope_per_minute(after):+.3f} MiB/min"
        )


if __name__ == "__main__":
    main()
