"""The Confidential Containers Trustee Key Broker protocol, served by veritee.

``POST /kbs/v0/auth`` (Request -> Challenge + cookie ``kbs-session-id``), ``POST /kbs/v0/attest``
(Attestation -> ``{"token"}``) and ``GET /kbs/v0/resource/{repository}/{type}/{tag}`` (flattened
JWE to the TEE key), as Trustee's KBS serves them (protocol 0.4.0); the pure message handling is
:mod:`veritee.keybroker.kbs`. A resource is the veritee secret named ``repository/type/tag`` and
is released under that secret's release policy, on top of the domain's appraisal, with the same
audit records as ``/v1/secrets/.../release`` (``via: kbs``).

Sessions: before ``/attest`` the cookie holds the tee, hash algorithm and nonce under a MAC of a
domain-derived key (nothing is written); the nonce (purpose ``kbs``) is single use in the
database, so a replayed attestation fails on any replica. ``/attest`` appraises the primary
evidence, every device of ``additional_evidence`` and the init-data binding, issues an EAR
(:mod:`veritee.tokens`, audience ``<issuer>/kbs``, ``cnf`` the ``tee-pubkey``, Trustee's EAR
layout: submod ``cpu0`` whose annotated evidence holds ``runtime_data_claims``), and records the
session in the database (``kbs_sessions``: the token under the SHA-256 of a random session id)
in the transaction that consumes the nonce and writes the audit record. The cookie then names
that session; a second ``/attest`` with it answers the same token, and resource requests with
it or with ``Authorization: Bearer <token>`` work on every worker and replica. The token is
verified (signature, type, issuer, audience, expiry) on every resource request, also when it
comes from the database.

Errors are Trustee's ``ErrorInformation`` with Trustee's type names and status codes (its
``kbs/src/error.rs``): 404 ``InvalidRequestPath`` (a malformed resource path) and
``PluginNotFound`` (no such service under ``/kbs/v0``), 401 for every other error:
``AttestationError`` (anything in ``/auth`` or ``/attest``), ``TokenNotFound`` (no session, no
token), ``TokenVerifierError`` (a token that does not verify), ``PolicyDeny`` (the release
policy refuses), ``PluginInternalError`` (no such resource, or damaged at rest), ``JweError``,
``AdminAuthAccess`` (writes, which veritee takes at ``/v1/admin/secrets`` only).
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from veritee._codec import b64url, b64url_decode
from veritee.collateral import Collateral
from veritee.errors import (
    MalformedError,
    NonceError,
    NotFoundError,
    StorageError,
    VerificationError,
    VeriteeError,
)
from veritee.keybroker.kbs import (
    COOKIE_NAME,
    KbsAttestation,
    KbsChallenge,
    KbsRequest,
    check_device_binding,
    check_init_data,
    check_runtime_binding,
    extract_evidence,
    kbs_error,
    parse_additional_evidence,
    resource_name,
    select_hash,
)
from veritee.keybroker.vault import validate_name
from veritee.keybroker.wrap import jwe_encrypt, public_key_from_jwk
from veritee.service.context import Appraisal, ServiceContext
from veritee.service.release import release_secret
from veritee.tokens import Submod, decode_ear, ear_payload, kbs_audience, sign_jwt

__all__ = ["SESSION_TTL", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/kbs/v0", tags=["kbs"])
SESSION_TTL = dt.timedelta(minutes=5)
NONCE_PURPOSE = "kbs"
SESSION_ID_BYTES = 32

# Cookies are "<kind>.<b64url body>.<b64url tag>", the tag being HMAC-SHA256 over kind and body
# under a domain-derived key, truncated to 16 bytes:
#   kind "c", before /attest: JSON [tee, hash algorithm, b64url nonce] (the nonce carries its
#             own lifetime and is single use in the database);
#   kind "a", after /attest: the session id (32 random bytes); the session is in kbs_sessions.
_COOKIE_LABEL = b"veritee-kbs-session-v1."
_MAX_COOKIE = 1024


class KbsProblem(Exception):
    """An error as Trustee's KBS reports it: its type name, status and a detail."""

    def __init__(self, name: str, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.name, self.detail, self.status = name, detail, status

    def response(self) -> JSONResponse:
        return JSONResponse(kbs_error(self.name, self.detail), status_code=self.status)


@dataclass(frozen=True)
class _Challenge:
    tee: str
    nonce: bytes
    hash_algorithm: str


def _cookie_tag(ctx: ServiceContext, kind: str, body: str) -> bytes:
    key = ctx.domain.derive_key("kbs session cookie")
    return hmac.digest(key, _COOKIE_LABEL + f"{kind}.{body}".encode(), "sha256")[:16]


def _cookie(ctx: ServiceContext, kind: str, payload: bytes) -> str:
    body = b64url(payload)
    return f"{kind}.{body}.{b64url(_cookie_tag(ctx, kind, body))}"


def _read_cookie(ctx: ServiceContext, value: str | None) -> tuple[str, bytes] | None:
    """``(kind, payload)`` of a cookie this domain set, or None (absent, forged or garbled)."""
    if not value or len(value) > _MAX_COOKIE:
        return None
    kind, _, rest = value.partition(".")
    body, _, tag = rest.partition(".")
    try:
        if kind not in ("c", "a") or not hmac.compare_digest(
            b64url_decode(tag, "cookie"), _cookie_tag(ctx, kind, body)
        ):
            return None
        return kind, b64url_decode(body, "cookie")
    except (ValueError, binascii.Error, MalformedError):
        return None


def _challenge_from(payload: bytes) -> _Challenge | None:
    try:
        tee, algorithm, nonce = json.loads(payload)
        if isinstance(tee, str) and isinstance(algorithm, str) and isinstance(nonce, str):
            return _Challenge(
                tee=tee, nonce=b64url_decode(nonce, "cookie"), hash_algorithm=algorithm
            )
    except (ValueError, TypeError, binascii.Error, MalformedError):
        pass
    return None


def _set_cookie(request: Request, resp: Response, value: str) -> None:
    resp.set_cookie(
        COOKIE_NAME, value, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
        samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


# --- /auth ---------------------------------------------------------------------------------


@router.post("/auth", summary="KBS Request -> Challenge (sets kbs-session-id)")
async def auth(request: Request) -> Response:
    ctx = _ctx(request)
    try:
        req = KbsRequest.from_json(await request.body())
        algorithm = select_hash(req)
        nonce = ctx.storage.issue_nonce(now=ctx.now(), ttl=SESSION_TTL, purpose=NONCE_PURPOSE)
    except VeriteeError as e:
        return KbsProblem("AttestationError", f"RCAR handshake Auth failed: {e.message}").response()
    challenge = KbsChallenge(nonce=KbsChallenge.encode_nonce(nonce), hash_algorithm=algorithm)
    resp = JSONResponse(challenge.to_json())
    cookie = json.dumps([req.tee, algorithm, b64url(nonce)]).encode()
    _set_cookie(request, resp, _cookie(ctx, "c", cookie))
    return resp


# --- /attest -------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """Everything /attest decided, for the audit record and the token."""

    primary: Appraisal
    reasons: list[dict[str, str]]
    devices: list[tuple[str, Appraisal, list[dict[str, str]]]]
    init_data: tuple[str, dict[str, Any]] | None  # (bound field hex, init-data claims)

    @property
    def accepted(self) -> bool:
        return (
            self.primary.decision.accepted
            and not self.reasons
            and all(a.decision.accepted and not r for _, a, r in self.devices)
        )


async def _appraise(
    ctx: ServiceContext, challenge: _Challenge, att: KbsAttestation, now: dt.datetime
) -> _Outcome:
    """Appraise the primary evidence, its runtime-data and init-data binding, and each device
    (what an appraisal reads from the database is read off the event loop:
    :meth:`ServiceContext.appraise_async`)."""
    fmt, data, certificates = extract_evidence(challenge.tee, att.primary_evidence)
    devices = parse_additional_evidence(att.additional_evidence)
    extra = Collateral.from_blobs(certificates) if certificates else None
    primary = await ctx.appraise_async(data, at=now, format=fmt, attester_collateral=extra)
    reasons: list[dict[str, str]] = []
    init_data = None
    if primary.claims is not None:
        try:
            check_runtime_binding(
                att, nonce=KbsChallenge.encode_nonce(challenge.nonce),
                hash_algorithm=challenge.hash_algorithm,
                report_data_hex=str(primary.claims.get("report_data", "")),
            )  # fmt: skip
            primary.decision.affirm("runtime_data_bound", claim="instance-identity")
        except VerificationError as e:
            reasons.append({"code": e.code, "message": e.message})
        if att.init_data is not None:
            try:
                bound = check_init_data(fmt, primary.claims, att.init_data)
                init_data = (bound, att.init_data.claims)
                primary.decision.affirm("init_data_bound", claim="configuration")
            except VerificationError as e:
                reasons.append({"code": e.code, "message": e.message})
    appraised = []
    for device in devices:
        appraisal = await ctx.appraise_async(device.data, at=now, format=device.format)
        device_reasons: list[dict[str, str]] = []
        if appraisal.claims is not None:
            try:
                check_device_binding(att, hash_algorithm=challenge.hash_algorithm,
                                     report_data_hex=str(appraisal.claims.get("report_data", "")))  # fmt: skip
                appraisal.decision.affirm("runtime_data_bound", claim="instance-identity")
            except VerificationError as e:
                device_reasons.append({"code": e.code, "message": e.message})
        appraised.append((device.label, appraisal, device_reasons))
    return _Outcome(primary, reasons, appraised, init_data)


def _device_name(index: int) -> str:
    """Trustee's submod names: the TEE class and its index (``gpu0``, ``gpu1``, ...); every
    device veritee verifies is a GPU."""
    return f"gpu{index}"


def _token(ctx: ServiceContext, challenge: _Challenge, att: KbsAttestation, outcome: _Outcome,
           now: dt.datetime) -> str:  # fmt: skip
    """The session's EAR, in Trustee's layout (see the module docstring)."""
    primary = dict(outcome.primary.claims or {})
    primary["runtime_data_claims"] = att.runtime_data
    if outcome.init_data is not None:
        primary["init_data"], primary["init_data_claims"] = outcome.init_data
    submods = [Submod("cpu0", outcome.primary.decision, primary)]
    submods += [Submod(_device_name(i), a.decision, a.claims)
                for i, (_, a, _) in enumerate(outcome.devices)]  # fmt: skip
    payload = ear_payload(
        issuer=ctx.settings.issuer, audience=kbs_audience(ctx.settings.issuer), submods=submods,
        now=now, nonce=challenge.nonce, bound_key=att.tee_pubkey, lifetime=SESSION_TTL,
    )  # fmt: skip
    d = ctx.domain
    return sign_jwt(payload, d.token_key, kid=d.token_kid)


def _audit_details(challenge: _Challenge, att: KbsAttestation | None, outcome: _Outcome | None,
                   evidence_sha256: str | None, error: VeriteeError | None) -> dict[str, Any]:  # fmt: skip
    if outcome is None:
        assert error is not None
        return {"via": "kbs", "tee": challenge.tee, "evidence_sha256": evidence_sha256,
                "reasons": [{"code": error.code, "message": error.message}]}  # fmt: skip
    details = outcome.primary.audit_details() | {"via": "kbs", "tee": challenge.tee}
    details["reasons"] = [*details["reasons"], *outcome.reasons]
    if outcome.devices:
        details["devices"] = [
            {"device": label, "evidence_sha256": a.evidence_sha256, "platform": (a.claims or {}).get("platform"),
             "measurement": (a.claims or {}).get("measurement"), "status": a.decision.status,
             "reasons": [r.to_json() for r in a.decision.reasons] + extra}
            for label, a, extra in outcome.devices
        ]  # fmt: skip
    if att is not None and att.init_data is not None:
        details["init_data"] = {"algorithm": att.init_data.algorithm,
                                "digest": att.init_data.digest.hex(),
                                "bound": outcome.init_data is not None}  # fmt: skip
    return details


def _attest_transaction(ctx: ServiceContext, challenge: _Challenge, details: dict[str, Any],
                        accepted: bool, token: str | None, session_id: bytes,
                        now: dt.datetime) -> None:  # fmt: skip
    """Consume the nonce, record the session (if accepted) and audit: one transaction."""
    with ctx.storage.transaction() as tx:
        tx.consume_nonce(challenge.nonce, now=now, purpose=NONCE_PURPOSE)
        if accepted and token is not None:
            tx.put_kbs_session(session_id, token=token, expires_at=now + SESSION_TTL)
        tx.append_audit(
            kind="kbs.attest", actor="workload", subject=str(details.get("measurement") or "-"),
            decision="accept" if accepted else "reject", details=details, now=now,
        )  # fmt: skip


def _audit_refusal(ctx: ServiceContext, challenge: _Challenge, details: dict[str, Any],
                   now: dt.datetime) -> None:  # fmt: skip
    with ctx.storage.transaction() as tx:
        tx.append_audit(kind="kbs.attest", actor="workload", subject="-", decision="reject",
                        details=details, now=now)  # fmt: skip


def _attested_session(ctx: ServiceContext, session_id: bytes) -> str | None:
    with ctx.storage.transaction(readonly=True) as tx:
        return tx.kbs_session(session_id, now=ctx.now())


@router.post("/attest", summary="KBS Attestation -> attestation results token (EAR)")
async def attest(request: Request) -> Response:
    ctx = _ctx(request)
    try:
        return await _attest(ctx, request)
    except KbsProblem as p:
        return p.response()


async def _attest(ctx: ServiceContext, request: Request) -> Response:
    def failed(detail: str) -> KbsProblem:
        return KbsProblem("AttestationError", f"RCAR handshake Attest failed: {detail}")

    cookie = _read_cookie(ctx, request.cookies.get(COOKIE_NAME))
    try:
        att = KbsAttestation.from_json(await request.body())
    except VeriteeError as e:
        raise failed(e.message) from None
    if cookie is None:
        raise failed("no KBS session: POST /kbs/v0/auth first")
    kind, payload = cookie
    if kind == "a":  # already attested: the session's token again (Trustee does the same)
        try:
            token = await ctx.run_db(_attested_session, ctx, payload)
        except StorageError as e:
            raise failed(e.message) from None
        if token is None:
            raise failed("the KBS session has expired: POST /kbs/v0/auth again")
        resp = JSONResponse({"token": token})
        _set_cookie(request, resp, request.cookies[COOKIE_NAME])
        return resp
    challenge = _challenge_from(payload)
    if challenge is None:
        raise failed("no KBS session: POST /kbs/v0/auth first")
    now = ctx.now()
    outcome: _Outcome | None = None
    evidence_sha256 = None
    try:
        att.public_key()  # a usable tee-pubkey, before anything is appraised
        outcome = await _appraise(ctx, challenge, att, now)
        if ctx.refresher is not None:  # collateral the domain lacks: fetched once, appraised again
            _fmt, primary_data, _certs = extract_evidence(challenge.tee, att.primary_evidence)
            if await ctx.fetch_lacking(primary_data, outcome.primary.decision):
                outcome = await _appraise(ctx, challenge, att, now)
        evidence_sha256 = outcome.primary.evidence_sha256
        details = _audit_details(challenge, att, outcome, evidence_sha256, None)
        accepted = outcome.accepted
        token = _token(ctx, challenge, att, outcome, now) if accepted else None
        session_id = secrets.token_bytes(SESSION_ID_BYTES)
        await ctx.run_db(
            _attest_transaction, ctx, challenge, details, accepted, token, session_id, now
        )
    except NonceError as e:
        raise failed(f"challenge nonce refused: {e.message}") from None
    except StorageError as e:
        log.warning("KBS attestation not recorded: %s", e.code)
        raise failed(e.message) from None
    except VeriteeError as e:
        details = _audit_details(challenge, None, None, evidence_sha256, e)
        try:
            await ctx.run_db(_audit_refusal, ctx, challenge, details, now)
        except StorageError:
            log.warning("KBS attestation refusal not recorded")
        raise failed(e.message) from None
    if not accepted or token is None:
        messages = [r["message"] for r in details["reasons"]]
        messages += [
            f"{d['device']}: {r['message']}"
            for d in details.get("devices", [])
            for r in d["reasons"]
        ]
        raise failed("attestation refused: " + "; ".join(messages))
    resp = JSONResponse({"token": token})
    _set_cookie(request, resp, _cookie(ctx, "a", session_id))
    return resp


# --- /resource -----------------------------------------------------------------------------


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _session_token(ctx: ServiceContext, request: Request) -> str:
    cookie = _read_cookie(ctx, request.cookies.get(COOKIE_NAME))
    if cookie is not None and cookie[0] == "a":
        try:
            token = await ctx.run_db(_attested_session, ctx, cookie[1])
        except StorageError as e:
            raise KbsProblem("TokenNotFound", f"Attestation Token not found: {e.message}") from None
        if token is not None:
            return token
    bearer = _bearer(request)
    if bearer is None:
        raise KbsProblem("TokenNotFound", "Attestation Token not found: no attested session "
                         "cookie and no Authorization: Bearer token")  # fmt: skip
    return bearer


def _verified_claims(ctx: ServiceContext, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(claims for the release policy, tee-pubkey JWK)`` of a KBS token of this domain."""
    try:
        ear = decode_ear(token, ctx.domain.token_key.public_key(), issuer=ctx.settings.issuer,
                         audience=kbs_audience(ctx.settings.issuer), now=ctx.now())  # fmt: skip
        submods = ear["submods"]
        cpu = submods["cpu0"]["ear.veraison.annotated-evidence"]
        pubkey = cpu["runtime_data_claims"]["tee-pubkey"]
        if not isinstance(pubkey, dict) or ear.get("cnf", {}).get("jwk") != pubkey:
            raise VerificationError(
                "the token's tee-pubkey and cnf differ", code="ear_key_mismatch"
            )
    except (KeyError, TypeError, AttributeError):
        raise KbsProblem("TokenVerifierError", "Token Verifier error: not a KBS token") from None
    except VeriteeError as e:
        raise KbsProblem("TokenVerifierError", f"Token Verifier error: {e.message}") from None
    claims = dict(cpu)
    devices = {
        n: s.get("ear.veraison.annotated-evidence") for n, s in submods.items() if n != "cpu0"
    }
    if devices:
        claims["devices"] = devices
    return claims, pubkey


@router.get("/resource/{repository}/{rtype}/{tag}", summary="A resource as JWE to the TEE key")
async def resource(repository: str, rtype: str, tag: str, request: Request) -> Response:
    ctx = _ctx(request)
    try:
        try:
            name = resource_name(repository, rtype, tag)
        except MalformedError as e:
            raise KbsProblem(
                "InvalidRequestPath", f"Request path is invalid: {e.message}", 404
            ) from None
        token = await _session_token(ctx, request)
        claims, pubkey = _verified_claims(ctx, token)
        try:
            validate_name(name)
        except MalformedError:
            raise KbsProblem("PluginInternalError", f"no resource named {name!r}") from None
        audit = {"via": "kbs", "tee_pubkey_sha256": hashlib.sha256(
                     json.dumps(pubkey, sort_keys=True).encode()).hexdigest(),
                 "platform": claims.get("platform"), "measurement": claims.get("measurement")}  # fmt: skip
        try:
            value, _version = await ctx.run_db(
                release_secret, ctx, name=name, version=None, nonce=b"",
                nonce_purpose=NONCE_PURPOSE, claims=claims, accepted=True, appraisal_reasons=(),
                audit=audit,
            )  # fmt: skip
        except NotFoundError as e:
            raise KbsProblem("PluginInternalError", f"Plugin internal error: {e.message}") from None
        except VerificationError as e:
            if e.code == "release_denied":
                raise KbsProblem("PolicyDeny", f"Access denied by policy: {e.message}") from None
            raise KbsProblem("PluginInternalError", f"Plugin internal error: {e.message}") from None
        except VeriteeError as e:
            raise KbsProblem("PluginInternalError", f"Plugin internal error: {e.message}") from None
        try:
            recipient = public_key_from_jwk(pubkey)
            alg = pubkey.get("alg")
            jwe = jwe_encrypt(value.reveal(), recipient, alg=alg if isinstance(alg, str) else None)
        except VeriteeError as e:
            raise KbsProblem("JweError", f"JWE failed: {e.message}") from None
        return JSONResponse(jwe.flattened())
    except KbsProblem as p:
        return p.response()


# --- everything else under /kbs/v0 ---------------------------------------------------------


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
async def other(path: str, request: Request) -> Response:
    """What Trustee's KBS answers for paths it has no handler for (see the module docstring)."""
    plugin = path.split("/", 1)[0]
    if plugin == "resource" and request.method == "GET":
        return KbsProblem("InvalidRequestPath", f"Request path {path[:200]} is invalid: a "
                          "resource is /resource/<repository>/<type>/<tag>", 404).response()  # fmt: skip
    if plugin in ("resource", "resource-policy", "attestation-policy", "reference-value"):
        return KbsProblem("AdminAuthAccess", f"admin access denied for endpoint {plugin}: veritee "
                          "takes resources and policies at /v1/admin only").response()  # fmt: skip
    return KbsProblem("PluginNotFound", f"Plugin {plugin[:64]} not found", 404).response()
