"""Decrypted records fed into stdlib logging (issue 9, item 9): level, logger name, time and
message come back out of the workload's formatted text; any stdlib handler (and through it
structlog or OpenTelemetry) takes them."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from tests.unit.logs._logs_helpers import WrittenLog, cli_decrypt, open_log, tenant_files

from veritee.logs import decrypt_log, open_log_key
from veritee.logs.export import replay, to_json, to_logging_record


def _records(tmp_path: Path) -> tuple[WrittenLog, list]:  # type: ignore[type-arg]
    log, sk, tk, _ = open_log(tmp_path / "logs" / "wl")
    lg = log.logger("app.payments")
    lg.info("paid %d", 42)
    lg.warning("retrying\nline two")
    try:
        raise ValueError("declined")
    except ValueError:
        lg.exception("failed")
    log.close()
    assert log.run_directory is not None
    w = WrittenLog(log.run_directory, sk, tk, log.export_key_for_tenant())
    key = open_log_key(w.key_blob, tk)
    return w, list(decrypt_log(w.directory, key, sk.public_key()))


def test_replay_into_a_stdlib_handler(tmp_path: Path) -> None:
    _, records = _records(tmp_path)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s|%(name)s|%(veritee_leaf)s|%(message)s"))
    target = logging.getLogger("tenant-view")
    target.addHandler(handler)
    target.propagate = False
    target.setLevel(logging.WARNING)
    try:
        assert replay(records, target) == 2  # the INFO record is below the logger's level
    finally:
        target.removeHandler(handler)
    lines = out.getvalue().split("|")
    assert out.getvalue().startswith("WARNING|tenant-view.app.payments|1|retrying\nline two")
    assert "ERROR|tenant-view.app.payments|2|failed\nTraceback" in out.getvalue()
    assert "ValueError: declined" in out.getvalue() and len(lines) > 4
    rec = to_logging_record(records[0], run=3)
    assert (rec.levelno, rec.name, rec.getMessage()) == (logging.INFO, "workload.app.payments",
                                                          "paid 42")  # fmt: skip
    assert rec.veritee_run == 3 and rec.veritee_signed is True  # type: ignore[attr-defined]


def test_json_lines_export_is_the_same_shape(tmp_path: Path) -> None:
    w, records = _records(tmp_path)
    f = tenant_files(w, tmp_path)
    code, out, _ = cli_decrypt(w, f, "--json")
    assert code == 0
    assert [json.loads(x) for x in out.splitlines()] == [to_json(r) for r in records]
