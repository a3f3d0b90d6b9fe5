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


def test_canonical_json_is_json_dumps_with_its_options_from_any_thread() -> None:
    """The kept encoders give exactly what ``json.dumps`` gives with the same options, and one
    encoder serves threads encoding at once (it keeps only its options)."""
    import json
    import random
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(4)

    def value(depth: int = 0) -> object:
        pick = rng.randrange(8 if depth < 3 else 5)
        if pick == 0:
            return rng.choice([None, True, False])
        if pick == 1:
            return rng.randint(-(10**20), 10**20)
        if pick == 2:
            return rng.random() * 10 ** rng.randint(-5, 5)
        if pick in (3, 4):
            return "".join(rng.choice('aé"\n\u2028\U0001f600z<') for _ in range(rng.randrange(6)))
        if pick == 5:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {str(value(depth + 1))[:8]: value(depth + 1) for _ in range(rng.randrange(4))}

    values = [value() for _ in range(400)]

    def both(v: object) -> tuple[str, str, str, str]:
        return (
            canonical_json(v),
            json.dumps(
                v, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
            ),
            canonical_json(v, ascii_only=False),
            json.dumps(
                v, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ),
        )

    with ThreadPoolExecutor(4) as pool:
        for a, b, c, d in pool.map(both, values * 4):
            assert a == b and c == d
    nested: list[object] = []
    nested.append(nested)
    with pytest.raises(ValueError):  # the cycle check is per call, as json.dumps's
        canonical_json(nested)


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


def test_b64url_is_the_urlsafe_encoding_unpadded() -> None:
    import base64
    import os

    for n in range(70):
        data = os.urandom(n)
        for value in (data, bytearray(data), memoryview(data)):
            assert b64url(value) == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    with pytest.raises(TypeError):
        b64url("text")  # type: ignore[arg-type]
