"""What the tenant still reads from a damaged tail (issue 9, items 5 and 7, reader half).

A crash mid-write leaves a torn last frame: every record before it is read and the lost frame
is named. A host may append records after the last signed head: an epoch that cannot be honest
(far past the last signed head's, or going back) is refused before any key is ratcheted to it.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

from tests.unit.logs._logs_helpers import (
    WrittenLog,
    cli_decrypt,
    cli_verify,
    signer_args,
    tenant_files,
    write_log,
)

from veritee.logs import open_log_key, verify_log
from veritee.logs.segment import FRAME_PREFIX, FRAME_RECORD, parse_segment
from veritee.logs.tenant import MAX_EPOCH_GAP, check_log, decrypt_records

ROOT = Path(__file__).resolve().parents[3]


def _record_frames(path: Path) -> list[tuple[int, int, int]]:
    """(leaf, start, end) of every record frame of a segment file."""
    data = path.read_bytes()
    out = []
    for fr in parse_segment(data).frames:
        if fr.record is not None:
            (length,) = struct.unpack_from(">I", data, fr.offset + 1)
            out.append((fr.record.leaf_index, fr.offset, fr.offset + 5 + length))
    return out


def _host_record(epoch: int, leaf: int) -> bytes:
    body = struct.pack(">IQ12s", epoch, leaf, os.urandom(12)) + os.urandom(40)
    return FRAME_PREFIX.pack(FRAME_RECORD, len(body)) + body


def test_torn_last_frame_salvages_every_record_before_it(tmp_path: Path) -> None:
    """95 signed records, 4 unsigned, and record 99 torn by a crash: 99 are read, 1 is named lost."""
    w = write_log(tmp_path / "log", records=100, per_head=95)
    seg = w.segments()[-1]
    leaf, start, _ = _record_frames(seg)[-1]
    assert leaf == 99
    seg.write_bytes(seg.read_bytes()[: start + 30])  # the final head and most of record 99 lost
    f = tenant_files(w, tmp_path)
    code, out, err = cli_decrypt(w, f)
    assert code == 3, err  # INCOMPLETE, not FAILED: nothing was refused
    lines = out.splitlines()
    assert len(lines) == 99
    assert lines[94].startswith("94\t") and "(unsigned)" not in lines[94]
    assert lines[95].startswith("95\t(unsigned) ") and lines[98].endswith("record 98")
    assert "warning: torn_tail: segment 0 ends inside a record frame (25 of" in err
    assert "leaf 99: that frame is lost" in err
    assert "warning: unsigned_tail: 4 records after the last signed head" in err
    assert "records 0..94 are proven by the signed tree head of size 95" in err
    code, out, _ = cli_verify(w, f, "--json")
    doc = json.loads(out)
    assert code == 3 and doc["verdict"] == "INCOMPLETE" and doc["readable"] == 99
    torn = next(x for x in doc["findings"] if x["kind"] == "torn_tail")
    assert torn["offset"] == start and torn["segment"] == 0


def test_segment_cut_inside_its_header_after_a_crash(tmp_path: Path) -> None:
    """kill -9 just after a new segment was created leaves it empty: the rest is read."""
    w = write_log(tmp_path / "log", records=60, per_head=10, per_segment_rotation=30, close=False)
    nxt = w.directory / "segment-00000002.vtlog"
    nxt.write_bytes(b"VTLOG")
    rep = check_log(w.directory, w.public_key).report
    assert rep.ok and rep.verdict == "INCOMPLETE" and rep.readable == 60
    assert any(f.kind == "torn_tail" and "part of its header" in f.message for f in rep.findings)


def test_bytes_after_the_final_head_are_tampering(written: WrittenLog) -> None:
    seg = written.segments()[-1]
    seg.write_bytes(seg.read_bytes() + _host_record(0, 100)[:20])
    rep = verify_log(written.directory, written.public_key)
    assert "tampering" in rep.kinds and not rep.ok


def test_host_appended_epoch_far_ahead_is_not_ratcheted_to(tmp_path: Path) -> None:
    """A record with epoch 2^32-1 after the last head once sent decrypt into ~2^32 HKDF steps
    (days). Run in a subprocess with a generous guard: before the fix it never finished."""
    w = write_log(tmp_path / "log", records=100, per_head=10, close=False)
    seg = w.segments()[-1]
    seg.write_bytes(seg.read_bytes() + _host_record(0xFFFFFFFF, 100))
    f = tenant_files(w, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["logs", "decrypt", str(w.directory), *signer_args(f),
            "--key", str(f["key"]), "--tenant-key", str(f["tenant"])]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "veritee.cli", *args], capture_output=True,
                          env=env, timeout=120, check=False)  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    assert len(proc.stdout.decode().splitlines()) == 100
    assert "warning: unreadable_tail: the unsigned record at leaf 100 names epoch 4294967295" in err
    assert f"more than {MAX_EPOCH_GAP} past the last signed head's epoch" in err


def test_host_appended_epoch_going_back_is_named_not_skipped(tmp_path: Path) -> None:
    w = write_log(tmp_path / "log", records=100, per_head=10, close=False)  # 16 records per epoch
    seg = w.segments()[-1]
    seg.write_bytes(seg.read_bytes() + _host_record(0, 100) + _host_record(6, 101))
    checked = check_log(w.directory, w.public_key)
    rep = checked.report
    assert rep.readable == 100 and rep.records == 102
    hit = next(x for x in rep.findings if x.kind == "unreadable_tail")
    assert hit.leaf_index == 100 and "before the previous record's epoch 6" in hit.message
    key = open_log_key(w.key_blob, w.tenant_key)
    assert [r.leaf_index for r in decrypt_records(checked, key, w.public_key)] == list(range(100))
