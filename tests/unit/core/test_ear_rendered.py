"""The EAR written as its JSON directly (``issue_ear_rendered``) is the token the generic builder
signs (``sign_jwt(ear_payload(...))``): byte for byte, since the signature is deterministic,
for many claim sets, decisions, audiences, nonces and bound keys; the attest's answer made from
its parts is the answer ``json_response`` renders."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.responses import JSONResponse
from tests.threads import differing_from_threads

from veritee import tokens
from veritee.appraisal.decision import Decision
from veritee.service import routes_attest
from veritee.tokens import Submod, decode_ear, ear_payload, issue_ear_rendered, sign_jwt

NOW = dt.datetime(2026, 12, 1, 12, 0, 0, 654321, tzinfo=dt.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
KEY384 = ec.generate_private_key(ec.SECP384R1())


def _generic(
    key: Any, kid: str, issuer: Any, audience: Any, decision: Decision, claims: Any, nonce: Any,
    now: dt.datetime, bound_key: Any,
) -> str:  # fmt: skip
    """The token of the code before the direct writing (issue_ear's body then)."""
    platform = str((claims or {}).get("platform") or "unknown")
    payload = ear_payload(
        issuer=issuer, audience=audience, submods=[Submod(platform, decision, claims)],
        now=now, nonce=nonce, bound_key=bound_key,
    )  # fmt: skip
    return sign_jwt(payload, key, kid=kid)


def _decisions() -> list[Decision]:
    accepted = Decision(policy_name="p", policy_digest="ab" * 32)
    accepted.affirm("measurement", claim="executables")
    warned = Decision(policy_name="pé \u2028", policy_digest=None)
    warned.affirm("authentic", claim="instance-identity")
    warned.warn("insecure_allow_debug", 'debug "quoted" \\ \x00', claim="configuration")
    refused = Decision(policy_name=None)
    refused.refuse("measurement_not_allowed", "no \U0001f600", claim="executables")
    refused.refuse("other", "again", claim="hardware", value=127)
    empty = Decision()
    return [accepted, warned, refused, empty]


CLAIMS: list[Any] = [
    None,
    {},
    {"platform": "simulated", "measurement": "ab" * 48, "debug": True, "tcb_status": None},
    {"platform": "", "version": 1},
    {"platform": None, "x": [1, 2.5, -0.0, 1e308, 5e-324, 2**63, -(2**200), True, None]},
    {"platform": 7, "nested": {"submods": {"a": [{"b": {"c": []}}]}, "é": "ü\u2028\u2029"}},
    {"platform": "tdx", "text": 'quote " backslash \\ nul \x00 tab \t \x7f \U0001f600 \ud7ff'},
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key", "platform": "sev"},
    {"platform": "x" * 5000, "big": list(range(300))},
    {"platform": "nvidia-gpu", "ints": [0, -1, 10**40], "float": 0.1 + 0.2},
]


def _cases() -> list[tuple[Any, ...]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    bound: list[Any] = [
        None,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        rsa_key,
        {"kty": "EC", "crv": "P-256", "x": "AAA", "y": "BBB", "alg": "ES256", "d": "secret"},
    ]
    rng = random.Random(15)
    out = []
    for claims in CLAIMS:
        for decision in _decisions():
            out.append((
                rng.choice([KEY, KEY384]), rng.choice(["k1", "kid é"]),
                rng.choice(["veritee", "https://v.example/é"]),
                rng.choice(["veritee", "rp", "https://rp.example/ü"]),
                decision, claims, rng.choice([None, b"", b"\x00" * 32, bytes(range(64))]),
                rng.choice([NOW, dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=dt.UTC),
                            dt.datetime(2026, 1, 1)]),
                rng.choice(bound),
            ))  # fmt: skip
    return out


@pytest.mark.parametrize("case", _cases())
def test_the_direct_token_is_the_generic_token(case: tuple[Any, ...]) -> None:
    key, kid, issuer, audience, decision, claims, nonce, now, bound = case
    token, claims_text = issue_ear_rendered(
        key=key, kid=kid, issuer=issuer, audience=audience, decision=decision, claims=claims,
        nonce=nonce, now=now, bound_key=bound,
    )  # fmt: skip
    assert claims_text is not None  # every case above takes the direct way
    assert token == _generic(key, kid, issuer, audience, decision, claims, nonce, now, bound)
    assert claims_text == json.dumps(
        claims, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert tokens.issue_ear(
        key=key, kid=kid, issuer=issuer, audience=audience, decision=decision, claims=claims,
        nonce=nonce, now=now, bound_key=bound,
    ) == token  # fmt: skip


def test_a_direct_token_verifies_with_the_generic_claims() -> None:
    decision = _decisions()[0]
    claims = CLAIMS[2]
    holder = ec.generate_private_key(ec.SECP384R1()).public_key()
    token, _ = issue_ear_rendered(
        key=KEY, kid="k1", issuer="veritee", audience="rp", decision=decision, claims=claims,
        nonce=b"\x01" * 32, now=NOW, bound_key=holder,
    )  # fmt: skip
    got = decode_ear(token, KEY.public_key(), issuer="veritee", audience="rp", now=NOW,
                     holder_key=holder)  # fmt: skip
    platform = str(claims["platform"])
    want = json.loads(json.dumps(ear_payload(
        issuer="veritee", audience="rp", submods=[Submod(platform, decision, claims)], now=NOW,
        nonce=b"\x01" * 32, bound_key=holder,
    )))  # fmt: skip
    assert got == want
    with pytest.raises(Exception, match="signature"):
        head, body, sig = token.split(".")
        flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
        decode_ear(f"{head}.{flipped}.{sig}", KEY.public_key(), issuer="veritee", audience="rp",
                   now=NOW)  # fmt: skip


class _Claims(dict[str, Any]):
    pass


@pytest.mark.parametrize(
    ("audience", "claims", "issuer"),
    [
        (["rp", "other"], CLAIMS[2], "veritee"),  # a list of audiences
        (("rp",), CLAIMS[2], "veritee"),
        ("rp", _Claims(platform="simulated"), "veritee"),  # a dict subclass
        ("rp", {"platform": "simulated", "f": math.nan}, "veritee"),  # NaN: the token allows it
        ("rp", {"platform": "simulated", "f": [math.inf, -math.inf]}, "veritee"),
        ("rp", CLAIMS[2], None),  # no issuer string
    ],
)
def test_the_unusual_goes_the_generic_way(audience: Any, claims: Any, issuer: Any) -> None:
    decision = _decisions()[1]
    token, claims_text = issue_ear_rendered(
        key=KEY, kid="k1", issuer=issuer, audience=audience, decision=decision, claims=claims,
        nonce=b"\x02" * 32, now=NOW,
    )  # fmt: skip
    assert claims_text is None
    assert token == _generic(KEY, "k1", issuer, audience, decision, claims, b"\x02" * 32, NOW, None)


def test_a_vector_the_strict_encoder_refuses_goes_the_generic_way() -> None:
    decision = _decisions()[0]
    decision.vector["hardware"] = math.nan  # type: ignore[assignment]
    token, claims_text = issue_ear_rendered(
        key=KEY, kid="k1", issuer="veritee", audience="rp", decision=decision, claims=CLAIMS[2],
        nonce=None, now=NOW,
    )  # fmt: skip
    assert claims_text is None
    assert token == _generic(KEY, "k1", "veritee", "rp", decision, CLAIMS[2], None, NOW, None)


def test_what_the_generic_way_refuses_is_refused_alike() -> None:
    circular: dict[str, Any] = {"platform": "x"}
    circular["self"] = circular
    cases: list[tuple[Any, Any]] = [
        ("", CLAIMS[2]),  # no audience
        ([], CLAIMS[2]),
        ("rp", {"platform": "x", "o": object()}),
        ("rp", {(1, 2): "tuple key"}),
        ("rp", circular),
    ]
    for audience, claims in cases:
        kw: dict[str, Any] = dict(key=KEY, kid="k1", issuer="veritee", audience=audience,
                                  decision=_decisions()[0], claims=claims, nonce=None, now=NOW)  # fmt: skip
        with pytest.raises(Exception) as direct:
            issue_ear_rendered(**kw)
        with pytest.raises(type(direct.value)):
            _generic(KEY, "k1", "veritee", audience, _decisions()[0], claims, None, NOW, None)


DOCS: list[Any] = [
    {},
    {"a": 1, "b": [1, 2.5, None, True, -0.0, 1e16, 2**64], "c": {"d": 'é ü \u2028 \x00 "q" \\'}},
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    "a string \U0001f600",
    [[[[]]]],
]


@pytest.mark.parametrize("doc", DOCS)
def test_strict_json_is_json_dumps(doc: Any) -> None:
    assert tokens.strict_json(doc) == json.dumps(
        doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def test_strict_json_refuses_what_json_dumps_refuses() -> None:
    for bad in ([math.nan], {"k": math.inf}, {"k": object()}, {(1, 2): "tuple key"}):
        with pytest.raises((TypeError, ValueError)) as kept:
            tokens.strict_json(bad)
        with pytest.raises(type(kept.value)):
            json.dumps(bad, allow_nan=False)
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(RecursionError):
        tokens.strict_json(circular)


def test_strict_json_from_threads() -> None:
    doc = {"k": [{"n": i, "s": "x" * i} for i in range(50)]}
    want = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    assert not differing_from_threads(lambda: tokens.strict_json(doc), want)


def _ctx() -> Any:
    domain = SimpleNamespace(token_key=KEY, token_kid="k1")
    return SimpleNamespace(domain=domain, settings=SimpleNamespace(issuer="veritee"))


def _appraisal(decision: Decision, claims: Any) -> Any:
    return SimpleNamespace(decision=decision, claims=claims)


@pytest.mark.parametrize("claims", [*CLAIMS, {"platform": "x", "f": math.nan}, _Claims(a=1)])
def test_the_attest_answer_is_the_json_response_of_before(claims: Any) -> None:
    for decision in _decisions():
        nonce, bound = b"\x03" * 32, ec.generate_private_key(ec.SECP256R1()).public_key()
        appraisal = _appraisal(decision, claims)
        token = _generic(KEY, "k1", "veritee", "rp", decision, claims, nonce, NOW, bound)
        content = {"token": token, **decision.to_json(), "claims": claims}
        try:
            reference = JSONResponse(content)
        except ValueError:  # NaN: refused before, refused now
            with pytest.raises(ValueError):
                routes_attest.token_answer(_ctx(), appraisal, audience="rp", nonce=nonce,
                                           now=NOW, bound_key=bound)  # fmt: skip
            continue
        made = routes_attest.token_answer(
            _ctx(), appraisal, audience="rp", nonce=nonce, now=NOW, bound_key=bound
        )
        assert type(made) is JSONResponse
        assert made.__dict__ == reference.__dict__


def test_the_attest_answer_with_notes() -> None:
    decision = _decisions()[0]
    decision.matches.append(
        __import__("veritee.appraisal.decision", fromlist=["RefValueMatch"]).RefValueMatch(
            "measurement", "ab" * 48, "set é", SimpleNamespace(describe=lambda: "corim \u2028")
        )
    )
    claims = CLAIMS[2]
    token = _generic(KEY, "k1", "veritee", "rp", decision, claims, None, NOW, None)
    reference = JSONResponse({"token": token, **decision.to_json(), "claims": claims})
    made = routes_attest.token_answer(
        _ctx(), _appraisal(decision, claims), audience="rp", nonce=None, now=NOW, bound_key=None
    )
    assert made.__dict__ == reference.__dict__


def test_the_kept_head_is_keyed_by_issuer_and_audience() -> None:
    kw: dict[str, Any] = dict(key=KEY, kid="k1", decision=_decisions()[0], claims=CLAIMS[2],
                              nonce=None, now=NOW)  # fmt: skip
    for _ in range(2):  # the second round with every head kept
        for issuer, audience in (("veritee", "rp"), ("veritee", "rp2"), ("other", "rp")):
            token, _ = issue_ear_rendered(issuer=issuer, audience=audience, **kw)
            ear = decode_ear(token, KEY.public_key(), issuer=issuer, audience=audience, now=NOW)
            assert (ear["iss"], ear["aud"]) == (issuer, audience)
            with pytest.raises(Exception, match="audience"):
                decode_ear(token, KEY.public_key(), issuer=issuer, audience=audience + "x",
                           now=NOW)  # fmt: skip
