"""A party's verification of a signed clean-room result, and the datasets' encryption and parsing.

Certificates are real admission certificates issued by a real domain CA
(:func:`veritee.domain.issue_admission_certificate`); negative cases mutate a good result.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.domain import Domain, issue_admission_certificate
from veritee.errors import MalformedError, VerificationError
from veritee.keybroker.cleanroom import (
    compute_aggregate,
    decrypt_dataset,
    encrypt_dataset,
    parse_csv,
    release_policy_for,
    sign_result,
    synthetic_csv,
    verify_result,
)
from veritee.keybroker.policy import evaluate, parse_policy

M = "ab" * 48
NOW = dt.datetime.now(dt.UTC)
RESULT: dict[str, Any] = {
    "format": "veritee-cleanroom-v1",
    "inputs": [{"party": "bank", "ciphertext_sha256": "11" * 32, "rows": 3}],
    "categories": {"travel": {"count": 7, "total": "70.00", "mean": "10.00", "parties": 2}},
}


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Domain:
    return Domain.create(tmp_path_factory.mktemp("cr") / "d", name="cr", now=NOW)


def _cert(
    domain: Domain, key: ec.EllipticCurvePrivateKey, measurement: str = M
) -> x509.Certificate:
    return issue_admission_certificate(
        domain, key.public_key(), claims={"measurement": measurement, "platform": "simulated"},
        now=NOW, lifetime=dt.timedelta(minutes=10),
    )  # fmt: skip


def _verify(domain: Domain, signed: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return verify_result(signed, ca_certificate=domain.ca_certificate, measurement=M,
                         at=kw.pop("at", NOW), **kw)  # fmt: skip


@pytest.fixture(scope="module")
def good(domain: Domain) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    return sign_result(RESULT, key, _cert(domain, key))


def test_good_result_verifies(domain: Domain, good: dict[str, Any]) -> None:
    assert _verify(domain, good, own_input_sha256="11" * 32) == RESULT


def test_signed_by_a_key_that_was_not_admitted(domain: Domain) -> None:
    admitted, other = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    signed = sign_result(RESULT, other, _cert(domain, admitted))
    with pytest.raises(VerificationError) as e:
        _verify(domain, signed)
    assert e.value.code == "result_signature_invalid"


@pytest.mark.parametrize(
    "path",
    [("categories", "travel", "total"), ("inputs", 0, "rows"), ("format",)],
)
def test_tampered_result(domain: Domain, good: dict[str, Any], path: tuple[Any, ...]) -> None:
    bad = copy.deepcopy(good)
    node = bad["result"]
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = "71.00" if isinstance(node[path[-1]], str) else node[path[-1]] + 1
    with pytest.raises(VerificationError) as e:
        _verify(domain, bad)
    assert e.value.code == "result_signature_invalid"


def test_certificate_from_another_ca(domain: Domain, tmp_path: Path) -> None:
    other = Domain.create(tmp_path / "other", name="cr", now=NOW)  # same name, other CA key
    key = ec.generate_private_key(ec.SECP256R1())
    signed = sign_result(RESULT, key, _cert(other, key))
    with pytest.raises(VerificationError) as e:
        _verify(domain, signed)
    assert e.value.code == "result_cert_untrusted"


def test_certificate_for_another_measurement(domain: Domain) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signed = sign_result(RESULT, key, _cert(domain, key, "cd" * 48))
    with pytest.raises(VerificationError) as e:
        _verify(domain, signed)
    assert e.value.code == "result_measurement_mismatch"


def test_expired_certificate_and_missing_input(domain: Domain, good: dict[str, Any]) -> None:
    with pytest.raises(VerificationError) as e:
        _verify(domain, good, at=NOW + dt.timedelta(hours=1))
    assert e.value.code == "result_cert_untrusted"
    with pytest.raises(VerificationError) as e:
        _verify(domain, good, own_input_sha256="22" * 32)
    assert e.value.code == "result_input_missing"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.pop("signature"), "signature"),
        (lambda s: s.update(result=[1]), "result"),
        (lambda s: s.update(alg="none"), "alg"),
        (
            lambda s: s.update(
                certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            ),
            "certificate",
        ),
        (lambda s: s.update(signature="%%%"), "signature"),
    ],
)
def test_malformed_signed_result(
    domain: Domain, good: dict[str, Any], mutate: Any, field: str
) -> None:
    bad = copy.deepcopy(good)
    mutate(bad)
    with pytest.raises(MalformedError) as e:
        _verify(domain, bad)
    assert e.value.field == field


def test_dataset_encryption_binds_key_name_and_bytes() -> None:
    data = synthetic_csv("bank")
    assert data == synthetic_csv("bank") and data != synthetic_csv("insurer")  # deterministic
    key, blob = encrypt_dataset(data, name="bank")
    assert decrypt_dataset(blob, key, name="bank") == data
    for bad_blob, name, k in (
        (blob[:-1] + bytes([blob[-1] ^ 1]), "bank", key),
        (blob, "insurer", key),
        (blob, "bank", bytes(32)),
    ):
        with pytest.raises(VerificationError) as e:
            decrypt_dataset(bad_blob, k, name=name)
        assert e.value.code == "dataset_tampered"
    with pytest.raises(MalformedError) as m:
        decrypt_dataset(b"XXXXXXXX" + blob[8:], key, name="bank")
    assert m.value.offset == 0


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (b"id,cat,amt\n", "bank"),
        (b"customer_id,category,amount\nc1,travel,abc\n", "bank row 2"),
        (b"customer_id,category,amount\nc1,travel,1.00\nc2,travel,-3\n", "bank row 3"),
        (b"customer_id,category,amount\nc1,travel,1.001\n", "bank row 2"),
        (b"customer_id,category,amount\nc1,travel\n", "bank row 2"),
        (b"customer_id,category,amount\nc1,travel,NaN\n", "bank row 2"),
        (b"\xff\xfe", "bank"),
    ],
)
def test_bad_csv_names_the_row(text: bytes, where: str) -> None:
    with pytest.raises(MalformedError) as e:
        parse_csv(text, name="bank")
    assert e.value.field == where


def test_aggregate_suppresses_small_groups() -> None:
    a = parse_csv(
        b"customer_id,category,amount\nc1,travel,10.00\nc2,travel,20.00\nc3,rare,99.99\n", name="a"
    )
    b = parse_csv(b"customer_id,category,amount\nc1,travel,30.00\n", name="b")
    agg = compute_aggregate({"a": a, "b": b}, min_group_size=2)
    assert agg["categories"]["travel"] == {
        "count": 3,
        "total": "60.00",
        "mean": "20.00",
        "parties": 2,
    }
    assert agg["categories"]["rare"] == {"suppressed": True, "parties": 1}
    assert agg["customers"] == {"distinct": 3, "in_every_party": 1}


def test_release_policy_pins_platform_and_measurement() -> None:
    policy = parse_policy(release_policy_for(M.upper()))
    assert evaluate(policy, {"platform": "simulated", "measurement": M}).allowed
    for claims in (
        {"platform": "simulated", "measurement": "cd" * 48},
        {"platform": "tdx", "measurement": M},
        {},
    ):
        assert not evaluate(policy, claims).allowed
