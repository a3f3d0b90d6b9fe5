"""AdmissionInfo: claims read from admission certificates, strictly; verify_peer allow-lists."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.unit.sdk.sdk_pki import TestCA, measurement_of, now

from veritee import oids
from veritee.errors import VerificationError
from veritee.profiles import Profile
from veritee.sdk import admission
from veritee.sdk.admission import AdmissionInfo, verify_peer

M1 = measurement_of("one")
M2 = measurement_of("two")


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def test_all_exported() -> None:
    for name in admission.__all__:
        assert hasattr(admission, name)


def test_reads_claims(ca: TestCA) -> None:
    key, cert = ca.workload(M1.upper(), platform="sev-snp", profile="staging")
    info = AdmissionInfo.from_certificate(cert)
    assert info.measurement == M1  # normalised to lower case
    assert info.platform == "sev-snp"
    assert info.profile is Profile.STAGING
    assert info.not_after == cert.not_valid_after_utc
    assert info.public_key == key.public_key()
    assert info.dns_names == ("workload.veritee.internal",)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert AdmissionInfo.from_pem(pem) == AdmissionInfo.from_der(der) == info


def test_reads_lead_domain_certificates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    domain_mod = pytest.importorskip("veritee.domain")
    t = now()
    domain = domain_mod.Domain.create(tmp_path / "d", now=t)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = domain_mod.issue_admission_certificate(
        domain,
        key.public_key(),
        claims={"measurement": M2, "platform": "simulated", "profile": "production"},
        now=t,
        lifetime=dt.timedelta(hours=1),
    )
    info = AdmissionInfo.from_certificate(cert)
    assert (info.measurement, info.platform, info.profile) == (M2, "simulated", Profile.PRODUCTION)


def test_profile_claim_is_optional_and_then_not_attested(ca: TestCA) -> None:
    """Hardware evidence states no profile: the certificate then carries none."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(key.public_key(), measurement=M1, platform="tdx", profile=None)  # type: ignore[arg-type]
    info = AdmissionInfo.from_certificate(cert)
    assert info.profile is None
    from veritee.sdk.admission import verify_peer

    with pytest.raises(VerificationError) as e:
        verify_peer(
            info,
            allowed_measurements={M1},
            allowed_profiles=["production"],
            at=cert.not_valid_before_utc + dt.timedelta(seconds=60),
        )
    assert e.value.code == "peer_profile_not_allowed"


@pytest.mark.parametrize("missing", ["measurement", "platform"])
def test_missing_claim_refused(ca: TestCA, missing: str) -> None:
    claims: dict[str, str | None] = {"measurement": M1, "platform": "tdx", "profile": "production"}
    claims[missing] = None
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(key.public_key(), **claims)  # type: ignore[arg-type]
    with pytest.raises(VerificationError) as e:
        AdmissionInfo.from_certificate(cert)
    assert e.value.code == "admission_claim_missing"
    assert missing in str(e.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("measurement", "not hex"),
        ("measurement", "abcd"),  # too short
        ("measurement", "ab" * 65),  # too long
        ("measurement", "abc"),  # odd length
        ("platform", "Not A Platform!"),
        ("platform", ""),
        ("profile", "unknown"),
    ],
)
def test_malformed_claim_refused(ca: TestCA, field: str, value: str) -> None:
    claims = {"measurement": M1, "platform": "tdx", "profile": "production", field: value}
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(VerificationError) as e:
        AdmissionInfo.from_certificate(ca.issue(key.public_key(), **claims))  # type: ignore[arg-type]
    assert e.value.code == "admission_claim_malformed"


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x04\x02ab", oids.encode_utf8_string(M1) + b"\x00", b"\x0c\x05ab", b"\x0c\x02\xff\xfe"],
)
def test_measurement_not_utf8string_refused(ca: TestCA, raw: bytes) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(key.public_key(), measurement=None, raw_measurement=raw)
    with pytest.raises(VerificationError) as e:
        AdmissionInfo.from_certificate(cert)
    assert e.value.code == "admission_claim_malformed"


def test_ca_certificate_is_not_an_admission(ca: TestCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(VerificationError) as e:
        AdmissionInfo.from_certificate(ca.issue(key.public_key(), measurement=M1, ca=True))
    assert e.value.code == "admission_not_end_entity"


def test_garbage_pem_and_der() -> None:
    for parse, data in ((AdmissionInfo.from_pem, b"junk"), (AdmissionInfo.from_der, b"\x30\x03")):
        with pytest.raises(VerificationError) as e:
            parse(data)
        assert e.value.code == "admission_cert_malformed"


def test_verify_peer(ca: TestCA) -> None:
    _, cert = ca.workload(M1, platform="tdx", profile="production")
    info = AdmissionInfo.from_certificate(cert)
    t = now()
    verify_peer(info, allowed_measurements={M1.upper(), M2}, at=t)
    verify_peer(
        info,
        allowed_measurements=[M1],
        allowed_platforms={"tdx"},
        allowed_profiles={"production"},
        at=t,
    )
    cases = [
        ({"allowed_measurements": {M2}}, "peer_measurement_not_allowed"),
        ({"allowed_measurements": set()}, "peer_measurement_not_allowed"),
        (
            {"allowed_measurements": {M1}, "allowed_platforms": {"sev-snp"}},
            "peer_platform_not_allowed",
        ),
        (
            {"allowed_measurements": {M1}, "allowed_profiles": {Profile.DEVELOPMENT}},
            "peer_profile_not_allowed",
        ),
    ]
    for kwargs, code in cases:
        with pytest.raises(VerificationError) as e:
            verify_peer(info, at=t, **kwargs)  # type: ignore[arg-type]
        assert e.value.code == code
    with pytest.raises(VerificationError) as e:
        verify_peer(info, allowed_measurements={M1}, at=info.not_after + dt.timedelta(seconds=1))
    assert e.value.code == "peer_certificate_expired"
    with pytest.raises(VerificationError) as e:
        verify_peer(info, allowed_measurements={M1}, at=info.not_before - dt.timedelta(seconds=1))
    assert e.value.code == "peer_certificate_not_yet_valid"
