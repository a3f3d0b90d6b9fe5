"""`veritee demo` runs end to end and shows what it promises."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from veritee.demo import run_demo


def test_demo_summary() -> None:
    out = io.StringIO()
    summary = run_demo(Console(file=out, width=120))
    assert summary["certified"] == ["alice", "bob"]
    assert summary["exchanged"][0] == "pay 42 to carol"
    assert summary["mallory"] == ["measurement_not_allowed"]
    assert summary["replay"] == "nonce_reused"
    assert summary["log"] == {"verified": True, "records": 3, "plaintext_on_host": False}
    assert summary["audit"]["ok"] is True
    text = out.getvalue()
    assert "audit chain intact" in text and "[measurement_not_allowed]" in text


def test_demo_command_exits_zero() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "veritee.cli", "demo"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "done in" in r.stdout
