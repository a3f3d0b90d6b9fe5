"""Nitro NSM requests and responses, checked against the CBOR that aws-nitro-enclaves-nsm-api
(serde_cbor, externally tagged enums) puts on the wire."""

from __future__ import annotations

import cbor2
import pytest
from tests.conftest import TESTVECTORS

from veritee.errors import PlatformError, UsageError
from veritee.evidence import nitro
from veritee.platforms import nsm

pytestmark = pytest.mark.attester


def _text(s: str) -> bytes:
    assert len(s) < 24
    return bytes([0x60 + len(s)]) + s.encode()


def test_attestation_request_is_the_published_shape() -> None:
    """``Request::Attestation {user_data, nonce, public_key}``: a one-entry map from the variant
    name to a map of the three fields, in declaration order, absent ones as CBOR null."""
    user_data = bytes(range(64))
    got = nsm.attestation_request(user_data=user_data)
    expected = (
        b"\xa1" + _text("Attestation") + b"\xa3"
        + _text("user_data") + b"\x58\x40" + user_data
        + _text("nonce") + b"\xf6"
        + _text("public_key") + b"\xf6"
    )  # fmt: skip
    assert got == expected
    both = cbor2.loads(nsm.attestation_request(nonce=b"n", public_key=b"k" * 100))
    assert both == {"Attestation": {"user_data": None, "nonce": b"n", "public_key": b"k" * 100}}


def test_get_random_is_a_unit_variant() -> None:
    assert nsm.get_random_request() == _text("GetRandom")


@pytest.mark.parametrize(
    ("field", "size"), [("user_data", 513), ("nonce", 513), ("public_key", 1025)]
)
def test_oversized_fields_are_refused(field: str, size: int) -> None:
    with pytest.raises(UsageError):
        nsm.attestation_request(**{field: bytes(size)})


def test_responses() -> None:
    doc = b"\xd2\x84"
    assert nsm.parse_response(cbor2.dumps({"Attestation": {"document": doc}}), "Attestation") == {
        "document": doc
    }
    assert (
        nsm.parse_response(cbor2.dumps({"GetRandom": {"random": b"r" * 32}}), "GetRandom")["random"]
        == b"r" * 32
    )


@pytest.mark.parametrize(("answer", "code"), [
    (cbor2.dumps({"Error": "InvalidArgument"}), "platform_refused"),
    (cbor2.dumps({"GetRandom": {"random": b"x"}}), "platform_failed"),  # not what was asked
    (cbor2.dumps(["Attestation"]), "platform_failed"),
    (b"\xff\x00", "platform_failed"),
    (b"", "platform_failed"),
])  # fmt: skip
def test_bad_responses(answer: bytes, code: str) -> None:
    with pytest.raises(PlatformError) as e:
        nsm.parse_response(answer, "Attestation")
    assert e.value.code == code


def test_a_real_document_passes_through_to_the_verifier() -> None:
    path = TESTVECTORS / "nitro" / "nitrite_attestation.cbor"
    if not path.is_file():
        pytest.skip("test vectors absent (../shared/testvectors)")
    doc = path.read_bytes()
    body = nsm.parse_response(cbor2.dumps({"Attestation": {"document": doc}}), "Attestation")
    assert nitro.parse_claims(body["document"])["platform"] == "nitro"
