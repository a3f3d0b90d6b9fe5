"""``Trust`` in staging/production contains what reaches the host (issue 9, item 3), and puts
everything back when closed. The end-to-end scan of a real workload process is
``tests/integration/test_production_host_output.py``."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest
from tests.unit.sdk.sdk_pki import TestCA

from veritee.sdk.trust import Trust

M = "ab" * 48


def _trust(tmp_path: Path, profile: str) -> Trust:
    return Trust("https://certifier.invalid:8400", TestCA().cert, platform="simulated",
                 store=tmp_path / "store", platform_dir=tmp_path / "platform", measurement=M,
                 profile=profile)  # fmt: skip


def test_sdk_loggers_reach_the_log_and_stderr_gets_a_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks = (sys.excepthook, threading.excepthook)
    before = [(lg.propagate, lg.level, list(lg.handlers))
              for lg in (logging.getLogger("veritee"), logging.getLogger())]  # fmt: skip
    trust = _trust(tmp_path, "production")
    try:
        logging.getLogger("veritee.sdk.channel").warning("refused 10.1.2.3:4455 hush-7f2a")
        logging.getLogger("app.hush-7f2a").error("boom hush-7f2a")
        err = capsys.readouterr().err
        assert "hush-7f2a" not in err and "10.1.2.3" not in err
        assert "veritee: VT-0201 application warning" in err
        assert "veritee: VT-0200 application error" in err
        assert trust.workload_log.handler.pending == 2  # held (sealed) until certification
        assert sys.excepthook is not hooks[0]
    finally:
        trust.close()
    assert (sys.excepthook, threading.excepthook) == hooks
    after = [(lg.propagate, lg.level, list(lg.handlers))
             for lg in (logging.getLogger("veritee"), logging.getLogger())]  # fmt: skip
    assert after == before


def test_development_leaves_logging_alone(tmp_path: Path) -> None:
    hooks = (sys.excepthook, threading.excepthook)
    trust = _trust(tmp_path, "development")
    try:
        assert (sys.excepthook, threading.excepthook) == hooks
        assert logging.getLogger("veritee").propagate
    finally:
        trust.close()


def test_capture_logging_routes_the_apps_loggers_and_uncaught_exceptions_in_development(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks = (sys.excepthook, threading.excepthook)
    trust = _trust(tmp_path, "development")
    try:
        trust.capture_logging()
        trust.capture_logging()  # a second call changes nothing
        logging.getLogger("app.orders").warning("order 17 stored")
        t = threading.Thread(target=lambda: 1 / 0)
        t.start()
        t.join()
        err = capsys.readouterr().err
        # development: the log is plaintext on stderr, through the log's handler
        assert "WARNING app.orders: order 17 stored" in err
        assert "ERROR veritee.uncaught: uncaught exception" in err and "ZeroDivisionError" in err
        assert trust.workload_log.handler in logging.getLogger().handlers
    finally:
        trust.close()
    assert (sys.excepthook, threading.excepthook) == hooks
    assert trust.workload_log.handler not in logging.getLogger().handlers


def test_capture_logging_in_production_keeps_the_routing_trust_set_up(tmp_path: Path) -> None:
    trust = _trust(tmp_path, "production")
    try:
        contained = trust._containment
        assert contained is not None
        trust.capture_logging()
        assert trust._containment is contained
    finally:
        trust.close()


@pytest.mark.parametrize("closing", ["with", "finally"])
def test_an_exception_leaving_with_trust_reaches_the_log_not_the_host(
    tmp_path: Path, closing: str
) -> None:
    """``with Trust(...)`` in production, and an exception leaves the block uncaught: ``close()``
    has put the interpreter's hook back by the time Python prints it, so its text (and
    traceback) reached the host's stderr. It goes into the log before closing, and the host
    gets its catalogue code only. The same with ``trust.close()`` in a ``finally:`` block."""
    import subprocess
    import textwrap

    root = Path(__file__).resolve().parents[3]
    program = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from tests.unit.sdk.test_sdk_confidential import _trust
        trust = _trust(Path({str(tmp_path)!r}), "production")
        if {closing!r} == "with":
            with trust:
                raise RuntimeError("hush-9c1e")
        try:
            raise RuntimeError("hush-9c1e")
        finally:
            trust.close()
    """)
    res = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                         cwd=root, env={"PYTHONPATH": f"{root}:{root / 'src'}", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert res.returncode == 1
    assert "hush-9c1e" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert "veritee: VT-0000 internal error" in res.stderr
    held = list((tmp_path / "store" / "logs").rglob("pending*.sealed"))
    assert held and all(b"hush-9c1e" not in p.read_bytes() for p in held)  # sealed, not plain
