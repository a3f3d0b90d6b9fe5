"""Workload-facing endpoints: challenge, attest (EAR token) and certify (admission cert)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from veritee.binding import KeyStoreProof, spki_der
from veritee.domain import issue_admission_certificate
from veritee.errors import MalformedError, NonceError, VerificationError
from veritee.service.bodies import JsonRoute
from veritee.service.context import Appraisal, ServiceContext
from veritee.service.keystores import store_identity
from veritee.service.schemas import AttestRequest, CertifyRequest
from veritee.tokens import issue_ear, issue_ear_rendered, kbs_audience, strict_json

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["attestation"], route_class=JsonRoute)


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


#: Starlette's ``JSONResponse.render``, the encoder kept.
_RENDER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
).encode
_JSON_TYPE = (b"content-type", JSONResponse.media_type.encode("latin-1"))


def json_response(content: Any) -> JSONResponse:
    """``JSONResponse(content)`` (status 200, no other header), made without its ``__init__``:
    the same body, headers and attributes (a test compares them), at half the cost."""
    return rendered_json(_RENDER(content).encode("utf-8"))


def rendered_json(body: bytes) -> JSONResponse:
    """The :func:`json_response` of a JSON document already rendered as ``JSONResponse`` would
    render it (``body``)."""
    response = _new_response(JSONResponse)
    response.status_code = 200
    response.background = None
    response.body = body
    response.raw_headers = [(b"content-length", str(len(body)).encode("latin-1")), _JSON_TYPE]
    return response


_new_response = object.__new__


def challenge_response(ctx: ServiceContext) -> Response:
    """The answer to ``POST /v1/challenge`` (also given by :class:`veritee.service.app.FastChallenge`
    and :class:`veritee.service.http_protocol.HotRoutesHttpToolsProtocol`).

    The JSON ``{"nonce": hex, "expires_at": ISO 8601}`` as ``JSONResponse`` renders it, formatted
    directly (a hex string and an ``isoformat`` hold no character JSON escapes): half a
    workload's requests are challenges."""
    now, ttl = ctx.now(), ctx.settings.nonce_ttl
    nonce = ctx.storage.issue_nonce(now=now, ttl=ttl)
    body = b'{"nonce":"%s","expires_at":"%s"}' % (
        nonce.hex().encode(),
        (now + ttl).isoformat().encode(),
    )
    return rendered_json(body)


@router.post("/challenge", summary="A single-use nonce with a short lifetime")
async def challenge(request: Request) -> Response:
    return challenge_response(_ctx(request))


def _load_workload_key(pem: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise MalformedError(
            "public_key is not a PEM SubjectPublicKeyInfo", field="public_key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size not in (256, 384):
        raise MalformedError("public_key must be ECDSA P-256 or P-384", field="public_key")
    return key


def _audience(ctx: ServiceContext, body: AttestRequest) -> str:
    """The token's ``aud``: as asked, else the domain's relying parties (the issuer itself).
    The KBS's audience is its own: a token from here never opens a KBS resource."""
    if body.audience is None:
        return ctx.settings.issuer
    if body.audience == kbs_audience(ctx.settings.issuer):
        raise MalformedError("that audience is reserved for the KBS's own tokens", field="audience")
    return body.audience


def _consume_and_audit(
    ctx: ServiceContext,
    *,
    kind: str,
    nonce: bytes,
    now: dt.datetime,
    appraisal: Appraisal,
    extra: dict[str, Any] | None = None,
    certificate: tuple[Any, str] | None = None,
    key_generation: tuple[str, int] | None = None,
) -> None:
    """Consume the nonce and write the decision's audit record in ONE transaction.

    With ``key_generation`` (store identity, generation) the certificate is recorded only if
    that key store has not certified a higher generation before; otherwise the certification
    is refused (``key_superseded``), audited, and the nonce is used up all the same.
    """
    details = appraisal.audit_details() | (extra or {})
    decision = "accept" if appraisal.decision.accepted else "reject"
    try:
        with ctx.storage.transaction() as tx:
            tx.consume_nonce(nonce, now=now)
            if key_generation is not None and not tx.advance_key_generation(
                key_generation[0], generation=key_generation[1],
                subject_key_sha256=extra["subject_key_sha256"] if extra else "", now=now,
            ):  # fmt: skip
                raise VerificationError(
                    f"key generation {key_generation[1]} of this key store was superseded by a "
                    "later rotation: the key store was rolled back",
                    code="key_superseded",
                )
            if certificate is not None:
                cert, pem = certificate
                revoked = tx.revocation_of(
                    format(cert.serial_number, "x"), str(details.get("measurement") or "")
                )
                if revoked is not None:
                    raise VerificationError(
                        f"measurement {details.get('measurement')} is revoked "
                        f"({revoked.revoked_at.isoformat()}): no admission certificate for it",
                        code="measurement_revoked",
                    )
                tx.record_certificate(
                    serial=cert.serial_number,
                    subject_key_sha256=extra["subject_key_sha256"] if extra else "",
                    measurement=str(details.get("measurement") or ""),
                    platform=str(details.get("platform") or ""),
                    not_before=cert.not_valid_before_utc,
                    not_after=cert.not_valid_after_utc,
                    pem=pem,
                )
            tx.append_audit(
                kind=kind,
                actor="workload",
                subject=str(details.get("measurement") or "-"),
                decision=decision,
                details=details,
                now=now,
            )
    except NonceError as e:
        # The refusal of a bad nonce is a decision too: record it on its own.
        with ctx.storage.transaction() as tx:
            tx.append_audit(
                kind=f"{kind}.nonce_rejected",
                actor="workload",
                subject=str(details.get("measurement") or "-"),
                decision="reject",
                details={"reason": e.code, "evidence_sha256": appraisal.evidence_sha256},
                now=now,
            )
        ctx.metrics.inc(
            "veritee_decisions_total", "Appraisal decisions", kind=kind, outcome="nonce_rejected"
        )
        raise
    except VerificationError as e:
        reason = {"code": e.code, "message": e.message}
        with ctx.storage.transaction() as tx:
            tx.consume_nonce(nonce, now=now)
            tx.append_audit(
                kind=kind, actor="workload", subject=str(details.get("measurement") or "-"),
                decision="reject", details=details | {"reasons": [*details.get("reasons", []), reason]},
                now=now,
            )  # fmt: skip
        ctx.metrics.inc(
            "veritee_decisions_total", "Appraisal decisions", kind=kind, outcome="reject"
        )
        raise
    ctx.metrics.inc("veritee_decisions_total", "Appraisal decisions", kind=kind, outcome=decision)


def _ear(
    ctx: ServiceContext,
    appraisal: Appraisal,
    *,
    audience: str,
    nonce: bytes,
    now: dt.datetime,
    bound_key: Any,
) -> str:
    """The EAR token of an accepted decision, signed by the domain's token key."""
    d = ctx.domain
    return issue_ear(key=d.token_key, kid=d.token_kid, issuer=ctx.settings.issuer, audience=audience,
                     decision=appraisal.decision, claims=appraisal.claims, nonce=nonce, now=now,
                     bound_key=bound_key)  # fmt: skip


@router.post("/attest", summary="Evidence + nonce -> an EAR attestation-result token")
async def attest(body: AttestRequest, request: Request) -> JSONResponse:
    return await attest_response(_ctx(request), body)


async def attest_response(ctx: ServiceContext, body: AttestRequest) -> JSONResponse:
    """The answer to ``POST /v1/attest`` (also given by :class:`veritee.service.app.FastAttest`)."""
    data, nonce = body.evidence_bytes(), body.nonce_bytes()
    audience = _audience(ctx, body)
    key = _load_workload_key(body.public_key) if body.public_key else None
    spki = spki_der(key) if key is not None else None
    now = ctx.now()
    policy = await ctx.policies_named(body.policy)
    appraisal = await ctx.appraise_fetching(
        data,
        at=now,
        format=body.format,
        nonce=nonce,
        spki=spki,
        attester_collateral=body.attester_collateral(),
        policy=policy,
        use_active_policy=False,
    )
    await ctx.run_db(
        _consume_and_audit, ctx, kind="attest", nonce=nonce, now=now, appraisal=appraisal
    )
    return token_answer(ctx, appraisal, audience=audience, nonce=nonce, now=now, bound_key=key)


def token_answer(
    ctx: ServiceContext,
    appraisal: Appraisal,
    *,
    audience: str,
    nonce: bytes | None,
    now: dt.datetime,
    bound_key: ec.EllipticCurvePublicKey | None,
) -> JSONResponse:
    """The attest's answer: ``{"token": EAR, **decision.to_json(), "claims": claims}``, the claims
    encoded once for the token and the answer (:func:`veritee.tokens.issue_ear_rendered`)."""
    d, decision = ctx.domain, appraisal.decision
    token, claims_text = issue_ear_rendered(
        key=d.token_key, kid=d.token_kid, issuer=ctx.settings.issuer, audience=audience,
        decision=decision, claims=appraisal.claims, nonce=nonce, now=now, bound_key=bound_key,
    )  # fmt: skip
    if claims_text is None:
        return json_response({"token": token, **decision.to_json(), "claims": appraisal.claims})
    # Written from its parts: a token's characters (base64url, dots) need no escape in JSON.
    return rendered_json(
        f'{{"token":"{token}",{strict_json(decision.to_json())[1:-1]},"claims":{claims_text}}}'.encode()
    )


@router.post("/certify", summary="Evidence binding nonce + key -> an X.509 admission certificate")
async def certify(body: CertifyRequest, request: Request) -> JSONResponse:
    import hashlib

    ctx = _ctx(request)
    data, nonce = body.evidence_bytes(), body.nonce_bytes()
    audience = _audience(ctx, body)
    key = _load_workload_key(body.public_key)
    spki = spki_der(key)
    proof = KeyStoreProof.from_json(body.key_store) if body.key_store is not None else None
    now = ctx.now()
    policy = await ctx.policies_named(body.policy)
    appraisal = await ctx.appraise_fetching(
        data,
        at=now,
        format=body.format,
        nonce=nonce,
        spki=spki,
        key_store=proof,
        attester_collateral=body.attester_collateral(),
        policy=policy,
        use_active_policy=False,
    )
    extra: dict[str, Any] = {"subject_key_sha256": hashlib.sha256(spki).hexdigest()}
    generation = None
    if proof is not None and appraisal.claims is not None:
        generation = (store_identity(appraisal.claims, proof), proof.generation)
        extra["key_store"] = {"sha256": generation[0], "generation": proof.generation}
    if not appraisal.decision.accepted:
        await ctx.run_db(
            _consume_and_audit,
            ctx,
            kind="certify",
            nonce=nonce,
            now=now,
            appraisal=appraisal,
            extra=extra,
        )
        raise ctx.verification_error(appraisal)
    admitting = (
        policy.named(appraisal.decision.policy_name or "") if policy else None
    )  # the one that admitted it
    lifetime = dt.timedelta(seconds=admitting.certificate_lifetime if admitting else 3600)
    cert = issue_admission_certificate(
        ctx.domain, key, claims=appraisal.claims or {}, now=now, lifetime=lifetime
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    extra["serial"] = format(cert.serial_number, "x")
    await ctx.run_db(
        _consume_and_audit,
        ctx,
        kind="certify",
        nonce=nonce,
        now=now,
        appraisal=appraisal,
        extra=extra,
        certificate=(cert, pem),
        key_generation=generation,
    )
    token = _ear(ctx, appraisal, audience=audience, nonce=nonce, now=now, bound_key=key)
    return JSONResponse(
        {
            "certificate": pem,
            "ca_certificate": ctx.domain.ca_pem.decode(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "token": token,
            **appraisal.decision.to_json(),
        }
    )
