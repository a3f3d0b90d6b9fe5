"""Appraisal: verified claims + a (signed) policy -> a decision with every reason -> EAR."""

from __future__ import annotations

from veritee.appraisal.attest import Appraisal, appraise_evidence
from veritee.appraisal.decision import Decision, ear_status
from veritee.appraisal.evaluate import (
    appraise,
    appraise_admitted,
    appraise_baseline,
    refused_for_error,
)
from veritee.appraisal.policy import Policy, PolicySet, SignedPolicy, load_policy, sign_policy

__all__ = [
    "Appraisal",
    "Decision",
    "Policy",
    "PolicySet",
    "SignedPolicy",
    "appraise",
    "appraise_admitted",
    "appraise_baseline",
    "appraise_evidence",
    "ear_status",
    "load_policy",
    "refused_for_error",
    "sign_policy",
]
