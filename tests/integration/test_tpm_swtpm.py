"""TPM 2.0 end to end on real software TPMs (swtpm) and a real Certifier Service (uvicorn).

Enrollment as Keylime and GCE do it: EK certificate against the policy's EK roots,
MakeCredential (service, in software) / ActivateCredential (the TPM), AK certificate from the
domain CA; then a quote verifies offline with only the domain CA as collateral. A second TPM whose
EK another manufacturer certified is refused. Sealing to a PCR policy survives a restart and fails
once a PCR changes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tests.fakes.swtpm import Tpm, running_tpm, swtpm_missing
from tests.platform_contract import check_sealing_key_shape

from veritee import tpm2
from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for, spki_der
from veritee.cli.verify import verify_evidence
from veritee.domain import Domain, issue_admission_certificate
from veritee.errors import PlatformError, SealingError, VerificationError
from veritee.evidence import tpm as tpm_evidence
from veritee.profiles import Profile
from veritee.sdk import sealing
from veritee.sdk.tpm_enroll import enroll
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings

pytestmark = [pytest.mark.attester]
if swtpm_missing() is not None:
    pytestmark.append(pytest.mark.skip(reason=str(swtpm_missing())))
tpm_platform = pytest.importorskip("veritee.platforms.tpm", reason="needs tpm2-pytss")
try:
    import tpm2_pytss  # noqa: F401
except ImportError:
    pytestmark.append(
        pytest.mark.skip(reason="tpm2-pytss is not installed (make test installs .[tpm])")
    )

ZERO_PCRS_MEASUREMENT = hashlib.sha384(bytes(32 * 10)).hexdigest()


@dataclass
class World:
    good: Tpm
    rogue: Tpm
    server: RunningServer
    domain: Domain
    root: Path

    def platform(self, tpm: Tpm, name: str = "state", **kw: Any) -> Any:
        return tpm_platform.TpmPlatform(
            tcti=tpm.tcti, state_dir=self.root / name, event_log=None, **kw
        )

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=30)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("tpm")
    domain = Domain.create(root / "domain", now=dt.datetime.now(dt.UTC))
    with running_tpm(root / "good", root / "ca-vendor") as good, \
            running_tpm(root / "rogue", root / "ca-other") as rogue:  # fmt: skip
        # The manufacturers' certificates go in the domain's collateral (Keylime's cert store);
        # the policy pins which roots may enroll. Both vendors' are there: only one is pinned.
        for tpm, name in ((good, "vendor"), (rogue, "other")):
            (domain.collateral_dir / f"{name}-ek-root.pem").write_bytes(
                tpm.ek_root.public_bytes(serialization.Encoding.PEM)
            )
            (domain.collateral_dir / f"{name}-ek-ca.pem").write_bytes(tpm.ek_intermediate_pem)
        server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)))
        policy = {"version": 1, "name": "tpm", "platforms": {"tpm": {
            "ek_roots": [good.ek_root_sha256], "measurements": [ZERO_PCRS_MEASUREMENT]}}}  # fmt: skip
        admin = {"Authorization": f"Bearer {domain.admin_token()}"}
        httpx.put(
            server.url + "/v1/admin/policy",
            headers=admin,
            content=sign_policy(load_policy(json.dumps(policy)), domain.policy_key),
        ).raise_for_status()
        try:
            yield World(good, rogue, server, domain, root)
        finally:
            server.stop()


# --- MakeCredential in software, ActivateCredential in the TPM ------------------------------------


def test_make_credential_activates_only_for_that_ak(world: World) -> None:
    p = world.platform(world.good, "mc")
    req = p.enrollment_request()
    ek, ak = tpm2.parse_public(req["ek_public"]), tpm2.parse_public(req["ak_public"])
    secret = os.urandom(32)
    assert p.activate_credential(*tpm2.make_credential(ek, ak.name, secret)) == secret
    other_name = ak.name[:2] + hashlib.sha256(b"another key").digest()
    with pytest.raises(PlatformError) as e:
        p.activate_credential(*tpm2.make_credential(ek, other_name, secret))
    assert e.value.code == "platform_refused"


def test_make_credential_to_the_other_tpms_ek_does_not_activate(world: World) -> None:
    req = world.platform(world.rogue, "mc-rogue").enrollment_request()
    mine = world.platform(world.good, "mc")
    blob, enc = tpm2.make_credential(tpm2.parse_public(req["ek_public"]),
                                     tpm2.parse_public(mine.ak_public).name, os.urandom(32))  # fmt: skip
    with pytest.raises(PlatformError):
        mine.activate_credential(blob, enc)


# --- enrollment with the service, then offline verification ---------------------------------------


@pytest.fixture(scope="module")
def enrolled(world: World) -> Any:
    p = world.platform(world.good, "enrolled")
    with world.http() as http:
        cert = enroll(http, p, world.domain.ca_certificate)
    assert (
        x509.ExtendedKeyUsage([tpm_evidence.AIK_CERTIFICATE_EKU])
        == cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    return p


def test_enrolled_quote_verifies_offline_with_the_domain_ca(
    world: World, enrolled: Any, tmp_path: Path
) -> None:
    nonce = os.urandom(32)
    ev = enrolled.evidence(report_data_for(nonce, b"", profile=enrolled.profile))
    path = tmp_path / "quote.bin"
    path.write_bytes(ev)
    ca = world.domain.path / "domain_ca.pem"
    cmd = [sys.executable, "-m", "veritee.cli", "verify", str(path), "--format", "tpm",
           "--collateral", str(ca), "--nonce", nonce.hex(), "--json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    result = json.loads(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert result["authentic"] and result["accepted"]
    ca_der = world.domain.ca_certificate.public_bytes(serialization.Encoding.DER)
    assert result["claims"]["ak_root"] == hashlib.sha256(ca_der).hexdigest()
    assert result["claims"]["measurement"] == enrolled.measurement == ZERO_PCRS_MEASUREMENT
    # Without the domain CA the AK certificate chains to nothing trusted.
    bare = verify_evidence(ev, format="tpm", collateral_paths=[], at=dt.datetime.now(dt.UTC),
                           policy_text=None, nonce=None)  # fmt: skip
    assert not bare["authentic"] and bare["reasons"][0]["code"] == "root_not_pinned"


def test_the_service_appraises_an_enrolled_quote(world: World, enrolled: Any) -> None:
    with world.http() as http:
        nonce = bytes.fromhex(http.post("/v1/challenge").json()["nonce"])
        ev = enrolled.evidence(report_data_for(nonce, b"", profile=enrolled.profile))
        r = http.post("/v1/attest", json={"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(),
                                         "format": "tpm"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "affirming"


def test_a_tpm_whose_ek_another_manufacturer_certified_is_refused(world: World) -> None:
    p = world.platform(world.rogue, "rogue")
    with world.http() as http, pytest.raises(VerificationError) as e:
        enroll(http, p, world.domain.ca_certificate)
    assert e.value.code == "root_not_pinned"
    assert p.ak_certificate() is None


def test_a_wrong_activation_answer_ends_the_challenge(world: World) -> None:
    p = world.platform(world.good, "wrong")
    req = p.enrollment_request()
    b64 = lambda d: base64.b64encode(d).decode()  # noqa: E731
    with world.http() as http:
        ch = http.post(
            "/v1/tpm/enroll",
            json={
                "ek_certificate": b64(req["ek_certificate"]),
                "ek_chain": [],
                "ek_public": b64(req["ek_public"]),
                "ak_public": b64(req["ak_public"]),
            },
        ).json()
        secret = p.activate_credential(
            base64.b64decode(ch["credential_blob"]), base64.b64decode(ch["encrypted_secret"])
        )
        body = {"nonce": ch["nonce"], "ticket": ch["ticket"], "ak_public": b64(req["ak_public"]),
                "ek_certificate": b64(req["ek_certificate"])}  # fmt: skip
        r = http.post("/v1/tpm/activate", json=body | {"secret": b64(bytes(32))})
        assert (r.status_code, r.json()["code"]) == (403, "activation_failed")
        r = http.post("/v1/tpm/activate", json=body | {"secret": b64(secret)})
        assert r.json()["code"] == "nonce_reused"
        # A ticket for this nonce cannot be bent to another AK either.
        ch2 = http.post(
            "/v1/tpm/enroll",
            json={
                "ek_certificate": b64(req["ek_certificate"]),
                "ek_chain": [],
                "ek_public": b64(req["ek_public"]),
                "ak_public": b64(req["ak_public"]),
            },
        ).json()
        other_ak = bytearray(req["ak_public"])
        other_ak[-1] ^= 1
        r = http.post(
            "/v1/tpm/activate",
            json=body
            | {
                "nonce": ch2["nonce"],
                "ticket": ch2["ticket"],
                "secret": b64(secret),
                "ak_public": b64(bytes(other_ak)),
            },
        )
        assert r.status_code in (400, 403) and r.json()["code"] in (
            "enrollment_ticket_invalid",
            "malformed",
        )
        tampered = bytearray(base64.b64decode(ch2["ticket"]))
        tampered[-1] ^= 1
        r = http.post(
            "/v1/tpm/activate",
            json=body
            | {"nonce": ch2["nonce"], "ticket": b64(bytes(tampered)), "secret": b64(secret)},
        )
        assert (r.status_code, r.json()["code"]) == (403, "enrollment_ticket_invalid")


def _soft_ak_public(key: ec.EllipticCurvePrivateKey, attributes: int) -> bytes:
    n = key.public_key().public_numbers()
    return (tpm2.ALG_ECC.to_bytes(2, "big") + tpm2.ALG_SHA256.to_bytes(2, "big") + attributes.to_bytes(4, "big")
            + tpm2.tpm2b(b"") + tpm2.ALG_NULL.to_bytes(2, "big") + tpm2.ALG_ECDSA.to_bytes(2, "big")
            + tpm2.ALG_SHA256.to_bytes(2, "big") + (3).to_bytes(2, "big") + tpm2.ALG_NULL.to_bytes(2, "big")
            + tpm2.tpm2b(n.x.to_bytes(32, "big")) + tpm2.tpm2b(n.y.to_bytes(32, "big")))  # fmt: skip


def test_a_software_key_cannot_enroll_as_an_ak(world: World) -> None:
    """An AK without fixedTPM (a key made outside the TPM) is refused before any credential."""
    req = world.platform(world.good, "soft").enrollment_request()
    soft = _soft_ak_public(
        ec.generate_private_key(ec.SECP256R1()), 0x00050072 & ~tpm2.ATTR_FIXED_TPM
    )
    b64 = lambda d: base64.b64encode(d).decode()  # noqa: E731
    with world.http() as http:
        r = http.post(
            "/v1/tpm/enroll",
            json={
                "ek_certificate": b64(req["ek_certificate"]),
                "ek_chain": [],
                "ek_public": b64(req["ek_public"]),
                "ak_public": b64(soft),
            },
        )
    assert (r.status_code, r.json()["code"]) == (403, "ak_attributes_invalid")


@pytest.mark.parametrize(("field", "value", "code"), [
    ("ek_certificate", "not base64!", "malformed"),
    ("ek_certificate", base64.b64encode(b"\x30\x03junk").decode(), "malformed"),
    ("ek_public", base64.b64encode(b"\x00\x01").decode(), "malformed"),
    ("ak_public", base64.b64encode(bytes(2000)).decode(), "malformed_request"),  # over the size limit
    ("ek_chain", [base64.b64encode(b"x").decode()] * 6, None),
])  # fmt: skip
def test_malformed_enrollment_requests_are_400(
    world: World, field: str, value: Any, code: str | None
) -> None:
    req = world.platform(world.good, "mal").enrollment_request()
    b64 = lambda d: base64.b64encode(d).decode()  # noqa: E731
    body = {"ek_certificate": b64(req["ek_certificate"]), "ek_chain": [], "ek_public": b64(req["ek_public"]),
            "ak_public": b64(req["ak_public"])} | {field: value}  # fmt: skip
    with world.http() as http:
        r = http.post("/v1/tpm/enroll", json=body)
        assert r.status_code in (400, 422), r.text
        if code is not None:
            assert r.json()["code"] == code
        # The EK certificate of one TPM with the EK of the other: refused, not a 5xx.
        other = world.platform(world.rogue, "mal-rogue").enrollment_request()
        r = http.post(
            "/v1/tpm/enroll",
            json=body
            | {
                field: body[field] if field != "ek_public" else b64(req["ek_public"]),
                "ek_public": b64(other["ek_public"]),
            },
        )
        assert r.status_code in (400, 403, 422) and r.status_code < 500


# --- an admission certificate never passes for an AK certificate ----------------------------------


def test_an_admission_certificate_is_not_an_ak_certificate(world: World) -> None:
    """A certified workload holds a software key with a domain-CA certificate; it must not be able
    to sign TPM-looking quotes that verify under the domain CA (the AIK EKU is required)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = issue_admission_certificate(world.domain, key.public_key(), claims={"platform": "simulated",
                                       "measurement": "ab" * 48}, now=now, lifetime=dt.timedelta(hours=1))  # fmt: skip
    ak_pub = _soft_ak_public(key, 0x00050072)
    nonce = os.urandom(32)
    pcrs = {i: bytes(32) for i in range(24)}
    sel = (1).to_bytes(4, "big") + tpm2.ALG_SHA256.to_bytes(2, "big") + b"\x03\xff\xff\xff"
    attest = (tpm_evidence.TPM_GENERATED_VALUE.to_bytes(4, "big") + tpm_evidence.TPM_ST_ATTEST_QUOTE.to_bytes(2, "big")
              + tpm2.tpm2b(b"\x00\x0b" + bytes(32)) + tpm2.tpm2b(report_data_for(nonce, b"", profile=Profile.DEVELOPMENT)) + bytes(17) + bytes(8)
              + sel + tpm2.tpm2b(hashlib.sha256(b"".join(pcrs[i] for i in range(24))).digest()))  # fmt: skip
    r, s = decode_dss_signature(key.sign(attest, ec.ECDSA(hashes.SHA256())))
    sig = (tpm2.ALG_ECDSA.to_bytes(2, "big") + tpm2.ALG_SHA256.to_bytes(2, "big")
           + tpm2.tpm2b(r.to_bytes(32, "big")) + tpm2.tpm2b(s.to_bytes(32, "big")))  # fmt: skip
    forged = tpm_platform.encode_attestation(ak_pub=ak_pub, quotes=[(attest, sig, tpm2.ALG_SHA256, pcrs)],
                                             ak_cert=cert.public_bytes(serialization.Encoding.DER))  # fmt: skip
    assert spki_der(cert.public_key()) == tpm2.parse_public(ak_pub).spki_der()
    result = verify_evidence(forged, format="tpm", collateral_paths=[world.domain.path / "domain_ca.pem"],
                             at=now, policy_text=None, nonce=nonce)  # fmt: skip
    assert not result["authentic"]
    assert result["reasons"][0]["code"] == "ak_not_certified"


# --- sealing to a PCR policy -------------------------------------------------------------------


def test_sealing_survives_a_new_process_and_fails_once_a_pcr_changes(
    world: World, tmp_path: Path
) -> None:
    with running_tpm(tmp_path / "sealer", world.good.ca_dir) as tpm:
        p = tpm_platform.TpmPlatform(
            tcti=tpm.tcti, state_dir=tmp_path / "seal-state", event_log=None
        )
        check_sealing_key_shape(p)  # the Platform contract (veritee.platforms.base)
        blob = sealing.seal(p, b"state", purpose="app")
        again = tpm_platform.TpmPlatform(
            tcti=tpm.tcti, state_dir=tmp_path / "seal-state", event_log=None
        )
        assert sealing.unseal(again, blob, purpose="app") == b"state"
        elsewhere = tpm_platform.TpmPlatform(
            tcti=world.good.tcti, state_dir=tmp_path / "seal-state", event_log=None
        )
        with pytest.raises(SealingError):
            sealing.unseal(
                elsewhere, blob, purpose="app"
            )  # another TPM: the sealed object does not load
        _extend(tpm.tcti, 7)
        with pytest.raises(SealingError):
            sealing.unseal(again, blob, purpose="app")
        # PCRs outside the sealed set do not matter.
        q = tpm_platform.TpmPlatform(
            tcti=tpm.tcti, state_dir=tmp_path / "seal2", event_log=None, seal_pcrs=(0, 1)
        )
        blob2 = sealing.seal(q, b"more", purpose="app")
        _extend(tpm.tcti, 16)  # outside the sealed PCRs and the measurement (PCRs 0-9)
        assert sealing.unseal(q, blob2, purpose="app") == b"more"


def _extend(tcti: str, index: int) -> None:
    from tpm2_pytss import ESAPI, ESYS_TR, TPM2_ALG, TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

    with ESAPI(tcti) as e:
        digest = TPMT_HA(
            hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=hashlib.sha256(b"change").digest())
        )
        e.pcr_extend(getattr(ESYS_TR, f"PCR{index}"), TPML_DIGEST_VALUES([digest]))


def test_veritee_attest_on_the_enrolled_tpm(world: World, enrolled: Any, tmp_path: Path) -> None:
    """The command line end to end: `veritee attest --platform tpm` then `veritee verify`."""
    nonce = os.urandom(16).hex()
    base = [sys.executable, "-m", "veritee.cli"]
    attest = [*base, "attest", "--platform", "tpm", "--tcti", world.good.tcti, "--state", str(enrolled.state_dir),
              "--nonce", nonce, "-o", str(tmp_path / "q.bin")]  # fmt: skip
    out = subprocess.run(attest, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    verify = [*base, "verify", str(tmp_path / "q.bin"), "--collateral", str(world.domain.path / "domain_ca.pem"),
              "--nonce", nonce, "--json"]  # fmt: skip
    result = json.loads(subprocess.run(verify, capture_output=True, text=True, timeout=60).stdout)
    assert result["format"] == "tpm" and result["accepted"], result["reasons"]
    show = subprocess.run(
        [
            *base,
            "attest",
            "--show",
            "--json",
            "--platform",
            "tpm",
            "--tcti",
            world.good.tcti,
            "--state",
            str(enrolled.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    info = json.loads(show.stdout)
    assert info["enrolled"] is True and info["measurement"] == ZERO_PCRS_MEASUREMENT


def test_the_tpm_counter_only_goes_up(world: World, tmp_path: Path) -> None:
    p = world.platform(world.good, "counter")
    counter = p.monotonic_counter("keystore:test")
    start = counter.read()
    assert counter.increment() == start + 1 == counter.read()
    again = world.platform(world.good, "counter-2").monotonic_counter("keystore:test")
    assert again.index == counter.index and again.read() == start + 1
    assert p.monotonic_counter("another").index != counter.index


@pytest.mark.parametrize(
    "tcti", ["", "foo:bar", "swtpm:host=1;rm -rf", "device:/dev/tpmrm0 x", "x" * 300]
)
def test_bad_tcti_is_a_usage_error(tcti: str, tmp_path: Path) -> None:
    from veritee.errors import UsageError

    with pytest.raises(UsageError):
        tpm_platform.TpmPlatform(tcti=tcti, state_dir=tmp_path)


def test_absent_tpm_and_bad_arguments(world: World, tmp_path: Path) -> None:
    from veritee.errors import UsageError

    for absent in (
        "device:/nonexistent/tpmrm0",
        "device" if not Path("/dev/tpmrm0").exists() else "device:/x/y",
    ):
        with pytest.raises(PlatformError) as e:
            tpm_platform.TpmPlatform(tcti=absent, state_dir=tmp_path)
        assert e.value.code == "platform_absent"
    with pytest.raises(PlatformError) as e:
        tpm_platform.TpmPlatform(tcti="swtpm:host=127.0.0.1,port=1", state_dir=tmp_path).evidence(
            bytes(64)
        )
    assert e.value.code == "platform_absent"
    with pytest.raises(UsageError):
        world.platform(world.good, "args").evidence(bytes(32))
    with pytest.raises(UsageError):
        world.platform(world.good, "args", seal_pcrs=(24,))
    from veritee.platforms.detect import Interfaces, detect

    assert detect(Interfaces(tsm_root=tmp_path / "none", sev_guest=tmp_path / "n", tdx_guest=tmp_path / "n",
                             nsm=tmp_path / "n", tcti=world.good.tcti)) == "tpm"  # fmt: skip


def test_a_sealed_object_with_a_weaker_policy_is_refused(world: World, tmp_path: Path) -> None:
    """The host replaces the sealed object with one it made under the same SRK, usable with a
    password: the driver refuses it instead of deriving keys from a secret the host knows."""
    t = tpm2_pytss_module()
    p = world.platform(world.good, "weak")
    sealing.seal(p, b"x", purpose="app")  # creates the sealed object file
    (path,) = (world.root / "weak").glob("tpm-sealed-*.bin")
    with t.ESAPI(world.good.tcti) as e:
        trial, policy = p._pcr_policy(e, t.TPM2_SE.TRIAL)
        e.flush_context(trial)
        srk = p._srk(e)
        # The same PCR policy (so the driver's policy session works), plus password use.
        attrs = t.TPMA_OBJECT.FIXEDTPM | t.TPMA_OBJECT.FIXEDPARENT | t.TPMA_OBJECT.USERWITHAUTH
        template = t.TPM2B_PUBLIC.parse(
            "keyedhash", objectAttributes=attrs, nameAlg="sha256", authPolicy=policy
        )
        sensitive = t.TPM2B_SENSITIVE_CREATE(
            t.TPMS_SENSITIVE_CREATE(data=t.TPM2B_SENSITIVE_DATA(b"k" * 32))
        )
        private, public, *_ = e.create(srk, sensitive, template)
        e.flush_context(srk)
    path.write_bytes(bytes(public.marshal()) + bytes(private.marshal()))
    with pytest.raises(SealingError):
        p.sealing_key(b"x")
    path.write_bytes(b"\x00\x05junk")
    with pytest.raises(SealingError):
        p.sealing_key(b"x")


def tpm2_pytss_module() -> Any:
    import tpm2_pytss

    return tpm2_pytss


# --- veritee.Trust on a TPM ------------------------------------------------------------------


def test_trust_on_a_tpm_enrolls_certifies_seals_and_unseals(world: World, tmp_path: Path) -> None:
    from veritee.sdk.trust import Trust

    with running_tpm(tmp_path / "workload-tpm", world.good.ca_dir) as tpm:
        trust = Trust(world.server.url, world.domain.ca_pem, platform="tpm", tcti=tpm.tcti,
                      store=tmp_path / "store", platform_dir=tmp_path / "tpm-state")  # fmt: skip
        assert trust.platform.name == "tpm" and trust.platform.needs_enrollment  # type: ignore[attr-defined]
        cert = trust.certify()  # enrolls first, then attests with the certified AK
        assert not trust.platform.needs_enrollment  # type: ignore[attr-defined]
        from veritee import oids

        platform = cert.extensions.get_extension_for_oid(oids.PLATFORM).value.value
        assert oids.decode_utf8_string(platform) == "tpm"
        blob = trust.seal(b"state across restarts")
        trust.close()
        again = Trust(world.server.url, world.domain.ca_pem, platform="tpm", tcti=tpm.tcti,
                      store=tmp_path / "store", platform_dir=tmp_path / "tpm-state")  # fmt: skip
        assert again.unseal(blob) == b"state across restarts"
        assert again.certify() == cert  # the key store (sealed to the TPM) kept key and certificate
        again.close()


def test_trust_on_a_tpm_of_another_manufacturer_is_refused(world: World, tmp_path: Path) -> None:
    from veritee.sdk.trust import Trust

    trust = Trust(world.server.url, world.domain.ca_pem, platform="tpm", tcti=world.rogue.tcti,
                  store=tmp_path / "store", platform_dir=tmp_path / "rogue-state")  # fmt: skip
    with pytest.raises(VerificationError) as e:
        trust.certify()
    assert e.value.code == "root_not_pinned"
    trust.close()


def test_auto_takes_a_tpm_only_when_asked_for(world: World, tmp_path: Path) -> None:
    """A TPM found only as a device (every laptop has one) does not capture platform="auto"."""
    from veritee.platforms.detect import Interfaces, detect

    class DeviceOnly(Interfaces):
        @property
        def tpm_tcti(self) -> str | None:
            return world.good.tcti  # as if /dev/tpmrm0 were this TPM

    none = tmp_path / "none"
    assert detect(DeviceOnly(tsm_root=none, sev_guest=none, tdx_guest=none, nsm=none)) is None
