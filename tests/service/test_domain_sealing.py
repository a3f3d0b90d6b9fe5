"""Trust(sealing="domain") against the in-process service: sealed state that survives an upgrade
(issue 18.3), refused to what the policy does not admit and to other profiles; platform-bound
sealing still loses it; a platform without a sealing key seals in domain mode by default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.service.conftest import GOOD, OTHER, Env

from veritee.admission import AdmissionInfo
from veritee.errors import SealingError, UsageError, VerificationError
from veritee.platforms.simulated import SimulatedPlatform
from veritee.profiles import Profile
from veritee.sdk.trust import Trust

pytestmark = pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)

CONTEXT = b"flaskr.sqlite"


def _policy(env: Env, *measurements: str) -> dict[str, Any]:
    return {"version": 1, "name": "flaskr", "platforms": {"simulated": {
        "measurements": list(measurements), "platform_keys": [env.platform.key_id], "allow_debug": True}}}  # fmt: skip


def _trust(env: Env, store: Path, measurement: str = GOOD, *, profile: Profile = Profile.PRODUCTION,
           platform: Any = "simulated", **kw: Any) -> Trust:  # fmt: skip
    return Trust("https://testserver", env.domain.ca_pem, platform=platform, measurement=measurement,
                 profile=profile, platform_dir=env.platform_dir, store=store,
                 transport=env.client._transport, **kw)  # fmt: skip


def _releases(env: Env) -> list[dict[str, Any]]:
    r = env.client.get("/v1/admin/audit?limit=500", headers=env.admin)
    return [e for e in r.json()["entries"] if e["kind"].startswith("sealing_key.")]


def test_a_domain_sealed_blob_survives_an_upgrade_and_a_platform_sealed_one_does_not(
    env: Env, tmp_path: Path
) -> None:
    env.install_policy(_policy(env, GOOD))
    v1 = _trust(env, tmp_path / "v1", sealing="domain")
    assert v1.sealing == "domain"
    blob = v1.seal(b"the flaskr database", context=CONTEXT)
    assert v1.unseal(blob, context=CONTEXT) == b"the flaskr database"
    for i in range(5):  # the released key is kept in memory: one release for all of these
        assert v1.unseal(v1.seal(bytes([i]), context=CONTEXT), context=CONTEXT) == bytes([i])
    assert len(_releases(env)) == 1
    key = v1._domain_sealing.released_key().key.reveal()
    assert v1._domain_sealing.workload == "flaskr" and key.hex() not in repr(v1._domain_sealing)
    for f in (tmp_path / "v1").rglob("*"):  # never written to disk
        assert not f.is_file() or key not in f.read_bytes()
    platform_blob = _trust(env, tmp_path / "v1p", sealing="platform").seal(b"old", context=CONTEXT)

    # Version 2 of the code before the operator admits it: the key broker refuses.
    v2 = _trust(env, tmp_path / "v2", OTHER)
    assert v2.sealing == "platform"  # auto: the simulated platform has a key of its own
    with pytest.raises(VerificationError) as e:
        v2.unseal(blob, context=CONTEXT)
    assert e.value.code == "sealing_key_denied"
    assert "measurement_not_allowed" in {r["code"] for r in e.value.reasons}  # type: ignore[attr-defined]

    # Admitted (the upgrade): the same blob opens, whatever v2's own sealing mode is.
    env.install_policy(_policy(env, GOOD, OTHER))
    assert v2.unseal(blob, context=CONTEXT) == b"the flaskr database"
    with pytest.raises(SealingError) as s:
        v2.unseal(blob, context=b"another file")
    assert s.value.code == "unseal_failed"
    # Platform-bound sealing is bound to the measurement: v2 cannot open v1's (documented).
    with pytest.raises(SealingError) as s:
        v2.unseal(platform_blob, context=CONTEXT)
    assert s.value.code == "unseal_failed"
    # And v1 migrates it: unseal with the platform key, seal again in domain mode.
    moved = v1.seal(
        _trust(env, tmp_path / "v1p").unseal(platform_blob, context=CONTEXT), context=CONTEXT
    )
    assert v2.unseal(moved, context=CONTEXT) == b"old"

    # Once the policy drops v1, v1 gets no key any more (a fresh process; nothing cached).
    env.install_policy(_policy(env, OTHER))
    with pytest.raises(VerificationError) as e:
        _trust(env, tmp_path / "v1b", sealing="domain").unseal(blob, context=CONTEXT)
    assert e.value.code == "sealing_key_denied"
    text = json.dumps(_releases(env))
    assert key.hex() not in text and [r["decision"] for r in _releases(env)] == [
        "accept", "reject", "accept", "reject"]  # fmt: skip


def test_another_profile_does_not_open_it(env: Env, tmp_path: Path) -> None:
    """The same measurement as staging, or as a debug development instance, gets its own
    profile's key, and the blob says it was sealed in production."""
    env.install_policy(_policy(env, GOOD))
    blob = _trust(env, tmp_path / "prod", sealing="domain").seal(b"production data")
    for profile in (Profile.STAGING, Profile.DEVELOPMENT):
        other = _trust(env, tmp_path / profile.value, profile=profile, sealing="domain")
        with pytest.raises(SealingError) as e:
            other.unseal(blob)
        assert e.value.code == "sealed_other_profile"
    keys = {_trust(env, tmp_path / p.value, profile=p, sealing="domain")._domain_sealing.released_key().key.reveal()
            for p in (Profile.PRODUCTION, Profile.STAGING, Profile.DEVELOPMENT)}  # fmt: skip
    assert len(keys) == 3


def test_a_platform_without_a_sealing_key_seals_in_domain_mode(env: Env, tmp_path: Path) -> None:
    """As on TDX, CCA or Nitro: the key store and the application's blobs are sealed with the
    domain-released key, so both survive an upgrade; the certificate of the old measurement
    in the store is renewed, never presented."""
    env.install_policy(_policy(env, GOOD, OTHER))

    def tdx_like(measurement: str) -> SimulatedPlatform:
        return SimulatedPlatform(env.platform_dir, measurement=measurement, profile=Profile.PRODUCTION,
                                 has_sealing_key=False)  # fmt: skip

    with pytest.raises(SealingError) as s:
        tdx_like(GOOD).sealing_key(b"x")
    assert s.value.code == "sealing_key_unavailable"
    with pytest.raises(UsageError) as u:
        _trust(env, tmp_path / "store", platform=tdx_like(GOOD), sealing="platform")
    assert u.value.code == "sealing_key_unavailable"
    with pytest.raises(UsageError) as u:
        _trust(env, tmp_path / "store", sealing="both")  # type: ignore[arg-type]
    assert u.value.code == "sealing_mode_invalid"

    v1 = _trust(env, tmp_path / "store", platform=tdx_like(GOOD))
    assert v1.sealing == "domain"
    cert = v1.certify()
    assert AdmissionInfo.from_certificate(cert).measurement == GOOD
    blob = v1.seal(b"state")
    v1.keystore.put("api-token", b"t0k3n")
    v1.close()

    v2 = _trust(env, tmp_path / "store", OTHER, platform=tdx_like(OTHER))  # same store, new code
    assert v2.keystore.get("api-token") == b"t0k3n"
    assert v2.unseal(blob) == b"state"
    renewed = v2.certify()
    assert AdmissionInfo.from_certificate(renewed).measurement == OTHER
    assert renewed.serial_number != cert.serial_number
    assert v2.certify().serial_number == renewed.serial_number  # kept until it nears expiry
    v2.close()


def test_a_workload_naming_its_policy_gets_that_policys_key_whatever_else_admits_it(
    env: Env, tmp_path: Path
) -> None:
    """Several named policies (issue 18.7): the domain-released key is the key of the policy
    that decided. A workload that names its policy (``appraisal_policy=``) keeps that key when
    another policy admitting the same measurement is installed, and unseals what it sealed."""
    env.install_policy(_policy(env, GOOD))  # "flaskr"
    app = _trust(env, tmp_path / "a", sealing="domain", appraisal_policy="flaskr")
    blob = app.seal(b"state", context=CONTEXT)
    shared = _policy(env, GOOD) | {"name": "alpha"}  # sorts first, admits the same measurement
    env.install_policy(shared)
    unnamed = _trust(env, tmp_path / "b", sealing="domain")
    assert unnamed._domain_sealing.released_key().workload == "alpha"  # the first that admits it
    with pytest.raises(SealingError):
        unnamed.unseal(blob, context=CONTEXT)
    again = _trust(env, tmp_path / "c", sealing="domain", appraisal_policy="flaskr")
    assert again._domain_sealing.released_key().workload == "flaskr"
    assert again.unseal(blob, context=CONTEXT) == b"state"
    gone = _trust(env, tmp_path / "d", sealing="domain", appraisal_policy="nope")
    with pytest.raises(Exception) as e:
        gone.seal(b"x", context=CONTEXT)
    assert getattr(e.value, "code", None) == "no_policy"
