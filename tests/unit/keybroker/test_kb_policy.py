"""Release policy grammar: strict parsing, deny by default, every reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from veritee.errors import MalformedError, OversizedError, PolicyError
from veritee.evidence.claims import Reason
from veritee.keybroker import policy as pol
from veritee.keybroker.policy import dry_run, evaluate, parse_policy

MEAS = "ab" * 48
CLAIMS: dict[str, Any] = {
    "platform": "simulated",
    "measurement": MEAS,
    "debug": False,
    "tcb_status": None,
    "reported_tcb": {"snp": 9, "microcode": 115},
    "profile": "production",
}


def _policy(doc: dict[str, Any]) -> pol.ReleasePolicy:
    return parse_policy(json.dumps(doc))


def test_public_surface() -> None:
    for name in pol.__all__:
        assert hasattr(pol, name), name


def test_allow_when_all_hold() -> None:
    p = _policy(
        {
            "version": 1,
            "allOf": [
                {"claim": "platform", "equals": "simulated"},
                {"claim": "measurement", "in": [MEAS.upper(), "cd" * 48]},
                {"claim": "debug", "equals": False},
                {"claim": "reported_tcb.snp", ">=": 8},
                {"claim": "reported_tcb.microcode", "<": 200},
                {"claim": "tcb_status", "exists": True},
                {"claim": "nonexistent", "exists": False},
                {"claim": "profile", "notEquals": "development"},
            ],
        }
    )
    d = evaluate(p, CLAIMS)
    assert d.allowed and d.reasons == ()


def test_deny_lists_every_failing_leaf_with_path() -> None:
    p = _policy(
        {
            "allOf": [
                {"claim": "measurement", "equals": "cd" * 48},
                {"claim": "debug", "equals": True},
                {"claim": "reported_tcb.snp", ">": 9},
                {"claim": "missing.claim", "equals": 1},
            ]
        }
    )
    d = evaluate(p, CLAIMS)
    assert not d.allowed
    assert [r.code for r in d.reasons] == [
        "release_claim_mismatch",
        "release_claim_mismatch",
        "release_claim_mismatch",
        "release_claim_missing",
    ]
    assert "$.allOf[0]" in d.reasons[0].message and "measurement" in d.reasons[0].message
    # a long claim value is shown only as a short summary
    assert MEAS not in d.reasons[0].message and "96 chars" in d.reasons[0].message
    assert "$.allOf[3]" in d.reasons[3].message


def test_any_of_nesting() -> None:
    p = _policy(
        {
            "anyOf": [
                {
                    "allOf": [
                        {"claim": "platform", "equals": "tdx"},
                        {"claim": "debug", "equals": False},
                    ]
                },
                {"claim": "measurement", "equals": MEAS},
            ]
        }
    )
    assert evaluate(p, CLAIMS).allowed
    d = evaluate(p, {**CLAIMS, "measurement": "00" * 48})
    assert not d.allowed
    assert d.reasons[-1].code == "release_no_alternative"
    assert any("anyOf[0].allOf[0]" in r.message for r in d.reasons)
    assert any("anyOf[1]" in r.message for r in d.reasons)


def test_type_strictness() -> None:
    p = _policy({"allOf": [{"claim": "debug", "equals": 0}]})
    assert not evaluate(p, CLAIMS).allowed  # False is not 0
    p = _policy({"allOf": [{"claim": "platform", ">=": 1}]})
    d = evaluate(p, CLAIMS)
    assert not d.allowed and d.reasons[0].code == "release_claim_type"
    p = _policy({"allOf": [{"claim": "tcb_status", "equals": None}]})
    assert evaluate(p, CLAIMS).allowed


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"anyOf": []}, "$.anyOf"),
        ({"allOf": []}, "$.allOf"),
        ({"anyOf": [{"allOf": []}]}, "$.anyOf[0].allOf"),
        ({}, "$"),
        ({"anyOf": [{"claim": "x", "equals": 1}], "allOf": [{"claim": "x", "equals": 1}]}, "$"),
        ({"anyOf": [{"claim": "x", "equal": 1}]}, "$.anyOf[0]"),
        ({"anyOf": [{"claim": "x", "equals": 1, "in": [1]}]}, "$.anyOf[0]"),
        ({"anyOf": [{"claim": "x"}]}, "$.anyOf[0]"),
        ({"anyOf": [{"claim": "x", "in": []}]}, "$.anyOf[0].in"),
        ({"anyOf": [{"claim": "x", ">=": "5"}]}, "$.anyOf[0].>="),
        ({"anyOf": [{"claim": "x", ">=": True}]}, "$.anyOf[0].>="),
        ({"anyOf": [{"claim": "x", "exists": "yes"}]}, "$.anyOf[0].exists"),
        ({"anyOf": [{"claim": "x", "equals": {"a": 1}}]}, "$.anyOf[0].equals"),
        ({"anyOf": [{"claim": "", "equals": 1}]}, "$.anyOf[0].claim"),
        ({"anyOf": [{"claim": "a..b", "equals": 1}]}, "$.anyOf[0].claim"),
        ({"anyOf": [{"nope": 1}]}, "$.anyOf[0]"),
        ({"anyOf": [{"anyOf": [{"claim": "x", "exists": True}], "claim": "y"}]}, "$.anyOf[0]"),
        ({"anyOf": "all"}, "$.anyOf"),
        ({"anyOf": [[]]}, "$.anyOf[0]"),
        ({"version": 2, "anyOf": [{"claim": "x", "exists": True}]}, "$.version"),
        ({"authority": "x", "anyOf": [{"claim": "x", "exists": True}]}, "$"),
    ],
)
def test_invalid_policies_name_the_path(doc: dict[str, Any], where: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(doc)
    assert f"release policy {where}:" in str(e.value)
    assert e.value.code == "release_policy_invalid"


def test_not_json_oversized_and_too_deep() -> None:
    with pytest.raises(MalformedError):
        parse_policy(b"{not json")
    with pytest.raises(PolicyError):
        parse_policy(b"[1, 2]")
    with pytest.raises(OversizedError):
        parse_policy(b" " * (pol.MAX_POLICY_BYTES + 1))
    node: dict[str, Any] = {"claim": "x", "exists": True}
    for _ in range(pol.MAX_DEPTH + 2):
        node = {"allOf": [node]}
    with pytest.raises(PolicyError, match="deeper"):
        parse_policy(node)


def test_roundtrip_to_json() -> None:
    doc = {
        "version": 1,
        "description": "pin analytics",
        "anyOf": [{"allOf": [{"claim": "m", "in": ["a", "b"]}, {"claim": "n", "<=": 3}]}],
    }
    p = parse_policy(doc)
    assert p.to_json() == doc
    assert parse_policy(p.to_json()) == p


def test_dry_run_includes_appraisal() -> None:
    p = {"allOf": [{"claim": "platform", "equals": "tdx"}]}
    d = dry_run(p, CLAIMS)
    assert not d.allowed and len(d.reasons) == 1
    ok = {"allOf": [{"claim": "platform", "equals": "simulated"}]}
    assert dry_run(ok, CLAIMS).allowed
    d = dry_run(ok, CLAIMS, appraisal_accepted=False, appraisal_reasons=[Reason("debug", "x")])
    assert not d.allowed
    assert [r.code for r in d.reasons] == ["appraisal_not_accepted", "debug"]
    assert d.to_json()["allowed"] is False


def test_list_claims_by_index() -> None:
    p = _policy({"allOf": [{"claim": "pcrs.1", "equals": "bb"}]})
    assert evaluate(p, {"pcrs": ["aa", "bb"]}).allowed
    assert not evaluate(p, {"pcrs": ["aa"]}).allowed
