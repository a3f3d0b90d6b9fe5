"""The domain's CRL as the SDK reads it (veritee.sdk.revocation): signed by the domain CA,
current, listing revoked serials; fetched from a real in-process service."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient

from veritee.domain import Domain
from veritee.errors import MalformedError, VerificationError
from veritee.sdk.revocation import RevocationList, ServiceRevocations
from veritee.service.app import create_app
from veritee.service.settings import Settings


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _crl(domain: Domain, serials: list[int], *, this: dt.datetime, next_: dt.datetime) -> bytes:
    b = (x509.CertificateRevocationListBuilder().issuer_name(domain.ca_certificate.subject)
         .last_update(this).next_update(next_))  # fmt: skip
    for s in serials:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(this).build()
        )
    return b.sign(domain.ca_key, hashes.SHA384()).public_bytes(Encoding.DER)


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    return Domain.create(tmp_path / "d", name="crl", now=_now())


def test_a_listed_serial_is_revoked_and_a_bad_crl_refused(domain: Domain, tmp_path: Path) -> None:
    now = _now()
    good = _crl(domain, [7, 9], this=now, next_=now + dt.timedelta(hours=1))
    crl = RevocationList.from_der(good, domain.ca_certificate)
    with pytest.raises(VerificationError) as e:
        crl.check(9, now)
    assert e.value.code == "certificate_revoked"
    crl.check(8, now)
    with pytest.raises(VerificationError) as e:
        crl.check(8, now + dt.timedelta(hours=2))
    assert e.value.code == "crl_expired"
    tampered = bytearray(good)
    tampered[-3] ^= 1  # inside the signature
    with pytest.raises((VerificationError, MalformedError)):
        RevocationList.from_der(bytes(tampered), domain.ca_certificate)
    with pytest.raises(MalformedError):
        RevocationList.from_der(good[: len(good) // 2], domain.ca_certificate)
    other = Domain.create(tmp_path / "other", name="crl", now=now)  # same name, other key
    with pytest.raises(VerificationError) as e:
        RevocationList.from_der(good, other.ca_certificate)
    assert e.value.code in ("crl_invalid", "crl_issuer_mismatch")


def test_service_crl_is_fetched_checked_and_refreshed(domain: Domain) -> None:
    app = create_app(Settings(data_dir=domain.path))
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    with TestClient(app) as client:
        revocations = ServiceRevocations(client, domain.ca_certificate, refresh=dt.timedelta(0))
        revocations.check(0x1234, _now())
        r = client.post("/v1/admin/revocations", json={"serial": "1234"}, headers=admin)
        assert r.status_code == 200, r.text
        with pytest.raises(VerificationError) as e:
            revocations.check(0x1234, _now())
        assert e.value.code == "certificate_revoked"
        for bad in ({"serial": "zz"}, {"serial": "0"}, {"measurement": "ab"}, {},
                    {"serial": "12", "measurement": "ab" * 48}):  # fmt: skip
            assert client.post("/v1/admin/revocations", json=bad, headers=admin).status_code == 400
        assert client.post("/v1/admin/revocations", json={"serial": "12"}).status_code == 401
        # Another domain's CA does not vouch for this CRL: fail closed.
        import tempfile

        with tempfile.TemporaryDirectory() as other_dir:
            other = Domain.create(Path(other_dir) / "o", name="o", now=_now())
            strict = ServiceRevocations(client, other.ca_certificate)
            with pytest.raises(VerificationError) as e:
                strict.check(1, _now())
            assert e.value.code == "crl_unavailable"
