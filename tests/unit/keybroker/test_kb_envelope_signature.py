"""Release envelopes are signed by the domain's key broker, and the SDK checks it (issue 13.5).

A host on the path knows the workload's public key, the secret's name, version and the nonce:
it can encrypt a secret of its choosing to the workload. It cannot sign it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from veritee.domain import Domain, issue_admission_certificate, issue_broker_certificate
from veritee.errors import MalformedError, VerificationError
from veritee.keybroker.release import (
    EnvelopeSigner,
    open_envelope,
    parse_recipient,
    seal_envelope,
    x25519_jwk,
)
from veritee.keybroker.wrap import hpke_seal, jwk_from_public_key, release_info

NOW = dt.datetime.now(dt.UTC)
NONCE = b"\x07" * 32
NAME = "db/password"


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Domain:
    return Domain.create(tmp_path_factory.mktemp("d") / "d", name="t", now=NOW)


def _hpke(
    domain: Domain, value: bytes = b"hunter2", **kw: Any
) -> tuple[dict[str, Any], x25519.X25519PrivateKey]:
    key = x25519.X25519PrivateKey.generate()
    env = seal_envelope(parse_recipient(x25519_jwk(key.public_key())), value, name=NAME, version=3,
                        nonce=NONCE, signer=kw.get("signer", domain.envelope_signer))  # fmt: skip
    return env, key


def _open(domain: Domain, env: dict[str, Any], key: Any, **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "name": NAME,
        "nonce": NONCE,
        "ca_certificate": domain.ca_certificate,
        "at": NOW,
    }
    args.update(kw)
    return open_envelope(env, key, **args)


def test_signed_envelopes_open(domain: Domain) -> None:
    env, key = _hpke(domain)
    assert _open(domain, env, key) == b"hunter2"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwe = seal_envelope(parse_recipient(jwk_from_public_key(ec_key.public_key(), alg="ECDH-ES+A256KW")),
                        b"jwe-secret", name=NAME, version=1, nonce=NONCE, signer=domain.envelope_signer)  # fmt: skip
    assert jwe["signer"].startswith("-----BEGIN CERTIFICATE-----")
    assert _open(domain, jwe, ec_key) == b"jwe-secret"


def test_a_secret_of_the_hosts_choosing_is_refused(domain: Domain) -> None:
    """The host replaces the ciphertext with its own, encrypted to the same public key."""
    env, key = _hpke(domain)
    forged = dict(env)
    forged["ciphertext"] = base64.b64encode(
        hpke_seal(b"the host's secret", key.public_key(), info=release_info(NAME, 3, NONCE))
    ).decode()
    with pytest.raises(VerificationError) as e:
        _open(domain, forged, key)
    assert e.value.code == "envelope_signature_invalid"
    unsigned = {k: v for k, v in forged.items() if k not in ("signature", "signer")}
    with pytest.raises(VerificationError) as e:
        _open(domain, unsigned, key)
    assert e.value.code == "envelope_unsigned"


def test_a_signed_envelope_is_bound_to_key_nonce_name_and_version(domain: Domain) -> None:
    env, key = _hpke(domain)
    with pytest.raises(VerificationError):  # replayed to another request (other nonce)
        _open(domain, env, key, nonce=b"\x08" * 32)
    with pytest.raises(VerificationError):  # to another key
        _open(domain, env, x25519.X25519PrivateKey.generate())
    with pytest.raises(VerificationError):  # as another secret
        _open(domain, {**env, "name": "other"}, key, name="other")
    with pytest.raises(VerificationError):  # as another version
        _open(domain, {**env, "version": 4}, key)


def test_only_a_key_broker_of_this_domain_signs(domain: Domain, tmp_path: Path) -> None:
    other = Domain.create(tmp_path / "other", name="o", now=NOW)
    env, key = _hpke(domain, signer=other.envelope_signer)
    with pytest.raises(VerificationError) as e:
        _open(domain, env, key)
    assert e.value.code == "envelope_signer_untrusted"
    # A workload's admission certificate is issued by the same CA, but not for release signing.
    wl = ec.generate_private_key(ec.SECP256R1())
    admission = issue_admission_certificate(domain, wl.public_key(), claims={"platform": "simulated",
                                            "measurement": "ab" * 48}, now=NOW, lifetime=dt.timedelta(hours=1))  # fmt: skip
    pem = admission.public_bytes(serialization.Encoding.PEM).decode()
    env, key = _hpke(domain, signer=EnvelopeSigner(wl, pem))
    with pytest.raises(VerificationError) as e:
        _open(domain, env, key)
    assert e.value.code == "envelope_signer_untrusted"
    # An expired broker certificate.
    old = issue_broker_certificate(domain.ca_key, domain.ca_certificate, domain.broker_key.public_key(),
                                   name="t", now=NOW - dt.timedelta(days=3), lifetime=dt.timedelta(days=1))  # fmt: skip
    env, key = _hpke(
        domain,
        signer=EnvelopeSigner(
            domain.broker_key, old.public_bytes(serialization.Encoding.PEM).decode()
        ),
    )
    with pytest.raises(VerificationError) as e:
        _open(domain, env, key)
    assert e.value.code == "envelope_signer_untrusted"


@pytest.mark.parametrize(
    "change",
    [{"signer": 7}, {"signer": "not pem"}, {"signer": "x" * 9000}, {"signature": 5},
     {"signature": "***"}, {"signature": "A" * 300}, {"signature": base64.b64encode(b"\x30\x00").decode()}],
)  # fmt: skip
def test_malformed_signatures_fail_closed(domain: Domain, change: dict[str, Any]) -> None:
    env, key = _hpke(domain)
    with pytest.raises((MalformedError, VerificationError)):
        _open(domain, {**env, **change}, key)


def test_envelopes_stay_json(domain: Domain) -> None:
    env, _ = _hpke(domain)
    assert json.loads(json.dumps(env)) == env


def test_the_broker_certificate_cache_stays_fail_closed(domain: Domain, tmp_path: Path) -> None:
    """The broker certificate's issuer signature, purpose and key are checked once per
    certificate and CA (by the digests of their bytes); a tampered certificate, another CA and a
    time outside the window are still refused after the cache is warm, and a refusal is never
    remembered as a success."""
    from cryptography import x509

    from veritee.keybroker import release

    pem = domain.envelope_signer.certificate_pem
    ca = domain.ca_certificate
    key = release.verify_broker_certificate(pem, ca, at=NOW)  # warm
    assert release.verify_broker_certificate(pem, ca, at=NOW) is key
    der = bytearray(
        x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    )
    der[-1] ^= 0x01  # the signature's last byte
    tampered = x509.load_der_x509_certificate(bytes(der)).public_bytes(serialization.Encoding.PEM)
    for _ in range(2):
        with pytest.raises(VerificationError) as e:
            release.verify_broker_certificate(tampered.decode(), ca, at=NOW)
        assert e.value.code == "envelope_signer_untrusted"
    other = Domain.create(tmp_path / "other", name="o", now=NOW)
    for _ in range(2):
        with pytest.raises(VerificationError):
            release.verify_broker_certificate(pem, other.ca_certificate, at=NOW)
    with pytest.raises(VerificationError):
        release.verify_broker_certificate(pem, ca, at=NOW + dt.timedelta(days=3650 * 30))
    with pytest.raises(VerificationError):
        release.verify_broker_certificate(pem, ca, at=NOW - dt.timedelta(days=3650))
    assert release.verify_broker_certificate(pem, ca, at=NOW) is key
    # an envelope opened through the warm cache is still refused when the signature is forged
    env, xkey = _hpke(domain)
    assert _open(domain, env, xkey) == b"hunter2"
    forged = {**env, "ciphertext": base64.b64encode(hpke_seal(b"x", xkey.public_key(),
              info=release_info(NAME, 3, NONCE))).decode()}  # fmt: skip
    with pytest.raises(VerificationError):
        _open(domain, forged, xkey)
    for i in range(release._BROKER_KEYS_MAX + 3):  # bounded
        d = Domain.create(tmp_path / f"d{i}", name=f"d{i}", now=NOW)
        release.verify_broker_certificate(
            d.envelope_signer.certificate_pem, d.ca_certificate, at=NOW
        )
    assert len(release._BROKER_KEYS) == release._BROKER_KEYS_MAX
