"""EAR attestation-result tokens (draft-ietf-rats-ear) as JWTs signed by the domain's token key.

Every token the service issues (``/v1/attest``, ``/v1/certify``, the Trustee KBS ``/attest``)
is an EAR with the same shape, following the EAR draft and RFC 8725 (JWT best current
practices):

* header ``{"alg": "ES256" | "ES384", "kid", "typ": "eat+jwt"}``: explicit typing (RFC 8725
  §3.11) with the EAT media type ``application/eat+jwt`` (RFC 9782), so no other JWT the token
  key signs (an audit anchor, ``veritee-audit-head+jwt``) passes for an EAR;
* ``eat_profile`` (the EAR profile), ``iss``, ``aud`` (RFC 8725 §3.9: who the token is for),
  ``iat``, ``nbf``, ``exp``, ``ear.verifier-id``, ``eat_nonce`` (base64url, when the appraisal
  was fresh);
* ``cnf`` (RFC 7800): ``{"jwk": <public JWK>}`` of the key the evidence bound, when it bound one
  (the workload's key, the KBS ``tee-pubkey``): the token is worth something only together with
  that key;
* ``submods``: one appraisal per attester, each with ``ear.status``,
  ``ear.trustworthiness-vector``, ``ear.appraisal-policy-id``, ``ear.veritee.reasons`` and
  ``ear.veraison.annotated-evidence`` (the verified claims).

:func:`decode_ear` is the relying party's side: it checks the signature, ``typ``, ``iss``,
``aud``, ``exp``/``nbf``/``iat``, the profile, and refuses a token any of whose appraisals is
``contraindicated`` unless the caller asks for those (``allow_contraindicated=True``); with
``holder_key`` it also checks that ``cnf`` names that key.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import json.encoder
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from veritee import __version__
from veritee._codec import b64url, b64url_bytes, b64url_decode, canonical_json
from veritee.appraisal.decision import Decision
from veritee.errors import MalformedError, UsageError, VerificationError

__all__ = [
    "EAR_PROFILE",
    "EAR_TYPE",
    "TOKEN_LIFETIME",
    "Submod",
    "decode_ear",
    "ear_payload",
    "issue_ear",
    "jwk_of",
    "jwk_thumbprint",
    "jwks_keys",
    "kbs_audience",
    "key_binding",
    "public_key_of_jwk",
    "sign_jwt",
    "token_key",
]

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
#: The JWS ``typ`` of an EAR: the media type application/eat+jwt without "application/".
EAR_TYPE = "eat+jwt"
TOKEN_LIFETIME = dt.timedelta(minutes=30)
STATUSES = ("none", "affirming", "warning", "contraindicated")
KBS_AUDIENCE_SUFFIX = "/kbs"
#: The most keys a JWKS may list (one domain publishes one or two during a rotation).
MAX_JWKS_KEYS = 64
_CURVE_OF_NAME: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_CURVES = {256: ("P-256", "ES256", hashes.SHA256), 384: ("P-384", "ES384", hashes.SHA384),
           521: ("P-521", "ES512", hashes.SHA512)}  # fmt: skip


def kbs_audience(issuer: str) -> str:
    """The ``aud`` of the Trustee KBS's session tokens: no other token opens a KBS resource."""
    return issuer + KBS_AUDIENCE_SUFFIX


def jwk_of(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """The token key's public JWK, as ``/.well-known/jwks.json`` publishes it."""
    nums = public_key.public_numbers()
    size = (public_key.curve.key_size + 7) // 8
    crv, alg, _ = _CURVES[public_key.curve.key_size]
    return {
        "kty": "EC",
        "crv": crv,
        "x": b64url(nums.x.to_bytes(size, "big")),
        "y": b64url(nums.y.to_bytes(size, "big")),
        "kid": kid,
        "use": "sig",
        "alg": alg,
    }


def key_binding(
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | Mapping[str, Any],
) -> dict[str, Any]:
    """The ``cnf`` claim (RFC 7800 §3.2) binding a token to ``key`` (a public key or its JWK).

    A JWK is kept as given (the KBS ``tee-pubkey``, ``alg`` included, which Trustee's resource
    policies read back), minus any private member.
    """
    if isinstance(key, Mapping):
        jwk = {k: v for k, v in key.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "k")}
    elif isinstance(key, ec.EllipticCurvePublicKey):
        nums = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        jwk = {"kty": "EC", "crv": _CURVES[key.curve.key_size][0],
               "x": b64url(nums.x.to_bytes(size, "big")), "y": b64url(nums.y.to_bytes(size, "big"))}  # fmt: skip
    else:
        rn = key.public_numbers()
        jwk = {"kty": "RSA", "n": b64url(rn.n.to_bytes((rn.n.bit_length() + 7) // 8, "big")),
               "e": b64url(rn.e.to_bytes((rn.e.bit_length() + 7) // 8, "big"))}  # fmt: skip
    return {"jwk": jwk}


def _b64u_decode(value: Any, field: str) -> bytes:
    out = b64url_decode(value, field, max_chars=1024)
    if not out:
        raise MalformedError(f"{field} is empty", field=field)
    return out


def public_key_of_jwk(jwk: Any) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public key a JWK (RFC 7517) holds: EC (P-256, P-384, P-521; the point is checked to
    lie on the curve) or RSA. :class:`MalformedError` naming the member otherwise; a JWK with a
    private member is refused (a JWKS publishes public keys only)."""
    if not isinstance(jwk, Mapping):
        raise MalformedError("a JWK is a JSON object", field="jwk")
    if any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise MalformedError("the JWK holds a private or symmetric key", field="jwk")
    kty = jwk.get("kty")
    if kty == "EC":
        curve = _CURVE_OF_NAME.get(jwk.get("crv"))  # type: ignore[arg-type]
        if curve is None:
            raise MalformedError("the JWK's crv is not P-256, P-384 or P-521", field="jwk.crv")
        size = (curve.key_size + 7) // 8
        x, y = _b64u_decode(jwk.get("x"), "jwk.x"), _b64u_decode(jwk.get("y"), "jwk.y")
        if len(x) != size or len(y) != size:
            raise MalformedError(
                f"the JWK's x and y are {size} bytes on {jwk['crv']}", field="jwk.x"
            )
        try:
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()
        except ValueError:
            raise MalformedError("the JWK's point is not on its curve", field="jwk.x") from None
    if kty == "RSA":
        n, e = _b64u_decode(jwk.get("n"), "jwk.n"), _b64u_decode(jwk.get("e"), "jwk.e")
        try:
            return rsa.RSAPublicNumbers(
                int.from_bytes(e, "big"), int.from_bytes(n, "big")
            ).public_key()
        except ValueError:
            raise MalformedError("the JWK is not a valid RSA public key", field="jwk.n") from None
    raise MalformedError("the JWK's kty is not EC or RSA", field="jwk.kty")


def jwk_thumbprint(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | Mapping[str, Any]) -> str:
    """The JWK SHA-256 thumbprint of a public key (RFC 7638 §3: the required members in
    lexicographic order, no whitespace), base64url without padding."""
    jwk = key_binding(public_key_of_jwk(key) if isinstance(key, Mapping) else key)["jwk"]
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = canonical_json({m: jwk[m] for m in members})
    return b64url(_sha256(canonical.encode()))


def _sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def jwks_keys(doc: Any) -> dict[str, ec.EllipticCurvePublicKey]:
    """The token keys of a JWKS (``{"keys": [JWK, ...]}``, as ``/.well-known/jwks.json``
    serves it) by ``kid``: EC P-256 and P-384 keys whose ``use`` (when present) is ``sig``.
    Other keys are skipped; a JWKS that is not an object with a list of keys, a listed key that
    does not parse, a key without ``kid`` or a repeated ``kid`` is :class:`MalformedError`."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
        raise MalformedError('a JWKS is a JSON object {"keys": [...]}', field="jwks")
    listed = doc["keys"]
    if len(listed) > MAX_JWKS_KEYS:
        raise MalformedError(f"the JWKS lists more than {MAX_JWKS_KEYS} keys", field="jwks.keys")
    out: dict[str, ec.EllipticCurvePublicKey] = {}
    for jwk in listed:
        key = public_key_of_jwk(jwk)
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise MalformedError("a key of the JWKS has no kid", field="jwks.keys.kid")
        if kid in out:
            raise MalformedError(f"the JWKS lists kid {kid[:40]!r} twice", field="jwks.keys.kid")
        if jwk.get("use", "sig") != "sig" or not isinstance(key, ec.EllipticCurvePublicKey):
            continue
        if key.curve.key_size in (256, 384):
            out[kid] = key
    return out


def token_key(
    token: str, keys: Mapping[str, ec.EllipticCurvePublicKey]
) -> tuple[str, ec.EllipticCurvePublicKey]:
    """The key of ``keys`` (a JWKS by kid) that a token names in its ``kid``: (kid, key).

    A token without ``kid`` takes the JWKS's only key. :class:`MalformedError` for what is not a
    compact JWS; :class:`VerificationError` ``ear_key_unknown`` when no key of the JWKS is the
    one the token names (another domain's token, or one signed by a key since rotated out)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise MalformedError(
            "not a compact JWT (header.payload.signature, base64url)", field="token"
        ) from None
    kid = header.get("kid")
    if kid is None and len(keys) == 1:
        return next(iter(keys.items()))
    if not isinstance(kid, str) or kid not in keys:
        shown = repr(kid[:40]) if isinstance(kid, str) else "none"
        raise VerificationError(
            f"the token's key (kid {shown}) is not in the domain's JWKS "
            f"({', '.join(sorted(k[:16] for k in keys)) or 'no usable key'})",
            code="ear_key_unknown",
        )
    return kid, keys[kid]


@dataclass(frozen=True)
class Submod:
    """One appraisal in an EAR: a name (``cpu0``, ``gpu0``, or the platform), its decision,
    and the claims it was made on (``None`` when the evidence could not be verified)."""

    name: str
    decision: Decision
    annotated_evidence: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        out: dict[str, Any] = {
            "ear.status": d.status,
            "ear.trustworthiness-vector": d.vector,
            "ear.appraisal-policy-id": f"policy:{d.policy_name}"
            + (f"@{d.policy_digest[:16]}" if d.policy_digest else ""),
            "ear.veritee.reasons": [r.to_json() for r in d.reasons],
        }
        if self.annotated_evidence is not None:
            out["ear.veraison.annotated-evidence"] = dict(self.annotated_evidence)
        return out


def ear_payload(
    *,
    issuer: str,
    audience: str | Sequence[str],
    submods: Sequence[Submod],
    now: dt.datetime,
    nonce: bytes | None = None,
    bound_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | Mapping[str, Any] | None = None,
    lifetime: dt.timedelta = TOKEN_LIFETIME,
) -> dict[str, Any]:
    """The EAR claims-set (see the module docstring)."""
    if not submods:
        raise UsageError("an EAR needs at least one appraisal")
    aud: str | list[str] = audience if isinstance(audience, str) else list(audience)
    if not aud:
        raise UsageError("an EAR needs an audience")
    iat = int(now.timestamp())
    payload: dict[str, Any] = {
        "eat_profile": EAR_PROFILE,
        "iss": issuer,
        "aud": aud,
        "iat": iat,
        "nbf": iat,
        "exp": int((now + lifetime).timestamp()),
        "ear.verifier-id": {"developer": "veritee", "build": f"veritee {__version__}"},
        "submods": {s.name: s.to_json() for s in submods},
    }
    if nonce is not None:
        payload["eat_nonce"] = b64url(nonce)
    if bound_key is not None:
        payload["cnf"] = key_binding(bound_key)
    return payload


#: ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)``, the encoder kept (one made
#: per call costs more than a token's header and claims of JSON).
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _json(obj: Any) -> bytes:
    return _ENCODE(obj).encode()


@functools.lru_cache(maxsize=8)
def _deterministic_ecdsa(digest: type[hashes.HashAlgorithm]) -> ec.ECDSA:
    """The signature algorithm of :func:`sign_jwt` (an immutable value; building one checks the
    backend's RFC 6979 support, a few microseconds per token)."""
    return ec.ECDSA(digest(), deterministic_signing=True)


@functools.lru_cache(maxsize=64)
def _jws_header(alg: str, kid: str, typ: str) -> str:
    """The encoded protected header of a JWS: the same few (algorithm, key, type) every time."""
    return b64url(_json({"alg": alg, "kid": kid, "typ": typ}))


def sign_jwt(
    payload: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, *, kid: str, typ: str = EAR_TYPE
) -> str:
    """A compact JWS (ES256/ES384) of ``payload``.

    Signed with deterministic ECDSA (RFC 6979), so one payload always gives one token: the KBS
    hands a session's token back on a second ``/attest`` by signing its payload again.
    """
    return _sign_json(_json(payload), key, kid, typ)


def _sign_json(body: bytes, key: ec.EllipticCurvePrivateKey, kid: str, typ: str) -> str:
    """:func:`sign_jwt` of a payload already encoded as its JSON (``body``)."""
    bits = key.curve.key_size
    _, alg, digest = _CURVES[bits]
    signing_input = b"%s.%s" % (_jws_header(alg, kid, typ).encode("ascii"), b64url_bytes(body))
    r, s = decode_dss_signature(key.sign(signing_input, _deterministic_ecdsa(digest)))
    size = (bits + 7) // 8
    signature = b64url_bytes(r.to_bytes(size, "big") + s.to_bytes(size, "big"))
    return (b"%s.%s" % (signing_input, signature)).decode("ascii")


def issue_ear(
    *,
    key: ec.EllipticCurvePrivateKey,
    kid: str,
    issuer: str,
    audience: str | Sequence[str],
    decision: Decision,
    claims: dict[str, Any] | None,
    nonce: bytes | None,
    now: dt.datetime,
    bound_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | Mapping[str, Any] | None = None,
) -> str:
    """Sign an EAR for one appraisal, its submod named after the platform.

    ``claims`` are the verified claims (no secrets in them); ``bound_key`` the key the evidence
    bound, if any (``cnf``).
    """
    return issue_ear_rendered(
        key=key, kid=kid, issuer=issuer, audience=audience, decision=decision, claims=claims,
        nonce=nonce, now=now, bound_key=bound_key,
    )[0]  # fmt: skip


def _strict_encoder() -> Any:
    """``json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    check_circular=False)``: the C encoder ``json.JSONEncoder.encode`` makes on each call, made
    once (a third of a small document's cost). A cycle is a :class:`RecursionError`."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython has it
        return json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
        ).encode
    chunks = make(
        None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    join = "".join

    def encode(obj: Any) -> str:
        return join(chunks(obj, 0))

    return encode


def _refuse(obj: Any) -> Any:
    return json.JSONEncoder().default(obj)  # TypeError, worded as json.dumps words it


#: The strict compact encoder of :func:`issue_ear_rendered`: the claims' text in a token (whose
#: encoder allows NaN) and in the attest's answer (whose encoder does not).
strict_json = _strict_encoder()
#: The ``ear.verifier-id`` member of every EAR, encoded.
_VERIFIER_ID = '"ear.verifier-id":' + _ENCODE(
    {"developer": "veritee", "build": f"veritee {__version__}"}
)


@functools.lru_cache(maxsize=256)
def _ear_head(issuer: str, audience: str) -> str:
    """The EAR's JSON up to its ``iat`` value: the same few (issuer, audience) every time."""
    return _ENCODE({"eat_profile": EAR_PROFILE, "iss": issuer, "aud": audience})[:-1] + ',"iat":'


def issue_ear_rendered(
    *,
    key: ec.EllipticCurvePrivateKey,
    kid: str,
    issuer: str,
    audience: str | Sequence[str],
    decision: Decision,
    claims: dict[str, Any] | None,
    nonce: bytes | None,
    now: dt.datetime,
    bound_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | Mapping[str, Any] | None = None,
) -> tuple[str, str | None]:
    """:func:`issue_ear`, and the compact JSON of ``claims`` (``"null"`` for None) as an encoder
    refusing NaN writes it (the attest's answer holds them too), or None when the token was
    made by the generic path.

    The token's claims-set is written as its JSON directly: the text :func:`ear_payload` and
    :func:`sign_jwt` would encode, piece by piece (the members in the same order; the issuer and
    audience's part kept). Anything unusual (an issuer or audience that is not a non-empty
    string, claims that are not a plain dict, a value the strict encoder refuses) goes the
    generic way, which makes or refuses what it always did.
    """
    if type(issuer) is str and type(audience) is str and audience and (
        claims is None or type(claims) is dict
    ):  # fmt: skip
        try:
            claims_text = "null" if claims is None else strict_json(claims)
            d = decision
            sub = strict_json(
                {
                    "ear.status": d.status,
                    "ear.trustworthiness-vector": d.vector,
                    "ear.appraisal-policy-id": f"policy:{d.policy_name}"
                    + (f"@{d.policy_digest[:16]}" if d.policy_digest else ""),
                    "ear.veritee.reasons": [r.to_json() for r in d.reasons],
                }
            )
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            if claims is not None:
                sub = f'{sub[:-1]},"ear.veraison.annotated-evidence":{claims_text}}}'
            name = strict_json(str((claims or {}).get("platform") or "unknown"))
            iat = int(now.timestamp())
            exp = int((now + TOKEN_LIFETIME).timestamp())
            text = (
                f'{_ear_head(issuer, audience)}{iat},"nbf":{iat},"exp":{exp},{_VERIFIER_ID},'
                f'"submods":{{{name}:{sub}}}'
            )
            if nonce is not None:
                text += f',"eat_nonce":"{b64url(nonce)}"'
            if bound_key is not None:
                text += ',"cnf":' + _ENCODE(key_binding(bound_key))
            return _sign_json(f"{text}}}".encode(), key, kid, EAR_TYPE), claims_text
    platform = str((claims or {}).get("platform") or "unknown")
    payload = ear_payload(
        issuer=issuer, audience=audience, submods=[Submod(platform, decision, claims)],
        now=now, nonce=nonce, bound_key=bound_key,
    )  # fmt: skip
    return sign_jwt(payload, key, kid=kid), None


def decode_ear(  # noqa: C901 - one branch per check of the token, in RFC 7519 order
    token: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    issuer: str,
    audience: str,
    now: dt.datetime | None = None,
    allow_contraindicated: bool = False,
    holder_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | Mapping[str, Any] | None = None,
    leeway: dt.timedelta = dt.timedelta(0),
) -> dict[str, Any]:
    """Verify an EAR as a relying party; return its claims-set.

    Checks, in order: (1) the JWS signature with ``public_key`` (ES256/ES384 only, the one that
    fits the key); (2) ``typ`` is ``eat+jwt``; (3) ``iss`` equals ``issuer``; (4) ``aud``
    contains ``audience``; (5) ``iat``/``nbf``/``exp`` at ``now`` (explicit time; else the
    clock); (6) ``eat_profile`` is the EAR profile and every submod has a known status;
    (7) no appraisal is ``contraindicated``, unless ``allow_contraindicated``; (8) with
    ``holder_key``, ``cnf`` binds that key.

    Raises :class:`MalformedError` (not a JWT, missing claims) or :class:`VerificationError`
    (``ear_signature_invalid``, ``ear_type_invalid``, ``ear_issuer_mismatch``, ``ear_audience_mismatch``, ``ear_expired``,
    ``ear_not_yet_valid``, ``ear_profile_invalid``, ``ear_contraindicated``, ``ear_key_mismatch``).
    """
    size = public_key.curve.key_size
    if size not in (256, 384):
        raise UsageError("EAR keys are P-256 or P-384")
    alg = _CURVES[size][1]
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise MalformedError("not a compact JWT", field="token") from None
    _, dots, signature = token.rpartition(".")
    if (
        dots and header.get("alg") == alg
        and len(b64url_decode(signature, "token", max_chars=256)) != 2 * ((size + 7) // 8)
    ):  # fmt: skip
        # A cut or padded signature is not a signature of this algorithm: malformed, whatever
        # bits the cut leaves (PyJWT refuses only those whose base64url no longer decodes).
        raise MalformedError(f"the token's signature is not an {alg} signature", field="token")
    try:
        payload: dict[str, Any] = jwt.decode(
            token, public_key, algorithms=[alg],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "verify_aud": False, "verify_iss": False},
        )  # fmt: skip
    except jwt.DecodeError as e:
        if isinstance(e, jwt.InvalidSignatureError):
            raise VerificationError(
                "EAR signature does not verify", code="ear_signature_invalid"
            ) from None
        raise MalformedError(
            "not a JWT signed with the expected algorithm", field="token"
        ) from None
    except jwt.InvalidAlgorithmError:
        raise VerificationError(f"EAR is not signed {alg}", code="ear_signature_invalid") from None
    except jwt.PyJWTError:
        raise MalformedError("not a compact JWT", field="token") from None
    if header.get("typ") != EAR_TYPE:
        raise VerificationError(f"token typ is not {EAR_TYPE}", code="ear_type_invalid")
    for claim in ("iss", "aud", "iat", "exp", "eat_profile", "submods"):
        if claim not in payload:
            raise MalformedError(f"EAR has no {claim}", field=claim)
    if payload["iss"] != issuer:
        raise VerificationError("EAR was issued by someone else", code="ear_issuer_mismatch")
    aud = payload["aud"]
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in auds:
        raise VerificationError("EAR is for another audience", code="ear_audience_mismatch")
    at = (now or dt.datetime.now(dt.UTC)).timestamp()
    slack = leeway.total_seconds()
    times = {k: payload.get(k) for k in ("iat", "nbf", "exp")}
    if any(
        v is not None and (not isinstance(v, int) or isinstance(v, bool)) for v in times.values()
    ):
        raise MalformedError("EAR times must be integers", field="exp")
    if at > payload["exp"] + slack:
        raise VerificationError("EAR has expired", code="ear_expired")
    if at + slack < max(payload["iat"], payload.get("nbf") or 0):
        raise VerificationError("EAR is not valid yet", code="ear_not_yet_valid")
    submods = payload["submods"]
    if payload["eat_profile"] != EAR_PROFILE or not isinstance(submods, dict) or not submods:
        raise VerificationError("not an EAR of the expected profile", code="ear_profile_invalid")
    statuses = {}
    for name, sub in submods.items():
        status = sub.get("ear.status") if isinstance(sub, dict) else None
        if status not in STATUSES:
            raise VerificationError(
                f"submod {str(name)[:32]!r} has no EAR status", code="ear_profile_invalid"
            )
        statuses[name] = status
    refused = sorted(str(n)[:32] for n, s in statuses.items() if s == "contraindicated")
    if refused and not allow_contraindicated:
        raise VerificationError(
            "the appraisal was refused (contraindicated: " + ", ".join(refused) + ")",
            code="ear_contraindicated",
        )
    if holder_key is not None:
        want = key_binding(holder_key)["jwk"]
        cnf = payload.get("cnf")
        got = cnf.get("jwk") if isinstance(cnf, dict) else None
        fields = ("kty", "crv", "x", "y", "n", "e")
        if not isinstance(got, dict) or any(got.get(f) != want.get(f) for f in fields):
            raise VerificationError("EAR is bound to another key", code="ear_key_mismatch")
    return payload
