"""Key broker endpoints: secrets at rest (admin) and attested release (workloads).

Admin (bearer credential): ``PUT/GET/DELETE /v1/admin/secrets/{name}``, ``GET /v1/admin/secrets``,
``POST /v1/admin/secrets/{name}/rotate`` and ``POST /v1/admin/secrets/{name}/dry-run``.
Workload: ``POST /v1/secrets/{name}/release`` with fresh evidence binding a nonce from
``/v1/challenge`` and an ephemeral public key; the secret comes back encrypted to that key.

The routes parse and answer; the release itself (one transaction: decision, nonce, audit) is
:mod:`veritee.service.release`. Secret values never reach a log, an error or the audit log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from veritee.errors import MalformedError, NotFoundError, OversizedError, VerificationError
from veritee.evidence.claims import Reason
from veritee.keybroker.policy import check_claims_known, dry_run, parse_policy
from veritee.keybroker.release import parse_recipient, possession_message, seal_envelope
from veritee.keybroker.vault import MAX_SECRET_BYTES, open_blob, seal, validate_name
from veritee.service.auth import require_admin
from veritee.service.bodies import JsonRoute
from veritee.service.context import ServiceContext
from veritee.service.release import (
    admitted_claims,
    certified_audit,
    certified_decision,
    release_secret,
)
from veritee.service.schemas import (
    CertifiedReleaseRequest,
    ReleaseRequest,
    SecretDryRunRequest,
    SecretPolicyPut,
    SecretPut,
    decode_hex,
)

__all__ = ["release_router", "router"]

router = APIRouter(tags=["secrets"], route_class=JsonRoute)
#: The workload-facing release route, on its own so the app can match it before the admin routes.
release_router = APIRouter(tags=["secrets"], route_class=JsonRoute)


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _b64(value: str, field: str, limit: int) -> bytes:
    if len(value) > limit * 4 // 3 + 8:
        raise OversizedError(f"{field} is larger than {limit} bytes", field=field)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError(f"{field} is not base64", field=field) from None


def _policy_text(policy: dict[str, Any]) -> str:
    parsed = parse_policy(policy)
    check_claims_known(parsed)  # a new policy: refuse claims no verifier emits
    return json.dumps(parsed.to_json(), sort_keys=True, separators=(",", ":"))


class _VersionTaken(Exception):
    def __init__(self, version: int) -> None:
        self.version = version


def _store(
    request: Request,
    name: str,
    value: bytes,
    policy_text: str,
    *,
    kind: str,
    keep_old_policies: bool = False,
) -> dict[str, Any]:
    """Seal ``value`` as the next version and audit it, in one transaction.

    The version number is bound into the encryption, but the storage assigns it (numbers go on
    after deletions). So seal for the expected number, and if the storage assigned another,
    roll back and seal again for that one.
    """
    ctx = _ctx(request)
    kek = ctx.kek
    policy_digest = hashlib.sha256(policy_text.encode()).hexdigest()
    guess: int | None = None
    for _attempt in range(8):
        now = ctx.now()
        try:
            with ctx.storage.transaction() as tx:
                if guess is None:
                    current = tx.secret_version(name)
                    guess = (current.version if current else 0) + 1
                sealed = seal(kek, name, guess, value)
                stored = tx.put_secret_version(
                    name=name,
                    policy=policy_text,
                    kek_id=sealed.kek_id,
                    wrapped_dek=sealed.wrapped_dek,
                    ciphertext=sealed.value_blob(),
                    now=now,
                    keep_old_policies=keep_old_policies,
                )
                if stored != guess:
                    raise _VersionTaken(stored)
                tx.append_audit(
                    kind=kind,
                    actor="admin",
                    subject=name,
                    decision=None,
                    details={
                        "version": stored,
                        "sealed_sha256": sealed.digest,
                        "kek_id": sealed.kek_id,
                        "policy_sha256": policy_digest,
                        "keep_old_policies": keep_old_policies,
                    },
                    now=now,
                )
        except _VersionTaken as taken:
            guess = taken.version
            continue
        return {
            "name": name,
            "version": stored,
            "policy_sha256": policy_digest,
            "kek_id": kek.kek_id,
            "keep_old_policies": keep_old_policies,
        }
    raise VerificationError("concurrent writes of this secret; retry", code="conflict")


@router.put("/v1/admin/secrets/{name:path}", summary="Store a new version of a secret")
def put_secret(
    name: str, body: SecretPut, request: Request, _: str = Depends(require_admin)
) -> dict[str, Any]:
    validate_name(name)
    if body.policy is None:
        raise MalformedError("a release policy is required", field="policy")
    if body.keep_old_policies:
        raise MalformedError("keep_old_policies is an option of rotate", field="keep_old_policies")
    value = _b64(body.value, "value", MAX_SECRET_BYTES)
    return _store(request, name, value, _policy_text(body.policy), kind="secret.put")


@router.post("/v1/admin/secrets/{name:path}/rotate", summary="New value, same (or new) policy")
def rotate_secret(
    name: str, body: SecretPut, request: Request, _: str = Depends(require_admin)
) -> dict[str, Any]:
    """A new version. From then on a release of ANY version must satisfy the new version's
    release policy too, unless ``keep_old_policies`` is set: then older versions are decided
    by their own policies alone."""
    validate_name(name)
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        current = tx.secret_version(name)
    if current is None:
        raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
    policy_text = _policy_text(body.policy) if body.policy is not None else current.policy
    value = _b64(body.value, "value", MAX_SECRET_BYTES)
    return _store(
        request,
        name,
        value,
        policy_text,
        kind="secret.rotate",
        keep_old_policies=body.keep_old_policies,
    )


@router.post("/v1/admin/secrets/{name:path}/policy", summary="Same value, new release policy")
def repolicy_secret(
    name: str, body: SecretPolicyPut, request: Request, _: str = Depends(require_admin)
) -> dict[str, Any]:
    """A new version holding the latest version's value under a new release policy (what
    ``veritee admit`` does to admit a new workload version): from then on a release of any
    version must satisfy it too, as after a rotation. The value never leaves the service."""
    validate_name(name)
    ctx = _ctx(request)
    policy_text = _policy_text(body.policy)
    with ctx.storage.transaction(readonly=True) as tx:
        current = tx.secret_version(name)
    if current is None:
        raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
    value = open_blob(ctx.kek, name, current.version, current.ciphertext,
                      columns=(current.kek_id, current.wrapped_dek))  # fmt: skip
    return _store(request, name, value.reveal(), policy_text, kind="secret.policy")


@router.post("/v1/admin/secrets/{name:path}/dry-run", summary="What a release would decide")
def dry_run_secret(
    name: str, body: SecretDryRunRequest, request: Request, _: str = Depends(require_admin)
) -> dict[str, Any]:
    validate_name(name)
    ctx = _ctx(request)
    if body.policy is not None:
        policy = parse_policy(body.policy)
    else:
        with ctx.storage.transaction(readonly=True) as tx:
            current = tx.secret_version(name)
        if current is None:
            raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
        policy = parse_policy(current.policy)
    if body.claims is not None:
        decision = dry_run(policy, body.claims)
        return {"name": name, **decision.to_json(), "claims": body.claims}
    if body.evidence is None:
        raise MalformedError("give evidence (base64) or claims", field="evidence")
    data = _b64(body.evidence, "evidence", ctx.settings.max_body_bytes)
    appraisal = ctx.appraise(data, at=body.at or ctx.now(), format=body.format)
    claims = appraisal.claims or {}
    decision = dry_run(
        policy,
        claims,
        appraisal_accepted=appraisal.decision.accepted,
        appraisal_reasons=appraisal.decision.reasons,
    )
    return {"name": name, **decision.to_json(), "claims": appraisal.claims}


@router.get("/v1/admin/secrets", summary="Secrets and their versions (never values)")
def list_secrets(request: Request, _: str = Depends(require_admin)) -> dict[str, Any]:
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        rows = tx.list_secrets()
    return {
        "secrets": [
            {
                "name": r.name,
                "latest_version": r.latest_version,
                "versions": r.versions,
                "created_at": r.created_at.isoformat(),
                "updated_at": r.updated_at.isoformat(),
            }
            for r in rows
        ]
    }


@router.get("/v1/admin/secrets/{name:path}", summary="A secret's metadata and policy")
def get_secret_info(name: str, request: Request, _: str = Depends(require_admin)) -> dict[str, Any]:
    validate_name(name)
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        current = tx.secret_version(name)
    if current is None:
        raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
    return {
        "name": name,
        "version": current.version,
        "kek_id": current.kek_id,
        "created_at": current.created_at.isoformat(),
        "policy": json.loads(current.policy),
    }


@router.delete("/v1/admin/secrets/{name:path}", summary="Delete every version of a secret")
def delete_secret(name: str, request: Request, _: str = Depends(require_admin)) -> dict[str, Any]:
    validate_name(name)
    ctx = _ctx(request)
    now = ctx.now()
    with ctx.storage.transaction() as tx:
        count = tx.delete_secret(name, now=now)
        if count == 0:
            raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
        tx.append_audit(
            kind="secret.delete",
            actor="admin",
            subject=name,
            decision=None,
            details={"versions": count},
            now=now,
        )
    return {"name": name, "deleted_versions": count}


# --- release --------------------------------------------------------------------------------


@release_router.post(
    "/v1/secrets/{name:path}/release", summary="Attested release, encrypted to your key"
)
async def release(name: str, body: ReleaseRequest, request: Request) -> JSONResponse:
    validate_name(name)
    ctx = _ctx(request)
    nonce = decode_hex(body.nonce, "nonce")
    recipient = parse_recipient(body.public_key)
    data = _b64(body.evidence, "evidence", ctx.settings.max_body_bytes)
    policy = await ctx.current_policy()
    appraisal = await ctx.appraise_async(
        data,
        at=ctx.now(),
        format=body.format,
        nonce=nonce,
        spki=recipient.spki,
        policy=policy,
        use_active_policy=False,
    )
    value, version = await ctx.run_db(
        release_secret,
        ctx,
        name=name,
        version=body.version,
        nonce=nonce,
        nonce_purpose="attest",
        claims=appraisal.claims,
        accepted=appraisal.decision.accepted,
        appraisal_reasons=appraisal.decision.reasons,
        audit=appraisal.audit_details()
        | {"via": "release", "recipient_key_sha256": hashlib.sha256(recipient.spki).hexdigest()},
    )
    return JSONResponse(
        seal_envelope(
            recipient,
            value.reveal(),
            name=name,
            version=version,
            nonce=nonce,
            signer=ctx.domain.envelope_signer,
        )
    )


@release_router.post(
    "/v1/secrets/{name:path}/release-certified",
    summary="Release to a certified workload: admission certificate + fresh proof of possession",
)
async def release_certified(
    name: str, body: CertifiedReleaseRequest, request: Request
) -> JSONResponse:
    """The workload was appraised when it was certified; here it proves it still holds the
    certified key by signing the fresh nonce, the secret's name and its ephemeral key. The
    certificate's claims are appraised again under the policy in force, the certificate must
    not be revoked, and the release policy is evaluated over the claims it carries."""
    validate_name(name)
    ctx = _ctx(request)
    nonce = decode_hex(body.nonce, "nonce")
    recipient = parse_recipient(body.public_key)
    signature = _b64(body.signature, "signature", 400)
    now = ctx.now()
    claims, info = admitted_claims(ctx, body.certificate, now)
    # The certificate's claims under the policy in force, and its revocation (issue 12.2).
    decision = await certified_decision(ctx, claims, check_revocation=False)  # in release_secret
    reasons: list[Reason] = list(decision.reasons)
    try:
        info.public_key.verify(
            signature, possession_message(name, nonce, recipient.spki), ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError):
        reasons.append(
            Reason("possession_not_proven", "the signature does not prove the certified key")
        )
    value, version = await ctx.run_db(
        release_secret,
        ctx,
        name=name,
        version=body.version,
        nonce=nonce,
        nonce_purpose="attest",
        claims=claims if not reasons else None,
        accepted=not reasons,
        appraisal_reasons=reasons,
        certificate=(claims["admission_serial"], claims["measurement"]),
        audit=certified_audit(claims, decision, recipient.spki),
    )
    return JSONResponse(
        seal_envelope(
            recipient,
            value.reveal(),
            name=name,
            version=version,
            nonce=nonce,
            signer=ctx.domain.envelope_signer,
        )
    )
