"""House rules that hold by test, not by memory: the layers of the package (who may import whom),
optional parts that fail loudly, and a suite that stays off the network."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "veritee"

#: package -> packages of veritee it must never import. The flow runs evidence -> appraisal ->
#: service / keybroker / sdk -> cli (docs/architecture.md); nothing below looks up.
FORBIDDEN: dict[str, set[str]] = {
    "evidence": {"appraisal", "service", "sdk", "cli", "keybroker", "logs", "platforms"},
    "appraisal": {"service", "sdk", "cli", "keybroker", "logs", "platforms"},
    "collateral": {"appraisal", "service", "sdk", "cli", "keybroker", "logs"},
    "platforms": {"service", "sdk", "cli", "keybroker", "logs"},
    "keybroker": {"service", "sdk", "cli", "logs"},
    "logs": {"service", "sdk", "cli"},
    "sdk": {"service", "cli"},
    "service": {"sdk", "cli"},
    "refvalues": {"appraisal", "service", "sdk", "cli", "keybroker", "logs", "platforms"},
}

#: The verifying core is pure: bytes, trust and time in, a result out. No network, database or
#: web framework (the service and the CLI do the I/O around it).
PURE = {"evidence", "appraisal", "refvalues"}
IO_LIBRARIES = {
    "httpx",
    "sqlalchemy",
    "fastapi",
    "starlette",
    "uvicorn",
    "psycopg",
    "requests",
    "urllib",
}


def _imports(path: Path, root: Path = SRC) -> set[str]:
    """Absolute module names imported by one file of the package at ``root`` (relative imports
    resolved)."""
    package = ["veritee", *path.relative_to(root).with_suffix("").parts]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level]
                out.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                out.add(node.module)
    return out


def _package_imports(package: str, root: Path = SRC) -> list[tuple[str, str]]:
    return [
        (str(f.relative_to(root)), m)
        for f in sorted((root / package).rglob("*.py"))
        for m in _imports(f, root)
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_nothing_above_them(package: str) -> None:
    bad = [
        f"{where} imports {module}"
        for where, module in _package_imports(package)
        if module.startswith("veritee.") and module.split(".")[1] in FORBIDDEN[package]
    ]
    assert not bad, f"veritee.{package} reaches a layer above it:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", sorted(PURE))
def test_the_verifying_core_does_no_io(package: str) -> None:
    bad = [
        f"{where} imports {m}"
        for where, m in _package_imports(package)
        if m.split(".")[0] in IO_LIBRARIES
    ]
    assert not bad, f"veritee.{package} is pure (bytes, trust, time in; result out):\n" + "\n".join(
        bad
    )


def test_the_layer_test_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: an import of the service from an evidence module is found. (The
    probe lives in a copy's place under ``tmp_path``: written into the package, it changed the
    package's measurement while the service-evidence tests measured it on another worker.)"""
    (tmp_path / "evidence").mkdir()
    probe = tmp_path / "evidence" / "_probe_for_layer_test.py"
    probe.write_text("from veritee.service import app\nfrom ..sdk import trust\n")
    found = {m for _, m in _package_imports("evidence", root=tmp_path)}
    assert found == {"veritee.service", "veritee.sdk"}


def test_no_optional_import_is_swallowed() -> None:
    """A missing dependency fails loudly: no ``except ModuleNotFoundError/ImportError: continue``
    or ``pass`` that would silently drop a part (the KBS routes once vanished that way)."""
    bad = []
    for f in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ExceptHandler) or node.type is None:
                continue
            names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
            silent = all(isinstance(s, ast.Pass | ast.Continue) for s in node.body)
            if names & {"ModuleNotFoundError", "ImportError"} and silent:
                bad.append(f"{f.relative_to(SRC)}:{node.lineno}")
    assert not bad, "swallowed import errors: " + ", ".join(bad)


def test_a_router_that_cannot_be_imported_stops_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """create_app mounts every router or fails: a KBS router whose dependency is missing must
    not leave a service that silently lacks the KBS API."""
    import datetime as dt

    from veritee.domain import Domain
    from veritee.service import app as app_module
    from veritee.service.settings import Settings

    domain = Domain.create(tmp_path / "d", name="t", now=dt.datetime.now(dt.UTC))
    monkeypatch.setattr(
        app_module, "ROUTERS", [*app_module.ROUTERS, ("veritee.service._no_such_router", "router")]
    )
    with pytest.raises(ModuleNotFoundError, match="_no_such_router"):
        app_module.create_app(Settings(data_dir=domain.path))


def test_the_suite_stays_off_the_network() -> None:
    """tests/conftest.py refuses connections beyond loopback (TEST-NET-1 here, never routed)."""
    with socket.socket() as s, pytest.raises(OSError, match="tests stay off the network"):
        s.settimeout(1)
        s.connect(("192.0.2.1", 443))


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass


def test_importing_a_test_helper_leaves_logging_on() -> None:
    """A module the tests import must not switch logging off for the whole process (the bench
    drivers once did: every later test's log records were dropped)."""
    import logging

    assert logging.root.manager.disable == logging.NOTSET


def test_no_route_module_imports_another() -> None:
    """Routes stay thin edges: what two of them share lives in a module of its own (the release
    use case in service/release.py, the operator's views in service/operations.py)."""
    routes = [*sorted(SRC.glob("service/routes_*.py")), SRC / "service" / "console" / "routes.py"]
    names = {"veritee.service." + p.stem for p in routes if p.stem.startswith("routes_")}
    bad = [
        f"{p.relative_to(SRC)} imports {m}"
        for p in routes
        for m in _imports(p)
        if m in names
        or m == "veritee.service.console.routes"
        or (m == "veritee.service" and _imports_route_names(p))
    ]
    assert not bad, "\n".join(bad)


def _imports_route_names(path: Path) -> bool:
    """``from veritee.service import routes_x`` names a route module too."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "veritee.service":
            if any(a.name.startswith("routes_") for a in node.names):
                return True
    return False
