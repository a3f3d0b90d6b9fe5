"""The compiled checks of every TCB level (issue 15 item 2, cold verification): ``check_tcb_info``
and ``check_qe_identity`` first try a reader that accepts a subset of what the generic checks
accept and returns the same levels; on anything else the generic checks run. Every one-field
change of real TCB infos and QE identities (each value replaced by a value of another type or
range, or removed; lists emptied or given a duplicate) must come out exactly as the generic
checks alone make it: the same levels, or the same error."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from veritee.errors import MalformedError, VeriteeError
from veritee.evidence import dcap_tcb

_TV = Path("/work/shared/testvectors")
_SETS = [
    _TV / "tdx" / "dcapqvl_tdx_quote_v4_collateral.json",
    _TV / "tdx" / "dcapqvl_tdx_quote_v5_outdated_collateral.json",
    _TV / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json",
]
pytestmark = pytest.mark.skipif(not _TV.exists(), reason="test vectors not present")

_REPLACEMENTS: list[Any] = [
    None, True, False, -1, 0, 1, 2, 3, 255, 256, 65535, 65536, 2**32, 1.0, "", "zz", "00",
    "0000", "UpToDate", "Revoked", "Nonsense", "TDX", "SGX", "2025-01-01T00:00:00Z",
    "2025-01-01X00:00:00Z", [], ["x"], [1], {}, {"svn": 1},
]  # fmt: skip


def _paths(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*path, k))
    elif isinstance(doc, list):  # the first two elements and the last (the rest are alike)
        for i in sorted({0, 1, len(doc) - 1} & set(range(len(doc)))):
            yield from _paths(doc[i], (*path, i))


def _mutants(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    text = json.dumps(doc)
    for path in list(_paths(doc)):
        if not path:
            continue
        *head, last = path
        for value in [*_REPLACEMENTS, "delete", "duplicate", "empty"]:
            m = json.loads(text)
            parent = m
            for p in head:
                parent = parent[p]
            target = parent[last]
            if value == "delete":
                if isinstance(parent, list):
                    parent.pop(last)
                else:
                    del parent[last]
            elif value == "duplicate":
                if not isinstance(target, list) or not target:
                    continue
                target.append(copy.deepcopy(target[0]))
            elif value == "empty":
                if not isinstance(target, list | dict):
                    continue
                target.clear()
            else:
                parent[last] = copy.deepcopy(value)
            yield m


def _outcome(check: Callable[[dict[str, Any]], Any], doc: dict[str, Any]) -> Any:
    try:
        return ("ok", check(doc))
    except VeriteeError as e:
        return ("error", type(e).__name__, e.code, e.message)


def _generic(
    monkeypatch: pytest.MonkeyPatch, check: Callable[[dict[str, Any]], Any], doc: dict[str, Any]
) -> Any:
    with monkeypatch.context() as m:
        m.setattr(dcap_tcb, "_fast_tcb_info", lambda _doc: None)
        m.setattr(dcap_tcb, "_fast_qe_identity", lambda _doc: None)
        return _outcome(check, doc)


def _v2(info: dict[str, Any]) -> dict[str, Any]:
    """An SGX TCB info in version 2's layout (no id, components as sgxtcbcompNNsvn)."""
    out = copy.deepcopy(info)
    out["version"] = 2
    out.pop("id", None)
    for level in out["tcbLevels"]:
        tcb = level["tcb"]
        for i, c in enumerate(tcb.pop("sgxtcbcomponents"), 1):
            tcb[f"sgxtcbcomp{i:02d}svn"] = c["svn"]
    return out


def _docs(key: str) -> list[dict[str, Any]]:
    docs = [json.loads(json.loads(p.read_text())[key]) for p in _SETS]
    if key == "tcb_info":
        docs.append(_v2(docs[-1]))
    return docs


@pytest.mark.parametrize(
    ("key", "check"),
    [("tcb_info", dcap_tcb.check_tcb_info_levels), ("qe_identity", dcap_tcb.check_qe_identity)],
)
def test_every_one_field_change_comes_out_as_the_generic_checks_make_it(
    monkeypatch: pytest.MonkeyPatch, key: str, check: Callable[[dict[str, Any]], Any]
) -> None:
    fast_taken = 0
    for doc in _docs(key):
        assert _outcome(check, doc)[0] == "ok"
        for m in _mutants(doc):
            want = _generic(monkeypatch, check, m)
            assert _outcome(check, m) == want, m
            fast = dcap_tcb._fast_tcb_info if key == "tcb_info" else dcap_tcb._fast_qe_identity
            try:
                fast_taken += fast(m) is not None
            except Exception:
                pass
    assert fast_taken > 50  # the fast reader took the changes it may take (not all fell back)


def test_the_fast_readers_take_the_real_documents() -> None:
    for info in _docs("tcb_info"):
        assert dcap_tcb._fast_tcb_info(info) is not None
    for qe in _docs("qe_identity"):
        assert dcap_tcb._fast_qe_identity(qe) is not None


def test_the_module_levels_kept_are_the_levels_the_evaluation_reads() -> None:
    """Each TDX module identity's levels as the check returns them (fast and generic) are what
    the evaluation would order from the identity itself."""
    for info in _docs("tcb_info"):
        levels, modules = dcap_tcb.check_tcb_info_levels(info)
        assert levels == dcap_tcb.check_tcb_info(info)
        idents = info.get("tdxModuleIdentities", []) if info.get("id") == "TDX" else []
        assert len(modules) == len(idents)
        for ident, module in zip(idents, modules, strict=True):
            assert module == dcap_tcb._isvsvn_levels(ident, "x")


def test_collateral_times_read_as_before() -> None:
    from datetime import datetime

    for v in ["2025-06-19T10:16:03Z", "2025-06-19t10:16:03z", "2025-06-19 10:16:03.123456789Z",
              "2024-02-29T23:59:59Z", "2025-06-19T10:16:03+02:00", "2025-06-19T10:16:03.5-01:30"]:  # fmt: skip
        assert dcap_tcb.collateral_time(v, "f") == datetime.fromisoformat(
            v.upper().replace("Z", "+00:00")
        )
    for bad in ["2025-02-30T10:16:03Z", "2025-06-19T24:16:03Z", "2025-06-19X10:16:03Z", "x"]:
        with pytest.raises(MalformedError):
            dcap_tcb.collateral_time(bad, "f")
