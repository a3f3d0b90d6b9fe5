"""The Confidential Containers Trustee Key Broker protocol, served by veritee.

``POST /kbs/v0/auth`` (Request -> Challenge + cookie ``kbs-session-id``), ``POST /kbs/v0/attest``
(Attestation -> ``{"token"}``) and ``GET /kbs/v0/resource/{repository}/{type}/{tag}`` (flattened
JWE to the TEE key), as described in Trustee's ``kbs_attestation_protocol.md``; the pure message
handling is :mod:`veritee.keybroker.kbs`. A resource is the veritee secret named
``repository/type/tag`` and is released under that secret's release policy, on top of the
domain's appraisal, with the same audit records as ``/v1/secrets/.../release`` (``via: kbs``).

Sessions live in this process (5 minutes); the nonce of each challenge is a database nonce
(purpose ``kbs``), so a replayed attestation fails on any replica. The token returned by
``/attest`` is an ES256/ES384 JWT of the domain's token key carrying the claims and the TEE key;
resource requests with ``Authorization: Bearer <token>`` work on every replica.
Errors are Trustee's ``ErrorInformation`` JSON: 401 not authenticated / attestation failed,
403 denied by policy, 404 no such resource.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
import time
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
from veritee.service.routes_secrets import kek_for, release_secret

__all__ = ["SESSION_TTL", "router"]

router = APIRouter(prefix="/kbs/v0", tags=["kbs"])
SESSION_TTL = dt.timedelta(minutes=5)
MAX_SESSIONS = 10_000
NONCE_PURPOSE = "kbs"


@dataclass
class _Session:
    tee: str
    nonce: bytes
    hash_algorithm: str
    expires: float
    claims: dict[str, Any] | None = None
    tee_pubkey: dict[str, Any] | None = None
    tee_alg: str | None = None
    evidence_sha256: str | None = None


class _Sessions:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, _Session] = {}

    def new(self, session: _Session) -> str:
        sid = secrets.token_hex(16)
        with self._lock:
            if len(self._items) >= MAX_SESSIONS:
                now = time.monotonic()
                self._items = {k: v for k, v in self._items.items() if v.expires > now}
                if len(self._items) >= MAX_SESSIONS:
                    raise UsageError("too many KBS sessions in progress", code="busy")
            self._items[sid] = session
        return sid

    def get(self, sid: str | None) -> _Session | None:
        if not sid:
            return None
        with self._lock:
            s = self._items.get(sid)
            if s is not None and s.expires <= time.monotonic():
                del self._items[sid]
                return None
            return s


def _sessions(request: Request) -> _Sessions:
    state = request.app.state
    store: _Sessions | None = getattr(state, "kbs_sessions", None)
    if store is None:
        store = _Sessions()
        state.kbs_sessions = store
    return store


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
    session = _Session(
        tee=req.tee,
        nonce=nonce,
        hash_algorithm=algorithm,
        expires=time.monotonic() + SESSION_TTL.total_seconds(),
    )
    sid = _sessions(request).new(session)
    challenge = KbsChallenge(nonce=KbsChallenge.encode_nonce(nonce), hash_algorithm=algorithm)
    resp = JSONResponse(challenge.to_json())
    resp.set_cookie(
        COOKIE_NAME, sid, max_age=int(SESSION_TTL.total_seconds()), httponly=True, samesite="strict"
    )
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
    session = _sessions(request).get(request.cookies.get(COOKIE_NAME))
    if session is None:
        return _error(401, "InvalidRequest", "no KBS session: POST /kbs/v0/auth first")
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
    return JSONResponse({"token": _token(ctx, session, now)})


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
        expires=float(payload["exp"]),
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
        session = _sessions(request).get(request.cookies.get(COOKIE_NAME))
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
            kek_for(request),
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
