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
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from veritee.keybroker.release import parse_recipient, seal_envelope
from veritee.keybroker.sealing_keys import envelope_name
from veritee.service.context import ServiceContext
from veritee.service.release import release_sealing_key
from veritee.service.schemas import SealingKeyRequest, decode_b64, decode_hex

__all__ = ["router"]

router = APIRouter(tags=["secrets"])


@router.post("/v1/sealing-key", summary="The domain-released sealing key, encrypted to your key")
async def sealing_key(body: SealingKeyRequest, request: Request) -> JSONResponse:
    ctx: ServiceContext = request.app.state.ctx
    nonce = decode_hex(body.nonce, "nonce")
    recipient = parse_recipient(body.public_key)
    data = decode_b64(body.evidence, "evidence")
    policy = await ctx.current_policy()
    appraisal = ctx.appraise(
        data, at=ctx.now(), format=body.format, nonce=nonce, spki=recipient.spki,
        policy=policy, use_active_policy=False,
    )  # fmt: skip
    released = await ctx.run_db(
        release_sealing_key,
        ctx,
        nonce=nonce,
        appraisal=appraisal,
        audit=appraisal.audit_details()
        | {"via": "sealing_key", "recipient_key_sha256": hashlib.sha256(recipient.spki).hexdigest()},
    )
    envelope = seal_envelope(
        recipient, released.key.reveal(), name=envelope_name(released.profile, released.workload),
        version=released.generation, nonce=nonce, signer=ctx.domain.envelope_signer,
    )  # fmt: skip
    envelope["workload"] = released.workload
    envelope["profile"] = released.profile.value
    return JSONResponse(envelope)
