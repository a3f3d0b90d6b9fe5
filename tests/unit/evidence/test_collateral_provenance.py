"""Issue 11 item 3: the relying party's collateral decides, never the attester's.

Collateral keeps its provenance: the relying party's own endorsements (its collateral folder, the
CLI's ``--collateral``), the attester's certificates (path candidates only), and the attester's
endorsements (admitted only where the relying party allows, ranked below its own). Among
candidate sets the highest tcbEvaluationDataNumber and the newest CRL win; a policy may require a
minimum tcbEvaluationDataNumber.
"""

from __future__ import annotations

from tests.unit.evidence.test_dcap_synthetic import AT, Spec, build

from veritee.appraisal import appraise, load_policy
from veritee.evidence import tdx


def _policy(minimum: int | None) -> str:
    extra = "" if minimum is None else f", min_tcb_evaluation_data_number: {minimum}"
    return f"version: 1\nname: t\nplatforms:\n  tdx: {{tcb_status: [UpToDate]{extra}}}\n"


def test_policy_minimum_tcb_evaluation_data_number_refuses_older_collateral() -> None:
    syn = build(Spec(tcb_evaluation_data_number=17))
    ev = tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
    assert ev.claims["tcb_evaluation_data_number"] == 17
    assert appraise(ev, load_policy(_policy(None))).accepted
    assert appraise(ev, load_policy(_policy(17))).accepted
    d = appraise(ev, load_policy(_policy(18)))
    assert not d.accepted
    assert [r.code for r in d.reasons] == ["tcb_evaluation_data_number_below_minimum"]
    newer = build(Spec(tcb_evaluation_data_number=18))
    ev = tdx.verify(newer.quote, collateral=newer.collateral, at=AT, trust=newer.trust)
    assert appraise(ev, load_policy(_policy(18))).accepted
