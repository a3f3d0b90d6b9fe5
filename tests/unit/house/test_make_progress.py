"""`make demo` on a fresh machine says what it is doing while it installs (issue 16: it was
silent for 80 s): each step announces itself and pip lists what it collects and installs.
Checked with make's dry run (`make -n`) against a virtual environment that does not exist."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _dry_run(target: str, venv: Path) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), target, f"VENV={venv}"], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    return out.stdout.splitlines()


def test_make_demo_announces_each_install_step(tmp_path: Path) -> None:
    lines = _dry_run("demo", tmp_path / "venv")
    steps = [line for line in lines if line.startswith('echo "==> ')]
    assert [s.split("]")[0] for s in steps[:3]] == [
        'echo "==> [1/3',
        'echo "==> [2/3',
        'echo "==> [3/3',
    ]
    install = next(line for line in lines if "pip install" in line and "-e ." in line)
    assert "--quiet" not in install and "--progress-bar on" in install  # pip shows what it installs
    # each announcement comes before the step it announces, and the demo runs last
    assert lines.index(steps[0]) < next(i for i, line in enumerate(lines) if "-m venv" in line)
    assert lines.index(steps[2]) < lines.index(install)
    assert lines[-1].endswith("veritee demo")


def test_make_test_announces_its_install_steps(tmp_path: Path) -> None:
    lines = _dry_run("test", tmp_path / "venv")
    steps = [line for line in lines if line.startswith('echo "==> [') and "/4]" in line]
    assert len(steps) == 4


def test_bench_run_all_announces_each_benchmark(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """`make bench` runs for minutes: each script is announced with its place and the time so
    far, and a summary names the ones that failed. (Two tiny scripts stand in for the real ones,
    which take minutes; run_all itself runs them as subprocesses, as for the real ones.)"""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    assert spec is not None and spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    (tmp_path / "ok.py").write_text("print('figure: 42 ops/s')\n")
    (tmp_path / "bad.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    monkeypatch.setattr(run_all, "RUNS", [["ok.py"], ["bad.py", "--x"], ["ok.py"]])
    assert run_all.main() == 1
    out = capfd.readouterr().out
    assert "=== [1/3] ok.py" in out and "=== [2/3] bad.py --x" in out and "=== [3/3] ok.py" in out
    assert out.count("figure: 42 ops/s") == 2 and "elapsed)" in out
    assert "=== 2/3 benchmarks ran in" in out and "failed: bad.py" in out
