"""Operator endpoints (admin credential required): policy, dry run, audit."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from veritee.appraisal import load_policy
from veritee.errors import MalformedError, NotFoundError, UsageError
from veritee.reasons import Code
from veritee.service import operations
from veritee.service.auth import require_admin
from veritee.service.bodies import JsonRoute
from veritee.service.context import ServiceContext
from veritee.service.schemas import MAX_DB_INT, DryRunRequest, PolicyRollback, decode_b64

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)], route_class=JsonRoute
)

MAX_POLICY = 1024 * 1024


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


@router.get(
    "/policy",
    summary="An appraisal policy: the one named (its newest version, or the "
    "version given), else the one installed last",
)
def get_policy(
    request: Request,
    name: str | None = Query(None, min_length=1, max_length=200),
    version: int | None = Query(None, ge=1, le=MAX_DB_INT),
) -> dict[str, Any]:
    ctx = _ctx(request)
    if version is not None and name is None:
        raise MalformedError("version needs name", field="version")
    with ctx.storage.transaction(readonly=True) as tx:
        stored = (
            tx.active_policy(name) if version is None else tx.policy_version(str(name), version)
        )
    if stored is None:
        if version is not None:
            raise NotFoundError(
                f"appraisal policy {name!r} has no version {version}", code="no_policy"
            )
        if name is not None:
            raise NotFoundError(
                f"no appraisal policy named {name!r} is installed", code="no_policy"
            )
        raise NotFoundError("no appraisal policy is installed", code="no_policy")
    signed = ctx.domain.verify_policy(stored.document, stored=True)
    return {"name": stored.name, "version": stored.version, "digest": stored.digest,
            "in_force": stored.active, "installed_at": stored.created_at.isoformat(),
            "actor": stored.actor, "policy": signed.policy.to_json()}  # fmt: skip


@router.get(
    "/policy/history", summary="Every stored version of the named appraisal policy, oldest first"
)
def policy_history(
    request: Request, name: str = Query(min_length=1, max_length=200)
) -> dict[str, Any]:
    """Each version's number, envelope digest (SHA-256), who installed it and when, whether it
    is in force, and ``same_as``: the first earlier version with the same signed envelope (a
    rollback, or the same file installed again)."""
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        versions = tx.policy_versions(name)
    if not versions:
        raise NotFoundError(
            f"no appraisal policy named {name!r} was ever installed", code="no_policy"
        )
    first: dict[str, int] = {}
    out = []
    for p in versions:
        row = {"version": p.version, "digest": p.digest, "actor": p.actor,
               "installed_at": p.created_at.isoformat(), "in_force": p.active}  # fmt: skip
        if p.digest in first:
            row["same_as"] = first[p.digest]
        first.setdefault(p.digest, p.version)
        out.append(row)
    return {"name": name, "versions": out}


@router.post(
    "/policy/rollback",
    summary="Install an earlier version of the named appraisal policy again, "
    "as its next version (audited)",
)
def rollback_policy(body: PolicyRollback, request: Request) -> dict[str, Any]:
    """The stored envelope of ``version`` becomes the policy's newest version, in force. It must
    verify under the domain's current policy key (as any install); one signed by the key that
    signed policies before the keys were split is refused: sign it again and install it."""
    ctx = _ctx(request)
    now = ctx.now()
    with ctx.storage.transaction() as tx:
        old = tx.policy_version(body.name, body.version)
        if old is None:
            raise NotFoundError(
                f"appraisal policy {body.name!r} has no version {body.version}", code="no_policy"
            )
        signed = ctx.domain.verify_policy(old.document, stored=False)
        version = tx.put_policy(
            name=body.name, document=old.document, digest=old.digest, actor="admin", now=now
        )
        tx.append_audit(
            kind="policy.rollback", actor="admin", subject=body.name, decision=None,
            details={"version": version, "rollback_of": body.version, "envelope_sha256": old.digest,
                     "policy_digest": signed.policy.digest},
            now=now,
        )  # fmt: skip
    ctx.invalidate_policy()
    return {
        "name": body.name,
        "version": version,
        "digest": old.digest,
        "rollback_of": body.version,
    }


@router.delete(
    "/policy", summary="Take the named appraisal policy out of force (its versions stay stored)"
)
def retire_policy(
    request: Request, name: str = Query(min_length=1, max_length=200)
) -> dict[str, Any]:
    """Installing a policy never replaces another name's: this is how one leaves force. The
    workloads only it admitted are refused from then on (within ``policy_cache_seconds`` on every
    worker and replica); installing the name again puts the new version in force."""
    ctx = _ctx(request)
    now = ctx.now()
    with ctx.storage.transaction() as tx:
        retired = tx.retire_policy(name)
        if retired is None:
            raise NotFoundError(f"no appraisal policy named {name!r} is in force", code="no_policy")
        tx.append_audit(kind="policy.retire", actor="admin", subject=name, decision=None,
                        details={"version": retired.version, "envelope_sha256": retired.digest}, now=now)  # fmt: skip
    ctx.invalidate_policy()
    return {"name": name, "version": retired.version, "retired": True}


@router.get("/policies", summary="The appraisal policies in force, one per name")
def list_policies(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        stored = tx.policies_in_force()
    return {"policies": [{"name": s.name, "version": s.version, "digest": s.digest,
                          "installed_at": s.created_at.isoformat()} for s in stored]}  # fmt: skip


@router.put(
    "/policy", summary="Install a signed appraisal policy (envelope from `veritee policy sign`)"
)
async def put_policy(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    body = await request.body()
    if len(body) > MAX_POLICY:
        raise MalformedError("policy too large", code="oversized")
    # Refuses unsigned or wrongly signed policies (PolicyError -> 400): only the policy key,
    # never the key that signed policies before the keys were split (the CA key).
    signed = ctx.domain.verify_policy(body, stored=False)
    now = ctx.now()
    digest = hashlib.sha256(body).hexdigest()
    with ctx.storage.transaction() as tx:
        version = tx.put_policy(
            name=signed.policy.name, document=body, digest=digest, actor="admin", now=now
        )
        tx.append_audit(
            kind="policy.put",
            actor="admin",
            subject=signed.policy.name,
            decision=None,
            details={
                "version": version,
                "envelope_sha256": digest,
                "policy_digest": signed.policy.digest,
            },
            now=now,
        )
    ctx.invalidate_policy()
    return {"name": signed.policy.name, "version": version, "digest": digest}


@router.post(
    "/policy/dry-run", summary="Evaluate evidence against a draft policy without installing it"
)
async def dry_run(body: DryRunRequest, request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    policy = load_policy(body.policy)
    if body.at:
        try:
            at = dt.datetime.fromisoformat(body.at.replace("Z", "+00:00"))
        except ValueError:
            raise MalformedError("at is not an ISO-8601 time", field="at") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
    else:
        at = ctx.now()
    from veritee.collateral import Collateral

    extra = (
        Collateral.from_blobs((c.name, decode_b64(c.data, c.name)) for c in body.collateral)
        if body.collateral
        else None
    )
    appraisal = await ctx.appraise_fetching(
        decode_b64(body.evidence, "evidence"),
        at=at,
        format=body.format,
        operator_collateral=extra,
        policy=policy,
    )
    return {"dry_run": True, **appraisal.decision.to_json(), "claims": appraisal.claims}


@router.post(
    "/collateral/reload",
    summary="Read the domain's collateral folder again; forget cached collateral",
)
def reload_collateral(request: Request) -> dict[str, Any]:
    """After installing newer collateral in ``<data>/collateral``: from now on the new set decides,
    here at once, in every other worker and replica (each reads its own folder) within
    ``policy_cache_seconds``. Collateral is never rolled back: parts of the folder older than
    the newest this domain accepted before are named in ``rolled_back`` and a warning
    ``collateral_rolled_back``, and evidence is not judged on them; DCAP sets that do not verify
    (so raise no mark) are named in ``unverified``."""
    ctx = _ctx(request)
    collateral = ctx.reload_collateral()
    now = ctx.now()
    details: dict[str, Any] = {
        "files": len(collateral.sources), "certificates": len(collateral.certificates),
        "crls": len(collateral.crls), "documents": len(collateral.documents),
    }  # fmt: skip
    # Parts older than the newest this domain accepted before: they do not decide.
    rolled_back = [
        {**found.to_json(), "recorded": held.to_json()} for found, held in ctx.rolled_back
    ]
    if rolled_back:
        details["rolled_back"] = rolled_back
    if ctx.unverified:  # sets that raised no mark: they do not verify
        details["unverified"] = ctx.unverified
    with ctx.storage.transaction() as tx:
        tx.append_audit(kind="collateral.reload", actor="admin", subject="collateral", decision=None,
                        details=details, now=now)  # fmt: skip
    if rolled_back:
        details["warnings"] = [
            {"code": Code.COLLATERAL_ROLLED_BACK,
             "message": f"{found.describe()} is older than the {held.describe()} accepted before: "
                        "evidence is not judged on it (install the newer collateral again)"}
            for found, held in ctx.rolled_back
        ]  # fmt: skip
    return details


@router.get(
    "/collateral", summary="Collateral freshness: every item's window, what was fetched, failures"
)
def collateral_status(request: Request) -> dict[str, Any]:
    """Every collateral item's window and state, what was fetched, failures
    (:func:`veritee.service.operations.collateral_status`)."""
    return operations.collateral_status(_ctx(request))


@router.post(
    "/collateral/refresh", summary="Fetch collateral now: what is due, or every item (all=true)"
)
def refresh_collateral(request: Request, all: bool = Query(False)) -> dict[str, Any]:
    """Runs what the background refresh runs (``all``: every item, due or not). Each item that
    is fetched passes the checks installed collateral passes; what is held stays otherwise."""
    ctx = _ctx(request)
    refresher = ctx.refresher
    if refresher is None:
        raise UsageError(
            "collateral fetching is off (veritee serve --no-collateral-fetch)",
            code="fetch_not_applicable",
        )
    now = ctx.now()
    outcomes = (
        [refresher.refresh(p, now) for p in refresher.targets()] if all else refresher.run_once(now)
    )
    return {"outcomes": [o.to_json() for o in outcomes]}


@router.get("/audit", summary="Audit entries in order")
def audit(
    request: Request,
    after: int = Query(0, ge=0, le=MAX_DB_INT),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    ctx = _ctx(request)
    with ctx.storage.transaction(readonly=True) as tx:
        entries = tx.audit_entries(after_seq=after, limit=limit)
    return {"entries": [e.as_dict() for e in entries]}


@router.get("/audit/head", summary="The audit log's head, signed (an anchor to keep elsewhere)")
def audit_head(request: Request) -> dict[str, Any]:
    return operations.audit_head(_ctx(request))


@router.get("/audit/verify", summary="Check the audit hash chain")
def audit_verify(request: Request) -> dict[str, Any]:
    return operations.audit_verify(_ctx(request))
