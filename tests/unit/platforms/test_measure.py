"""What the simulated platform measures (issue 18 item 4): the developer's package, project or
lock file, bytecode skipped, in a canonical order, the same from ``veritee measure`` and the SDK;
and a warning when the main program is a launcher."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from veritee.errors import UsageError
from veritee.platforms.measure import (
    FORMULA,
    launcher_of,
    manifest,
    measure,
    measure_v1,
    measured_files,
)
from veritee.sdk.trust import open_platform

SRC = Path(__file__).resolve().parents[3] / "src"


def _package(root: Path, name: str = "shopapp") -> Path:
    pkg = root / name
    (pkg / "web").mkdir(parents=True)
    (pkg / "__init__.py").write_text("VERSION = 1\n")
    (pkg / "core.py").write_text("def total(xs):\n    return sum(xs)\n")
    (pkg / "web" / "__init__.py").write_text("from shopapp.core import total\n")
    (pkg / "web" / "templates.txt").write_bytes(b"<h1>{{ shop }}</h1>\n")
    return pkg


def _env(*paths: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *map(str, paths)])}


def test_formula_is_the_documented_one(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    files = sorted((p.relative_to(tmp_path).as_posix(), p) for p in pkg.rglob("*") if p.is_file())
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n" for rel, p in files]
    expected = hashlib.sha384(b"veritee-measure-v2\n" + "".join(lines).encode()).hexdigest()
    assert FORMULA == b"veritee-measure-v2\n"
    assert manifest([pkg]) == "".join(lines)
    assert measure(pkg) == expected


def test_importing_the_package_does_not_change_its_measurement(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    before, before_v1 = measure(pkg), measure_v1([pkg])
    env = {k: v for k, v in _env(tmp_path).items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", "import shopapp.web"], cwd=tmp_path, check=True, env=env)
    assert list(pkg.rglob("*.pyc")), "the import wrote bytecode"
    (pkg / ".mypy_cache").mkdir()
    (pkg / ".mypy_cache" / "x.json").write_text("{}")
    assert measure(pkg) == before
    assert not any(
        "__pycache__" in f.relative or f.relative.endswith(".pyc") for f in measured_files(pkg)
    )
    assert measure_v1([pkg]) != before_v1  # the old formula's fault: bytecode counted


def test_order_is_canonical_and_location_does_not_count(tmp_path: Path) -> None:
    a, b = tmp_path / "one" / "a.py", tmp_path / "one" / "b.py"
    a.parent.mkdir()
    a.write_text("A = 1\n")
    b.write_text("B = 2\n")
    assert measure([a, b]) == measure([b, a]) == measure([b, a, a])
    moved = tmp_path / "elsewhere" / "deep"
    moved.mkdir(parents=True)
    shutil.copytree(_package(tmp_path / "here"), moved / "shopapp")
    assert measure(moved / "shopapp") == measure(tmp_path / "here" / "shopapp")
    # The name is measured: a renamed package or file is another program.
    shutil.copytree(moved / "shopapp", moved / "other")
    assert measure(moved / "other") != measure(moved / "shopapp")
    b.write_text("B = 3\n")
    assert measure([a, b]) != measure([a, tmp_path / "one" / "a.py"])


def test_module_name_package_and_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "proj"
    pkg = _package(proj / "src")
    monkeypatch.syspath_prepend(str(proj / "src"))
    assert measure("shopapp") == measure(pkg)
    assert [f.relative for f in measured_files("shopapp.web")] == [
        "shopapp/web/__init__.py", "shopapp/web/templates.txt"]  # fmt: skip
    assert measured_files("shopapp.core")[0].relative == "core.py"
    (proj / "pyproject.toml").write_text('[project]\nname = "shopapp"\nversion = "1"\n')
    (proj / "uv.lock").write_text("version = 1\n")
    rel = [f.relative for f in measured_files(proj / "pyproject.toml")]
    assert rel == ["pyproject.toml", "src/shopapp/__init__.py", "src/shopapp/core.py",
                   "src/shopapp/web/__init__.py", "src/shopapp/web/templates.txt", "uv.lock"]  # fmt: skip
    before = measure(proj / "pyproject.toml")
    (proj / "uv.lock").write_text("version = 1\n# a dependency moved\n")
    assert measure(proj / "pyproject.toml") != before
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "shopapp"\n[tool.veritee]\nmeasure = ["src/shopapp/core.py"]\n'
    )
    assert [f.relative for f in measured_files(proj / "pyproject.toml")] == ["src/shopapp/core.py"]
    (proj / "pyproject.toml").write_text('[tool.veritee]\nmeasure = ["../outside"]\n')
    with pytest.raises(UsageError) as e:
        measure(proj / "pyproject.toml")
    assert e.value.code == "measure_target_missing"


def test_bad_targets_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as e:
        measure("no_such_module_xyz")
    assert e.value.code == "measure_target_missing" and "no_such_module_xyz" in e.value.message
    with pytest.raises(UsageError) as e:
        measure(str(tmp_path / "missing.py"))
    assert e.value.code == "measure_target_missing"
    (tmp_path / "x" / "__pycache__").mkdir(parents=True)
    (tmp_path / "x" / "__pycache__" / "m.cpython-312.pyc").write_bytes(b"\0")
    with pytest.raises(UsageError) as e:
        measure(tmp_path / "x")
    assert e.value.code == "nothing_measured"
    for d in ("p", "q"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "app.py").write_text(d)
    with pytest.raises(UsageError) as e:
        measure([tmp_path / "p" / "app.py", tmp_path / "q" / "app.py"])
    assert e.value.code == "measure_path_conflict"


@pytest.mark.parametrize("target", ["shopapp", "shopapp.web", "pyproject.toml", "src/shopapp"])
def test_cli_and_sdk_agree_byte_for_byte(
    tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = tmp_path / "proj"
    _package(proj / "src")
    (proj / "pyproject.toml").write_text('[project]\nname = "shopapp"\n')
    (proj / "uv.lock").write_text("version = 1\n")
    cli = subprocess.run([sys.executable, "-m", "veritee.cli", "measure", target], cwd=proj,
                         env=_env(proj / "src"), capture_output=True, text=True, check=True)  # fmt: skip
    monkeypatch.chdir(proj)
    monkeypatch.syspath_prepend(str(proj / "src"))
    sdk = open_platform("simulated", measure=target, platform_dir=tmp_path / "plat").measurement
    assert cli.stdout == sdk + "\n"
    listed = subprocess.run([sys.executable, "-m", "veritee.cli", "measure", "--list", target], cwd=proj,
                            env=_env(proj / "src"), capture_output=True, text=True, check=True)  # fmt: skip
    *lines, last = listed.stdout.splitlines()
    assert last == sdk and all("  " in ln for ln in lines)


_SHIM = """#!/usr/bin/python3
# -*- coding: utf-8 -*-
import re
import sys
from shoplaunch import main
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(main())
"""

_STARTS = """import logging, os, sys
from pathlib import Path
from veritee.sdk.trust import open_platform
def main():
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    p = open_platform("simulated", profile=os.environ["PROFILE"], platform_dir=Path(os.environ["PLAT"]))
    print(p.measurement)
    return 0
"""


@pytest.mark.parametrize("profile", ["development", "production"])
def test_a_launcher_as_main_file_is_warned_about(tmp_path: Path, profile: str) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "shoplaunch.py").write_text(_STARTS)
    shim = venv / "bin" / "shop-serve"
    shim.write_text(_SHIM)
    pkg = tmp_path / "lib" / "shopmod"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("import sys\nfrom shoplaunch import main\nsys.exit(main())\n")
    (tmp_path / "app.py").write_text(
        "import sys\nfrom shoplaunch import main\n\ndef shop():\n    return 'open'\n\nsys.exit(main())\n"
    )
    env = {**_env(tmp_path / "lib"), "PROFILE": profile, "PLAT": str(tmp_path / "plat")}
    runs = {
        "shim": [sys.executable, str(shim)],
        "python -m": [sys.executable, "-m", "shopmod"],
        "script": [sys.executable, str(tmp_path / "app.py")],
    }
    out = {k: subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
           for k, cmd in runs.items()}  # fmt: skip
    for k in ("shim", "python -m"):
        assert "measured_file_is_launcher" in out[k].stderr, out[k].stderr
        if profile == "production":  # only the catalogue code reaches the host
            assert out[k].stderr.strip() == "WARNING measured_file_is_launcher"
        else:
            assert "measure=" in out[k].stderr
    assert "measured_file_is_launcher" not in out["script"].stderr
    assert out["script"].stdout.strip() == measure(tmp_path / "app.py")


def test_launcher_of_knows_the_usual_launchers(tmp_path: Path) -> None:
    for name in ("flask", "gunicorn", "uvicorn", "pytest"):
        assert launcher_of(f"/usr/local/bin/{name}") == name
    assert launcher_of("/srv/app/myapp/__main__.py") == "python -m myapp"
    app = tmp_path / "serve.py"
    app.write_text(
        "import sys\nfrom myapp import main\nmain()\nprint('started')\nsys.exit(main())\n"
    )
    assert launcher_of(app) is None
