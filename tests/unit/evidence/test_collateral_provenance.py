"""Issue 11 item 3: the relying party's collateral decides, never the attester's.

Collateral keeps its provenance: the relying party's own endorsements (its collateral folder, the
CLI's ``--collateral``), the attester's certificates (path candidates only), and the attester's
endorsements (admitted only where the relying party allows, ranked below its own). Among
candidate sets the highest tcbEvaluationDataNumber and the newest CRL win; a policy may require a
minimum tcbEvaluationDataNumber.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import replace

import pytest
from tests.fakes.intel import AT, RECOVERED, Spec, build, pin_roots

from veritee.appraisal import appraise, load_policy
from veritee.collateral import Collateral
from veritee.errors import VerificationError, VeriteeError
from veritee.evidence import dcap, tdx


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


# --- which collateral set decides -------------------------------------------------------------

SVN = [5, 0, 2] + [0] * 13


def _status(syn_quote: bytes, collateral: Collateral, trust: dcap.DcapTrust) -> str:
    return str(
        tdx.verify(syn_quote, collateral=collateral, at=AT, trust=trust).claims["tcb_status"]
    )


def test_attester_supplied_tcb_info_never_overrides_the_domains() -> None:
    """An attester presenting the still-valid TCB info from before a TCB recovery is judged on
    the domain's newer one, even when its own set was verified (and cached) first."""
    old, new, newer = build(Spec()), build(RECOVERED), build(Spec(tcb_evaluation_data_number=19))
    trust = pin_roots(old, new, newer)
    sent = Collateral(documents=(old.doc,))
    assert _status(old.quote, sent, trust) == "UpToDate"  # the attester's set, now cached
    domain = Collateral(documents=(new.doc,))
    for admit in (False, True):
        collateral, left_out = domain.with_attester(sent, admit_endorsements=admit)
        assert _status(old.quote, collateral, trust) == "OutOfDate"
        assert left_out == (() if admit else ("1 collateral document(s)",))
    # Alone, an admitted attester set is used; the domain's set for the FMSPC always wins.
    alone, _ = Collateral().with_attester(sent, admit_endorsements=True)
    assert _status(old.quote, alone, trust) == "UpToDate"
    collateral, _ = domain.with_attester(
        Collateral(documents=(newer.doc,)), admit_endorsements=True
    )
    assert _status(old.quote, collateral, trust) == "OutOfDate"


def test_the_newest_tcb_info_of_the_domains_sets_wins_in_any_order() -> None:
    """Newest wins among the relying party's own sets: highest tcbEvaluationDataNumber, in
    whatever order the files come and whichever was cached first."""
    old, new = build(Spec()), build(RECOVERED)
    trust = pin_roots(old, new)
    assert _status(old.quote, Collateral(documents=(old.doc,)), trust) == "UpToDate"
    for docs in ((old.doc, new.doc), (new.doc, old.doc)):
        assert _status(old.quote, Collateral(documents=docs), trust) == "OutOfDate"


def test_attester_pre_revocation_pck_crl_never_overrides_the_domains() -> None:
    """The attester's PCK CRL from before its PCK was revoked loses to the domain's newer CRL,
    even inside a set with a higher tcbEvaluationDataNumber."""
    before = build(
        Spec(issue=_dt.datetime(2025, 6, 1, tzinfo=_dt.UTC), tcb_evaluation_data_number=18)
    )
    after = build(Spec(pck_revoked=(3,)))
    trust = pin_roots(before, after)
    sent = Collateral(documents=(before.doc,))
    assert _status(before.quote, sent, trust) == "UpToDate"  # cached
    for admit in (False, True):
        collateral, _ = Collateral(documents=(after.doc,)).with_attester(
            sent, admit_endorsements=admit
        )
        with pytest.raises(VerificationError) as e:
            tdx.verify(before.quote, collateral=collateral, at=AT, trust=trust)
        assert e.value.code == "certificate_revoked"


def test_the_newest_crl_of_every_candidate_set_is_used() -> None:
    """A newer CRL only adds revocations: the domain's set for the FMSPC is judged with the
    newest PCK CRL any candidate carries (another domain set, or an admitted attester's)."""
    current = build(Spec(issue=_dt.datetime(2025, 6, 1, tzinfo=_dt.UTC)))
    revoking = build(Spec(pck_revoked=(3,), tcb_info_fmspc="00A06D080000"))  # another FMSPC's set
    # Intel has one root certificate; each synthetic build signs its own copy: share one.
    newer = {**revoking.doc, "pck_crl_issuer_chain": current.doc["pck_crl_issuer_chain"],
             "root_ca_crl": current.doc["root_ca_crl"]}  # fmt: skip
    for collateral in (
        Collateral(documents=(current.doc, newer)),
        Collateral(documents=(newer, current.doc)),
        Collateral(documents=(current.doc,)).with_attester(
            Collateral(documents=(newer,)), admit_endorsements=True)[0],
    ):  # fmt: skip
        with pytest.raises(VerificationError) as e:
            tdx.verify(
                current.quote, collateral=collateral, at=AT, trust=pin_roots(current, revoking)
            )
        assert e.value.code == "certificate_revoked"


def test_attester_material_grants_no_trust() -> None:
    """What an attester sends is never a root of trust: its certificates are path candidates,
    its public keys (a CPAK, a simulated platform key) are left out."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    syn = build(Spec())
    sent = Collateral.from_blobs([("cpak.pem", pem)])
    sent = sent.with_untrusted(sent.certificates)
    out, left_out = Collateral().with_attester(sent, admit_endorsements=True)
    assert out.public_keys == () and left_out == ("1 public key(s)",)
    from veritee.evidence import tpm as tpm_evidence

    root = __import__("cryptography.x509", fromlist=["x"]).load_der_x509_certificate(syn.root_der)
    out, _ = Collateral().with_attester(Collateral(certificates=(root,)), admit_endorsements=True)
    assert out.untrusted == (root,) and out.certificates == ()
    assert tpm_evidence.relying_party_roots(out) == tpm_evidence.PINNED_ROOTS


def test_an_attesters_incomplete_or_malformed_set_does_not_break_the_domains() -> None:
    """Admitted attester collateral is a candidate only when it is a whole, readable set: a
    lone PCS TCB info, or a layout document with a garbled CRL, leaves the domain's set to
    decide (and is the error only where the domain has nothing)."""
    new = build(RECOVERED)
    trust = pin_roots(new)
    lone = {"tcbInfo": {"fmspc": "B0C06F000000", "tcbEvaluationDataNumber": 99}, "signature": "00"}
    garbled = {
        **new.doc,
        "pck_crl": "00ff",
        "tcb_info": new.doc["tcb_info"].replace(
            '"tcbEvaluationDataNumber":18', '"tcbEvaluationDataNumber":99'
        ),
    }
    for sent in (lone, garbled):
        collateral, _ = Collateral(documents=(new.doc,)).with_attester(
            Collateral(documents=(sent,)), admit_endorsements=True)  # fmt: skip
        assert _status(new.quote, collateral, trust) == "OutOfDate"
        alone, _ = Collateral().with_attester(
            Collateral(documents=(sent,)), admit_endorsements=True
        )
        with pytest.raises(VeriteeError):
            tdx.verify(new.quote, collateral=alone, at=AT, trust=trust)


# --- never rolled back: the relying party's high-water marks ----------------------------------


def test_a_set_older_than_the_relying_partys_marks_does_not_decide() -> None:
    """Once the TCB info after a TCB recovery (18) was accepted, the set from before it (17) is
    refused as ``collateral_rolled_back``, even alone and signed by Intel; the newer set and any
    set at the mark still decide. A CRL older than the recorded one is refused the same way."""
    from veritee.collateral.marks import Marks
    from veritee.errors import CollateralError

    old, new = build(Spec()), build(RECOVERED)
    trust = pin_roots(old, new)
    marks, skipped = dcap.collateral_marks(Collateral(documents=(new.doc,)), trust)
    assert skipped == []
    assert {m.kind for m in marks} == {"tcb_info", "qe_identity", "pck_crl", "root_crl"}
    assert {m.subject: m.value for m in marks if m.kind == "tcb_info"} == {"TDX:B0C06F000000": 18}
    held = Marks.of(marks)
    assert _status(old.quote, Collateral(documents=(old.doc,)), trust) == "UpToDate"  # no marks
    with pytest.raises(CollateralError) as e:
        tdx.verify(
            old.quote,
            collateral=Collateral(documents=(old.doc,)).with_marks(held),
            at=AT,
            trust=trust,
        )
    assert e.value.code == "collateral_rolled_back"
    assert "tcbEvaluationDataNumber 17" in e.value.message and "18" in e.value.message
    assert (
        _status(old.quote, Collateral(documents=(old.doc, new.doc)).with_marks(held), trust)
        == "OutOfDate"
    )
    # The same evaluation number with a PCK CRL from before the recorded one: refused too.
    earlier = build(replace(RECOVERED, issue=RECOVERED.issue - _dt.timedelta(days=1)))
    with pytest.raises(CollateralError) as e:
        tdx.verify(old.quote, collateral=Collateral(documents=(earlier.doc,)).with_marks(held), at=AT,
                   trust=pin_roots(old, new, earlier))  # fmt: skip
    assert e.value.code == "collateral_rolled_back" and "crl" in e.value.message


def test_a_forged_set_raises_no_mark() -> None:
    """Only authentic sets are marked: a TCB info claiming a higher tcbEvaluationDataNumber whose
    signature does not verify is left out (it could otherwise lock every real set out)."""
    import json

    syn = build(RECOVERED)
    info = json.loads(syn.doc["tcb_info"])
    forged = {**syn.doc, "tcb_info": json.dumps({**info, "tcbEvaluationDataNumber": 99})}
    marks, skipped = dcap.collateral_marks(Collateral(documents=(forged,)), syn.trust)
    assert marks == [] and len(skipped) == 1
    # The attester's sets are never marked either.
    sent, _ = Collateral().with_attester(Collateral(documents=(syn.doc,)), admit_endorsements=True)
    assert dcap.collateral_marks(sent, syn.trust) == ([], [])
