"""Revoking admission certificates (issue 12.2): by serial or by measurement.

Admin (bearer credential): ``POST /v1/admin/revocations`` (``{"serial": hex}`` or
``{"measurement": hex}``, optional ``reason``) and ``GET /v1/admin/revocations``. Each
revocation is audited (``certificate.revoke``) in the transaction that stores it, and holds at
once on every worker and replica: certified decisions read it from the database every time
(:func:`veritee.service.release.revocation_reason`); certification of a revoked measurement is
refused (``measurement_revoked``).

Relying parties: ``GET /v1/crl``, an X.509 v2 CRL (RFC 5280, DER, ``application/pkix-crl``)
signed by the domain CA, listing every revoked certificate that has not expired (those of a
revoked measurement by serial: every recorded certificate certifying it). It is made on
request, so it is as current as the database; ``nextUpdate`` is :data:`CRL_LIFETIME` later.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from veritee.admission import normalize_measurement
from veritee.errors import MalformedError, UsageError
from veritee.service.auth import require_admin
from veritee.service.context import ServiceContext
from veritee.service.operations import certificate_state
from veritee.service.schemas import RevocationRequest

__all__ = ["CRL_LIFETIME", "build_crl", "router"]

router = APIRouter()

#: How long relying parties may use a CRL before fetching a new one (its ``nextUpdate``).
CRL_LIFETIME = dt.timedelta(hours=1)


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _serial(value: str) -> str:
    text = value.strip().lower().removeprefix("0x").replace(":", "")
    try:
        serial = int(text, 16)
    except ValueError:
        raise MalformedError("serial is not hex", field="serial") from None
    if serial <= 0 or serial.bit_length() > 160:
        raise MalformedError("serial must be a positive number of at most 160 bits", field="serial")
    return format(serial, "x")


@router.post(
    "/v1/admin/revocations", tags=["admin"], dependencies=[Depends(require_admin)],
    summary="Revoke admission certificates by serial or by measurement",
)  # fmt: skip
def revoke(body: RevocationRequest, request: Request) -> dict[str, Any]:
    if (body.serial is None) == (body.measurement is None):
        raise MalformedError("give exactly one of serial and measurement", field="serial")
    if body.serial is not None:
        kind, value = "serial", _serial(body.serial)
    else:
        try:
            kind, value = "measurement", normalize_measurement(str(body.measurement))
        except UsageError:
            raise MalformedError(
                "measurement must be 16..64 bytes of hex", field="measurement"
            ) from None
    ctx = _ctx(request)
    now = ctx.now()
    with ctx.storage.transaction() as tx:
        new = tx.revoke(kind, value, reason=body.reason, actor="admin", now=now)
        if new:
            tx.append_audit(
                kind="certificate.revoke", actor="admin", subject=f"{kind}:{value}",
                decision=None, details={kind: value, "reason": body.reason}, now=now,
            )  # fmt: skip
        stored = tx.revocation(kind, value)
    if stored is None:  # pragma: no cover - stored above, or before
        raise MalformedError("the revocation was not stored")
    return {
        "kind": kind, "value": value, "new": new, "reason": stored.reason,
        "revoked_at": stored.revoked_at.isoformat(),
    }  # fmt: skip


@router.get(
    "/v1/admin/revocations", tags=["admin"], dependencies=[Depends(require_admin)],
    summary="Every revocation",
)  # fmt: skip
def list_revocations(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        rows = tx.revocations()
    return {
        "revocations": [
            {"kind": r.kind, "value": r.value, "reason": r.reason, "actor": r.actor,
             "revoked_at": r.revoked_at.isoformat()}
            for r in rows
        ]
    }  # fmt: skip


#: An admission certificate's states: ``expiring`` has under a quarter of its lifetime left.
@router.get(
    "/v1/admin/certificates", tags=["admin"], dependencies=[Depends(require_admin)],
    summary="Issued admission certificates, the newest first, with their state",
)  # fmt: skip
def list_certificates(
    request: Request,
    limit: int = Query(200, ge=1, le=10_000),
    state: str | None = Query(None, pattern="^(valid|expiring|expired|revoked)$"),
) -> dict[str, Any]:
    """Each certificate's serial, platform, measurement, validity and state (``valid``,
    ``expiring``, ``expired``, ``revoked`` with when and why); ``state`` keeps one state (among
    the newest ``limit`` issued)."""
    ctx = _ctx(request)
    now = ctx.now()
    with ctx.storage.transaction(readonly=True) as tx:
        certs = tx.list_certificates(limit=limit)
        revocations = tx.revocations()
    out = []
    for c in certs:
        name, revoked = certificate_state(c, revocations, now)
        if state is not None and name != state:
            continue
        row: dict[str, Any] = {
            "serial": format(c.serial, "x"), "platform": c.platform, "measurement": c.measurement,
            "not_before": c.not_before.isoformat(), "not_after": c.not_after.isoformat(), "state": name,
        }  # fmt: skip
        if revoked is not None:
            row["revoked"] = {
                "by": revoked.kind,
                "at": revoked.revoked_at.isoformat(),
                "reason": revoked.reason,
            }
        out.append(row)
    return {"certificates": out, "at": now.isoformat()}


def build_crl(ctx: ServiceContext, now: dt.datetime) -> bytes:
    """The domain's CRL as DER, signed by the domain CA."""
    with ctx.storage.transaction(readonly=True) as tx:
        revoked = tx.revoked_serials(now=now)
    ca = ctx.domain.ca_certificate
    this_update = now.replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(this_update)
        .next_update(this_update + CRL_LIFETIME)
        # Increases with time on every replica (RFC 5280 5.2.3 asks for a monotonic number).
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ctx.domain.ca_key.public_key()),
            critical=False,
        )
    )
    for serial, at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(at.replace(microsecond=0)).build()
        )  # fmt: skip
    return builder.sign(ctx.domain.ca_key, hashes.SHA384()).public_bytes(Encoding.DER)


@router.get(
    "/v1/crl", tags=["attestation"],
    summary="Revoked admission certificates: a CRL signed by the domain CA (DER)",
)  # fmt: skip
async def crl(request: Request) -> Response:
    ctx = _ctx(request)
    der = await ctx.run_db(build_crl, ctx, ctx.now())
    return Response(der, media_type="application/pkix-crl", headers={"Cache-Control": "no-cache"})
