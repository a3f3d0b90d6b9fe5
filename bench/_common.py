"""Shared pieces of the service benchmarks: a lean HTTP/1.1 client, starting the service in its
own process, and reading that process's CPU time."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = [
    "Conn",
    "cpu_by_pid",
    "cpu_seconds",
    "drop_pg_database",
    "involuntary_switches",
    "make_pg_database",
    "paired_times",
    "rate",
    "service_pids",
    "start_service",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(data: Path, db: str | None, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "veritee.cli", "serve", "--data", str(data), "--port", str(port)]
    if db:
        cmd += ["--db", db]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    _, err = proc.communicate()
    raise SystemExit("service did not start: " + err.decode(errors="replace")[-2000:])


class Conn:
    """A minimal HTTP/1.1 keep-alive client: the load generator should cost little CPU
    (an httpx client costs more CPU per request than the service's own work)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (Linux /proc), ticks -> seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """:func:`cpu_seconds` of each process apart (a process gone counts 0)."""
    return {pid: cpu_seconds([pid]) for pid in pids}


def involuntary_switches(pids: list[int]) -> int:
    """Involuntary context switches of every thread of these processes (Linux /proc): how often
    the scheduler took a core from a thread that still had work."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("nonvoluntary_ctxt_switches:"):
                        total += int(line.split()[1])
            except (OSError, ValueError):
                pass
    return total


def service_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    pids = [proc.pid]
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    if children.exists():
        pids += [int(x) for x in children.read_text().split()]
    return pids


def make_pg_database(admin_url: str) -> tuple[str, str]:
    """Create a throw-away PostgreSQL database; return (SQLAlchemy URL, name)."""
    import psycopg

    name = "veritee_bench_" + secrets.token_hex(4)
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def drop_pg_database(admin_url: str, name: str) -> None:
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rate(fn: Callable[[], object], seconds: float, batch: int = 16) -> float:
    """Calls per second of ``fn``, from as many batches of calls as fit in ``seconds``."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def paired_times(
    first: Callable[[], object], second: Callable[[], object], seconds: float
) -> tuple[float, float]:
    """Median seconds per call of ``first`` and ``second``, called in turn for ``seconds``: the
    two see the same moments of a noisy machine, so their ratio is steadier than two runs'."""
    clock = time.perf_counter
    ta: list[float] = []
    tb: list[float] = []
    deadline = clock() + seconds
    while clock() < deadline:
        t0 = clock()
        first()
        t1 = clock()
        second()
        t2 = clock()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return statistics.median(ta), statistics.median(tb)
