"""What a decision's audit record keeps of the claims (issue 16, the web console): a refusal of
authentic evidence keeps its claims, each at most MAX_AUDIT_CLAIM characters of JSON and all
within MAX_AUDIT_CLAIMS; an acceptance keeps the four claims it always kept; a refusal of
evidence that did not verify has no claims to keep."""

from __future__ import annotations

import datetime as dt
import json

from veritee.appraisal.attest import MAX_AUDIT_CLAIM, MAX_AUDIT_CLAIMS, Appraisal
from veritee.appraisal.decision import Decision
from veritee.evidence.claims import VerifiedEvidence

AT = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
BASE = {
    "platform": "tdx",
    "measurement": "ab" * 48,
    "profile": "production",
    "tcb_status": "UpToDate",
}


def _appraisal(claims: dict[str, object] | None, accepted: bool) -> Appraisal:
    decision = Decision()
    if not accepted:
        decision.refuse("measurement_not_allowed", "not in the allow-list")
    ev = None if claims is None else VerifiedEvidence("tdx", claims, AT)
    return Appraisal(ev, decision, "00" * 32)


def test_a_refusal_keeps_its_small_claims_within_the_budget() -> None:
    claims = {**BASE, "debug": False, "rtmr0": "cd" * 48, "policy_bits": {"debug": False, "smt": True},
              "nonce": "ef" * 1024, "odd": b"bytes", "nan": float("nan"), "x" * 80: 1}  # fmt: skip
    details = _appraisal(claims, accepted=False).audit_details()
    kept = details["claims"]
    assert kept == {
        "debug": False,
        "policy_bits": {"debug": False, "smt": True},
        "rtmr0": "cd" * 48,
    }
    assert details["measurement"] == "ab" * 48 and "measurement" not in kept  # not twice
    json.dumps(details, allow_nan=False)  # what the audit log stores


def test_the_claims_kept_never_pass_the_budget() -> None:
    many = {f"c{i:03d}": "a" * (MAX_AUDIT_CLAIM - 2) for i in range(100)}
    kept = _appraisal({**BASE, **many}, accepted=False).audit_details()["claims"]
    size = len(json.dumps(kept, separators=(",", ":")))
    assert 0 < size <= MAX_AUDIT_CLAIMS + 2 and len(kept) < 100
    assert list(kept) == sorted(kept)[: len(kept)]  # the first names, in order


def test_acceptances_and_unverified_evidence_keep_no_claims() -> None:
    assert "claims" not in _appraisal({**BASE, "debug": False}, accepted=True).audit_details()
    assert "claims" not in _appraisal(None, accepted=False).audit_details()
    assert (
        "claims" not in _appraisal(dict(BASE), accepted=False).audit_details()
    )  # nothing beyond the four
