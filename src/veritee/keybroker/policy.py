"""Release policies: who may receive a secret, in the style of Azure Secure Key Release.

A release policy is JSON evaluated over veritee's normalized claims, *after* the domain's
appraisal accepted the evidence (deny by default, both must allow)::

    {
      "version": 1,
      "anyOf": [
        {"allOf": [
          {"claim": "platform", "equals": "simulated"},
          {"claim": "measurement", "in": ["ab12...", "cd34..."]},
          {"claim": "debug", "equals": false}
        ]},
        {"claim": "reported_tcb.snp", ">=": 8}
      ]
    }

Grammar (strict; an unknown key is an error, so a typo never loosens a policy):

* top level: ``version`` (1, optional), ``description`` (string, optional), and exactly one of
  ``anyOf`` / ``allOf``;
* a node is ``{"anyOf": [node, ...]}``, ``{"allOf": [node, ...]}`` or a leaf;
* a leaf is ``{"claim": "dotted.path", OP: value}`` with exactly one OP among ``equals``,
  ``notEquals``, ``in`` (non-empty list), ``>=``, ``<=``, ``>``, ``<`` (numbers) and
  ``exists`` (bool).

An empty ``anyOf``/``allOf`` is a :class:`~veritee.errors.PolicyError`, never "allow".
A missing claim fails every leaf except ``{"exists": false}``. Hex strings compare without regard
to case. :func:`evaluate` returns a :class:`ReleaseDecision` with every failing leaf as a reason;
claim values appear in reasons only as short summaries.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from veritee.errors import MalformedError, OversizedError, PolicyError
from veritee.evidence.claims import Reason

__all__ = [
    "MAX_POLICY_BYTES",
    "OPERATORS",
    "Group",
    "Leaf",
    "ReleaseDecision",
    "ReleasePolicy",
    "check_claims_known",
    "dry_run",
    "evaluate",
    "parse_policy",
    "summarize",
]

MAX_POLICY_BYTES = 64 * 1024
MAX_DEPTH = 8
MAX_NODES = 512
OPERATORS = ("equals", "notEquals", "in", ">=", "<=", ">", "<", "exists")
_ORDER_OPS = (">=", "<=", ">", "<")
_CLAIM_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,7}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Leaf:
    """One test of one claim. ``path`` says where it sits in the policy (for reasons)."""

    path: str
    claim: str
    op: str
    value: Any


@dataclass(frozen=True)
class Group:
    path: str
    kind: Literal["anyOf", "allOf"]
    children: tuple[Group | Leaf, ...]


@dataclass(frozen=True)
class ReleasePolicy:
    root: Group
    description: str | None = None
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        if self.description is not None:
            out["description"] = self.description
        out.update(_node_json(self.root))
        return out


@dataclass(frozen=True)
class ReleaseDecision:
    """``allowed`` only when the policy matched; ``reasons`` lists every failing leaf."""

    allowed: bool
    reasons: tuple[Reason, ...]

    def to_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "reasons": [r.to_json() for r in self.reasons]}


# --- parsing -------------------------------------------------------------------------------


def parse_policy(source: bytes | str | Mapping[str, Any]) -> ReleasePolicy:
    """Parse and validate a release policy; every error names the offending path."""
    if isinstance(source, bytes | str):
        raw = source.encode("utf-8") if isinstance(source, str) else source
        if len(raw) > MAX_POLICY_BYTES:
            raise OversizedError(
                f"release policy is {len(raw)} bytes, the limit is {MAX_POLICY_BYTES}",
                field="policy",
            )
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MalformedError(f"release policy is not JSON: {e}", field="policy") from None
    else:
        doc = source
    if not isinstance(doc, Mapping):
        raise PolicyError("release policy must be a JSON object", code="release_policy_invalid")
    allowed = {"version", "description", "anyOf", "allOf"}
    _no_unknown(doc, allowed, "$")
    version = doc.get("version", 1)
    if version not in (1, "1", "1.0", "1.0.0") or isinstance(version, bool):
        raise _err("$.version", f"unsupported version {version!r} (use 1)")
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        raise _err("$.description", "must be a string")
    kinds = [k for k in ("anyOf", "allOf") if k in doc]
    if len(kinds) != 1:
        raise _err("$", "a release policy needs exactly one of anyOf / allOf at the top")
    counter = [0]
    root = _parse_node({kinds[0]: doc[kinds[0]]}, "$", 0, counter)
    assert isinstance(root, Group)
    return ReleasePolicy(root=root, description=description)


def _leaves(node: Group | Leaf) -> list[Leaf]:
    if isinstance(node, Leaf):
        return [node]
    return [leaf for child in node.children for leaf in _leaves(child)]


def check_claims_known(policy: ReleasePolicy) -> None:
    """Refuse (``release_claim_unknown``) a policy naming a claim no verifier emits (the
    catalogue :mod:`veritee.evidence.catalogue`): such a leaf never holds, so the policy would
    release nothing, silently. Checked when a policy is stored, not when a stored one is read."""
    import difflib

    from veritee.evidence.catalogue import known_claims, unknown_claims

    leaves = _leaves(policy.root)
    unknown = unknown_claims([leaf.claim for leaf in leaves])
    if not unknown:
        return
    known = sorted(known_claims())
    parts = []
    for claim in unknown:
        where = next(leaf.path for leaf in leaves if leaf.claim == claim)
        close = difflib.get_close_matches(claim.split(".", 1)[0], known, n=1)
        parts.append(f"{where}: claim {claim!r} is emitted by no verifier"
                     + (f" (did you mean {close[0]!r}?)" if close else ""))  # fmt: skip
    raise PolicyError(f"release policy {'; '.join(parts)}. Known claims: {', '.join(known)}",
                      code="release_claim_unknown")  # fmt: skip


def _err(path: str, message: str) -> PolicyError:
    return PolicyError(f"release policy {path}: {message}", code="release_policy_invalid")


def _no_unknown(node: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(str(k) for k in node if k not in allowed)
    if unknown:
        raise _err(path, f"unknown key(s) {', '.join(unknown)}")


def _parse_node(node: Any, path: str, depth: int, counter: list[int]) -> Group | Leaf:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise _err(path, f"more than {MAX_NODES} nodes")
    if depth > MAX_DEPTH:
        raise _err(path, f"nested deeper than {MAX_DEPTH}")
    if not isinstance(node, Mapping):
        raise _err(path, "each node must be an object")
    groups = [k for k in ("anyOf", "allOf") if k in node]
    if groups:
        if len(node) != 1:
            raise _err(path, "a group node holds only anyOf or allOf, nothing else")
        kind: Literal["anyOf", "allOf"] = "anyOf" if groups[0] == "anyOf" else "allOf"
        items = node[kind]
        here = f"{path}.{kind}"
        if not isinstance(items, list):
            raise _err(here, "must be a list")
        if not items:
            raise _err(here, "is empty; an empty group would decide nothing (refused)")
        children = tuple(
            _parse_node(child, f"{here}[{i}]", depth + 1, counter) for i, child in enumerate(items)
        )
        return Group(path=here, kind=kind, children=children)
    return _parse_leaf(node, path)


def _parse_leaf(node: Mapping[str, Any], path: str) -> Leaf:
    if "claim" not in node:
        raise _err(path, "a leaf needs 'claim' (or the node needs anyOf/allOf)")
    _no_unknown(node, {"claim", *OPERATORS}, path)
    claim = node["claim"]
    if not isinstance(claim, str) or not _CLAIM_PATH.match(claim):
        raise _err(f"{path}.claim", "must be a dotted claim name like 'reported_tcb.snp'")
    ops = [k for k in OPERATORS if k in node]
    if len(ops) != 1:
        raise _err(path, f"a leaf needs exactly one operator of {', '.join(OPERATORS)}")
    op = ops[0]
    value = node[op]
    where = f"{path}.{op}"
    if op in ("equals", "notEquals"):
        _check_scalar(value, where)
    elif op == "in":
        if not isinstance(value, list) or not value:
            raise _err(where, "must be a non-empty list")
        for i, v in enumerate(value):
            _check_scalar(v, f"{where}[{i}]")
        value = tuple(value)
    elif op in _ORDER_OPS:
        if not _is_number(value):
            raise _err(where, "must be a number")
    elif op == "exists" and not isinstance(value, bool):
        raise _err(where, "must be true or false")
    return Leaf(path=path, claim=claim, op=op, value=value)


def _check_scalar(value: Any, where: str) -> None:
    if not (value is None or isinstance(value, str | bool | int | float)):
        raise _err(where, "must be a string, number, boolean or null")
    if isinstance(value, float) and not math.isfinite(value):
        raise _err(where, "must be finite")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _node_json(node: Group | Leaf) -> dict[str, Any]:
    if isinstance(node, Group):
        return {node.kind: [_node_json(c) for c in node.children]}
    value = list(node.value) if isinstance(node.value, tuple) else node.value
    return {"claim": node.claim, node.op: value}


# --- evaluation ----------------------------------------------------------------------------

_MISSING = object()


def _lookup(claims: Mapping[str, Any], dotted: str) -> Any:
    if dotted in claims:  # a flat key containing dots wins
        return claims[dotted]
    cur: Any = claims
    for part in dotted.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, Sequence) and not isinstance(cur, str) and part.isdigit():
            idx = int(part)
            if idx >= len(cur):
                return _MISSING
            cur = cur[idx]
        else:
            return _MISSING
    return cur


def summarize(value: Any) -> str:
    """A short, safe rendering of a claim value for a reason message."""
    if value is _MISSING:
        return "absent"
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, str):
        if len(value) <= 24:
            return json.dumps(value)
        return f'"{value[:16]}..." ({len(value)} chars)'
    if isinstance(value, Mapping):
        return f"an object with {len(value)} keys"
    if isinstance(value, Sequence):
        return f"a list of {len(value)}"
    return type(value).__name__


def _scalar_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, str) and isinstance(b, str):
        if len(a) == len(b) and _HEX.match(a) and _HEX.match(b):
            return a.lower() == b.lower()
        return a == b
    if a is None or b is None:
        return a is None and b is None
    return False


def _check_leaf(leaf: Leaf, claims: Mapping[str, Any]) -> Reason | None:
    actual = _lookup(claims, leaf.claim)
    shown = summarize(actual)
    if leaf.op == "exists":
        present = actual is not _MISSING
        if present == leaf.value:
            return None
        want = "present" if leaf.value else "absent"
        return Reason(
            "release_claim_mismatch",
            f"{leaf.path}: claim {leaf.claim} must be {want}, it is {shown}",
        )
    if actual is _MISSING:
        return Reason("release_claim_missing", f"{leaf.path}: claim {leaf.claim} is absent")
    if leaf.op == "equals":
        ok = _scalar_equal(actual, leaf.value)
        want = f"equal {summarize(leaf.value)}"
    elif leaf.op == "notEquals":
        ok = not _scalar_equal(actual, leaf.value)
        want = f"differ from {summarize(leaf.value)}"
    elif leaf.op == "in":
        ok = any(_scalar_equal(actual, v) for v in leaf.value)
        want = f"be one of {len(leaf.value)} listed values"
    else:
        if not _is_number(actual):
            return Reason(
                "release_claim_type",
                f"{leaf.path}: claim {leaf.claim} must be a number for {leaf.op}, it is {shown}",
            )
        ok = {
            ">=": actual >= leaf.value,
            "<=": actual <= leaf.value,
            ">": actual > leaf.value,
            "<": actual < leaf.value,
        }[leaf.op]
        want = f"be {leaf.op} {summarize(leaf.value)}"
    if ok:
        return None
    return Reason(
        "release_claim_mismatch", f"{leaf.path}: claim {leaf.claim} must {want}, it is {shown}"
    )


def _eval(node: Group | Leaf, claims: Mapping[str, Any]) -> tuple[bool, list[Reason]]:
    if isinstance(node, Leaf):
        reason = _check_leaf(node, claims)
        return (reason is None, [] if reason is None else [reason])
    results = [_eval(child, claims) for child in node.children]
    if node.kind == "allOf":
        failures = [r for ok, rs in results if not ok for r in rs]
        return (not failures, failures)
    if any(ok for ok, _ in results):
        return (True, [])
    reasons = [r for _, rs in results for r in rs]
    reasons.append(
        Reason("release_no_alternative", f"{node.path}: none of {len(results)} alternatives held")
    )
    return (False, reasons)


def evaluate(policy: ReleasePolicy, claims: Mapping[str, Any]) -> ReleaseDecision:
    """Hold ``claims`` against ``policy``. Deny unless the whole policy holds."""
    try:
        ok, reasons = _eval(policy.root, claims)
    except Exception as e:  # fail closed: an evaluation fault is a denial, not an allow
        return ReleaseDecision(
            False,
            (Reason("release_policy_fault", f"policy evaluation failed: {type(e).__name__}"),),
        )
    if ok:
        return ReleaseDecision(True, ())
    return ReleaseDecision(False, tuple(reasons))


def dry_run(
    policy: ReleasePolicy | bytes | str | Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    appraisal_accepted: bool = True,
    appraisal_reasons: Sequence[Reason] = (),
) -> ReleaseDecision:
    """What a release would decide for stored ``claims``, without releasing anything.

    The domain's appraisal comes first: if it did not accept the evidence, the release is denied
    with the appraisal's reasons, plus the release policy's own reasons (so an operator sees all).
    """
    parsed = policy if isinstance(policy, ReleasePolicy) else parse_policy(policy)
    decision = evaluate(parsed, claims)
    if appraisal_accepted:
        return decision
    head = Reason("appraisal_not_accepted", "the domain's appraisal did not accept the evidence")
    return ReleaseDecision(False, (head, *appraisal_reasons, *decision.reasons))
