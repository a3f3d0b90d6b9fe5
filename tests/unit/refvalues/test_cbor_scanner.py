"""The bounded CBOR scanner against cbor2 (property tests): every item cbor2 encodes is accepted
and decodes to the same value; arbitrary bytes are either accepted or refused with a CborError,
never anything else; the reader never raises on them."""

from __future__ import annotations

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.refvalues import _cbor, corim

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.binary(max_size=40), st.text(max_size=20), st.floats(allow_nan=False),
)  # fmt: skip
#: Tag numbers without a meaning in cbor2 (it gives 1004, an RFC 8943 date string, and 55799,
#: self-described CBOR, one: it cannot decode ``CBORTag(1004, None)``, which it encodes).
free_tags = st.integers(min_value=600, max_value=70000).filter(lambda t: t not in (1004, 55799))
items = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.integers(-50, 50), st.text(max_size=5)), inner, max_size=5),
        st.builds(cbor2.CBORTag, free_tags, inner),
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(items)
def test_everything_cbor2_encodes_is_accepted(value: object) -> None:
    data = cbor2.dumps(value)
    _cbor.scan(data, max_depth=64)
    assert _cbor.loads(data, max_depth=64) == cbor2.loads(data)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_accepted_or_refused_with_a_code(data: bytes) -> None:
    try:
        _cbor.loads(data)
    except _cbor.CborError as e:
        assert e.code in {
            "empty",
            "truncated",
            "trailing_bytes",
            "corim_malformed",
            "corim_too_deep",
            "oversized",
        }
    result = corim.inspect(data)
    assert result.valid or result.reasons


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=60))
def test_corim_shaped_garbage_never_raises(tail: bytes) -> None:
    for prefix in (b"\xd9\x01\xf5", b"\xd2", b"\xd9\x01\xf4\xd9\x01\xf6\xd2", b"\xd9\x01\xfa"):
        result = corim.inspect(prefix + tail)
        assert result.valid or result.reasons
