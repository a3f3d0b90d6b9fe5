"""TPM enrollment: two round trips that end with an AK certificate from the domain CA.

``POST /v1/tpm/enroll`` {ek_certificate, ek_chain, ek_public, ak_public} (base64): the service
checks the EK certificate against the active policy's ``tpm.ek_roots`` and the AK's attributes
(:mod:`veritee.enrollment`), makes a credential to the EK for the AK's Name
(:func:`veritee.tpm2.make_credential`) and answers {credential_blob, encrypted_secret, nonce,
ticket}. The ticket is the service's own memo of the challenge (the secret, the AK and EK it was
made for, the EK root), AES-GCM under a key derived from the domain's keys with the nonce as
associated data: no state is kept between the two calls.

``POST /v1/tpm/activate`` {nonce, ticket, secret, ak_public, ek_certificate}: the TPM's
ActivateCredential output must equal the secret; the nonce is consumed (single use, also across
replicas) and the audit record written in one transaction; the answer is the AK certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from veritee import enrollment, tpm2
from veritee.errors import VerificationError
from veritee.service.bodies import JsonRoute
from veritee.service.context import ServiceContext
from veritee.service.schemas import TpmActivateRequest, TpmEnrollRequest, decode_b64

__all__ = ["AK_CERTIFICATE_LIFETIME", "router"]

router = APIRouter(prefix="/v1/tpm", tags=["tpm"], route_class=JsonRoute)
NONCE_PURPOSE = "tpm-enroll"
AK_CERTIFICATE_LIFETIME = dt.timedelta(days=365)


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _ticket_key(ctx: ServiceContext) -> AESGCM:
    return AESGCM(ctx.domain.derive_key("tpm enrollment ticket"))


def _audit(ctx: ServiceContext, *, decision: str, details: dict[str, object], now: dt.datetime,
           nonce: bytes | None = None) -> None:  # fmt: skip
    with ctx.storage.transaction() as tx:
        if nonce is not None:
            tx.consume_nonce(nonce, now=now, purpose=NONCE_PURPOSE)
        tx.append_audit(kind="tpm.enroll", actor="workload", subject=str(details.get("ek_sha256") or "-"),
                        decision=decision, details=details, now=now)  # fmt: skip


@router.post("/enroll", summary="EK certificate + AK -> a credential only that TPM can activate")
async def enroll(body: TpmEnrollRequest, request: Request) -> JSONResponse:
    ctx = _ctx(request)
    now = ctx.now()
    req = enrollment.parse_request(
        decode_b64(body.ek_certificate, "ek_certificate"),
        [decode_b64(c, f"ek_chain[{i}]") for i, c in enumerate(body.ek_chain)],
        decode_b64(body.ek_public, "ek_public"),
        decode_b64(body.ak_public, "ak_public"),
    )
    details: dict[str, object] = {"ek_sha256": req.ek_certificate_sha256,
                                  "ak_name": req.ak_public.name.hex()}  # fmt: skip
    policy = await ctx.current_policy()
    roots = frozenset(
        root for p in policy or () if p.platforms.tpm for root in p.platforms.tpm.ek_roots
    )
    try:
        root = enrollment.check_endorsement(
            req, roots=roots, pool=ctx.collateral().certificates, at=now
        )
        enrollment.check_attestation_key(req.ak_public)
    except VerificationError as e:
        await ctx.run_db(
            _audit, ctx, decision="reject", details=details | {"reason": e.code}, now=now
        )
        raise
    secret = os.urandom(32)
    blob, encrypted = tpm2.make_credential(req.ek_public, req.ak_public.name, secret)
    nonce = ctx.storage.issue_nonce(now=now, ttl=ctx.settings.nonce_ttl, purpose=NONCE_PURPOSE)
    memo = json.dumps({"secret": secret.hex(), "ak": hashlib.sha256(req.ak_public.raw).hexdigest(),
                       "ek": req.ek_certificate_sha256, "root": root}).encode()  # fmt: skip
    iv = os.urandom(12)
    ticket = iv + _ticket_key(ctx).encrypt(iv, memo, nonce)
    b64 = base64.b64encode
    return JSONResponse({
        "credential_blob": b64(blob).decode(), "encrypted_secret": b64(encrypted).decode(),
        "nonce": nonce.hex(), "ticket": b64(ticket).decode(),
    })  # fmt: skip


@router.post("/activate", summary="The activated secret -> an AK certificate from the domain CA")
async def activate(body: TpmActivateRequest, request: Request) -> JSONResponse:
    ctx = _ctx(request)
    now = ctx.now()
    nonce = body.nonce_bytes()
    ticket = decode_b64(body.ticket, "ticket")
    ak_raw = decode_b64(body.ak_public, "ak_public")
    ek_sha256 = hashlib.sha256(decode_b64(body.ek_certificate, "ek_certificate")).hexdigest()
    try:
        memo = json.loads(_ticket_key(ctx).decrypt(ticket[:12], ticket[12:], nonce))
    except (InvalidTag, ValueError):
        raise VerificationError("the enrollment ticket is not this service's, or not for this nonce",
                                code="enrollment_ticket_invalid") from None  # fmt: skip
    ak = tpm2.parse_public(ak_raw, "ak_public")
    details: dict[str, object] = {
        "ek_sha256": ek_sha256,
        "ak_name": ak.name.hex(),
        "ek_root": memo["root"],
    }
    if memo["ak"] != hashlib.sha256(ak_raw).hexdigest() or memo["ek"] != ek_sha256:
        raise VerificationError(
            "the ticket was made for another EK or AK", code="enrollment_ticket_invalid"
        )
    if not hmac.compare_digest(bytes.fromhex(memo["secret"]), decode_b64(body.secret, "secret")):
        # Consumes the nonce too: one wrong answer ends the challenge.
        await ctx.run_db(_audit, ctx, decision="reject", details=details | {"reason": "activation_failed"},
                         now=now, nonce=nonce)  # fmt: skip
        raise VerificationError("the TPM did not activate the credential: the AK is not beside that EK",
                                code="activation_failed")  # fmt: skip
    d = ctx.domain
    cert = enrollment.issue_ak_certificate(
        ca_key=d.ca_key, ca_certificate=d.ca_certificate, ak=ak, ek_certificate_sha256=ek_sha256,
        now=now, lifetime=AK_CERTIFICATE_LIFETIME,
    )  # fmt: skip
    details["serial"] = format(cert.serial_number, "x")
    await ctx.run_db(_audit, ctx, decision="accept", details=details, now=now, nonce=nonce)
    der = cert.public_bytes(serialization.Encoding.DER)
    return JSONResponse(
        {"ak_certificate": base64.b64encode(der).decode(), "ca_certificate": d.ca_pem.decode()}
    )
