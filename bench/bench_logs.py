"""Benchmark: confidential logging vs plain ``logging.FileHandler``.

Prints records/s for (a) a plain FileHandler (one write per record, as the confidential handler
does: the same buffering), (b) a plain handler with a 64 KiB buffer and no write per record,
(c) a bare AES-GCM-per-record handler (encrypt and write each record, nothing else: the floor of
any encrypted log), (d) ConfidentialLogHandler in the production profile (AES-256-GCM per record,
RFC 9162 Merkle append, a signed ECDSA P-256 tree head every 1024 records, one framed write per
record), (e) the LogWriter alone without the logging machinery; and the bytes of overhead per
record (stored bytes minus plaintext bytes). Median of runs, pinned to one core where the OS
allows.

    .venv/bin/python bench/bench_logs.py [--records 20000] [--runs 5] [--durable] [--cpu]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.logs.handler import DEFAULT_FORMAT, ConfidentialLogHandler
from veritee.logs.writer import LogWriter, SegmentStore
from veritee.profiles import Profile

MSG = "request %d handled: user=%s path=%s status=%d bytes=%d"
# --cpu: this process's CPU time (user + system, the write calls included) instead of wall
# time; steadier on a machine shared with other work, where wall time mostly measures waiting
_now = time.perf_counter


def _emit(lg: logging.Logger, n: int) -> float:
    t0 = _now()
    for i in range(n):
        lg.info(MSG, i, "alice@example.org", "/api/v1/orders/12345", 200, 5120 + i)
    return _now() - t0


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    lg = logging.getLogger(name)
    lg.handlers[:] = [handler]
    lg.propagate = False
    lg.setLevel(logging.INFO)
    return lg


class _Discard(logging.Handler):
    """Formats like the others, writes nothing: the ceiling set by ``logging`` itself."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def run_discard(tmp: Path, n: int) -> float:
    h = _Discard()
    h.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    return _emit(_logger(f"bench.null.{tmp.name}", h), n)


class _Buffered(logging.StreamHandler):  # type: ignore[type-arg]
    """A plain file handler that leaves its 64 KiB buffer alone until close."""

    def flush(self) -> None:
        pass


class _BareAead(logging.Handler):
    """Formats, encrypts with AES-256-GCM under a counter nonce and writes each record."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._aead, self._n = AESGCM(os.urandom(32)), 0
        self._out = open(path, "xb", buffering=0)

    def emit(self, record: logging.LogRecord) -> None:
        self._n += 1
        nonce = self._n.to_bytes(12, "big")
        ct = self._aead.encrypt(nonce, self.format(record).encode(), None)
        self._out.write(len(ct).to_bytes(4, "big") + nonce + ct)

    def close(self) -> None:
        self._out.close()
        super().close()


def run_buffered(tmp: Path, n: int) -> float:
    f = open(tmp / "buffered.log", "w", buffering=1 << 16)
    h = _Buffered(f)
    h.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    secs = _emit(_logger(f"bench.buf.{tmp.name}", h), n)
    f.close()
    return secs


def run_bare_aead(tmp: Path, n: int) -> float:
    h = _BareAead(tmp / "aead.bin")
    h.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    secs = _emit(_logger(f"bench.aead.{tmp.name}", h), n)
    h.close()
    return secs


def run_plain(tmp: Path, n: int) -> tuple[float, int]:
    path = tmp / "plain.log"
    h = logging.FileHandler(path)
    h.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    secs = _emit(_logger(f"bench.plain.{tmp.name}", h), n)
    h.close()
    return secs, path.stat().st_size


def run_confidential(tmp: Path, n: int, durable: bool) -> tuple[float, int]:
    d = tmp / "segments"
    key = ec.generate_private_key(ec.SECP256R1())
    w = LogWriter(SegmentStore(d, durable=durable), log_id="bench", profile="production",
                  signing_key=key)  # fmt: skip
    h = ConfidentialLogHandler(Profile.PRODUCTION, writer=w)
    lg = _logger(f"bench.conf.{tmp.name}", h)
    t0 = _now()
    _emit(lg, n)
    h.close()  # final signed head, flush
    secs = _now() - t0
    return secs, sum(p.stat().st_size for p in d.iterdir())


def run_writer_only(tmp: Path, n: int, payload: bytes) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    w = LogWriter(SegmentStore(tmp / "w", durable=False), log_id="bench", profile="production",
                  signing_key=key)  # fmt: skip
    t0 = _now()
    for _ in range(n):
        w.append(payload)
    w.close()
    return _now() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--durable", action="store_true", help="fsync at every signed tree head")
    ap.add_argument("--cpu", action="store_true", help="time by process CPU time, not wall")
    a = ap.parse_args()
    global _now
    if a.cpu:
        _now = time.process_time
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    n = a.records
    null_rps, plain_rps, conf_rps, writer_rps, overheads, file_overheads = [], [], [], [], [], []
    buf_rps, aead_rps = [], []
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            null_rps.append(n / run_discard(tmp, n))
            ps, plain_bytes = run_plain(tmp, n)
            buf_rps.append(n / run_buffered(tmp, n))
            aead_rps.append(n / run_bare_aead(tmp, n))
            cs, stored = run_confidential(tmp, n, a.durable)
            sample = logging.Formatter(DEFAULT_FORMAT).format(logging.makeLogRecord(
                {"msg": MSG, "args": (1, "alice@example.org", "/api/v1/orders/12345", 200, 5121),
                 "levelname": "INFO", "name": "bench"}))  # fmt: skip
            ws = run_writer_only(tmp, n, sample.encode())
            plaintext = plain_bytes - n  # the plain file holds each formatted record + "\n"
            plain_rps.append(n / ps)
            conf_rps.append(n / cs)
            writer_rps.append(n / ws)
            overheads.append((stored - plaintext) / n)
            file_overheads.append((stored - plain_bytes) / n)
    med = statistics.median
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"records per run: {n}, runs: {a.runs}, durable: {a.durable}, one core pinned, "
          f"timed by {'process CPU time' if a.cpu else 'wall clock'}, "
          f"load average {load:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"logging, formatting only     : {med(null_rps):>10,.0f} records/s (ceiling)")
    print(f"plain FileHandler            : {med(plain_rps):>10,.0f} records/s (a write each)")
    print(f"plain, 64 KiB buffer         : {med(buf_rps):>10,.0f} records/s")
    print(f"bare AES-GCM per record      : {med(aead_rps):>10,.0f} records/s (floor)")
    print(f"ConfidentialLogHandler (prod): {med(conf_rps):>10,.0f} records/s "
          f"({med(conf_rps) / med(plain_rps):.2f}x plain, "
          f"{med(conf_rps) / med(aead_rps):.2f}x bare AES-GCM)")  # fmt: skip
    print(f"LogWriter.append alone       : {med(writer_rps):>10,.0f} records/s")
    print(f"mean plaintext record        : {plaintext / n:>10.1f} bytes")
    print(f"overhead vs plaintext        : {med(overheads):>10.1f} bytes/record")
    print(f"overhead vs plain log file   : {med(file_overheads):>10.1f} bytes/record")
    goal_rps, goal_bytes = med(conf_rps) >= 20000, med(overheads) < 100
    print(f"goal >= 20,000 records/s     : {'met' if goal_rps else 'NOT met'}")
    print(f"goal < 100 bytes/record      : {'met' if goal_bytes else 'NOT met'}")


if __name__ == "__main__":
    main()
