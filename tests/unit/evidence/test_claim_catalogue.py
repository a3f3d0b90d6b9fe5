"""The claim catalogue (veritee.evidence.catalogue) lists every top-level claim the verifiers
emit: parsed from every test vector, verified from the manifest's cases, and the simulated
platform's. Release policies are refused against it (release_claim_unknown), so a claim missing
here would refuse a correct policy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from tests.conftest import manifest_cases, testvectors_dir

from veritee import evidence
from veritee.binding import report_data_for
from veritee.cli.verify import verify_evidence
from veritee.errors import VeriteeError
from veritee.evidence.catalogue import BY_PLATFORM, COMMON, known_claims, unknown_claims
from veritee.platforms.simulated import SimulatedPlatform


def test_every_parsed_claim_is_in_the_catalogue() -> None:
    root = testvectors_dir()
    seen: dict[str, set[str]] = {}
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.stat().st_size > evidence.MAX_EVIDENCE_BYTES:
            continue
        data = f.read_bytes()
        try:
            fmt = evidence.detect_format(data)
            claims = evidence.parse_claims(data, format=fmt)
        except VeriteeError:
            continue
        seen.setdefault(fmt, set()).update(claims)
    assert {"sev-snp", "tdx", "sgx", "nitro", "tpm"} <= set(seen), sorted(seen)
    for fmt, names in seen.items():
        assert unknown_claims(sorted(names)) == [], fmt
        assert set(names) <= set(COMMON) | set(BY_PLATFORM[fmt]), (
            fmt,
            sorted(set(names) - known_claims()),
        )


@pytest.mark.parametrize("case", manifest_cases(), ids=lambda c: c["evidence"])
def test_every_verified_claim_is_in_the_catalogue(case: dict[str, object]) -> None:
    root = testvectors_dir()
    result = verify_evidence(
        (root / str(case["evidence"])).read_bytes(), format=str(case["format"]),
        collateral_paths=[root / str(c) for c in case.get("collateral") or []],  # type: ignore[attr-defined]
        at=dt.datetime.fromisoformat(str(case["verify_at"]).replace("Z", "+00:00")),
        policy_text=None, nonce=None,
    )  # fmt: skip
    assert result["claims"], result["reasons"]
    assert unknown_claims(sorted(result["claims"])) == []


def test_the_simulated_platform_claims(tmp_path: Path) -> None:
    p = SimulatedPlatform(tmp_path / "sim", measurement="ab" * 48)
    claims = evidence.parse_claims(p.evidence(report_data_for(b"n", b"", profile=p.profile)))
    assert unknown_claims(sorted(claims)) == []


def test_keystone_claims() -> None:
    from tests.fakes import keystone as fake

    device = fake.dev_key()
    report = fake.build_report(device=device, sm=fake.expand_seed(b"\x07" * 32), enclave_hash=b"\x01" * 64,
                               sm_hash=b"\x02" * 64, data=b"n")  # fmt: skip
    claims = evidence.parse_claims(report, format="keystone")
    assert unknown_claims(sorted(claims)) == []
    assert set(claims) <= set(COMMON) | set(BY_PLATFORM["keystone"])


def test_every_platform_has_a_section() -> None:
    from veritee import evidence as ev

    platforms = {f for f in ev.FORMATS}
    assert platforms <= set(BY_PLATFORM), sorted(platforms - set(BY_PLATFORM))


def test_unknown_claims_are_named_once_in_order() -> None:
    assert unknown_claims(
        ["measurement", "mesurement", "reported_tcb.snp", "x.y", "mesurement"]
    ) == ["mesurement", "x.y"]
    assert "admission_serial" in known_claims() and "measurement" in known_claims()
