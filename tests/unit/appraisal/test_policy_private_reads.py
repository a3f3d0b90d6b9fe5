"""A policy's digest and reference-value set names read from pydantic's private attributes'
dict are the values its own attribute access gives, for loaded, copied and rebuilt policies."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from typing import Any

import pytest

from veritee._codec import canonical_json
from veritee.appraisal import load_policy
from veritee.appraisal.policy import Policy

DOCS: list[dict[str, Any]] = [
    {"version": 1, "name": "a", "platforms": {"simulated": {"measurements": ["ab" * 48]}}},
    {
        "version": 1,
        "name": "é ü",
        "platforms": {"tdx": {"mrtd": {"refvalues": "set-1"}}, "simulated": {"allow_debug": True}},
    },
    {"version": 1, "name": "b", "platforms": {}, "profiles": ["production"]},
]


def _generic(p: Policy) -> tuple[str, frozenset[str]]:
    return p._digest, p._refvalue_sets  # pydantic's __getattr__


@pytest.mark.parametrize("doc", DOCS)
def test_private_reads_equal_attribute_reads(doc: dict[str, Any]) -> None:
    policy = load_policy(json.dumps(doc))
    want = hashlib.sha256(canonical_json(policy.to_json()).encode()).hexdigest()
    for p in (policy, policy.model_copy(), copy.deepcopy(policy), pickle.loads(pickle.dumps(policy)),
              Policy.model_validate(policy.to_json())):  # fmt: skip
        assert (p.digest, p.refvalue_sets()) == _generic(p)
        assert p.digest == want
    assert policy.refvalue_sets() == ({"set-1"} if "tdx" in doc["platforms"] else set())


def test_a_changed_policy_has_its_own_digest() -> None:
    one = load_policy(json.dumps(DOCS[0]))
    other = load_policy(json.dumps(DOCS[0] | {"name": "a2"}))
    assert one.digest != other.digest
    assert (one.digest, other.digest) == (_generic(one)[0], _generic(other)[0])
