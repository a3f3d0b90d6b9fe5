"""veritee.binding: which profile evidence attests (DESIGN.md, "Profiles are attested"), and the
one binding rule (report data version 2; version 1 during the transition)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from veritee import evidence
from veritee.binding import (
    LAUNCH_DATA_CLAIMS,
    KeyStoreProof,
    attested_profile,
    check,
    profile_launch_data,
    report_data_for,
    report_data_v1,
)
from veritee.errors import MalformedError
from veritee.evidence import sev_snp
from veritee.profiles import Profile


def _claims(platform: str, launch: bytes | None, *, debug: Any = False) -> dict[str, Any]:
    c: dict[str, Any] = {"platform": platform, "debug": debug, "measurement": "ab" * 48}
    if launch is not None:
        c[LAUNCH_DATA_CLAIMS[platform][0]] = launch.hex()
    return c


@pytest.mark.parametrize("platform", sorted(LAUNCH_DATA_CLAIMS))
@pytest.mark.parametrize("profile", list(Profile))
def test_launch_data_attests_the_profile(platform: str, profile: Profile) -> None:
    size = LAUNCH_DATA_CLAIMS[platform][1]
    launch = profile_launch_data(profile, size)
    assert len(launch) == size
    assert attested_profile(_claims(platform, launch)) is profile
    # The same launch data in a debug launch never attests more than a debugger allows.
    debug = attested_profile(_claims(platform, launch, debug=True))
    assert debug is (profile if profile.allows_debug else Profile.DEVELOPMENT)


@pytest.mark.parametrize("platform", sorted(LAUNCH_DATA_CLAIMS))
def test_other_or_missing_launch_data_is_development(platform: str) -> None:
    size = LAUNCH_DATA_CLAIMS[platform][1]
    prod = profile_launch_data(Profile.PRODUCTION, size)
    for launch in (None, bytes(size), b"\x01" * size, prod[:-1] + b"\x01", prod[: size - 1]):
        assert attested_profile(_claims(platform, launch)) is Profile.DEVELOPMENT
    assert attested_profile({**_claims(platform, prod), LAUNCH_DATA_CLAIMS[platform][0]: 7}) \
        is Profile.DEVELOPMENT  # fmt: skip


def test_launch_data_of_one_size_does_not_count_for_another() -> None:
    snp_tag = profile_launch_data(Profile.PRODUCTION, 32)
    claims = {"platform": "tdx", "debug": False, "mr_config_id": snp_tag.hex()}
    assert attested_profile(claims) is Profile.DEVELOPMENT


@pytest.mark.parametrize("profile", list(Profile))
def test_simulated_profile_is_the_signed_field(profile: Profile) -> None:
    claims = {"platform": "simulated", "profile": profile.value, "debug": False}
    assert attested_profile(claims) is profile
    assert attested_profile({**claims, "debug": True}) is (
        profile if profile.allows_debug else Profile.DEVELOPMENT
    )


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"platform": "nitro", "debug": False},
        {"platform": "sgx", "debug": False},
        {"platform": "tpm", "debug": False},
        {"platform": "simulated", "profile": "root", "debug": False},
        {"platform": "simulated", "profile": "production"},  # no debug claim: fails closed
        {"platform": 3, "debug": False},
    ],
)
def test_everything_else_is_development(claims: dict[str, Any]) -> None:
    assert attested_profile(claims) is Profile.DEVELOPMENT


def test_launch_data_needs_room() -> None:
    with pytest.raises(ValueError):
        profile_launch_data(Profile.PRODUCTION, 16)


# --- binding.check: the one rule (report data version 2, version 1 during the transition) -----

NONCE = bytes(range(32))
SPKI = b"\x30\x59" + bytes(89)
STORE = KeyStoreProof(b"\x11" * 16, 3)


def _sim(profile: Profile, rd: bytes, debug: bool = False) -> dict[str, Any]:
    return {
        "platform": "simulated",
        "profile": profile.value,
        "debug": debug,
        "report_data": rd.hex(),
    }


@pytest.mark.parametrize("profile", list(Profile))
def test_version_2_binds_nonce_key_profile_and_key_store(profile: Profile) -> None:
    rd = report_data_for(NONCE, SPKI, profile=profile, key_store=STORE)
    assert len(rd) == 64
    ok = check(_sim(profile, rd), nonce=NONCE, spki=SPKI, key_store=STORE)
    assert ok.bound and ok.version == 2 and ok.refusal is None and ok.warning is None
    for kw in (
        {"nonce": NONCE[:-1] + b"\x00", "spki": SPKI, "key_store": STORE},
        {"nonce": NONCE, "spki": SPKI + b"\x00", "key_store": STORE},
        {"nonce": NONCE, "spki": None, "key_store": STORE},
        {"nonce": NONCE, "spki": SPKI, "key_store": KeyStoreProof(STORE.store_id, 2)},
        {"nonce": NONCE, "spki": SPKI, "key_store": KeyStoreProof(b"\x12" * 16, 3)},
        {"nonce": NONCE, "spki": SPKI, "key_store": None},
    ):
        bad = check(_sim(profile, rd), **kw)  # type: ignore[arg-type]
        assert not bad.bound and bad.refusal is not None and bad.refusal.code == "binding_mismatch"


def test_a_workload_running_as_another_profile_than_attested_is_refused() -> None:
    """The host tells a production launch to run as development (plaintext logs): the
    binding names both profiles and refuses."""
    rd = report_data_for(NONCE, SPKI, profile=Profile.DEVELOPMENT)
    out = check(_sim(Profile.PRODUCTION, rd), nonce=NONCE, spki=SPKI)
    assert not out.bound and out.refusal is not None
    assert out.refusal.code == "binding_mismatch"
    assert (
        "runs as development" in out.refusal.message and "attests production" in out.refusal.message
    )


@pytest.mark.parametrize("profile", list(Profile))
def test_version_1_is_accepted_only_where_no_profile_rides_on_it(profile: Profile) -> None:
    rd = report_data_v1(NONCE, SPKI)
    out = check(_sim(profile, rd), nonce=NONCE, spki=SPKI)
    if profile.allows_debug:
        assert out.bound and out.version == 1 and out.warning is not None
        assert out.warning.code == "binding_v1_deprecated"
    else:
        assert not out.bound and out.refusal is not None
        assert out.refusal.code == "binding_version_refused"
    # A key-store proof is new with version 2: version 1 never carries one.
    assert not check(_sim(profile, rd), nonce=NONCE, spki=SPKI, key_store=STORE).bound


@pytest.mark.parametrize("rd", [None, 7, "", "zz" * 64, "ab" * 63, "ab" * 65])
def test_report_data_that_is_not_64_bytes_of_hex_is_not_bound(rd: Any) -> None:
    out = check({"platform": "simulated", "profile": "development", "debug": True, "report_data": rd},
                nonce=NONCE, spki=None)  # fmt: skip
    assert not out.bound and out.refusal is not None and out.refusal.code == "binding_mismatch"


@pytest.mark.parametrize(
    "doc",
    [None, [], "x", {}, {"id": "11" * 16}, {"id": "11" * 15, "generation": 1},
     {"id": "zz" * 16, "generation": 1}, {"id": 5, "generation": 1},
     {"id": "11" * 16, "generation": 0}, {"id": "11" * 16, "generation": -1},
     {"id": "11" * 16, "generation": True}, {"id": "11" * 16, "generation": "1"},
     {"id": "11" * 16, "generation": 2**63}],
)  # fmt: skip
def test_malformed_key_store_proofs_are_refused(doc: Any) -> None:
    with pytest.raises(MalformedError):
        KeyStoreProof.from_json(doc)


def test_key_store_proof_round_trips() -> None:
    assert KeyStoreProof.from_json(STORE.to_json()) == STORE


# --- SEV-SNP: the verifier establishes the profile from the launch (fake AMD chain) ------------


def _snp(policy: int, host_data: bytes, report_data: bytes) -> dict[str, Any]:
    from tests.fakes.amd import AT, make_chain, make_report

    chain = make_chain()
    b = bytearray(make_report(chain, policy=policy))
    b[sev_snp.OFF_HOST_DATA : sev_snp.OFF_HOST_DATA + 32] = host_data
    b[sev_snp.OFF_REPORT_DATA : sev_snp.OFF_REPORT_DATA + 64] = report_data
    r, s = decode_dss_signature(
        chain.leaf_key.sign(bytes(b[: sev_snp.SIGNED_SIZE]), ec.ECDSA(hashes.SHA384()))
    )
    b[sev_snp.OFF_SIGNATURE_R : sev_snp.OFF_SIGNATURE_R + 72] = r.to_bytes(72, "little")
    b[sev_snp.OFF_SIGNATURE_S : sev_snp.OFF_SIGNATURE_S + 72] = s.to_bytes(72, "little")
    ev = evidence.verify(bytes(b), collateral=chain.collateral(), at=AT, format="sev-snp",
                         trust=chain.trust())  # fmt: skip
    return ev.claims


DEBUG_POLICY = 0x30000 | (1 << 19)


def test_snp_launch_data_attests_production() -> None:
    rd = report_data_for(NONCE, SPKI, profile=Profile.PRODUCTION)
    claims = _snp(0x30000, profile_launch_data(Profile.PRODUCTION), rd)
    assert claims["debug"] is False and claims["profile"] == "production"
    assert check(claims, nonce=NONCE, spki=SPKI).bound


def test_snp_debug_launch_claiming_production_is_development() -> None:
    """The host launches the production measurement with the DEBUG policy bit and production
    HOSTDATA, and its workload claims production in the report data: the verifier establishes
    development, and the binding refuses the claim."""
    rd = report_data_for(NONCE, SPKI, profile=Profile.PRODUCTION)
    claims = _snp(DEBUG_POLICY, profile_launch_data(Profile.PRODUCTION), rd)
    assert claims["debug"] is True and claims["profile"] == "development"
    out = check(claims, nonce=NONCE, spki=SPKI)
    assert not out.bound and out.refusal is not None and "runs as production" in out.refusal.message


def test_snp_without_profile_launch_data_cannot_claim_production() -> None:
    rd = report_data_for(NONCE, SPKI, profile=Profile.PRODUCTION)
    claims = _snp(0x30000, hashlib.sha256(b"some init-data").digest(), rd)
    assert claims["profile"] == "development"
    assert not check(claims, nonce=NONCE, spki=SPKI).bound
    # The version-1 formula cannot claim it either: it carries no profile.
    claims = _snp(0x30000, profile_launch_data(Profile.PRODUCTION), report_data_v1(NONCE, SPKI))
    out = check(claims, nonce=NONCE, spki=SPKI)
    assert out.refusal is not None and out.refusal.code == "binding_version_refused"


def test_check_named_takes_the_whole_report_data_or_nonce_claim_never_a_prefix() -> None:
    """Issue 11 item 7: what `veritee verify --nonce` compares."""
    from veritee.binding import check_named

    nonce = bytes(range(1, 33))
    claims = {"platform": "nitro", "report_data": None, "nonce": nonce.hex().upper()}
    assert check_named(claims, nonce=nonce).bound
    assert not check_named(claims, nonce=nonce[:1]).bound
    assert not check_named(claims, nonce=nonce + b"\0").bound
    claims = {"platform": "sev-snp", "report_data": (nonce + bytes(32)).hex(), "debug": False}
    assert check_named(claims, nonce=nonce + bytes(32)).bound
    for partial in (nonce, nonce[:1], nonce + bytes(31)):
        r = check_named(claims, nonce=partial)
        assert not r.bound and r.refusal is not None and r.refusal.code == "nonce_mismatch"
    assert not check_named({"report_data": "", "nonce": ""}, nonce=b"").bound
