"""``veritee logs tail [--follow]`` (issue 9, item 9): the last signed records, then the ones
that come, re-verified at every look."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.unit.logs._logs_helpers import (
    WrittenLog,
    open_log,
    run_cli3,
    signer_args,
    tenant_files,
)

ROOT = Path(__file__).resolve().parents[3]


def test_tail_prints_the_last_signed_records(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    code, out, _ = run_cli3("logs", "tail", str(written.directory), *signer_args(f), "-n", "3",
                            "--key", str(f["key"]), "--tenant-key", str(f["tenant"]))  # fmt: skip
    assert code == 0
    assert [ln.split("\t")[0] for ln in out.splitlines()] == ["97", "98", "99"]
    assert out.splitlines()[-1].endswith("record 99")


def _lines(proc: subprocess.Popen[bytes], n: int, timeout: float = 60.0) -> list[str]:
    """Read ``n`` lines from the process's stdout, failing after ``timeout`` seconds."""
    assert proc.stdout is not None
    out: list[str] = []
    end = time.monotonic() + timeout
    buf = b""
    while len(out) < n:
        left = end - time.monotonic()
        assert left > 0, f"only {out} after {timeout} s; stderr: {proc.stderr}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"tail ended early: {out}"
            buf += chunk
            *done, buf = buf.split(b"\n")
            out += [d.decode() for d in done]
    return out


def test_tail_follow_prints_records_as_heads_cover_them(tmp_path: Path) -> None:
    log, sk, tk, _ = open_log(tmp_path / "logs" / "wl", records_per_head=1000)
    lg = log.logger("app.tail")
    for i in range(5):
        lg.info("early %d", i)
    log.tree_head()
    assert log.run_directory is not None
    w = WrittenLog(log.run_directory, sk, tk, log.export_key_for_tenant())
    f = tenant_files(w, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "veritee.cli", "logs", "tail", str(w.directory), *signer_args(f),
         "--key", str(f["key"]), "--tenant-key", str(f["tenant"]), "--follow", "-n", "2",
         "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        first = _lines(proc, 2)
        assert [ln.split("\t")[0] for ln in first] == ["3", "4"]
        lg.info("late %d", 0)
        assert log.handler.writer is not None
        log.handler.writer._store.flush()  # stored, but no head covers it yet: not printed
        assert proc.stdout is not None
        assert select.select([proc.stdout], [], [], 1.0)[0] == []
        lg.info("late %d", 1)
        log.tree_head()
        late = _lines(proc, 2)
        assert [ln.split("\t")[0] for ln in late] == ["5", "6"]
        assert late[0].endswith("late 0") and late[1].endswith("late 1")
        log.close()  # the final head: tail stops
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        assert out == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tail_follow_fails_on_a_rollback(tmp_path: Path) -> None:
    log, sk, tk, _ = open_log(tmp_path / "logs" / "wl", records_per_head=1000)
    lg = log.logger("app.tail")
    lg.info("one")
    log.tree_head()
    assert log.run_directory is not None
    seg = log.run_directory / "segment-00000000.vtlog"
    before = seg.read_bytes()
    w = WrittenLog(log.run_directory, sk, tk, log.export_key_for_tenant())
    f = tenant_files(w, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "veritee.cli", "logs", "tail", str(w.directory), *signer_args(f),
         "--key", str(f["key"]), "--tenant-key", str(f["tenant"]), "--follow",
         "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert _lines(proc, 1)[0].endswith("one")
        lg.info("two")
        log.tree_head()
        assert _lines(proc, 1)[0].endswith("two")
        seg.write_bytes(before)  # the host puts back the older copy
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert b"ROLLBACK" in err or b"TRUNCATION" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tail_follow_on_a_log_folder_goes_on_into_the_next_run(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, x25519

    from veritee.logs import open_workload_log
    from veritee.logs.signer import ADMISSION_FILE
    from veritee.profiles import Profile

    key, tenant = ec.generate_private_key(ec.SECP256R1()), x25519.X25519PrivateKey.generate()
    d = tmp_path / "logs" / "wl"

    def start() -> Any:
        return open_workload_log(profile=Profile.PRODUCTION, directory=d, signing_key=key,
                                 tenant_public_key=tenant.public_key(), seal=None, log_id="wl",
                                 durable=False, flush_seconds=None)  # fmt: skip

    first = start()
    first.logger("app.a").info("one")
    first.tree_head()
    f = tenant_files(WrittenLog(d, key, tenant, b""), tmp_path)
    cert = f["signer"].read_bytes()
    (first.run_directory / ADMISSION_FILE).write_bytes(cert)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "veritee.cli", "logs", "tail", str(d), "--ca", str(f["ca"]),
         "--any-measurement", "--tenant-key", str(f["tenant"]), "--follow", "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert _lines(proc, 1)[0].startswith("1:0\t")
        first.logger("app.a").info("two")
        first.tree_head()  # then the process dies; a restart is run 2
        second = start()
        second.logger("app.b").info("three")
        second.tree_head()
        time.sleep(0.5)  # tail waits for the new run's certificate, then reads it
        (second.run_directory / ADMISSION_FILE).write_bytes(cert)
        got = _lines(proc, 2)
        assert [g.split("\t")[0] for g in got] == ["1:1", "2:0"], got
        assert got[1].endswith("three")
    finally:
        proc.kill()
        proc.wait()
