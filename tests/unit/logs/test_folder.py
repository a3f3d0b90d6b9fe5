"""``veritee logs`` on a workload's whole log folder: every run, and the signed links between
them (issue 9, item 9: the folder the workload writes is what the tenant verifies)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from tests.unit.logs._logs_helpers import (
    MEASUREMENT,
    WrittenLog,
    run_cli3,
    signer_args,
    tenant_files,
)

from veritee.logs import WorkloadLog, open_workload_log
from veritee.logs.runs import runs_in
from veritee.logs.segment import parse_segment
from veritee.logs.signer import ADMISSION_FILE
from veritee.logs.writer import LogWriter, SegmentStore
from veritee.profiles import Profile


def _open(d: Path, key: ec.EllipticCurvePrivateKey, tenant: x25519.X25519PrivateKey) -> WorkloadLog:
    return open_workload_log(profile=Profile.PRODUCTION, directory=d, signing_key=key,
                             tenant_public_key=tenant.public_key(), seal=None, log_id="wl",
                             durable=False, flush_seconds=None)  # fmt: skip


def _two_runs(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """Run 1 logs 5 records, signs a head, logs 2 more and dies; run 2 logs 3 and closes."""
    key, tenant = ec.generate_private_key(ec.SECP256R1()), x25519.X25519PrivateKey.generate()
    d = tmp_path / "logs" / "wl"
    first = _open(d, key, tenant)
    for i in range(5):
        first.logger("app.one").info("first %d", i)
    first.tree_head()
    for i in range(2):
        first.logger("app.one").info("unsigned %d", i)
    assert first.handler.writer is not None
    first.handler.writer._store.flush()  # what the OS had when the process was killed
    second = _open(d, key, tenant)
    for i in range(3):
        second.logger("app.two").info("second %d", i)
    second.close()
    w = WrittenLog(d, key, tenant, b"")
    f = tenant_files(w, tmp_path)
    for run in runs_in(d):  # as Trust does: each run's certificate beside it
        shutil.copy(f["signer"], run.path / ADMISSION_FILE)
    return d, f


def _tenant_args(f: dict[str, Path]) -> list[str]:
    return ["--ca", str(f["ca"]), "--measurement", MEASUREMENT]


def test_a_killed_run_then_a_closed_one_is_ok(tmp_path: Path) -> None:
    d, f = _two_runs(tmp_path)
    code, out, _ = run_cli3("logs", "verify", str(d), *_tenant_args(f))
    assert code == 0, out
    assert "== run-000001: ENDED" in out and "== run-000002: OK" in out
    assert "run-000001 ended without closing (killed or crashed)" in out
    assert out.splitlines()[-1] == "== all 2 runs: OK"
    code, out, err = run_cli3("logs", "decrypt", str(d), *_tenant_args(f),
                              "--tenant-key", str(f["tenant"]), "--json")  # fmt: skip
    assert code == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert [(r["run"], r["text"].split(": ", 1)[1], r["signed"]) for r in rows] == [
        (1, "first 0", True), (1, "first 1", True), (1, "first 2", True), (1, "first 3", True),
        (1, "first 4", True), (1, "unsigned 0", False), (1, "unsigned 1", False),
        (2, "second 0", True), (2, "second 1", True), (2, "second 2", True)]  # fmt: skip
    assert json.loads(err)["verdict"] == "OK"


def test_records_cut_from_a_killed_run_are_caught_by_the_next_runs_start(tmp_path: Path) -> None:
    d, f = _two_runs(tmp_path)
    seg = runs_in(d)[0].path / "segment-00000000.vtlog"
    data = seg.read_bytes()
    last_record = [fr for fr in parse_segment(data).frames if fr.record is not None][-1]
    seg.write_bytes(data[: last_record.offset])  # the host cuts the unsigned record 6 away
    code, out, _ = run_cli3("logs", "verify", str(d), *_tenant_args(f))
    assert code == 1 and out.splitlines()[-1] == "== all 2 runs: FAILED"
    assert "TRUNCATION: run 2's signed start saw 7 records of 'wl/run-000001'" in out


def test_a_removed_run_is_caught(tmp_path: Path) -> None:
    d, f = _two_runs(tmp_path)
    shutil.rmtree(runs_in(d)[0].path)
    code, out, _ = run_cli3("logs", "verify", str(d), *_tenant_args(f))
    assert code == 1
    assert "run 2's signed start saw 'wl/run-000001' (7 records), which is not stored" in out


def test_the_last_run_not_closed_is_incomplete(tmp_path: Path) -> None:
    d, f = _two_runs(tmp_path)
    last = runs_in(d)[-1].path / "segment-00000000.vtlog"
    data = last.read_bytes()
    last.write_bytes(data[:-40])  # the final head torn
    code, out, _ = run_cli3("logs", "verify", str(d), *signer_args(f))
    assert code == 3 and out.splitlines()[-1] == "== all 2 runs: INCOMPLETE", out


def test_a_run_without_a_tenant_key_is_named_and_the_others_read(tmp_path: Path) -> None:
    d, f = _two_runs(tmp_path)
    (runs_in(d)[0].path / "tenant-key.json").unlink()
    code, out, err = run_cli3("logs", "decrypt", str(d), *_tenant_args(f),
                              "--tenant-key", str(f["tenant"]))  # fmt: skip
    assert code == 0, err
    assert "warning: run-000001 holds no tenant-key.json" in err
    assert [ln.split("\t")[0] for ln in out.splitlines()] == ["2:0", "2:1", "2:2"]


def test_a_run_moved_into_another_runs_place_is_caught(tmp_path: Path) -> None:
    d, f = _two_runs(tmp_path)
    first, second = runs_in(d)
    shutil.rmtree(second.path)
    shutil.copytree(first.path, second.path)  # run 1 again, as if it were run 2
    code, out, _ = run_cli3("logs", "verify", str(d), *_tenant_args(f))
    assert code == 1 and "WRONG_LOG: run-000002 holds the log 'wl/run-000001'" in out


def test_tail_on_a_log_folder_prints_the_latest_run(tmp_path: Path) -> None:
    d, f = _two_runs(tmp_path)
    code, out, _ = run_cli3("logs", "tail", str(d), *_tenant_args(f), "-n", "2",
                            "--tenant-key", str(f["tenant"]))  # fmt: skip
    assert code == 0
    assert [ln.split("\t")[0] for ln in out.splitlines()] == ["2:1", "2:2"]


def test_a_version_1_log_before_the_runs_is_run_0(tmp_path: Path) -> None:
    """A folder an earlier release wrote to (segments of its own, version 1), then a run."""
    key, tenant = ec.generate_private_key(ec.SECP256R1()), x25519.X25519PrivateKey.generate()
    d = tmp_path / "logs" / "wl"
    writer = LogWriter(SegmentStore(d, durable=False), log_id="wl", profile="production",
                       signing_key=key)  # fmt: skip
    for i in range(3):
        writer.append(f"old {i}".encode())
    writer.flush()
    writer._store.flush()  # killed: no final head
    for seg in d.glob("segment-*.vtlog"):  # as the earlier release wrote it
        data = bytearray(seg.read_bytes())
        data[8] = 1
        seg.write_bytes(bytes(data))
    run = _open(d, key, tenant)
    run.logger("app.new").info("new")
    run.close()
    f = tenant_files(WrittenLog(d, key, tenant, b""), tmp_path)
    code, out, _ = run_cli3("logs", "verify", str(d), *signer_args(f))
    assert code == 0, out
    assert "== the version-1 log (before runs): ENDED" in out and "== run-000001: OK" in out
    # the run's signed start saw it: cutting it is caught
    seg = d / "segment-00000000.vtlog"
    data = seg.read_bytes()
    last_record = [fr for fr in parse_segment(data).frames if fr.record is not None][-1]
    seg.write_bytes(data[: last_record.offset])
    code, out, _ = run_cli3("logs", "verify", str(d), *signer_args(f))
    assert code == 1 and "run 1's signed start saw" in out
