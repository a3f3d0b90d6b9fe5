"""``POST /v1/sealing-key``: the domain-released sealing key (DESIGN.md, "Sealing that survives
upgrades"; :mod:`veritee.keybroker.sealing_keys`).

The workload proves fresh evidence binding a nonce from ``/v1/challenge``, an ephemeral public
key and the profile it runs as (:func:`veritee.binding.report_data_for`), exactly as for a
secret release. If the domain's policy in force admits it, the key broker returns the sealing key
of the workload that policy names, in the attested profile, encrypted to the ephemeral key in an
envelope it signs (:func:`veritee.keybroker.release.seal_envelope`; its name is
:func:`veritee.keybroker.sealing_keys.envelope_name`, its version the sealing root's
generation). The decision, the nonce and the audit record are one transaction
(:func:`veritee.service.release.release_sealing_key`). The answer also says ``workload`` and
``profile`` in the clear; both are inside the signed envelope name.

``POST /v1/sealing-key/certified``: the same key for a workload that holds a valid admission
certificate of this domain, without new evidence. It signs, with the certified key,
:func:`veritee.keybroker.release.possession_message` over :data:`POSSESSION_NAME`, the nonce and
its ephemeral key; the certificate's claims (platform, measurement, profile) are re-appraised
under the policy in force (:func:`veritee.appraisal.appraise_admitted`), so a measurement the
policy has dropped gets nothing, whatever the certificate's lifetime; a revoked certificate
gets nothing either (:func:`veritee.service.release.certified_decision`).
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from veritee.binding import attested_profile
from veritee.keybroker.release import Recipient, parse_recipient, possession_message, seal_envelope
from veritee.keybroker.sealing_keys import POSSESSION_NAME, envelope_name
from veritee.profiles import Profile
from veritee.service.bodies import JsonRoute
from veritee.service.context import ServiceContext
from veritee.service.release import (
    ReleasedSealingKey,
    admitted_claims,
    certified_audit,
    certified_decision,
    release_sealing_key,
)
from veritee.service.schemas import (
    CertifiedSealingKeyRequest,
    SealingKeyRequest,
    decode_b64,
    decode_hex,
)

__all__ = ["router"]

router = APIRouter(tags=["secrets"], route_class=JsonRoute)


@router.post("/v1/sealing-key", summary="The domain-released sealing key, encrypted to your key")
async def sealing_key(body: SealingKeyRequest, request: Request) -> JSONResponse:
    ctx: ServiceContext = request.app.state.ctx
    nonce = decode_hex(body.nonce, "nonce")
    recipient = parse_recipient(body.public_key)
    data = decode_b64(body.evidence, "evidence")
    policy = await ctx.policies_named(body.policy)
    appraisal = await ctx.appraise_async(
        data, at=ctx.now(), format=body.format, nonce=nonce, spki=recipient.spki,
        policy=policy, use_active_policy=False,
    )  # fmt: skip
    released = await ctx.run_db(
        release_sealing_key,
        ctx,
        nonce=nonce,
        decision=appraisal.decision,
        profile=attested_profile(appraisal.claims or {}),
        audit=appraisal.audit_details()
        | {
            "via": "sealing_key",
            "recipient_key_sha256": hashlib.sha256(recipient.spki).hexdigest(),
        },
    )
    return _answer(ctx, recipient, nonce, released)


@router.post(
    "/v1/sealing-key/certified",
    summary="The domain-released sealing key for a certified workload (certificate + proof of possession)",
)
async def sealing_key_certified(body: CertifiedSealingKeyRequest, request: Request) -> JSONResponse:
    ctx: ServiceContext = request.app.state.ctx
    nonce = decode_hex(body.nonce, "nonce")
    recipient = parse_recipient(body.public_key)
    signature = decode_b64(body.signature, "signature")
    claims, info = admitted_claims(ctx, body.certificate, ctx.now())
    decision = await certified_decision(
        ctx, claims, policy=body.policy
    )  # policy in force; revoked?
    try:
        message = possession_message(POSSESSION_NAME, nonce, recipient.spki)
        info.public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        decision.refuse("possession_not_proven", "the signature does not prove the certified key")
    if info.profile is None:
        decision.refuse("admission_claim_missing", "the admission certificate attests no profile")
    released = await ctx.run_db(
        release_sealing_key,
        ctx,
        nonce=nonce,
        decision=decision,
        profile=info.profile or Profile.DEVELOPMENT,
        audit=certified_audit(claims, decision, recipient.spki)
        | {"reasons": [r.to_json() for r in decision.reasons]},
    )
    return _answer(ctx, recipient, nonce, released)


def _answer(
    ctx: ServiceContext, recipient: Recipient, nonce: bytes, released: ReleasedSealingKey
) -> JSONResponse:
    envelope = seal_envelope(
        recipient, released.key.reveal(), name=envelope_name(released.profile, released.workload),
        version=released.generation, nonce=nonce, signer=ctx.domain.envelope_signer,
    )  # fmt: skip
    envelope["workload"] = released.workload
    envelope["profile"] = released.profile.value
    return JSONResponse(envelope)
