"""No test module imports another test module (``test_*.py``): what tests share lives in
``tests/fakes/`` (documented fakes), a ``conftest.py`` or a helper module (``tests/pgutil.py``,
``tests/unit/logs/_logs_helpers.py``, ...), where the next person finds it by looking, not by
reading other people's tests. Checked over ``tests/`` and ``bench/`` by parsing each file's
import statements (a module named in a string, e.g. a subprocess's program, is not an import)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("tests", "bench")


def _is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].startswith("test_")


def _module_of(path: Path) -> list[str]:
    return list(path.relative_to(ROOT).with_suffix("").parts)


def imported_test_modules(source: str, path: Path) -> list[str]:
    """The test modules ``source`` (the text of ``path``) imports: ``import tests.x.test_y``,
    ``from tests.x.test_y import ...``, ``from tests.x import test_y`` and relative forms."""
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _module_of(path)[: -node.level]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if _is_test_module(module):
                out.append(module)
            else:
                out += [f"{module}.{a.name}" for a in node.names if _is_test_module(a.name)]
    return out


def test_no_test_module_imports_another() -> None:
    found: list[str] = []
    files = [f for package in PACKAGES for f in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 100, "the walk found the suite"
    for f in files:
        for module in imported_test_modules(f.read_text(), f):
            found.append(f"{f.relative_to(ROOT)} imports {module}")
    assert not found, "move what is shared into tests/fakes/ (or a helper):\n" + "\n".join(found)


def test_the_check_sees_each_form_of_import() -> None:
    here = ROOT / "tests" / "unit" / "evidence" / "test_example.py"
    source = "\n".join([
        "import tests.integration.test_subprocess_service",
        "from tests.unit.evidence.test_tpm import _encode",
        "from tests.unit.evidence import test_dcap_synthetic as dcap_fake",
        "from .test_sev_snp_chain import make_chain",
        "from . import test_ccel",
        "from tests.fakes.intel import build",
        "from tests.service.conftest import Env",
        "from tests.unit.logs._logs_helpers import open_log",
        "import pytest",
        "program = 'from tests.unit.sdk.test_sdk_confidential import _trust'",
    ])  # fmt: skip
    assert imported_test_modules(source, here) == [
        "tests.integration.test_subprocess_service",
        "tests.unit.evidence.test_tpm",
        "tests.unit.evidence.test_dcap_synthetic",
        "tests.unit.evidence.test_sev_snp_chain",
        "tests.unit.evidence.test_ccel",
    ]
