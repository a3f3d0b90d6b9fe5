"""EAR tokens as a relying party reads them (issue 13 item 6): typ, iss, aud, cnf, times, and a
refused appraisal that is refused again unless asked for."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.anchors import sign_anchor
from veritee.appraisal.decision import Decision
from veritee.errors import MalformedError, VerificationError
from veritee.tokens import (
    EAR_PROFILE,
    EAR_TYPE,
    Submod,
    decode_ear,
    ear_payload,
    issue_ear,
    key_binding,
    sign_jwt,
)

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
PUB = KEY.public_key()
CLAIMS = {"platform": "simulated", "measurement": "ab" * 48}


def _accepted() -> Decision:
    d = Decision(policy_name="p", policy_digest="00" * 32)
    d.affirm("measurement", claim="executables")
    return d


def _refused() -> Decision:
    d = Decision(policy_name="p")
    d.refuse("measurement_not_allowed", "no", claim="executables")
    return d


def _token(decision: Decision | None = None, **kw: Any) -> str:
    args: dict[str, Any] = dict(
        key=KEY, kid="k1", issuer="veritee", audience="rp", decision=decision or _accepted(),
        claims=CLAIMS, nonce=b"\x01" * 32, now=NOW,
    )  # fmt: skip
    args.update(kw)
    return issue_ear(**args)


def _decode(token: str, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(issuer="veritee", audience="rp", now=NOW)
    args.update(kw)
    return decode_ear(token, PUB, **args)


def _resign(token: str, change: Any, header: dict[str, Any] | None = None) -> str:
    """Decode, change the payload, sign again with the same key (a token the key *did* sign)."""
    payload = jwt.decode(token, options={"verify_signature": False})
    change(payload)
    head = jwt.get_unverified_header(token) | (header or {})
    return jwt.encode(payload, KEY, algorithm="ES256", headers=head)


def test_an_ear_has_type_profile_audience_and_key_binding() -> None:
    holder = ec.generate_private_key(ec.SECP384R1()).public_key()
    token = _token(bound_key=holder)
    head = jwt.get_unverified_header(token)
    assert head == {"alg": "ES256", "kid": "k1", "typ": EAR_TYPE}
    ear = _decode(token, holder_key=holder)
    assert ear["eat_profile"] == EAR_PROFILE and ear["iss"] == "veritee" and ear["aud"] == "rp"
    assert ear["iat"] == ear["nbf"] == int(NOW.timestamp()) < ear["exp"]
    assert ear["cnf"]["jwk"]["crv"] == "P-384"
    assert ear["submods"]["simulated"]["ear.status"] == "affirming"
    assert ear["submods"]["simulated"]["ear.veraison.annotated-evidence"] == CLAIMS
    assert base64.urlsafe_b64decode(ear["eat_nonce"] + "==") == b"\x01" * 32
    # one payload, one token (deterministic ECDSA): the KBS gives a session its token again
    assert _token(bound_key=holder) == token


def test_issuer_audience_and_type_are_checked() -> None:
    token = _token()
    for kw, code in (
        ({"issuer": "other"}, "ear_issuer_mismatch"),
        ({"audience": "kbs"}, "ear_audience_mismatch"),
    ):
        with pytest.raises(VerificationError) as e:
            _decode(token, **kw)
        assert e.value.code == code
    assert _decode(_token(audience=["a", "rp"]))["aud"] == ["a", "rp"]
    # explicit typing: another JWT of the same key (an audit anchor, a plain JWT) is no EAR
    anchor = sign_anchor(KEY, kid="k1", issuer="veritee", seq=1, entry_hash=b"\0" * 32, now=NOW)
    with pytest.raises((VerificationError, MalformedError)):
        _decode(anchor)
    for typ in ("JWT", None):
        with pytest.raises(VerificationError) as e:
            _decode(_resign(token, lambda p: None, {"typ": typ}))
        assert e.value.code == "ear_type_invalid"


def test_contraindicated_is_refused_unless_asked_for() -> None:
    token = _token(_refused())
    with pytest.raises(VerificationError) as e:
        _decode(token)
    assert e.value.code == "ear_contraindicated"
    ear = _decode(token, allow_contraindicated=True)
    assert ear["submods"]["simulated"]["ear.status"] == "contraindicated"
    assert (
        ear["submods"]["simulated"]["ear.veritee.reasons"][0]["code"] == "measurement_not_allowed"
    )
    # one refused appraisal among several refuses the token
    payload = ear_payload(issuer="veritee", audience="rp", now=NOW, submods=[
        Submod("cpu0", _accepted(), CLAIMS), Submod("gpu0", _refused(), {"platform": "nvidia-gpu"}),
    ])  # fmt: skip
    with pytest.raises(VerificationError, match="gpu0"):
        _decode(sign_jwt(payload, KEY, kid="k1"))


def test_times_are_checked_at_the_given_instant() -> None:
    token = _token()
    _decode(token, now=NOW + dt.timedelta(minutes=29))
    with pytest.raises(VerificationError) as e:
        _decode(token, now=NOW + dt.timedelta(minutes=31))
    assert e.value.code == "ear_expired"
    with pytest.raises(VerificationError) as e:
        _decode(token, now=NOW - dt.timedelta(seconds=5))
    assert e.value.code == "ear_not_yet_valid"
    _decode(token, now=NOW - dt.timedelta(seconds=5), leeway=dt.timedelta(seconds=10))
    with pytest.raises(MalformedError):
        _decode(_resign(token, lambda p: p.update(exp="later")))


def test_key_binding_names_the_holders_key() -> None:
    holder = ec.generate_private_key(ec.SECP256R1()).public_key()
    token = _token(bound_key=holder)
    with pytest.raises(VerificationError) as e:
        _decode(token, holder_key=ec.generate_private_key(ec.SECP256R1()).public_key())
    assert e.value.code == "ear_key_mismatch"
    with pytest.raises(VerificationError):
        _decode(_token(), holder_key=holder)  # no cnf at all
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    assert _decode(_token(bound_key=rsa_key), holder_key=rsa_key)["cnf"]["jwk"]["kty"] == "RSA"
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ECDH-ES+A256KW",
        "x": "AA",
        "y": "BB",
        "d": "secret",
    }
    assert key_binding(jwk) == {"jwk": {k: v for k, v in jwk.items() if k != "d"}}


@pytest.mark.parametrize("cut", range(1, 13))
def test_a_cut_signature_is_malformed_whatever_bits_the_cut_leaves(cut: int) -> None:
    """PyJWT refuses a cut signature as bad padding only when its base64url no longer decodes;
    otherwise it was "does not verify" (one cut of 8 characters in 16): always malformed now."""
    for _ in range(8):  # new keys and tokens: other trailing bits
        token = _token()
        with pytest.raises(MalformedError):
            _decode(token[:-cut])
    with pytest.raises(MalformedError):
        _decode(token + "==")  # padded


def test_forged_and_malformed_tokens() -> None:
    token = _token()
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), other,
                        algorithm="ES256", headers={"kid": "k1", "typ": EAR_TYPE})  # fmt: skip
    with pytest.raises(VerificationError) as e:
        _decode(forged)
    assert e.value.code == "ear_signature_invalid"
    none = ".".join([
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": EAR_TYPE}).encode()).rstrip(b"=").decode(),
        token.split(".")[1], "",
    ])  # fmt: skip
    hs = jwt.encode({"iss": "veritee"}, "secret-key-of-32-bytes-or-more!!", algorithm="HS256",
                    headers={"typ": EAR_TYPE})  # fmt: skip
    for bad in (none, hs, "a.b.c", "", "x" * 10, token.replace(".", "", 1)):
        with pytest.raises((VerificationError, MalformedError)):
            _decode(bad)
    for change in (lambda p: p.pop("aud"), lambda p: p.update(eat_profile="x"),
                   lambda p: p.update(submods={}), lambda p: p["submods"]["simulated"].pop("ear.status")):  # fmt: skip
        with pytest.raises((VerificationError, MalformedError)):
            _decode(_resign(token, change))


def test_the_jws_header_follows_each_tokens_key_id_and_type() -> None:
    """The encoded header is kept per (algorithm, kid, typ): each token still names its own."""
    import base64
    import json as _json

    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    from veritee.tokens import sign_jwt

    key = _ec.generate_private_key(_ec.SECP256R1())
    big = _ec.generate_private_key(_ec.SECP384R1())
    for k, kid, typ, alg in ((key, "a", "JWT", "ES256"), (key, "b", "JWT", "ES256"),
                             (key, "a", "x+jwt", "ES256"), (big, "a", "JWT", "ES384")):  # fmt: skip
        for _ in range(2):  # the second time from the kept header
            head = sign_jwt({"n": 1}, k, kid=kid, typ=typ).split(".")[0]
            assert _json.loads(base64.urlsafe_b64decode(head + "==")) == {
                "alg": alg, "kid": kid, "typ": typ}  # fmt: skip
