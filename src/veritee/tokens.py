"""EAR attestation-result tokens (draft-fv-rats-ear) as JWTs signed ES256 by the domain."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import __version__
from veritee.appraisal.decision import Decision

__all__ = ["EAR_PROFILE", "decode_ear", "issue_ear", "jwk_of"]

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
TOKEN_LIFETIME = dt.timedelta(minutes=30)


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwk_of(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    nums = public_key.public_numbers()
    size = (public_key.curve.key_size + 7) // 8
    crv = {256: "P-256", 384: "P-384"}[public_key.curve.key_size]
    return {
        "kty": "EC",
        "crv": crv,
        "x": _b64u(nums.x.to_bytes(size, "big")),
        "y": _b64u(nums.y.to_bytes(size, "big")),
        "kid": kid,
        "use": "sig",
        "alg": "ES256" if crv == "P-256" else "ES384",
    }


def issue_ear(
    *,
    key: ec.EllipticCurvePrivateKey,
    kid: str,
    issuer: str,
    decision: Decision,
    claims: dict[str, Any] | None,
    nonce: bytes | None,
    now: dt.datetime,
) -> str:
    """Sign an EAR for one appraisal. ``claims`` are the verified claims (no secrets in them)."""
    platform = str((claims or {}).get("platform") or "unknown")
    submod: dict[str, Any] = {
        "ear.status": decision.status,
        "ear.trustworthiness-vector": decision.vector,
        "ear.appraisal-policy-id": f"policy:{decision.policy_name}"
        + (f"@{decision.policy_digest[:16]}" if decision.policy_digest else ""),
        "ear.veritee.reasons": [r.to_json() for r in decision.reasons],
    }
    if claims is not None:
        submod["ear.veraison.annotated-evidence"] = claims
    payload: dict[str, Any] = {
        "eat_profile": EAR_PROFILE,
        "iss": issuer,
        "iat": int(now.timestamp()),
        "exp": int((now + TOKEN_LIFETIME).timestamp()),
        "ear.verifier-id": {"developer": "veritee", "build": f"veritee {__version__}"},
        "submods": {platform: submod},
    }
    if nonce is not None:
        payload["eat_nonce"] = _b64u(nonce)
    alg = "ES256" if key.curve.key_size == 256 else "ES384"
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def decode_ear(
    token: str, public_key: ec.EllipticCurvePublicKey, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Verify an EAR's signature and expiry with the domain's token key; return its claims.

    Expiry is checked against ``now`` when given (explicit time), else against the clock.
    """
    payload: dict[str, Any] = jwt.decode(
        token,
        public_key,
        algorithms=["ES256", "ES384"],
        options={"require": ["iat", "exp", "eat_profile"], "verify_exp": now is None},
    )
    if now is not None and payload["exp"] < now.timestamp():
        raise jwt.ExpiredSignatureError("token expired")
    return payload
