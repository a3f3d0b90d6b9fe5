"""veritee._json.loads parses with a kept decoder and checks flat objects without a walk: the
same documents and the same refusals as ``json.loads`` with its hooks and the full walk."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.threads import differing_from_threads

from veritee import _json
from veritee.errors import MalformedError

DOCS = [
    b'{"evidence":"AAAA","nonce":"00ff","format":"simulated"}',
    b'{"a":1,"b":-2.5e3,"c":true,"d":null,"e":"\\u00e9\\ud83d\\ude00"}',
    b'{"a":{"b":[1,{"c":[]}]}}',
    b"[1,2,[3,[4]]]",
    b'"text"',
    b"123",
    b"{}",
    b"[]",
    '{"s": "é"}'.encode("utf-16"),
    '{"s": "é"}'.encode("utf-32-le"),
    '{"s": "é"}',
]
BAD = [
    b"",
    b"{",
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b"1" * 41,
    b'{"a":' + b"9" * 41 + b"}",
    b"\xef\xbb\xbf{}",  # json.loads drops a UTF-8 BOM from bytes
    "\ufeff{}",  # ... and refuses one in text
    b"\xff\xfe\x00",
    b'{"a":"\xff"}',
    b"[" * 70 + b"]" * 70,
    b'{"a":' * 70 + b"1" + b"}" * 70,
]


def _reference(raw: bytes | str) -> Any:
    doc = json.loads(raw, parse_int=_json._int, parse_constant=_json._constant)
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:  # the full walk
        node, depth = stack.pop()
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        )
        if children is None:
            continue
        if depth > _json.MAX_DEPTH:
            raise ValueError("too deep")
        stack.extend((c, depth + 1) for c in children)
    return doc


@pytest.mark.parametrize("raw", DOCS + BAD)
def test_loads_agrees_with_json_loads(raw: bytes | str) -> None:
    try:
        want = _reference(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        with pytest.raises(MalformedError):
            _json.loads(raw, what="body", limit=10_000)
        return
    assert _json.loads(raw, what="body", limit=10_000) == want


def test_a_flat_object_at_depth_zero_is_still_too_deep() -> None:
    with pytest.raises(MalformedError):
        _json.check_depth({"a": 1}, what="x", max_depth=0)
    _json.check_depth({"a": 1}, what="x", max_depth=1)
    with pytest.raises(MalformedError):
        _json.check_depth({"a": 1, "b": {"c": 1}}, what="x", max_depth=1)


def test_not_text_is_a_type_error_as_before() -> None:
    with pytest.raises(TypeError):
        _json.loads(memoryview(b"{}"), what="x", limit=10)  # type: ignore[arg-type]


def test_loads_from_threads() -> None:
    raw = json.dumps({f"k{i}": [i, {"v": "x" * i}] for i in range(40)}).encode()
    want = json.loads(raw)
    assert not differing_from_threads(
        lambda: _json.loads(raw, what="x", limit=len(raw)), want, calls=300
    )
