"""One appraisal workflow: verify the evidence, appraise it, check the binding the caller names.

Pure, as the steps it joins: bytes, collateral (by provenance, :mod:`veritee.collateral`), the
trust root, a policy, the binding expected and the time go in; an :class:`Appraisal` comes out,
never an exception for bad evidence. The service (``/v1/attest``, ``/v1/certify``, the KBS, the
admin dry run, through :meth:`veritee.service.context.ServiceContext.appraise`) and ``veritee
verify`` call it; they only gather its inputs (collateral folder, active policy, request) and
format its result.

1. :func:`veritee.evidence.verify`: authentic at ``at`` under the trust root, or refused with the
   verifier's code (:func:`~veritee.appraisal.refused_for_error`).
2. Appraise: the policy (:func:`~veritee.appraisal.appraise`), else the baseline where the caller
   asks for it (``veritee verify``), else refused (``no_policy``: a service without a policy).
3. The binding (:class:`veritee.binding.ExpectedBinding`): one rule, veritee's report-data
   binding of nonce, key, attested profile and key store; refused with the binding's code, or
   affirmed (``nonce_bound``) with its warning (``binding_v1_deprecated``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from veritee import evidence
from veritee.appraisal.decision import Decision
from veritee.appraisal.evaluate import RefValues, appraise, appraise_baseline, refused_for_error
from veritee.appraisal.policy import Policy, PolicySet
from veritee.binding import ExpectedBinding
from veritee.collateral import Collateral
from veritee.errors import MalformedError, UsageError, VeriteeError
from veritee.evidence.claims import VerifiedEvidence

__all__ = ["Appraisal", "appraise_evidence"]


@dataclass
class Appraisal:
    """Verified evidence (None when it could not be verified) and the decision on it."""

    evidence: VerifiedEvidence | None
    decision: Decision
    evidence_sha256: str

    @property
    def claims(self) -> dict[str, Any] | None:
        return None if self.evidence is None else self.evidence.claims

    def audit_details(self) -> dict[str, Any]:
        """What goes into the audit record: hashes and decision facts, never the evidence.

        A refusal of authentic evidence also keeps its other claims (``claims``: those whose
        compact JSON is at most :data:`MAX_AUDIT_CLAIM` characters, up to
        :data:`MAX_AUDIT_CLAIMS` in all), so an operator sees what to amend (the web console,
        ``veritee audit show``); an acceptance keeps the four above, as before."""
        claims = self.claims or {}
        details = {
            "evidence_sha256": self.evidence_sha256,
            "platform": claims.get("platform"),
            "measurement": claims.get("measurement"),
            "profile": claims.get("profile"),
            "tcb_status": claims.get("tcb_status"),
            "status": self.decision.status,
            "policy": self.decision.policy_name,
            "policy_digest": self.decision.policy_digest,
            "reasons": [r.to_json() for r in self.decision.reasons],
            "warnings": [r.code for r in self.decision.warnings],
        }
        if claims and not self.decision.accepted:
            kept = _kept_claims(claims)
            if kept:
                details["claims"] = kept
        return details


#: A refusal's audit record keeps a claim whose compact JSON is at most this long ...
MAX_AUDIT_CLAIM = 256
#: ... and at most this much of them in all (the audit record's limit is 16 KiB).
MAX_AUDIT_CLAIMS = 4096
_IN_DETAILS = frozenset({"platform", "measurement", "profile", "tcb_status"})


def _kept_claims(claims: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    budget = MAX_AUDIT_CLAIMS
    for key in sorted(claims):
        if key in _IN_DETAILS or not isinstance(key, str) or len(key) > 64:
            continue
        try:
            size = len(
                json.dumps(claims[key], separators=(",", ":"), ensure_ascii=True, allow_nan=False)
            )
        except (TypeError, ValueError):
            continue
        if size <= MAX_AUDIT_CLAIM and size + len(key) + 4 <= budget:
            kept[key] = claims[key]
            budget -= size + len(key) + 4
    return kept


def appraise_evidence(
    data: bytes,
    *,
    collateral: Collateral,
    at: datetime,
    format: str = "auto",
    trust: Any = None,
    policy: Policy | PolicySet | None,
    baseline: bool = False,
    binding: ExpectedBinding | None = None,
    refvalues: RefValues | None = None,
) -> Appraisal:
    """Steps 1-3 of the module docstring. ``trust``: a :class:`~veritee.evidence.trust.TrustRoot`
    (or a format's own pins, or None for the genuine roots). ``baseline``: without ``policy``,
    appraise against the baseline instead of refusing. ``refvalues``: how the policy's
    reference-value sets are found (none: a policy that refers to one refuses)."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        ev = evidence.verify(data, collateral=collateral, at=at, format=format, trust=trust)
    except UsageError as e:  # e.g. an unknown format named by the caller: the evidence's fault
        return Appraisal(None, refused_for_error(MalformedError(e.message, code=e.code)), digest)
    except VeriteeError as e:
        return Appraisal(None, refused_for_error(e), digest)
    if policy is not None:
        decision = appraise(ev, policy, refvalues)
    elif baseline:
        decision = appraise_baseline(ev)
    else:
        decision = Decision(policy_name=None)
        decision.refuse("no_policy", "no appraisal policy is installed in this domain")
    if binding is not None:
        bound = binding.check(ev.claims)
        if bound.refusal is not None:
            decision.refuse(bound.refusal.code, bound.refusal.message, claim="instance-identity")
        else:
            if bound.warning is not None:
                decision.warn(bound.warning.code, bound.warning.message)
            decision.affirm("nonce_bound", claim="instance-identity")
    return Appraisal(ev, decision, digest)
