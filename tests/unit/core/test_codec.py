"""The encodings written once (veritee._codec): canonical JSON, unpadded base64url, key ids."""

from __future__ import annotations

import hashlib
import math

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee._codec import b64url, b64url_decode, canonical_json
from veritee.binding import key_id, spki_der
from veritee.errors import MalformedError


def test_canonical_json_sorts_compacts_and_escapes() -> None:
    assert canonical_json({"b": 1, "a": ["é", None]}) == '{"a":["\\u00e9",null],"b":1}'
    assert canonical_json({"a": "é"}, ascii_only=False) == '{"a":"é"}'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_json_refuses_what_json_cannot_say(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", bytes(range(256))])
def test_b64url_round_trips_without_padding(data: bytes) -> None:
    text = b64url(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text, "f") == data


@pytest.mark.parametrize(
    "bad", ["AA==", "A", "AB+C", "AB/C", "AB C", "AB\nC", "ÄBCD", 12, None, b"AAAA"]
)
def test_b64url_decode_refuses_instead_of_skipping(bad: object) -> None:
    with pytest.raises(MalformedError) as e:
        b64url_decode(bad, "jwk.x")
    assert "jwk.x" in str(e.value)


@pytest.mark.parametrize("text", ["AB", "AAB", "_x", "__9"])
def test_b64url_decode_refuses_a_second_spelling(text: str) -> None:
    # "AB" and "AA" (or "AAB" and "AAA") would decode to the same bytes: the unused low bits of
    # the last character must be zero, as in the Rust base64 crate Trustee uses.
    with pytest.raises(MalformedError, match="non-canonical"):
        b64url_decode(text, "f")


def test_b64url_decode_bounds_its_input() -> None:
    assert b64url_decode("A" * 8, "f", max_chars=8) == bytes(6)
    with pytest.raises(MalformedError, match="longer than 8"):
        b64url_decode("A" * 12, "f", max_chars=8)


def test_key_ids_are_one_formula() -> None:
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    full = hashlib.sha256(spki_der(pub)).hexdigest()
    assert key_id(pub) == full and key_id(pub, length=32) == full[:32]
