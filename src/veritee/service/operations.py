"""What the operator's views read, in one place: the admin API (``/v1/admin/...``) and the web
console (``/ui``) both call these, so no route module imports another and the two say the same.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from veritee.anchors import sign_anchor
from veritee.collateral.freshness import readiness
from veritee.service.context import ServiceContext
from veritee.service.storage import verify_audit_chain
from veritee.service.storage.models import StoredCertificate, StoredRevocation

__all__ = [
    "CERTIFICATE_STATES",
    "audit_head",
    "audit_verify",
    "certificate_state",
    "collateral_status",
]

CERTIFICATE_STATES = ("valid", "expiring", "expired", "revoked")


def collateral_status(ctx: ServiceContext) -> dict[str, Any]:
    """The newest version of every item of the domain's collateral (folder and fetched) with
    its age, seconds until its nextUpdate and state (``ok``, ``warning``, ``expired``); each
    fetched item's last fetch, failures and next try; and where the service fetches from."""
    now, warn = ctx.now(), ctx.settings.collateral_warn_before
    found = ctx.collateral_items()
    with ctx.storage.transaction(readonly=True) as tx:
        rows = tx.fetched_collateral(with_data=False)
    fetch = ctx.settings.collateral_fetch
    return {
        "readiness": readiness(found, now, warn).status,
        "items": [i.to_json(now, warn) for i in found],
        "fetched": [{"path": r.path, "sha256": r.sha256,
                     "fetched_at": r.fetched_at.isoformat() if r.fetched_at else None,
                     "checked_at": r.checked_at.isoformat() if r.checked_at else None,
                     "next_try": r.next_try.isoformat() if r.next_try else None,
                     "failures": r.failures, "last_error": r.last_error} for r in rows],
        "fetching": None if fetch is None else {
            "kds": fetch.kds, "pcs": fetch.pcs, "pccs": fetch.pccs, "lazy": fetch.lazy},
    }  # fmt: skip


def audit_head(ctx: ServiceContext) -> dict[str, Any]:
    """The audit log's head, signed by the domain (an anchor to keep elsewhere)."""
    with ctx.storage.transaction(readonly=True) as tx:
        seq, digest = tx.audit_head()
    d = ctx.domain
    anchor = sign_anchor(
        d.token_key, kid=d.token_kid, issuer=d.name, seq=seq, entry_hash=digest, now=ctx.now()
    )
    return {"seq": seq, "entry_hash": digest.hex(), "anchor": anchor}


def audit_verify(ctx: ServiceContext) -> dict[str, Any]:
    """The audit hash chain checked from its first entry."""
    report = verify_audit_chain(ctx.storage)
    return {
        "ok": report.ok,
        "count": report.count,
        "first_broken": report.first_broken,
        "message": report.message,
    }


def certificate_state(cert: StoredCertificate, revocations: list[StoredRevocation], now: dt.datetime
                      ) -> tuple[str, StoredRevocation | None]:  # fmt: skip
    """(state, the revocation covering it) of a recorded admission certificate: ``revoked`` (by
    its serial or its measurement), else ``expired``, ``expiring`` (under a quarter of its
    lifetime left) or ``valid``. The console and ``GET /v1/admin/certificates`` say the same."""
    serial = format(cert.serial, "x")
    revoked = next((r for r in revocations if (r.kind, r.value) in (("serial", serial),
                                                                    ("measurement", cert.measurement.lower()))), None)  # fmt: skip
    if revoked is not None:
        return "revoked", revoked
    left = cert.not_after - now
    if left <= dt.timedelta(0):
        return "expired", None
    if left < (cert.not_after - cert.not_before) / 4:
        return "expiring", None
    return "valid", None
