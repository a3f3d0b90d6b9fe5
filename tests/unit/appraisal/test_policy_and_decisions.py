"""Appraisal policies (strict parsing, signing) and decisions (every reason, EAR vector)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.appraisal import SignedPolicy, appraise, appraise_baseline, load_policy, sign_policy
from veritee.appraisal.decision import ear_status
from veritee.errors import MalformedError, OversizedError, PolicyError
from veritee.evidence.claims import Reason, VerifiedEvidence

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
M = "ab" * 48


def ev(**claims: Any) -> VerifiedEvidence:
    base = {
        "platform": "simulated",
        "measurement": M,
        "report_data": "00" * 64,
        "debug": False,
        "tcb_status": None,
        "profile": "production",
        "platform_key": "11" * 32,
    }
    base.update(claims)
    return VerifiedEvidence(format=str(base["platform"]), claims=base, verified_at=NOW)


def policy(**platforms: Any) -> Any:
    return load_policy(json.dumps({"version": 1, "name": "p", "platforms": platforms}))


def test_design_md_policy_shape_parses() -> None:
    text = """
version: 1
name: payments-prod
platforms:
  sev-snp: {{measurements: [{}], min_tcb: {{bootloader: 3, tee: 0, snp: 8, microcode: 115}}, allow_debug: false}}
  tdx:     {{mrtd: [{}], rtmr: {{"2": [{}]}}, tcb_status: [UpToDate], allowed_advisories: []}}
  sgx:     {{mr_enclave: [{}], mr_signer: [{}], tcb_status: [UpToDate, SWHardeningNeeded],
            allowed_advisories: [INTEL-SA-00615]}}
  nitro:   {{pcr0: [{}]}}
  simulated: {{measurements: [{}], platform_keys: [{}]}}
""".format(M, M, M, "aa" * 32, "bb" * 32, M, M, "cc" * 32)
    p = load_policy(text)
    assert p.platforms.sev_snp is not None and p.platforms.sev_snp.min_tcb is not None
    assert p.platforms.sev_snp.min_tcb.microcode == 115
    assert p.platforms.tdx is not None and p.platforms.tdx.rtmr == {"2": [M]}


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"version": 2, "name": "x", "platforms": {}}, "version"),
        ({"version": 1, "name": "x", "platforms": {"simulatd": {}}}, "simulatd"),
        (
            {"version": 1, "name": "x", "platforms": {"simulated": {"measurements": ["zz"]}}},
            "measurements",
        ),
        (
            {"version": 1, "name": "x", "platforms": {"simulated": {"measurements": ["ab"]}}},
            "measurements",
        ),
        ({"version": 1, "name": "x", "platforms": {"tdx": {"tcb_status": ["Fine"]}}}, "tcb_status"),
        ({"version": 1, "name": "x", "platforms": {"tdx": {"rtmr": {"7": [M]}}}}, "rtmr"),
        ({"version": 1, "name": "x", "platforms": {}, "typo": 1}, "typo"),
        ({"version": 1, "platforms": {}}, "name"),
    ],
)
def test_strict_policy_errors_name_the_path(doc: dict[str, Any], where: str) -> None:
    with pytest.raises(PolicyError) as e:
        load_policy(json.dumps(doc))
    assert where in str(e.value)


def test_malformed_and_oversized_policy_text() -> None:
    with pytest.raises(MalformedError):
        load_policy("version: [unclosed")
    with pytest.raises(PolicyError):
        load_policy("- a list")
    with pytest.raises(OversizedError):
        load_policy("#" * (1024 * 1024 + 1))


def test_signed_envelope_round_trip_and_tampering() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    p = policy(simulated={"measurements": [M], "platform_keys": ["11" * 32]})
    env = sign_policy(p, key)
    assert SignedPolicy.from_bytes(env, key.public_key()).policy == p
    doc = json.loads(env)
    for field, value in [("signature", "AAAA"), ("alg", "none"), ("kid", "00")]:
        bad = dict(doc, **{field: value})
        with pytest.raises(PolicyError):
            SignedPolicy.from_bytes(json.dumps(bad).encode(), key.public_key())
    inner = json.loads(doc["policy"])
    inner["platforms"]["simulated"]["measurements"].append("cd" * 48)
    bad = dict(doc, policy=json.dumps(inner, sort_keys=True, separators=(",", ":")))
    with pytest.raises(PolicyError, match="signature"):
        SignedPolicy.from_bytes(json.dumps(bad).encode(), key.public_key())
    with pytest.raises(PolicyError, match="not signed"):
        SignedPolicy.from_bytes(json.dumps(p.to_json()).encode(), key.public_key())
    with pytest.raises(PolicyError, match="another key"):
        SignedPolicy.from_bytes(env, ec.generate_private_key(ec.SECP384R1()).public_key())
    for cut in (1, len(env) // 2, len(env) - 3):
        with pytest.raises((PolicyError, MalformedError)):
            SignedPolicy.from_bytes(env[:cut], key.public_key())


def test_platform_absent_from_policy_is_refused() -> None:
    d = appraise(ev(platform="tdx"), policy(simulated={"platform_keys": ["11" * 32]}))
    assert not d.accepted
    assert [r.code for r in d.reasons] == ["platform_not_allowed"]


def test_simulated_never_trusted_by_default() -> None:
    d = appraise(ev(), policy(simulated={"measurements": [M]}))
    assert not d.accepted and "platform_key_not_trusted" in [r.code for r in d.reasons]


def test_all_reasons_are_listed() -> None:
    d = appraise(
        ev(debug=True, measurement="cd" * 48, platform_key="22" * 32),
        policy(simulated={"measurements": [M], "platform_keys": ["11" * 32]}),
    )
    assert {r.code for r in d.reasons} == {
        "platform_key_not_trusted",
        "debug",
        "measurement_not_allowed",
    }
    assert d.status == "contraindicated"


def test_allow_debug_is_a_logged_insecure_warning() -> None:
    d = appraise(
        ev(debug=True), policy(simulated={"platform_keys": ["11" * 32], "allow_debug": True})
    )
    assert d.accepted
    assert "insecure_allow_debug" in [w.code for w in d.warnings]
    assert d.vector["configuration"] == 32


def test_snp_min_tcb_uses_certified_tcb_not_report() -> None:
    p = policy(**{"sev-snp": {"min_tcb": {"bootloader": 3, "snp": 8, "microcode": 115}}})
    claims = {
        "platform": "sev-snp",
        "reported_tcb": {"bootloader": 9, "snp": 99, "microcode": 200},
        "vcek_tcb": {"bootloader": 3, "tee": 0, "snp": 7, "microcode": 115},
    }
    d = appraise(ev(**claims), p)
    assert (
        not d.accepted
        and d.reasons[0].code == "tcb_below_minimum"
        and "snp 7 < 8" in d.reasons[0].message
    )
    claims["vcek_tcb"]["snp"] = 8
    assert appraise(ev(**claims), p).accepted


def test_intel_tcb_status_and_advisories() -> None:
    sgx = {
        "platform": "sgx",
        "mr_enclave": "aa" * 32,
        "mr_signer": "bb" * 32,
        "tcb_status": "ConfigurationAndSWHardeningNeeded",
        "advisory_ids": ["INTEL-SA-00289", "INTEL-SA-00615"],
    }
    strict = policy(sgx={"tcb_status": ["UpToDate"]})
    assert {r.code for r in appraise(ev(**sgx), strict).reasons} == {
        "tcb_status_not_allowed",
        "advisories_not_allowed",
    }
    lenient = policy(
        sgx={
            "tcb_status": ["UpToDate", "ConfigurationAndSWHardeningNeeded"],
            "allowed_advisories": ["INTEL-SA-00289", "INTEL-SA-00615"],
        }
    )
    d = appraise(ev(**sgx), lenient)
    assert d.accepted and d.status == "warning"
    assert not appraise_baseline(ev(**sgx)).accepted


def test_baseline() -> None:
    assert appraise_baseline(ev(platform_key_trusted=True)).accepted
    assert [r.code for r in appraise_baseline(ev()).reasons] == ["platform_key_not_trusted"]
    assert [
        r.code for r in appraise_baseline(ev(debug=True, platform_key_trusted=True)).reasons
    ] == ["debug"]
    assert appraise_baseline(ev(platform="tdx", tcb_status="UpToDate")).accepted
    assert not appraise_baseline(ev(platform="tdx", tcb_status="OutOfDate")).accepted
    found = VerifiedEvidence(
        "tdx",
        ev(platform="tdx", tcb_status="UpToDate").claims,
        NOW,
        findings=(Reason("trailing_bytes", "x"),),
    )
    assert "trailing_bytes" in [w.code for w in appraise_baseline(found).warnings]


def test_ear_status_tiers() -> None:
    assert ear_status({}) == "none"
    assert ear_status({"a": 2}) == "affirming"
    assert ear_status({"a": 2, "b": 32}) == "warning"
    assert ear_status({"a": 96, "b": 32}) == "contraindicated"


def test_example_policy_files_parse() -> None:
    root = Path(__file__).resolve().parents[3] / "examples" / "policies"
    files = sorted(root.glob("*.yaml"))
    assert len(files) >= 2
    names = {load_policy(f.read_bytes()).name for f in files}
    assert {"payments-prod", "development", "vms-and-devices", "keystone-qemu"} <= names


def test_revoked_tcb_status_is_terminal() -> None:
    """Intel's Revoked is never acceptable (issue 11 item 5): a policy that lists it does not
    load, and a decision refuses it even from a policy object built without validation."""
    with pytest.raises(PolicyError) as e:
        policy(tdx={"tcb_status": ["UpToDate", "Revoked"]})
    assert (
        e.value.code == "policy_malformed"
        and "Revoked" in str(e.value)
        and "tcb_status" in str(e.value)
    )
    with pytest.raises(PolicyError):
        policy(sgx={"tcb_status": ["Revoked"]})
    revoked = {"platform": "tdx", "tcb_status": "Revoked", "advisory_ids": []}
    assert not appraise_baseline(ev(**revoked)).accepted
    p = policy(tdx={"tcb_status": ["UpToDate", "OutOfDate"]})
    assert p.platforms.tdx is not None
    object.__setattr__(
        p.platforms.tdx, "tcb_status", ["UpToDate", "Revoked"]
    )  # bypasses validation
    d = appraise(ev(**revoked), p)
    assert not d.accepted and [r.code for r in d.reasons] == ["tcb_status_not_allowed"]
