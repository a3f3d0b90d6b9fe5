"""The reference-value store (issue 17): CoRIMs registered into named sets, with provenance.

Admin (bearer credential):

- ``POST /v1/admin/refvalues`` ``{"set", "corim": base64, "file_name", "key", "scheme",
  "allow_unsigned", "expires_at"}``: the CoRIM is read and judged
  (:func:`veritee.refvalues.corim.inspect` at the current time, so an expired one is refused); a
  signed CoRIM needs its signer's key (PEM public key, certificate or JWK) in ``key``, or CA
  certificates in ``trust_anchor`` that its x5chain leads to (RFC 5280, at the current time), an
  unsigned one ``allow_unsigned`` (the admin vouches for it; recorded as no signer). Its values
  (:func:`veritee.refvalues.entries.entries_of`) join the set; the source keeps the file name,
  its SHA-256 and bytes, the signer's name and key SHA-256, who added it and when, and expires
  with the earliest of its validities and ``expires_at``. The same file again in a set changes
  nothing and answers the stored source with ``"new": false``.
- ``GET /v1/admin/refvalues[?set=NAME]``, ``GET /v1/admin/refvalues/{id}`` (with its entries),
  ``POST /v1/admin/refvalues/{id}/withdraw`` ``{"reason"}``.

Every change is audited (``refvalues.add``, ``refvalues.withdraw``) in the transaction that makes
it, and counts one more reference-value generation, so every worker and replica reads the sets
again (:meth:`veritee.service.context.ServiceContext.refvalue_sets`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request

from veritee.errors import MalformedError, NotFoundError, StorageError, VerificationError
from veritee.refvalues import corim, entries, profiles
from veritee.service.auth import require_admin
from veritee.service.context import ServiceContext
from veritee.service.schemas import RefValuesAddRequest, RefValuesWithdrawRequest
from veritee.service.storage.models import StoredRefValueSource

__all__ = ["router", "source_json"]

router = APIRouter()


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def source_json(src: StoredRefValueSource, now: dt.datetime) -> dict[str, Any]:
    def t(v: dt.datetime | None) -> str | None:
        return v.isoformat() if v is not None else None

    return {
        "id": src.id, "set": src.set_name, "status": src.status(now), "file_name": src.file_name,
        "sha256": src.sha256, "kind": src.kind, "corim_id": src.corim_id, "profile": src.profile,
        "scheme": src.scheme, "signer": src.signer_name, "signer_key_sha256": src.signer_key_sha256,
        "not_before": t(src.not_before), "expires_at": t(src.expires_at), "entries": src.entry_count,
        "added_by": src.actor, "added_at": t(src.added_at), "withdrawn_at": t(src.withdrawn_at),
        "withdrawn_reason": src.withdrawn_reason,
    }  # fmt: skip


@router.post(
    "/v1/admin/refvalues", tags=["admin"], dependencies=[Depends(require_admin)],
    summary="Register a CoRIM's reference values in a named set",
)  # fmt: skip
def add(body: RefValuesAddRequest, request: Request) -> dict[str, Any]:
    if not entries.valid_set_name(body.set):
        raise MalformedError("set names are [a-z0-9][a-z0-9._-]{0,63}", field="set")
    if body.scheme is not None and body.scheme not in profiles.SCHEMES:
        raise MalformedError(f"unknown scheme {body.scheme!r}", field="scheme")
    try:
        data = base64.b64decode(body.corim, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError("corim is not base64", field="corim") from None
    key = None
    if body.key is not None:
        try:
            key = corim.load_key(body.key.encode())
        except ValueError as e:
            raise MalformedError(f"key: {e}", field="key", code="key_invalid") from None
    anchors = None
    if body.trust_anchor is not None:
        try:
            anchors = corim.load_anchors(body.trust_anchor.encode())
        except ValueError as e:
            raise MalformedError(f"trust_anchor: {e}", field="trust_anchor") from None
    ctx = _ctx(request)
    now = ctx.now()
    expires = body.expires_at
    if expires is not None:
        if expires.tzinfo is None:
            raise MalformedError("expires_at needs a time zone", field="expires_at")
        if expires <= now:
            raise MalformedError("expires_at is in the past", field="expires_at")
    result = corim.inspect(data, key=key, scheme=body.scheme, at=now, anchors=anchors)
    if not result.valid:
        code, message = result.reasons[0]
        raise VerificationError(f"the CoRIM is not valid: {message}", code=code)
    if result.kind != "signed-corim" and not body.allow_unsigned:
        raise VerificationError(
            "the CoRIM is not signed: register it with allow_unsigned (the admin vouches for it)",
            code="corim_signer_untrusted",
        )
    found = entries.entries_of(result)
    if not found:
        raise VerificationError(
            "the CoRIM holds no reference values (digests or raw values)", code="refvalues_empty"
        )
    signer = result.signer
    source = {
        "set_name": body.set, "file_name": body.file_name[:400], "sha256": result.sha256,
        "document": data, "kind": result.kind, "corim_id": (result.corim_id or "")[:200] or None,
        "profile": (result.profile or "")[:400] or None, "scheme": result.scheme,
        "signer_name": signer.name[:200] if signer else None,
        "signer_key_sha256": signer.key_thumbprint if signer else None,
        "not_before": entries.not_before_of(result),
        "expires_at": entries.expiry_of(result, expires),
    }  # fmt: skip
    with ctx.storage.transaction() as tx:
        source_id = tx.add_refvalue_source(
            source, [(e.value, e.alg, e.mkey, e.environment) for e in found], actor="admin", now=now
        )
        if source_id is None:  # the same file in this set already: idempotent
            known = [r for r in tx.refvalue_sources(body.set) if r.sha256 == result.sha256]
            if not known:  # pragma: no cover - the unique constraint names exactly this row
                raise StorageError(
                    "the CoRIM was neither stored nor found", code="storage_conflict"
                )
            return source_json(known[0], now) | {"new": False, "warnings": []}
        tx.append_audit(
            kind="refvalues.add", actor="admin", subject=f"refvalues:{body.set}", decision=None,
            details={"id": source_id, "set": body.set, "sha256": result.sha256, "file_name": body.file_name[:400],
                     "signer": source["signer_name"], "signer_key_sha256": source["signer_key_sha256"],
                     "entries": len(found)},
            now=now,
        )  # fmt: skip
        stored = tx.refvalue_source(source_id)
    assert stored is not None
    ctx.invalidate_refvalues()
    warnings = [{"code": c, "message": m} for c, m in result.warnings]
    return source_json(stored[0], now) | {"new": True, "warnings": warnings}


@router.get(
    "/v1/admin/refvalues", tags=["admin"], dependencies=[Depends(require_admin)],
    summary="Registered CoRIMs (of one set, or all)",
)  # fmt: skip
def list_sources(
    request: Request, set: str | None = Query(default=None, max_length=64)
) -> dict[str, Any]:
    ctx = _ctx(request)
    now = ctx.now()
    with ctx.storage.transaction(readonly=True) as tx:
        rows = tx.refvalue_sources(set)
    return {"sources": [source_json(r, now) for r in rows]}


@router.get(
    "/v1/admin/refvalues/{source_id}", tags=["admin"], dependencies=[Depends(require_admin)],
    summary="One registered CoRIM and its reference values",
)  # fmt: skip
def show(request: Request, source_id: int = Path(ge=1, le=2**31 - 1)) -> dict[str, Any]:
    return _show(source_id, request)


def _show(source_id: int, request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    now = ctx.now()
    with ctx.storage.transaction(readonly=True) as tx:
        found = tx.refvalue_source(source_id)
    if found is None:
        raise NotFoundError(f"no registered CoRIM with id {source_id}")
    src, rows = found
    return source_json(src, now) | {
        "values": [
            {"value": e.value, "alg": e.alg, "mkey": e.mkey, "environment": e.environment}
            for e in rows
        ]
    }


@router.post(
    "/v1/admin/refvalues/{source_id}/withdraw", tags=["admin"], dependencies=[Depends(require_admin)],
    summary="Withdraw a registered CoRIM: its values stop counting at once",
)  # fmt: skip
def withdraw(
    body: RefValuesWithdrawRequest, request: Request, source_id: int = Path(ge=1, le=2**31 - 1)
) -> dict[str, Any]:
    ctx = _ctx(request)
    now = ctx.now()
    with ctx.storage.transaction() as tx:
        found = tx.refvalue_source(source_id)
        if found is None:
            raise NotFoundError(f"no registered CoRIM with id {source_id}")
        new = tx.withdraw_refvalue_source(source_id, reason=body.reason, now=now)
        if new:
            tx.append_audit(
                kind="refvalues.withdraw", actor="admin", subject=f"refvalues:{found[0].set_name}",
                decision=None, details={"id": source_id, "sha256": found[0].sha256, "reason": body.reason},
                now=now,
            )  # fmt: skip
        after = tx.refvalue_source(source_id)
    assert after is not None
    ctx.invalidate_refvalues()
    return source_json(after[0], now) | {"new": new}
