"""SEV-SNP guest policy and PLATFORM_INFO controls (issue 11, item 4), as go-sev-guest's
``validate`` package has them: MIGRATE_MA and DEBUG refused unless a policy allows them; SMT,
single socket, CXL, AES-256-XTS, RAPL, ciphertext hiding and page swap as policy controls that
allow every real guest by default."""

from __future__ import annotations

import datetime as dt
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import TESTVECTORS, manifest_cases
from tests.fakes.amd import make_chain, make_report

from veritee import evidence
from veritee.appraisal import appraise, appraise_baseline, load_policy
from veritee.collateral import Collateral
from veritee.errors import PolicyError
from veritee.evidence import sev_snp
from veritee.evidence.claims import VerifiedEvidence

AT = datetime(2026, 1, 15, tzinfo=UTC)
MIGRATE_MA = 1 << 18
SNP_CONTROLS = {"allow_debug", "allow_migration_agent", "guest_policy", "platform_info"}


def _policy(**snp: Any) -> Any:
    return load_policy(json.dumps({"version": 1, "name": "p", "platforms": {"sev-snp": snp}}))


def _ev(policy: int = 0x30000, platform_info: int = 0x25, **extra: Any) -> VerifiedEvidence:
    claims = {"platform": "sev-snp", "measurement": "5b" * 48, "report_data": "aa" * 64,
              "debug": bool(policy >> 19 & 1), "tcb_status": None, "vmpl": 0, "policy": policy,
              "policy_bits": sev_snp.GuestPolicy.from_int(policy).as_dict(),
              "platform_info_bits": sev_snp.PlatformInfo.from_int(platform_info).as_dict(), **extra}  # fmt: skip
    return VerifiedEvidence("sev-snp", claims, AT)


def test_a_migration_agent_is_refused_by_the_baseline_and_the_default_policy() -> None:
    """A report signed by a (fake, pinned) AMD chain whose guest policy sets MIGRATE_MA."""
    chain = make_chain()
    data = make_report(chain, policy=0x30000 | MIGRATE_MA)
    ev = sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust())
    assert ev.claims["policy_bits"]["migrate_ma"] is True
    d = appraise_baseline(ev)
    assert not d.accepted and [r.code for r in d.reasons] == ["migration_agent_not_allowed"]
    d = appraise(ev, _policy())
    assert not d.accepted and [r.code for r in d.reasons] == ["migration_agent_not_allowed"]
    d = appraise(ev, _policy(allow_migration_agent=True))
    assert d.accepted and d.status == "warning"
    assert "insecure_allow_migration_agent" in [w.code for w in d.warnings]
    # The same report without MIGRATE_MA passes both.
    plain = sev_snp.verify(
        make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust()
    )
    assert appraise_baseline(plain).accepted and appraise(plain, _policy()).accepted


def test_debug_is_refused_by_default() -> None:
    assert [r.code for r in appraise_baseline(_ev(0x30000 | 1 << 19)).reasons] == ["debug"]
    d = appraise(_ev(0x30000 | 1 << 19), _policy(allow_debug=True))
    assert d.accepted and "insecure_allow_debug" in [w.code for w in d.warnings]


#: go-sev-guest's validatePolicy: (guest-policy bit, control, True if the control allows it).
GUEST = [(16, "allow_smt", True), (20, "require_single_socket", False), (21, "allow_cxl", True),
         (22, "require_aes_256_xts", False), (23, "require_rapl_disabled", False),
         (24, "require_ciphertext_hiding", False), (25, "require_page_swap_disabled", False)]  # fmt: skip
#: validatePlatformInfo: (PLATFORM_INFO bit, control, True if the control allows it).
PLATFORM = [(0, "allow_smt", True), (1, "allow_tsme", True), (7, "allow_tio", True),
            (2, "require_ecc", False), (3, "require_rapl_disabled", False),
            (4, "require_ciphertext_hiding", False), (5, "require_alias_check", False)]  # fmt: skip


@given(policy_bits=st.integers(0, (1 << 26) - 1), info=st.integers(0, 0xBF),
       guest=st.dictionaries(st.sampled_from([c for _, c, _ in GUEST]), st.booleans()),
       platform=st.dictionaries(st.sampled_from([c for _, c, _ in PLATFORM]), st.booleans()))  # fmt: skip
def test_every_control_refuses_exactly_as_go_sev_guest(
    policy_bits: int, info: int, guest: dict[str, bool], platform: dict[str, bool]
) -> None:
    policy_bits = (policy_bits | 1 << 17) & ~(1 << 18 | 1 << 19)  # MIGRATE_MA, DEBUG: tested above
    d = appraise(_ev(policy_bits, info), _policy(guest_policy=guest, platform_info=platform))

    def fails(table: list[tuple[int, str, bool]], value: int, controls: dict[str, bool]) -> bool:
        for bit, control, is_allow in table:
            wanted, has = controls.get(control, is_allow), bool(value >> bit & 1)
            if (is_allow and has and not wanted) or (not is_allow and wanted and not has):
                return True
        return False

    expect = set()
    if fails(GUEST, policy_bits, guest):
        expect.add("guest_policy_not_allowed")
    if fails(PLATFORM, info, platform):
        expect.add("platform_info_not_allowed")
    assert {r.code for r in d.reasons} == expect
    assert d.accepted is not expect


def test_controls_name_the_failing_bit() -> None:
    d = appraise(
        _ev(0x30000), _policy(guest_policy={"allow_smt": False, "require_single_socket": True})
    )
    (r,) = d.reasons
    assert (
        r.code == "guest_policy_not_allowed" and "smt" in r.message and "single_socket" in r.message
    )
    d = appraise(_ev(platform_info=0x01), _policy(platform_info={"require_ecc": True}))
    assert [r.code for r in d.reasons] == ["platform_info_not_allowed"] and "ecc" in d.reasons[
        0
    ].message


@pytest.mark.parametrize("bad", [{"guest_policy": {"allow_smtt": False}}, {"platform_info": {"ecc": 1}},
                                 {"guest_policy": {"allow_smt": "maybe"}}, {"guest_policy": []}])  # fmt: skip
def test_unknown_or_mistyped_controls_are_policy_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        _policy(**bad)


def _real_snp_cases() -> list[tuple[str, list[str], str]]:
    out = [(c["evidence"], c["collateral"], c["verify_at"]) for c in manifest_cases("sev-snp")]
    if not out:  # the test vectors are absent
        return out
    for name, product in (("az-snp-vtpm_evidence-v2.json", "milan"),
                          ("trustee_az_snp_evidence_genoa.json", "genoa")):  # fmt: skip
        out.append(
            (
                f"azure-vtpm/{name}",
                [f"sev-snp/amd_{product}_vcek_ask_ark.pem"],
                "2026-01-15T00:00:00Z",
            )
        )
    return out


@pytest.mark.parametrize(("path", "collateral", "at"), _real_snp_cases())
def test_every_real_vector_keeps_its_verdict_unless_debug_or_migration_agent(
    path: str, collateral: list[str], at: str
) -> None:
    data = (TESTVECTORS / path).read_bytes()
    when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    ev = evidence.verify(
        data, collateral=Collateral.from_paths([TESTVECTORS / c for c in collateral]), at=when
    )
    bits = ev.claims["policy_bits"]
    for d in (appraise_baseline(ev), appraise(ev, _policy(allow_debug=False))):
        codes = {r.code for r in d.reasons}
        assert not codes & {"guest_policy_not_allowed", "platform_info_not_allowed"}
        assert ("migration_agent_not_allowed" in codes) is bits["migrate_ma"]
        assert d.accepted is not (bits["debug"] or bits["migrate_ma"])
