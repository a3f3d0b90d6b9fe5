"""``veritee logs verify|decrypt`` end to end on a real log."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.logs._logs_helpers import (
    WrittenLog,
    cli_decrypt,
    cli_verify,
    open_log,
    run_cli,
    run_cli3,
    signer_args,
    tenant_files,
    write_log,
)

from veritee.logs.segment import FRAME_HEAD, parse_segment


def test_verify_save_head_then_detect_rollback(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    kept = tmp_path / "kept.json"
    code, out = run_cli(
        "logs",
        "verify",
        str(written.directory),
        *signer_args(f),
        "--save-head",
        str(kept),
        "--require-profile",
        "production",
    )
    assert code == 0, out
    assert "100 records" in out and out.strip().endswith("OK")
    assert json.loads(kept.read_text())["tree_size"] == 100
    written.segments()[-1].unlink()
    code, out = run_cli(
        "logs",
        "verify",
        str(written.directory),
        *signer_args(f),
        "--last-head",
        str(kept),
        "--json",
    )
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    assert "truncation" in {x["kind"] for x in doc["findings"]}


def test_decrypt_prints_records(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    code, out, err = run_cli3(
        "logs",
        "decrypt",
        str(written.directory),
        *signer_args(f),
        "--key",
        str(f["key"]),
        "--tenant-key",
        str(f["tenant"]),
        "--json",
    )
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert json.loads(err)["verdict"] == "OK"
    assert len(lines) == 100 and lines[42]["leaf"] == 42 and lines[42]["text"].endswith("record 42")


def test_decrypt_refuses_a_tampered_log(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    seg = written.segments()[0]
    data = bytearray(seg.read_bytes())
    data[200] ^= 1
    seg.write_bytes(bytes(data))
    code, out, err = run_cli3(
        "logs",
        "decrypt",
        str(written.directory),
        *signer_args(f),
        "--key",
        str(f["key"]),
        "--tenant-key",
        str(f["tenant"]),
    )
    assert code == 1
    assert out == ""  # no record of a failed log
    assert "log_integrity" in err and "FAILED" in err


def test_bad_signer_file_is_a_clear_error(tmp_path: Path, written: WrittenLog) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"not a key")
    code, out = run_cli("logs", "verify", str(written.directory), "--signer", str(bad))
    assert code == 2 and "not a certificate" in out
    code, out = run_cli("logs", "verify", str(written.directory), "--signer", str(bad),
                        "--insecure-signer-key")  # fmt: skip
    assert code == 1 and "signer" in out


# -- issue 9.4: a log the tenant cannot prove complete does not say OK ------------------------


def _cut_back_to_an_earlier_head(w: WrittenLog) -> int:
    """Cut the closed log's last segment just after its last non-final head; returns its size."""
    seg = w.segments()[-1]
    data = seg.read_bytes()
    parsed = parse_segment(data)
    heads = [fr for fr in parsed.frames if fr.kind == FRAME_HEAD]
    final = heads[-1].head
    assert final is not None and final.final
    keep = next(fr for fr in reversed(heads) if fr.head and fr.head.tree_size < final.tree_size)
    assert keep.head is not None and not keep.head.final
    end = keep.offset + 5 + len(keep.head.to_bytes())
    seg.write_bytes(data[:end])
    return keep.head.tree_size


def test_complete_log_says_ok_and_what_is_proven(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    code, out, _ = cli_verify(written, f, "--require-final")
    assert code == 0, out
    assert out.splitlines()[-1] == "OK"
    assert "records 0..99 are proven by the signed tree head of size 100" in out
    assert "the final one: the log was closed" in out


def test_closed_log_cut_back_to_an_earlier_head_is_not_ok(tmp_path: Path) -> None:
    written = write_log(tmp_path / "log", records=100, per_head=10)  # one segment, 11 heads
    f = tenant_files(written, tmp_path)
    size = _cut_back_to_an_earlier_head(written)
    assert size == 90
    code, out, _ = cli_verify(written, f)
    assert code == 3, out
    assert "OK" not in out.split()
    assert out.splitlines()[-1] == "INCOMPLETE"
    assert f"records 0..{size - 1} are proven by the signed tree head of size {size}" in out
    assert "the log is not closed: records written after it may be missing" in out
    code, out, _ = cli_verify(written, f, "--json")
    doc = json.loads(out)
    assert code == 3 and doc["verdict"] == "INCOMPLETE" and doc["complete"] is False
    assert doc["proven"]["tree_size"] == size and doc["proven"]["final"] is False
    code, out, _ = cli_verify(written, f, "--require-final")
    assert code == 1 and out.splitlines()[-1] == "FAILED" and "TRUNCATION" in out
    # decrypt prints the same report (on stderr) and the same verdict
    code, out, err = cli_decrypt(written, f)
    assert code == 3, err
    assert len(out.splitlines()) == size
    assert "warning: not_closed" in err and err.splitlines()[-1] == "INCOMPLETE"
    assert f"records 0..{size - 1} are proven by the signed tree head of size {size}" in err


def test_last_segment_removed_is_not_ok(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    written.segments()[-1].unlink()
    code, out, _ = cli_verify(written, f)
    assert code == 3 and out.splitlines()[-1] == "INCOMPLETE", out
    assert "records 0..89 are proven" in out
    code, _, err = cli_decrypt(written, f)
    assert code == 3 and "warning: not_closed" in err and "INCOMPLETE" in err
    code, out, _ = cli_verify(written, f, "--require-final")
    assert code == 1 and "FAILED" in out


def test_empty_folder_fails_with_and_without_require_final(
    tmp_path: Path, written: WrittenLog
) -> None:
    f = tenant_files(written, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    for extra in ((), ("--require-final",)):
        code, out, _ = run_cli3("logs", "verify", str(empty), *signer_args(f), *extra)
        assert code == 1, out
        assert "EMPTY: the folder holds no log segments" in out
        assert out.splitlines()[-1] == "FAILED"
    code, out, err = run_cli3("logs", "decrypt", str(empty), *signer_args(f),
                           "--key", str(f["key"]), "--tenant-key", str(f["tenant"]))  # fmt: skip
    assert code == 1 and out == "" and "EMPTY" in err


def test_wrong_folder_fails_and_names_where_segments_are(
    tmp_path: Path, written: WrittenLog
) -> None:
    f = tenant_files(written, tmp_path)
    top = written.directory.parent.parent  # above the workload's log folder
    code, out, _ = run_cli3("logs", "verify", str(top), *signer_args(f))
    assert code == 1 and out.splitlines()[-1] == "FAILED"
    where = written.directory.relative_to(top)
    assert f"segments were found in {where}" in out


# -- issue 9.8: logged data and host-chosen names cannot forge lines or drive the terminal -----

_FORGED = "0\tforged: balance 0\nOK"
_ESC = "\x1b[2J\x1b[31mred\x1b]0;title\x07 \u202eevil\x9b1m"


def test_decrypt_escapes_newlines_and_terminal_escapes_in_records(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log, sk, tk, _ = open_log(d)
    lg = log.logger("app.escapes")
    lg.info("first")
    lg.info("message with %s", _FORGED)
    lg.info("args %s and a backslash \\n", _ESC)
    log.close()
    assert log.run_directory is not None
    w = WrittenLog(log.run_directory, sk, tk, log.export_key_for_tenant())
    f = tenant_files(w, tmp_path)
    code, out, err = cli_decrypt(w, f)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3  # one line per record: the newline did not forge a record
    assert [ln.split("\t", 1)[0] for ln in lines] == ["0", "1", "2"]
    assert "\\n" in lines[1] and "0\\tforged: balance 0\\nOK" in lines[1]
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[2J\\x1b[31mred" in lines[2] and "\\u202eevil" in lines[2]
    assert "a backslash \\\\n" in lines[2]  # a literal backslash-n stays distinguishable
    # --json keeps the exact text
    code, out, _ = cli_decrypt(w, f, "--json")
    texts = [json.loads(x)["text"] for x in out.splitlines()]
    assert texts[1].endswith("message with " + _FORGED) and _ESC in texts[2]


def test_host_chosen_file_names_are_escaped(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    evil = "segment-\x1b[2J\x1b]0;pwned\x07\nOK\n.vtlog"
    (written.directory / evil).write_bytes(b"VTLOGSEG junk")
    for run in (cli_verify(written, f), cli_decrypt(written, f)):
        code, out, err = run
        shown = out + err
        assert code == 1
        assert "\x1b" not in shown and "\x07" not in shown
        assert "segment-\\x1b[2J\\x1b]0;pwned\\x07\\nOK\\n.vtlog does not parse" in shown
        assert "OK" not in [ln.strip() for ln in shown.splitlines()]
    # a wrong folder: the hint names sub-folders, escaped too
    parent = tmp_path / "host"
    (parent / "\x1b[31mred\nOK").mkdir(parents=True)
    for seg in written.segments():
        (parent / "\x1b[31mred\nOK" / seg.name).write_bytes(seg.read_bytes())
    code, out, _ = run_cli3("logs", "verify", str(parent), *signer_args(f))
    assert code == 1 and "\x1b" not in out
    assert "segments were found in \\x1b[31mred\\nOK" in out
    assert out.splitlines()[-1] == "FAILED"
