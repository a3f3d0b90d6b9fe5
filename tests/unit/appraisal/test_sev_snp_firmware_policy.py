"""SEV-SNP firmware controls of a policy, as go-sev-guest's ``validate.Options`` has them:
``permit_provisional_firmware: false`` refuses a report whose CURRENT TCB or firmware version
differs from the COMMITTED one (the host can roll back to the committed level);
``min_launch_tcb`` holds the report's LAUNCH_TCB (the lowest TCB the guest has run under) to a
minimum, which ``min_tcb`` (the VCEK's certified TCB) does not. The defaults keep every report
accepted as before. Trustee's public report is provisional: its current microcode SPL is newer
than the committed one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.conftest import TESTVECTORS

from veritee import evidence
from veritee.appraisal import appraise, load_policy
from veritee.collateral import Collateral
from veritee.errors import PolicyError
from veritee.evidence import amd

AT = datetime(2026, 1, 15, tzinfo=UTC)
DIR = TESTVECTORS / "sev-snp"
pytestmark = pytest.mark.skipif(not (DIR / "trustee_vcek_report.bin").is_file(),
                                reason="test vectors absent (../shared/testvectors)")  # fmt: skip


def _policy(**snp: Any) -> Any:
    return load_policy(json.dumps({"version": 1, "name": "p", "platforms": {"sev-snp": snp}}))


def _verified(report: str, vcek: str) -> evidence.VerifiedEvidence:
    col = Collateral.from_paths([DIR / vcek, DIR / "amd_milan_vcek_ask_ark.pem"])
    return evidence.verify((DIR / report).read_bytes(), collateral=col, at=AT)


def test_a_provisional_report_is_refused_only_when_the_policy_says_so() -> None:
    provisional = _verified("trustee_vcek_report.bin", "trustee_vcek.der")
    c = provisional.claims
    assert c["current_tcb"] != c["committed_tcb"]
    assert appraise(provisional, _policy()).accepted  # (the default, as before)
    d = appraise(provisional, _policy(permit_provisional_firmware=False))
    assert not d.accepted and [r.code for r in d.reasons] == ["firmware_provisional"]
    assert "not committed" in d.reasons[0].message
    committed = _verified("virtee_milan_report.bin", "virtee_milan_vcek.der")
    assert committed.claims["current_tcb"] == committed.claims["committed_tcb"]
    assert appraise(committed, _policy(permit_provisional_firmware=False)).accepted


def test_min_launch_tcb_holds_the_launch_tcb_not_the_certified_one() -> None:
    """A guest launched under older microcode than its VCEK certifies now (fake, pinned chain)."""
    from tests.fakes import amd as fake

    chain = fake.make_chain()
    certified = dict(amd.endorsement_key_info(chain.leaf).tcb)
    older = {**certified, "microcode": certified["microcode"] - 1}
    data = fake.make_report(chain, launch_tcb=older)
    col = chain.collateral(crls=(fake.make_crl(chain, []),))
    ev = evidence.verify(data, collateral=col, at=fake.AT, trust=chain.trust())
    assert ev.claims["launch_tcb"]["microcode"] == older["microcode"]
    assert appraise(ev, _policy(min_tcb=certified)).accepted  # the certified TCB meets it
    d = appraise(ev, _policy(min_launch_tcb=certified))
    assert not d.accepted and [r.code for r in d.reasons] == ["tcb_below_minimum"]
    assert "LAUNCH_TCB" in d.reasons[0].message
    assert appraise(ev, _policy(min_launch_tcb=older)).accepted


@pytest.mark.parametrize(
    "snp",
    [
        {"permit_provisional_firmware": "maybe"},
        {"permit_provisional_firmware": [True]},
        {"min_launch_tcb": {"microcode": 256}},
        {"min_launch_tcb": {"microcode": -1}},
        {"min_launch_tcb": {"microcode": "seven"}},
        {"min_launch_tcb": {"bogus": 1}},
        {"min_launch_tcb": [1, 2, 3, 4]},
    ],
)
def test_bad_firmware_controls_are_refused_by_name(snp: dict[str, Any]) -> None:
    """(Like every policy field, these read YAML's spellings: ``no``, ``0``, ``"7"``.)"""
    with pytest.raises(PolicyError) as e:
        _policy(**snp)
    assert next(iter(snp)) in str(e.value)
