"""What a host can do to stored segments, and that ``verify_log`` detects and names each."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.unit.logs._logs_helpers import WrittenLog, open_log, write_log

from veritee.logs import LogIntegrityError, decrypt_log, open_log_key, verify_log
from veritee.logs.segment import FRAME_HEAD, FRAME_RECORD, parse_segment
from veritee.profiles import Profile


def _frames(path: Path) -> list[tuple[int, int, int]]:
    """(kind, start, end) of every frame of a segment file."""
    data = path.read_bytes()
    seg = parse_segment(data)
    out = []
    for fr in seg.frames:
        (length,) = struct.unpack_from(">I", data, fr.offset + 1)
        out.append((fr.kind, fr.offset, fr.offset + 5 + length))
    return out


def _error_kinds(w: WrittenLog, **kw: object) -> set[str]:
    rep = verify_log(w.directory, w.public_key, **kw)  # type: ignore[arg-type]
    assert not rep.ok
    return {f.kind for f in rep.findings if f.is_error}


def test_untouched_log_verifies_and_decrypts(written: WrittenLog) -> None:
    assert len(written.segments()) == 4
    rep = verify_log(written.directory, written.public_key, written.heads[-1])
    assert rep.ok and rep.findings == ()
    assert rep.records == rep.tree_size == 100
    assert rep.latest_head is not None and rep.latest_head.final
    key = open_log_key(written.key_blob, written.tenant_key)
    texts = [r.text for r in decrypt_log(written.directory, key, written.public_key)]
    assert len(texts) == 100
    assert texts[0].endswith("record 0") and texts[-1].endswith("record 99")


def test_consistent_with_every_earlier_kept_head(written: WrittenLog) -> None:
    for head in written.heads:
        assert verify_log(written.directory, written.public_key, head).ok


def test_truncation_mid_frame(written: WrittenLog) -> None:
    last = written.segments()[-1]
    last.write_bytes(last.read_bytes()[:-7])
    # on its own a torn last frame looks like a crash: named, and the log is not complete
    rep = verify_log(written.directory, written.public_key)
    assert rep.ok and rep.verdict == "INCOMPLETE"
    assert any(f.kind == "torn_tail" and "inside a tree head frame" in f.message
               for f in rep.findings)  # fmt: skip
    # the tenant kept the final head: the missing end is truncation
    rep = verify_log(written.directory, written.public_key, written.heads[-1])
    assert "truncation" in rep.kinds and not rep.ok


def test_truncation_mid_frame_of_an_inner_segment(written: WrittenLog) -> None:
    inner = written.segments()[1]
    inner.write_bytes(inner.read_bytes()[:-7])
    assert any(f.kind == "truncation" and "inside a frame" in f.message
               for f in verify_log(written.directory, written.public_key).findings)  # fmt: skip


def test_truncation_at_frame_boundary_of_an_inner_segment(written: WrittenLog) -> None:
    seg = written.segments()[1]
    frames = _frames(seg)
    assert frames[-1][0] == FRAME_HEAD
    # cut the closing head and the last two records: still well-framed
    seg.write_bytes(seg.read_bytes()[: frames[-3][1]])
    kinds = _error_kinds(written)
    assert "truncation" in kinds


def test_truncation_last_segment_removed(written: WrittenLog) -> None:
    written.segments()[-1].unlink()
    assert "truncation" in _error_kinds(written, last_tree_head=written.heads[-1])
    # without a kept head the missing final head is still reported
    rep = verify_log(written.directory, written.public_key)
    assert "not_closed" in rep.kinds
    assert "truncation" in _error_kinds(written, require_final=True)


def test_truncation_middle_segment_removed(written: WrittenLog) -> None:
    written.segments()[1].unlink()
    assert "truncation" in _error_kinds(written)


def test_rollback_to_an_older_copy(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log, sk, _tk, _ = open_log(d, records_per_head=1000)
    lg = log.logger("app.rollback")
    for i in range(20):
        lg.info("early %d", i)
    log.tree_head()
    old = tmp_path / "older-copy"
    shutil.copytree(d, old)
    for i in range(20):
        lg.info("late %d", i)
    kept = log.close()
    assert kept is not None
    # the host serves the older copy instead
    shutil.rmtree(d)
    shutil.copytree(old, d)
    run = d / "run-000001"
    rep = verify_log(run, sk.public_key(), kept)
    assert "rollback" in rep.kinds and not rep.ok
    assert "truncation" not in rep.kinds
    # the older copy on its own is self-consistent: only the kept head reveals the rollback
    assert "rollback" not in verify_log(run, sk.public_key()).kinds


def test_reordering_of_records(written: WrittenLog) -> None:
    seg = written.segments()[0]
    data = seg.read_bytes()
    recs = [f for f in _frames(seg) if f[0] == FRAME_RECORD]
    (_, a0, a1), (_, b0, b1) = recs[3], recs[4]
    seg.write_bytes(data[:a0] + data[b0:b1] + data[a0:a1] + data[b1:])
    rep = verify_log(written.directory, written.public_key, written.heads[-1])
    assert rep.kinds & {"reordering"} and not rep.ok
    # content is intact: the swap is named precisely, not as tampering
    assert "tampering" not in rep.kinds


def test_reordering_of_segment_files(written: WrittenLog) -> None:
    s = written.segments()
    tmp = s[1].with_suffix(".tmp")
    s[1].rename(tmp)
    s[2].rename(s[1])
    tmp.rename(s[2])
    assert "reordering" in _error_kinds(written)


def test_modification_of_a_record(written: WrittenLog) -> None:
    seg = written.segments()[2]
    data = bytearray(seg.read_bytes())
    recs = [f for f in _frames(seg) if f[0] == FRAME_RECORD]
    data[recs[5][2] - 3] ^= 0x01  # a ciphertext byte
    seg.write_bytes(bytes(data))
    rep = verify_log(written.directory, written.public_key)
    assert "tampering" in rep.kinds
    hit = next(f for f in rep.findings if f.kind == "tampering")
    assert hit.segment == 2 and hit.leaf_index is not None and 60 <= hit.leaf_index + 10 <= 75
    key = open_log_key(written.key_blob, written.tenant_key)
    with pytest.raises(LogIntegrityError) as ei:
        list(decrypt_log(written.directory, key, written.public_key))
    assert ei.value.report is not None and "tampering" in ei.value.report.kinds


def test_modification_of_a_record_header(written: WrittenLog) -> None:
    seg = written.segments()[0]
    data = bytearray(seg.read_bytes())
    rec = [f for f in _frames(seg) if f[0] == FRAME_RECORD][2]
    data[rec[1] + 5 + 3] ^= 0x01  # epoch low byte
    seg.write_bytes(bytes(data))
    assert "tampering" in _error_kinds(written)


def test_modification_of_a_tree_head(written: WrittenLog) -> None:
    seg = written.segments()[0]
    data = bytearray(seg.read_bytes())
    head = next(f for f in _frames(seg) if f[0] == FRAME_HEAD)
    data[head[1] + 40] ^= 0x80  # inside the signed bytes
    seg.write_bytes(bytes(data))
    assert "bad_signature" in _error_kinds(written)


def test_wrong_signer(written: WrittenLog) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert "bad_signature" in {f.kind for f in verify_log(written.directory, other).findings}


def test_deletion_in_the_middle(written: WrittenLog) -> None:
    seg = written.segments()[0]
    data = seg.read_bytes()
    rec = [f for f in _frames(seg) if f[0] == FRAME_RECORD][4]
    seg.write_bytes(data[: rec[1]] + data[rec[2] :])
    assert "deletion" in _error_kinds(written)


def test_garbage_segment_is_named_not_a_crash(written: WrittenLog) -> None:
    written.segments()[1].write_bytes(b"\x00" * 64)
    rep = verify_log(written.directory, written.public_key)
    hit = next(f for f in rep.findings if f.kind == "tampering")
    assert "segment.magic" in hit.message


def test_mixed_in_segment_of_another_log(tmp_path: Path, written: WrittenLog) -> None:
    other = write_log(tmp_path / "other", records=5, per_head=5, log_id="another-log")
    shutil.copy(other.segments()[0], written.segments()[1])
    assert "wrong_log" in _error_kinds(written)


def test_fork_against_kept_head(tmp_path: Path) -> None:
    """Two runs under one log id and key: the second history does not extend the first."""
    d1, d2 = tmp_path / "a", tmp_path / "b"
    log1, sk, _, _ = open_log(d1)
    for i in range(12):
        log1.logger("app.fork1").info("first %d", i)
    kept = log1.close()
    assert kept is not None
    from veritee.logs import open_workload_log

    log2 = open_workload_log(
        profile=Profile.PRODUCTION,
        directory=d2,
        signing_key=sk,
        tenant_public_key=None,
        seal=None,
        log_id="test-log",
        durable=False,
    )
    for i in range(15):
        log2.logger("app.fork2").info("second %d", i)
    log2.close()
    assert log2.run_directory is not None
    run2 = log2.run_directory
    assert "fork" in {f.kind for f in verify_log(run2, sk.public_key(), kept).findings}


def test_require_profile(written: WrittenLog) -> None:
    assert verify_log(written.directory, written.public_key, require_profile=Profile.PRODUCTION).ok
    rep = verify_log(written.directory, written.public_key, require_profile=Profile.STAGING)
    assert "profile" in rep.kinds
