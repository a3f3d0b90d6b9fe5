"""The Confidential Containers Trustee Key Broker protocol, served by veritee.

``POST /kbs/v0/auth`` (Request -> Challenge + cookie ``kbs-session-id``), ``POST /kbs/v0/attest``
(Attestation -> ``{"token"}``) and ``GET /kbs/v0/resource/{repository}/{type}/{tag}`` (flattened
JWE to the TEE key), as described in Trustee's ``kbs_attestation_protocol.md``; the pure message
handling is :mod:`veritee.keybroker.kbs`. A resource is the veritee secret named
``repository/type/tag`` and is released under that secret's release policy, on top of the
domain's appraisal, with the same audit records as ``/v1/secrets/.../release`` (``via: kbs``).

The session lives in its cookie, not in the process, so each step may be served by another
worker or replica: before ``/attest`` the cookie holds the tee, hash algorithm and nonce under a
MAC of a domain-derived key; the nonce (purpose ``kbs``) is single use in the database, so a
replayed attestation fails on any replica. ``/attest`` returns an ES256/ES384 JWT of the
domain's token key carrying the claims and the TEE key, and sets the cookie to the attested
session (MAC'd and compressed: see ``_attested_cookie``); resource requests with the cookie or
``Authorization: Bearer <token>`` work on every replica.
Errors are Trustee's ``ErrorInformation`` JSON: 401 not authenticated / attestation failed,
403 denied by policy, 404 no such resource.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from veritee.collateral import Collateral
from veritee.errors import (
    AuthenticationError,
    MalformedError,
    NonceError,
    NotFoundError,
    UsageError,
    VerificationError,
    VeriteeError,
)
from veritee.keybroker.kbs import (
    COOKIE_NAME,
    KbsAttestation,
    KbsChallenge,
    KbsRequest,
    check_runtime_binding,
    extract_evidence,
    kbs_error,
    resource_name,
    select_hash,
)
from veritee.keybroker.vault import validate_name
from veritee.keybroker.wrap import jwe_encrypt, public_key_from_jwk
from veritee.service.context import ServiceContext
from veritee.service.release import release_secret

__all__ = ["SESSION_TTL", "router"]

router = APIRouter(prefix="/kbs/v0", tags=["kbs"])
SESSION_TTL = dt.timedelta(minutes=5)
NONCE_PURPOSE = "kbs"


@dataclass
class _Session:
    tee: str
    nonce: bytes
    hash_algorithm: str
    claims: dict[str, Any] | None = None
    tee_pubkey: dict[str, Any] | None = None
    tee_alg: str | None = None
    evidence_sha256: str | None = None


# The session cookie holds the whole session, so any worker or replica can serve any step. It
# is "<kind>.<b64url body>.<b64url tag>", the tag being HMAC-SHA256 over kind and body under a
# domain-derived key, truncated to 16 bytes:
#   kind "c", before /attest: JSON [tee, hash algorithm, b64url nonce] (the nonce carries its
#             own lifetime and is single use in the database);
#   kind "a", after /attest: zlib-compressed JSON of the attested session (tee, TEE key, claims,
#             evidence hash, expiry), about 1.3 KB for SNP claims: under the 4 KB that cookie
#             stores must keep, which the signed token (about 3.7 KB for SNP) would nearly fill.
_COOKIE_LABEL = b"veritee-kbs-session-v1."
_MAX_COOKIE = 8 * 1024
_MAX_SESSION_JSON = 64 * 1024


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64ud(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cookie_tag(ctx: ServiceContext, kind: str, body: str) -> bytes:
    key = ctx.domain.derive_key("kbs session cookie")
    return hmac.digest(key, _COOKIE_LABEL + f"{kind}.{body}".encode(), "sha256")[:16]


def _cookie(ctx: ServiceContext, kind: str, payload: bytes) -> str:
    body = _b64u(payload)
    return f"{kind}.{body}.{_b64u(_cookie_tag(ctx, kind, body))}"


def _challenge_cookie(ctx: ServiceContext, session: _Session) -> str:
    doc = [session.tee, session.hash_algorithm, _b64u(session.nonce)]
    return _cookie(ctx, "c", json.dumps(doc).encode())


def _attested_cookie(ctx: ServiceContext, session: _Session, expires: dt.datetime) -> str:
    doc = {
        "tee": session.tee, "tee_pubkey": session.tee_pubkey, "tee_alg": session.tee_alg,
        "claims": session.claims, "evidence_sha256": session.evidence_sha256,
        "exp": int(expires.timestamp()),
    }  # fmt: skip
    return _cookie(ctx, "a", zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 9))


def _session_from_cookie(ctx: ServiceContext, value: str | None) -> _Session | None:
    """The session a cookie holds, or None (absent, forged, garbled or expired)."""
    if not value or len(value) > _MAX_COOKIE:
        return None
    kind, _, rest = value.partition(".")
    body, _, tag = rest.partition(".")
    try:
        if kind not in ("c", "a") or not hmac.compare_digest(
            _b64ud(tag), _cookie_tag(ctx, kind, body)
        ):
            return None
        payload = _b64ud(body)
        if kind == "c":
            tee, algorithm, nonce = json.loads(payload)
            if not (isinstance(tee, str) and isinstance(algorithm, str) and isinstance(nonce, str)):
                return None
            return _Session(tee=tee, nonce=_b64ud(nonce), hash_algorithm=algorithm)
        inflate = zlib.decompressobj()
        text = inflate.decompress(payload, _MAX_SESSION_JSON)
        if inflate.unconsumed_tail or not inflate.eof:
            return None
        doc = json.loads(text)
        claims, pubkey, exp = doc.get("claims"), doc.get("tee_pubkey"), doc.get("exp")
        if not (isinstance(claims, dict) and isinstance(pubkey, dict) and isinstance(exp, int)):
            return None
        if exp <= dt.datetime.now(dt.UTC).timestamp():
            return None
        alg, digest = doc.get("tee_alg"), doc.get("evidence_sha256")
        return _Session(
            tee=str(doc.get("tee")), nonce=b"", hash_algorithm="", claims=claims,
            tee_pubkey=pubkey, tee_alg=alg if isinstance(alg, str) else None,
            evidence_sha256=digest if isinstance(digest, str) else None,
        )  # fmt: skip
    except (ValueError, TypeError, AttributeError, zlib.error):  # bad base64, JSON or shape
        return None


def _set_cookie(request: Request, resp: Response, value: str) -> None:
    resp.set_cookie(
        COOKIE_NAME, value, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
        samesite="strict", secure=request.url.scheme == "https",
    )


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _error(status: int, problem: str, detail: str) -> JSONResponse:
    return JSONResponse(kbs_error(problem, detail), status_code=status)


def _for_error(e: VeriteeError) -> JSONResponse:
    if isinstance(e, NotFoundError):
        return _error(404, "ResourceNotFound", e.message)
    if isinstance(e, AuthenticationError | NonceError):
        return _error(
            401, "InvalidRequest" if isinstance(e, NonceError) else "TokenNotFound", e.message
        )
    if isinstance(e, VerificationError) and e.code in ("release_denied", "secret_tampered"):
        return _error(403, "PolicyDeny", e.message)
    if isinstance(e, VerificationError):
        return _error(401, "AttestationFailed", e.message)
    if isinstance(e, MalformedError | UsageError):
        return _error(401 if e.code == "protocol_version" else 400, "InvalidRequest", e.message)
    return _error(500, "InternalError", e.message)


@router.post("/auth", summary="KBS Request -> Challenge (sets kbs-session-id)")
async def auth(request: Request) -> Response:
    ctx = _ctx(request)
    try:
        req = KbsRequest.from_json(await request.body())
        algorithm = select_hash(req)
        now = ctx.now()
        nonce = ctx.storage.issue_nonce(now=now, ttl=SESSION_TTL, purpose=NONCE_PURPOSE)
    except VeriteeError as e:
        return _for_error(e)
    session = _Session(tee=req.tee, nonce=nonce, hash_algorithm=algorithm)
    challenge = KbsChallenge(nonce=KbsChallenge.encode_nonce(nonce), hash_algorithm=algorithm)
    resp = JSONResponse(challenge.to_json())
    _set_cookie(request, resp, _challenge_cookie(ctx, session))
    return resp


def _token(ctx: ServiceContext, session: _Session, now: dt.datetime) -> str:
    d = ctx.domain
    alg = "ES256" if d.token_key.curve.key_size == 256 else "ES384"
    payload = {
        "iss": ctx.settings.issuer,
        "iat": int(now.timestamp()),
        "exp": int((now + SESSION_TTL).timestamp()),
        "tee-pubkey": session.tee_pubkey,
        "tee-alg": session.tee_alg,
        "tee": session.tee,
        "claims": session.claims,
        "evidence_sha256": session.evidence_sha256,
    }
    return jwt.encode(
        payload, d.token_key, algorithm=alg, headers={"kid": d.token_kid, "typ": "JWT"}
    )


@router.post("/attest", summary="KBS Attestation -> attestation results token")
async def attest(request: Request) -> Response:
    ctx = _ctx(request)
    session = _session_from_cookie(ctx, request.cookies.get(COOKIE_NAME))
    if session is None or session.claims is not None:
        return _error(401, "InvalidRequest", "no KBS challenge session: POST /kbs/v0/auth first")
    now = ctx.now()
    evidence_sha256 = None
    try:
        att = KbsAttestation.from_json(await request.body())
        _, alg = att.public_key()
        fmt, data, certificates = extract_evidence(session.tee, att.tee_evidence)
        evidence_sha256 = hashlib.sha256(data).hexdigest()
        extra = Collateral.from_blobs(certificates) if certificates else None
        appraisal = ctx.appraise(data, at=now, format=fmt, extra_collateral=extra)
        nonce_text = KbsChallenge.encode_nonce(session.nonce)
        reasons = [r.to_json() for r in appraisal.decision.reasons]
        if appraisal.claims is not None:
            try:
                check_runtime_binding(
                    att,
                    nonce=nonce_text,
                    hash_algorithm=session.hash_algorithm,
                    report_data_hex=str(appraisal.claims.get("report_data", "")),
                )
            except VerificationError as e:
                reasons.append({"code": e.code, "message": e.message})
        accepted = appraisal.decision.accepted and not any(
            r["code"] in ("binding_mismatch", "nonce_mismatch") for r in reasons
        )
        details = appraisal.audit_details() | {"via": "kbs", "tee": session.tee, "reasons": reasons}
        if att.additional_evidence:
            # Bound by the primary evidence (checked above) but not appraised: say so.
            details["additional_evidence"] = {
                "sha256": hashlib.sha256(att.additional_evidence.encode()).hexdigest(),
                "appraised": False,
            }
        with ctx.storage.transaction() as tx:
            tx.consume_nonce(session.nonce, now=now, purpose=NONCE_PURPOSE)
            tx.append_audit(
                kind="kbs.attest",
                actor="workload",
                subject=str(details.get("measurement") or "-"),
                decision="accept" if accepted else "reject",
                details=details,
                now=now,
            )
    except NonceError as e:
        return _error(401, "InvalidRequest", f"challenge nonce refused: {e.message}")
    except VeriteeError as e:
        with ctx.storage.transaction() as tx:
            tx.append_audit(
                kind="kbs.attest",
                actor="workload",
                subject="-",
                decision="reject",
                details={
                    "via": "kbs",
                    "tee": session.tee,
                    "evidence_sha256": evidence_sha256,
                    "reasons": [{"code": e.code, "message": e.message}],
                },
                now=now,
            )
        return _for_error(e)
    if not accepted:
        return _error(
            401,
            "AttestationFailed",
            "attestation refused: " + "; ".join(r["message"] for r in reasons),
        )
    session.claims = appraisal.claims
    session.tee_pubkey = att.tee_pubkey
    session.tee_alg = alg
    session.evidence_sha256 = evidence_sha256
    resp = JSONResponse({"token": _token(ctx, session, now)})
    _set_cookie(request, resp, _attested_cookie(ctx, session, now + SESSION_TTL))
    return resp


def _from_bearer(ctx: ServiceContext, header: str) -> _Session:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("no KBS session or token", code="kbs_unauthenticated")
    try:
        payload = jwt.decode(
            token.strip(),
            ctx.domain.token_key.public_key(),
            algorithms=["ES256", "ES384"],
            issuer=ctx.settings.issuer,
            options={"require": ["exp", "iat", "iss"]},
        )
    except jwt.PyJWTError as e:
        raise AuthenticationError(
            f"KBS token refused: {type(e).__name__}", code="kbs_token"
        ) from None
    pubkey, claims = payload.get("tee-pubkey"), payload.get("claims")
    if not isinstance(pubkey, dict) or not isinstance(claims, dict):
        raise AuthenticationError("KBS token carries no TEE key or claims", code="kbs_token")
    return _Session(
        tee=str(payload.get("tee")),
        nonce=b"",
        hash_algorithm="",
        claims=claims,
        tee_pubkey=pubkey,
        tee_alg=str(payload.get("tee-alg") or "") or None,
        evidence_sha256=payload.get("evidence_sha256"),
    )


@router.get("/resource/{repository}/{rtype}/{tag}", summary="A resource as JWE to the TEE key")
def resource(repository: str, rtype: str, tag: str, request: Request) -> Response:
    ctx = _ctx(request)
    try:
        name = validate_name(resource_name(repository, rtype, tag))
        session = _session_from_cookie(ctx, request.cookies.get(COOKIE_NAME))
        if session is None or session.claims is None:
            session = _from_bearer(ctx, request.headers.get("authorization", ""))
        assert session.claims is not None and session.tee_pubkey is not None
        recipient = public_key_from_jwk(session.tee_pubkey)
        audit = {
            "via": "kbs",
            "tee": session.tee,
            "evidence_sha256": session.evidence_sha256,
            "platform": session.claims.get("platform"),
            "measurement": session.claims.get("measurement"),
        }
        value, _version = release_secret(
            ctx,
            name=name,
            version=None,
            nonce=b"",
            nonce_purpose=NONCE_PURPOSE,
            claims=session.claims,
            accepted=True,  # the appraisal accepted it at /attest (else no session claims)
            appraisal_reasons=(),
            audit=audit,
        )
    except VeriteeError as e:
        return _for_error(e)
    jwe = jwe_encrypt(value.reveal(), recipient, alg=session.tee_alg)
    return JSONResponse(jwe.flattened())
