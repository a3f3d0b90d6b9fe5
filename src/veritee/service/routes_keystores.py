"""``POST /v1/keystores/counter``: the freshness counter the service keeps per key store.

A workload reads or increments the counter of its key store, proving it holds the store's
current certified key (protocol: :mod:`veritee.keybroker.freshness`):

1. the admission certificate is this domain's and valid now;
2. the signature by its key covers the operation, the store id, the key generation and a fresh
   nonce (``possession_not_proven``);
3. the store is known (a key of it was certified with its id, ``key_store_unknown``), and the
   certificate's key is the one certified last for it at that generation (``key_superseded``);
4. the nonce is used up and the counter read or incremented in ONE transaction;
5. the answer is signed by the key broker.

Counter operations are not decisions and are not written to the audit log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from veritee.binding import KeyStoreProof, spki_der
from veritee.errors import MalformedError, NotFoundError, VerificationError
from veritee.keybroker.freshness import counter_answer_message, counter_request_message
from veritee.service.bodies import JsonRoute
from veritee.service.context import ServiceContext
from veritee.service.keystores import store_identity
from veritee.service.release import admitted_claims
from veritee.service.schemas import decode_hex

__all__ = ["router"]

router = APIRouter(prefix="/v1/keystores", tags=["attestation"], route_class=JsonRoute)


class CounterRequest(BaseModel):
    """Read or increment a key store's freshness counter (module docstring)."""

    model_config = ConfigDict(extra="forbid")
    certificate: str = Field(
        max_length=8000, description="the key store's admission certificate, PEM"
    )
    key_store: dict[str, Any] = Field(description='{"id": 32 hex digits, "generation": int}')
    op: str = Field(max_length=16, description='"read" or "increment"')
    nonce: str = Field(max_length=128, description="nonce from /v1/challenge, hex")
    signature: str = Field(
        max_length=400,
        description="base64 ECDSA signature by the certificate's key over "
        "veritee.keybroker.freshness.counter_request_message(op, id, generation, nonce)",
    )


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _counter(
    ctx: ServiceContext, store_sha256: str, *, generation: int, subject_key_sha256: str,
    op: str, nonce: bytes, certificate: tuple[str, str],
) -> int:  # fmt: skip
    now = ctx.now()
    with ctx.storage.transaction() as tx:
        tx.consume_nonce(nonce, now=now)
        if tx.revocation_of(*certificate) is not None:  # (serial, measurement)
            raise VerificationError(
                "the admission certificate is revoked", code="certificate_revoked"
            )
        row = tx.key_store(store_sha256)
        if row is None:
            raise NotFoundError(
                "no key of this key store was certified with its id", code="key_store_unknown"
            )
        if row[0] != generation or row[1] != subject_key_sha256:
            raise VerificationError(
                "this certificate's key is not the key store's current key", code="key_superseded"
            )
        if op == "increment":
            return tx.increment_key_store_counter(store_sha256, now=now)
        return row[2]


@router.post("/counter", summary="Read or increment a key store's freshness counter")
async def counter(body: CounterRequest, request: Request) -> JSONResponse:
    ctx = _ctx(request)
    if body.op not in ("read", "increment"):
        raise MalformedError('op must be "read" or "increment"', field="op")
    proof = KeyStoreProof.from_json(body.key_store)
    nonce = decode_hex(body.nonce, "nonce")
    try:
        signature = base64.b64decode(body.signature, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError("signature is not base64", field="signature") from None
    claims, info = admitted_claims(ctx, body.certificate, ctx.now())
    try:
        info.public_key.verify(
            signature,
            counter_request_message(body.op, proof.store_id, proof.generation, nonce),
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError):
        raise VerificationError(
            "the signature does not prove the certified key", code="possession_not_proven"
        ) from None
    value = await ctx.run_db(
        _counter, ctx, store_identity(claims, proof), generation=proof.generation,
        subject_key_sha256=hashlib.sha256(spki_der(info.public_key)).hexdigest(),
        op=body.op, nonce=nonce, certificate=(claims["admission_serial"], claims["measurement"]),
    )  # fmt: skip
    signer = ctx.domain.envelope_signer
    return JSONResponse({
        "key_store": proof.store_id.hex(),
        "op": body.op,
        "counter": value,
        "signature": signer.sign(counter_answer_message(body.op, proof.store_id, value, nonce)),
        "signer": signer.certificate_pem,
    })  # fmt: skip
