"""What the simulated platform measures: the files the developer means, in a canonical order.

A hardware TEE measures what it loads itself; the simulated platform measures files on disk, and
this module says which and how. ``veritee measure`` and ``Trust(measure=...)`` both call
:func:`measure`, so they agree byte for byte.

What may be named (:func:`measured_files`; one item or a list):

- a **path**: a file, or a folder (walked recursively);
- a **module or package name** (``"myapp"``, ``"myapp.web"``), found as Python would import it:
  a package is its folder, a module its ``.py`` file;
- a **pyproject.toml**: the list in its ``[tool.veritee] measure`` (paths relative to the
  project's folder), or else the project itself: ``pyproject.toml``, the package named by
  ``[project] name`` (under ``src/`` or beside it) and the lock files present
  (:data:`LOCK_FILES`);
- a **lock file** or any other file: measured as a file.

Inside folders, bytecode and caches are skipped (:data:`SKIPPED_DIRS`, :data:`SKIPPED_SUFFIXES`),
so importing the code does not change its measurement. A file named explicitly is always
measured.

Formula, version 2 (:data:`FORMULA`)::

    manifest    = for each file, sorted by its relative path (UTF-8 bytes):
                      hex(SHA-256(content)) + "  " + relative path + "\\n"
    measurement = SHA-384("veritee-measure-v2\\n" + manifest)

The manifest has the format of ``sha256sum``. A file's relative path is taken from the folder
that holds the named item (``myapp/__init__.py`` for the package ``myapp``; ``app.py`` for a
file ``/srv/app.py``), or from the project's folder for a pyproject.toml, with ``/`` as
separator; where the code lives on disk does not count, its name does. ``veritee measure
--list`` prints the manifest. Version 1 (before issue 18: length and content of each file in the
order given, bytecode included) is :func:`measure_v1`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from veritee.errors import UsageError

__all__ = [
    "FORMULA",
    "LAUNCHERS",
    "LOCK_FILES",
    "SKIPPED_DIRS",
    "SKIPPED_SUFFIXES",
    "MeasureSpec",
    "MeasuredFile",
    "launcher_of",
    "manifest",
    "measure",
    "measure_v1",
    "measured_files",
]

#: The tag that versions the formula (module docstring).
FORMULA = b"veritee-measure-v2\n"
_V1_TAG = b"veritee-measure-v1"
#: Folders skipped inside measured folders: bytecode, tool caches, version control.
SKIPPED_DIRS = frozenset(
    {
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".tox",
        ".nox",
        ".git",
        ".hg",
        ".svn",
    }
)
#: File suffixes skipped inside measured folders: bytecode.
SKIPPED_SUFFIXES = (".pyc", ".pyo")
#: Lock files measured with a project's pyproject.toml when present beside it.
LOCK_FILES = ("uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock", "requirements.txt")
#: Programs that run someone else's code: measuring them measures every app the same.
LAUNCHERS = frozenset(
    {
        "flask",
        "gunicorn",
        "uvicorn",
        "hypercorn",
        "daphne",
        "waitress-serve",
        "celery",
        "pytest",
        "py.test",
        "streamlit",
        "ipython",
        "jupyter",
        "fastapi",
        "granian",
        "dramatiq",
        "rq",
    }
)

MeasureSpec = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]

_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
#: The lines of a console-script shim (pip, uv): imports, the ``__main__`` guard, ``sys.exit(f())``.
_SHIM_LINE = re.compile(
    r"(import [\w.]+|from [\w.]+ import [\w.]+( as \w+)?|if __name__ == ['\"]__main__['\"]:"
    r"|sys\.argv\[0\] = .*|sys\.exit\([\w.]+\(\)\))"
)


@dataclass(frozen=True)
class MeasuredFile:
    """One measured file: its ``relative`` path (``/``-separated) and where it is on disk."""

    relative: str
    path: Path


def _items(spec: MeasureSpec) -> list[str | os.PathLike[str]]:
    if isinstance(spec, str | os.PathLike):
        return [spec]
    return list(spec)


def _walk(folder: Path, base: Path) -> list[MeasuredFile]:
    out: list[MeasuredFile] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            if name.endswith(SKIPPED_SUFFIXES):
                continue
            p = Path(root) / name
            if p.is_file():
                out.append(MeasuredFile(p.relative_to(base).as_posix(), p))
    return out


def _path_item(path: Path, base: Path | None = None) -> list[MeasuredFile]:
    base = path.parent if base is None else base
    if path.is_dir():
        return _walk(path, base)
    if path.is_file():
        return [MeasuredFile(path.relative_to(base).as_posix(), path)]
    raise UsageError(f"cannot measure {path}: not a file or folder", code="measure_target_missing")


def _module_item(name: str) -> list[MeasuredFile]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UsageError(
            f"cannot measure {name!r}: no such file, folder or importable module",
            code="measure_target_missing",
        )
    if spec.submodule_search_locations:  # a package (namespace packages: every folder)
        out: list[MeasuredFile] = []
        for loc in spec.submodule_search_locations:
            folder = Path(loc)
            # The base keeps the whole dotted name: myapp/web/... for "myapp.web".
            base = folder
            for _ in name.split("."):
                base = base.parent
            out += _path_item(folder, base)
        return out
    if spec.origin and Path(spec.origin).is_file() and spec.origin.endswith(".py"):
        return [MeasuredFile(Path(spec.origin).name, Path(spec.origin))]
    raise UsageError(f"cannot measure {name!r}: it has no source file (built-in or compiled)",
                     code="measure_target_missing")  # fmt: skip


def _pyproject_item(path: Path) -> list[MeasuredFile]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(
            f"cannot measure {path}: not a TOML file ({e})", code="measure_target_missing"
        ) from None
    root = path.parent
    listed = doc.get("tool", {}).get("veritee", {}).get("measure")
    if listed is not None:
        if (
            not isinstance(listed, list)
            or not all(isinstance(x, str) for x in listed)
            or not listed
        ):
            raise UsageError(f"{path}: [tool.veritee] measure must be a list of paths",
                             code="measure_target_missing")  # fmt: skip
        out: list[MeasuredFile] = []
        for rel in listed:
            target = (root / rel).resolve()
            if not target.is_relative_to(root.resolve()):
                raise UsageError(f"{path}: [tool.veritee] measure names {rel!r}, outside the project",
                                 code="measure_target_missing")  # fmt: skip
            out += _path_item(root / rel, root)
        return out
    name = str(doc.get("project", {}).get("name", ""))
    package = re.sub(r"[-.]+", "_", name).lower()
    found = [d for d in (root / "src" / package, root / package, root / f"{package}.py", root / "src" / f"{package}.py")
             if package and d.exists()]  # fmt: skip
    if not found:
        raise UsageError(
            f"cannot measure {path}: no package {package or '(no [project] name)'!r} under src/ or "
            "beside it; list what to measure in [tool.veritee] measure = [...]",
            code="measure_target_missing",
        )
    out = _path_item(path, root) + _path_item(found[0], root)
    for lock in LOCK_FILES:
        if (root / lock).is_file():
            out += _path_item(root / lock, root)
    return out


def measured_files(spec: MeasureSpec) -> list[MeasuredFile]:
    """The files :func:`measure` hashes, sorted by relative path (module docstring).

    A ``str`` that is no existing path is taken as a module name (found as ``import`` would,
    which imports the parent packages of a dotted name, not the module itself). Raises :class:`UsageError`
    (``measure_target_missing``) for a name that is neither, ``nothing_measured`` when no file
    is left, ``measure_path_conflict`` when two different files have the same relative path.
    """
    found: list[MeasuredFile] = []
    for item in _items(spec):
        path = Path(item)
        if path.exists():
            if path.is_file() and path.name == "pyproject.toml":
                found += _pyproject_item(path)
            else:
                found += _path_item(path)
        elif isinstance(item, str) and _MODULE_NAME.fullmatch(item):
            found += _module_item(item)
        else:
            raise UsageError(
                f"cannot measure {item}: no such file or folder", code="measure_target_missing"
            )
    by_rel: dict[str, MeasuredFile] = {}
    for f in found:
        if "\n" in f.relative or "\r" in f.relative:
            raise UsageError(
                f"cannot measure {f.path!r}: a line break in its name",
                code="measure_target_missing",
            )
        seen = by_rel.get(f.relative)
        if seen is not None and seen.path.resolve() != f.path.resolve():
            raise UsageError(
                f"two measured files have the same relative path {f.relative!r}: {seen.path} and "
                f"{f.path}; name their folders instead",
                code="measure_path_conflict",
            )
        by_rel[f.relative] = f
    if not by_rel:
        raise UsageError("nothing to measure: no files given (or only bytecode and caches)",
                         code="nothing_measured")  # fmt: skip
    return [by_rel[k] for k in sorted(by_rel, key=lambda r: r.encode())]


def manifest(spec: MeasureSpec) -> str:
    """The manifest :func:`measure` hashes: ``sha256sum`` lines sorted by relative path."""
    lines = []
    for f in measured_files(spec):
        lines.append(f"{hashlib.sha256(f.path.read_bytes()).hexdigest()}  {f.relative}\n")
    return "".join(lines)


def measure(spec: MeasureSpec) -> str:
    """The simulated-platform measurement (SHA-384, hex) of ``spec``, formula version 2."""
    return hashlib.sha384(FORMULA + manifest(spec).encode()).hexdigest()


def measure_v1(paths: Iterable[str | os.PathLike[str]]) -> str:
    """Formula version 1 (until issue 18): SHA-384 over each file's length (8 bytes,
    big-endian) and contents, in the order given, folders recursively in sorted order, bytecode
    included. Kept to compare with policies written before version 2."""
    h = hashlib.sha384(_V1_TAG)
    count = 0
    for p in paths:
        path = Path(p)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            if not f.is_file():
                raise UsageError(f"cannot measure {f}: not a file", code="measure_target_missing")
            content = f.read_bytes()
            h.update(len(content).to_bytes(8, "big"))
            h.update(content)
            count += 1
    if count == 0:
        raise UsageError("nothing to measure: no files given", code="nothing_measured")
    return h.hexdigest()


def launcher_of(main_file: str | os.PathLike[str]) -> str | None:
    """The launcher ``main_file`` is, or ``None`` when it looks like the program itself.

    A launcher is a program that runs someone else's code, so measuring it measures every app
    the same: a known tool (:data:`LAUNCHERS`: ``flask``, ``gunicorn``, ``uvicorn``, ``pytest``
    ...), a console-script shim (a venv's ``bin/`` entry point: ``sys.exit(main())``), or a
    package's ``__main__.py`` (``python -m``: only that file would be measured, not the package).
    """
    path = Path(main_file)
    stem = path.name.removesuffix(".py").removesuffix(".exe").lower()
    if stem in LAUNCHERS:
        return stem
    if path.name == "__main__.py":
        return f"python -m {path.parent.name}"
    if path.parent.name in ("bin", "Scripts") and (
        (path.parent.parent / "pyvenv.cfg").is_file()
        or path.parent == Path(sys.prefix) / path.parent.name
    ):
        return f"console script {path.name}"
    return f"console script {path.name}" if _is_shim(path) else None


def _is_shim(path: Path) -> bool:
    try:
        text = path.read_bytes()[:4097].decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if len(text) > 4096:
        return False
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    return (
        any(ln.startswith("sys.exit(") for ln in lines)
        and any(ln.startswith("from ") for ln in lines)
        and all(_SHIM_LINE.fullmatch(ln) for ln in lines)
    )
