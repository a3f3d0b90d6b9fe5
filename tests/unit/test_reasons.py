"""The reason-code catalogue (veritee.reasons): every code written in src/ is in it, once, and the
docs table is the same catalogue."""

from __future__ import annotations

import ast
import functools
import pathlib
import re

import pytest

from veritee.reasons import FAMILIES, RENAMED, Code, canonical, is_known, markdown_table

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "veritee"

#: Calls whose first positional argument is a reason code.
_CODE_FIRST = {"Reason", "refuse", "warn"}
#: Functions with a ``code`` parameter that is not a reason code: the confidential logs' static
#: catalogue of numbered states (``VT-0100``, veritee.logs.catalogue) is another vocabulary.
_NOT_REASONS = {"lookup"}


def _code_params() -> dict[str, int]:
    """Functions defined in src/ with a positional parameter named ``code`` -> its index at a call."""
    out: dict[str, int] = {}
    for f in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                if "code" in names and node.name not in _NOT_REASONS:
                    i = names.index("code")
                    out[node.name] = i - 1 if names and names[0] in ("self", "cls") else i
    return out


def _template(node: ast.JoinedStr) -> str:
    return "".join(
        v.value if isinstance(v, ast.Constant) else "{x}"
        for v in node.values  # type: ignore[misc]
    )


@functools.cache
def _codes_in_src() -> list[tuple[str, str]]:
    """(code or f-string template, where) for every code written literally in src/."""
    params = _code_params()
    found: list[tuple[str, str]] = []

    def add(v: ast.expr, where: str) -> None:
        if isinstance(v, ast.Constant) and isinstance(v.value, str):
            found.append((v.value, where))
        elif isinstance(v, ast.JoinedStr):
            found.append(("f:" + _template(v), where))

    for f in sorted(SRC.rglob("*.py")):
        if "migrations" in f.parts:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            where = f"{f.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "code":
                        add(kw.value, where)
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
                if name in _CODE_FIRST and node.args:
                    add(node.args[0], where)
                elif name == "problem" and len(node.args) > 1:
                    add(node.args[1], where)
                elif name in params and len(node.args) > params[name]:
                    add(node.args[params[name]], where)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name) and t.id in ("code", "default_code"):
                        add(node.value, where)
                    elif isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        for target, value in zip(t.elts, node.value.elts, strict=False):
                            if isinstance(target, ast.Name) and target.id == "code":
                                add(value, where)
    return found


def test_the_scan_finds_the_codes_it_should() -> None:
    codes = {c for c, _ in _codes_in_src()}
    # one of each kind of site: code=, Reason(...), refuse(...), default_code, problem(),
    # helper(..., code), and `code, what = "...", ...`
    assert {"signature_invalid", "chip_id_masked", "platform_not_allowed", "malformed", "internal",
            "collateral_signature_invalid", "storage_conflict"} <= codes  # fmt: skip
    assert len(codes) > 150


def test_every_code_written_in_src_is_in_the_catalogue() -> None:
    families = [re.sub(r"\{[a-z_]+\}", "{x}", p) for p in FAMILIES]
    unknown = []
    for code, where in _codes_in_src():
        if code.startswith("f:"):
            if code[2:] not in families:
                unknown.append(f"{where}: f-string code {code[2:]!r} is not a registered family")
        elif not is_known(code):
            unknown.append(f"{where}: {code!r}")
    assert not unknown, "codes missing from veritee.reasons.Code:\n" + "\n".join(unknown)


def test_codes_are_snake_case_and_unique_and_have_a_meaning() -> None:
    values = [c.value for c in Code]
    assert len(values) == len(set(values))
    for c in Code:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", c.value), c
        assert c.meaning and c.meaning == c.meaning.strip(), c


def test_no_renamed_code_is_still_written() -> None:
    used = {c for c, _ in _codes_in_src()}
    assert not (used & set(RENAMED)), sorted(used & set(RENAMED))
    for old, new in RENAMED.items():
        assert old not in Code._value2member_map_
        assert canonical(old) == new.value
    assert canonical("signature_invalid") == "signature_invalid"


@pytest.mark.parametrize(
    "code", ["pcr7_not_allowed", "measurement_not_allowed", "rtmr2_not_allowed"]
)
def test_family_codes_are_known(code: str) -> None:
    assert is_known(code)


def test_unknown_codes_are_not_known() -> None:
    assert not is_known("bad_signature")
    assert not is_known("Signature_Invalid")
    assert not is_known("_not_allowed")


def test_the_docs_table_is_the_catalogue() -> None:
    doc = (ROOT / "docs" / "reason-codes.md").read_text()
    block = doc.split("-->\n", 1)[1].split("<!-- reason-codes:end -->")[0]
    assert block == markdown_table(), (
        "docs/reason-codes.md is out of date: python -m veritee.reasons"
    )


def test_the_changelog_lists_every_renamed_code() -> None:
    log = (ROOT / "CHANGELOG.md").read_text()
    missing = [old for old in RENAMED if f"`{old}`" not in log]
    assert not missing, missing
