"""The EAR's JSON is ``json.dumps`` with its options, by an encoder kept for every token."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from tests.threads import differing_from_threads

from veritee import tokens

DOCS: list[Any] = [
    {},
    {"a": 1, "b": [1, 2.5, None, True], "c": {"d": 'é ü \u2028 \x00 "q" \\'}},
    {"eat_profile": "tag:github.com,2023:veraison/ear", "iat": 1, "submods": {"x": {"y": []}}},
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    [math.inf, -math.inf, math.nan],  # json.dumps writes these (allow_nan defaults to True)
    "a string \U0001f600",
]


@pytest.mark.parametrize("doc", DOCS)
def test_token_json_equals_json_dumps(doc: Any) -> None:
    assert tokens._json(doc) == json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def test_token_json_refuses_what_json_dumps_refuses() -> None:
    circular: list[Any] = []
    circular.append(circular)
    for bad in (circular, {"k": object()}, {(1, 2): "tuple key"}):
        with pytest.raises((TypeError, ValueError)) as kept:
            tokens._json(bad)
        with pytest.raises(type(kept.value)):
            json.dumps(bad, separators=(",", ":"), ensure_ascii=False)


def test_token_json_from_threads() -> None:
    doc = {"k": [{"n": i, "s": "x" * i} for i in range(50)]}
    want = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    assert not differing_from_threads(lambda: tokens._json(doc), want)
