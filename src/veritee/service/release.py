"""The release use case: decide, consume the nonce, audit, and open the secret, in one place.

Every route that hands out a secret calls :func:`release_secret`: the REST release with fresh
evidence (``/v1/secrets/{name}/release``), the release to a certified workload
(``/v1/secrets/{name}/release-certified``, whose admission certificate is checked by
:func:`admitted_claims`) and the Trustee KBS resource route (``/kbs/v0/resource/...``). The
domain-released sealing key (``/v1/sealing-key``) is :func:`release_sealing_key`, the same
transaction over a key derived from the broker's sealing root
(:mod:`veritee.keybroker.sealing_keys`) instead of a stored secret. The routes only parse
requests and format answers.

The release decision, the consumption of the nonce and the audit record (``secret.release`` or
``secret.deny`` with every reason) are one transaction: no release exists without its audit
record, and the secret is encrypted to the workload only after that transaction committed.
Secret values never reach a log, an error or the audit log (only SHA-256 digests of sealed data).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from veritee import certs
from veritee.admission import AdmissionInfo
from veritee.appraisal import Decision, appraise_admitted
from veritee.binding import spki_der
from veritee.errors import NonceError, NotFoundError, StorageError, VerificationError
from veritee.evidence.claims import Reason
from veritee.keybroker import sealing_keys
from veritee.keybroker.policy import ReleaseDecision, ReleasePolicy, dry_run, evaluate, parse_policy
from veritee.keybroker.vault import SecretBytes, open_blob
from veritee.profiles import Profile
from veritee.service.context import ServiceContext
from veritee.service.storage.models import StoredRevocation, StoredSecret
from veritee.service.storage.tx import Tx

__all__ = [
    "ReleasedSealingKey",
    "admitted_claims",
    "certified_audit",
    "certified_decision",
    "release_sealing_key",
    "release_secret",
    "revocation_reason",
    "stored_release_policy",
]


@functools.lru_cache(maxsize=1024)
def stored_release_policy(text: str) -> ReleasePolicy:
    """A stored release policy, parsed once per distinct text (parsed policies are frozen)."""
    return parse_policy(text)


def release_secret(
    ctx: ServiceContext,
    *,
    name: str,
    version: int | None,
    nonce: bytes,
    nonce_purpose: str,
    claims: dict[str, Any] | None,
    accepted: bool,
    appraisal_reasons: Sequence[Reason],
    audit: dict[str, Any],
    certificate: tuple[str, str] | None = None,
) -> tuple[SecretBytes, int]:
    """Decide, consume the nonce (if any) and audit in ONE transaction; return the value.

    ``certificate``: (serial hex, measurement) of the admission certificate a certified
    release rests on; a revoked one is refused (``certificate_revoked``), read in the same
    transaction.

    Raises :class:`NonceError`, :class:`NotFoundError` (``secret_unknown``) or
    :class:`VerificationError` (``release_denied`` with every reason, ``secret_tampered``);
    each of these outcomes is in the audit log as ``secret.deny``.
    """
    now = ctx.now()
    base = audit
    subject = name
    kek = ctx.kek
    try:
        with ctx.storage.transaction() as tx:
            # the nonce, the secret (and its latest version) and the certificate's revocation:
            # one round trip on PostgreSQL
            read = tx.spend_and_read_secret(
                nonce, now=now, purpose=nonce_purpose, name=name, version=version,
                certificate=certificate,
            )  # fmt: skip
            stored = read.stored
            reasons: list[Reason] = []
            if certificate is not None:
                revoked = _revocation_cause(read.revoked)
                if revoked is not None:
                    accepted, claims = False, None
                    appraisal_reasons = [*appraisal_reasons, revoked]
            value: SecretBytes | None = None
            if stored is None:
                reasons.append(Reason("secret_unknown", f"no secret named {name!r}"))
            else:
                allowed = True
                policies = _release_policies(stored, read.latest)
                for policy_text in policies:
                    decision: ReleaseDecision
                    if not accepted or claims is None:
                        decision = dry_run(
                            stored_release_policy(policy_text),
                            claims or {},
                            appraisal_accepted=False,
                            appraisal_reasons=appraisal_reasons,
                        )
                    else:
                        decision = evaluate(stored_release_policy(policy_text), claims)
                    reasons.extend(r for r in decision.reasons if r not in reasons)
                    allowed = allowed and decision.allowed
                if allowed:
                    try:
                        value = open_blob(
                            kek,
                            name,
                            stored.version,
                            stored.ciphertext,
                            columns=(stored.kek_id, stored.wrapped_dek),
                        )
                    except VerificationError as e:
                        reasons.append(Reason(e.code, e.message))
            details = base | {
                "version": None if stored is None else stored.version,
                "release_reasons": [r.to_json() for r in reasons],
            }
            released = value is not None and stored is not None
            tx.append_audit(
                kind="secret.release" if released else "secret.deny",
                actor="workload",
                subject=subject,
                decision="accept" if released else "reject",
                details=details,
                now=now,
            )
    except NonceError as e:
        _audit_nonce_refusal(ctx, e, kind="secret.deny", subject=subject, details=base, now=now)
        ctx.metrics.inc("veritee_releases_total", "Secret releases", outcome="nonce_rejected")
        raise
    if value is None or stored is None:
        ctx.metrics.inc("veritee_releases_total", "Secret releases", outcome="denied")
        if stored is None:
            raise NotFoundError(f"no secret named {name!r}", code="secret_unknown")
        if any(r.code == "secret_tampered" for r in reasons):
            err = VerificationError(
                f"secret {name!r} is damaged at rest and was not released", code="secret_tampered"
            )
        else:
            err = VerificationError(
                "release denied: " + "; ".join(r.message for r in reasons), code="release_denied"
            )
        err.reasons = [r.to_json() for r in reasons]
        raise err
    ctx.metrics.inc("veritee_releases_total", "Secret releases", outcome="released")
    return value, stored.version


@dataclass(frozen=True)
class ReleasedSealingKey:
    """A domain-released sealing key and what it is for (the key redacts itself)."""

    key: SecretBytes
    workload: str
    profile: Profile
    generation: int


def release_sealing_key(
    ctx: ServiceContext,
    *,
    nonce: bytes,
    decision: Decision,
    profile: Profile,
    audit: dict[str, Any],
) -> ReleasedSealingKey:
    """Consume the nonce, decide, derive and audit in ONE transaction; return the key.

    The key is released iff ``decision`` accepted: the appraisal, under the policy in force, of
    fresh evidence binding ``nonce`` and the recipient key, or of an admission certificate's
    claims with a proof of possession (:func:`veritee.appraisal.appraise_admitted`). It is the
    key of the workload named by the policy that decided (``decision.policy_name``), in the
    attested ``profile`` (:mod:`veritee.keybroker.sealing_keys`). The domain's sealing root is
    made on first use. Raises :class:`NonceError` or
    :class:`VerificationError` (``sealing_key_denied`` with every reason,
    ``sealing_root_unavailable``); each outcome is in the audit log (``sealing_key.release`` or
    ``sealing_key.deny``), which names the workload and profile, never the key.
    """
    now = ctx.now()
    workload = decision.policy_name
    subject = f"{profile.value}/{workload or '-'}"
    reasons: list[Reason] = []
    released: ReleasedSealingKey | None = None
    try:
        with ctx.storage.transaction() as tx:
            tx.consume_nonce(nonce, now=now, purpose="attest")
            if not decision.accepted:
                reasons.extend(decision.reasons)
            elif not workload:
                reasons.append(Reason("no_policy", "no appraisal policy names this workload"))
            else:
                try:
                    root = _sealing_root(ctx, tx, now)
                except VerificationError as e:
                    reasons.append(Reason(e.code, e.message))
                else:
                    released = ReleasedSealingKey(
                        key=root.derive(
                            domain_id=_domain_id(ctx), workload=workload, profile=profile
                        ),
                        workload=workload,
                        profile=profile,
                        generation=root.generation,
                    )
            tx.append_audit(
                kind="sealing_key.release" if released else "sealing_key.deny",
                actor="workload",
                subject=subject,
                decision="accept" if released else "reject",
                details=audit
                | {
                    "workload": workload,
                    "sealing_profile": profile.value,
                    "sealing_root_generation": released.generation if released else None,
                    "release_reasons": [r.to_json() for r in reasons],
                },
                now=now,
            )
    except NonceError as e:
        _audit_nonce_refusal(
            ctx, e, kind="sealing_key.deny", subject=subject, details=audit, now=now
        )
        ctx.metrics.inc(
            "veritee_sealing_keys_total", "Sealing-key releases", outcome="nonce_rejected"
        )
        raise
    if released is None:
        ctx.metrics.inc("veritee_sealing_keys_total", "Sealing-key releases", outcome="denied")
        root_fault = next((r for r in reasons if r.code == "sealing_root_unavailable"), None)
        if root_fault is not None:
            err = VerificationError(root_fault.message, code=root_fault.code)
        else:
            err = VerificationError(
                "sealing key denied: " + "; ".join(r.message for r in reasons),
                code="sealing_key_denied",
            )
        err.reasons = [r.to_json() for r in reasons]
        raise err
    ctx.metrics.inc("veritee_sealing_keys_total", "Sealing-key releases", outcome="released")
    return released


def _audit_nonce_refusal(
    ctx: ServiceContext,
    e: NonceError,
    *,
    kind: str,
    subject: str,
    details: dict[str, Any],
    now: dt.datetime,
) -> None:
    """Audit a release refused for its nonce (spent, expired, unknown), in its own transaction:
    the release's transaction was rolled back with the nonce."""
    with ctx.storage.transaction() as tx:
        tx.append_audit(
            kind=kind,
            actor="workload",
            subject=subject,
            decision="reject",
            details=details | {"release_reasons": [{"code": e.code, "message": e.message}]},
            now=now,
        )


def certified_audit(claims: dict[str, Any], decision: Any, recipient_spki: bytes) -> dict[str, Any]:
    """The audit details of a release to an admission certificate (secrets, sealing keys)."""
    return {
        "via": "admission_certificate",
        "certificate_serial": claims["admission_serial"],
        "platform": claims["platform"],
        "measurement": claims["measurement"],
        "profile": claims["profile"],
        "policy": decision.policy_name,
        "policy_digest": decision.policy_digest,
        "recipient_key_sha256": hashlib.sha256(recipient_spki).hexdigest(),
    }


def _domain_id(ctx: ServiceContext) -> bytes:
    return sealing_keys.domain_id(spki_der(ctx.domain.ca_certificate.public_key()))


def _sealing_root(ctx: ServiceContext, tx: Tx, now: dt.datetime) -> sealing_keys.SealingRoot:
    """The domain's sealing root, made (wrapped by the KEK) on first use."""
    stored = tx.sealing_root()
    if stored is None:
        wrapped = sealing_keys.new_wrapped_root(ctx.kek, 1)
        tx.add_sealing_root(generation=1, kek_id=ctx.kek.kek_id, wrapped_root=wrapped, now=now)
        stored = tx.sealing_root()  # ours, or the one a concurrent worker committed first
        if stored is None:
            raise StorageError("the sealing root was not stored")
    generation, kek_id, wrapped = stored
    return sealing_keys.open_root(ctx.kek, generation, kek_id, wrapped)


def _release_policies(stored: StoredSecret, latest: StoredSecret | None) -> tuple[str, ...]:
    """The release policies a release of ``stored`` must satisfy: its own, and, for an older
    version asked for by number, the newest version's (``latest``) too, unless that version
    was rotated in with ``keep_old_policies`` (the operator's explicit choice, stored with
    it). ``latest`` None: the latest version was asked for."""
    if latest is None or latest.version == stored.version or latest.keep_old_policies:
        return (stored.policy,)
    if latest.policy == stored.policy:
        return (stored.policy,)
    return (stored.policy, latest.policy)


def _revocation_reason(tx: Tx, serial_hex: str, measurement: str) -> Reason | None:
    return _revocation_cause(tx.revocation_of(serial_hex, measurement))


def _revocation_cause(revoked: StoredRevocation | None) -> Reason | None:
    if revoked is None:
        return None
    by = "its serial" if revoked.kind == "serial" else "its measurement"
    return Reason(
        "certificate_revoked",
        f"the admission certificate is revoked ({by}, at {revoked.revoked_at.isoformat()})",
    )


def revocation_reason(ctx: ServiceContext, claims: dict[str, Any]) -> Reason | None:
    """``certificate_revoked`` if an admission certificate with these claims is revoked, by
    serial or by measurement (read from the database for every decision, so a revocation
    holds at once on every worker and replica)."""
    with ctx.storage.transaction(readonly=True) as tx:
        return _revocation_reason(tx, str(claims["admission_serial"]), str(claims["measurement"]))


async def certified_decision(
    ctx: ServiceContext,
    claims: dict[str, Any],
    *,
    check_revocation: bool = True,
    policy: str | None = None,
) -> Decision:
    """What a decision on an admission certificate starts from: its claims re-appraised under
    the policy in force (:func:`veritee.appraisal.appraise_admitted`), and refused if the
    certificate is revoked (``check_revocation=False``: the caller reads that in its own
    transaction, as :func:`release_secret` does). ``policy``: the named policy alone decides
    (:meth:`ServiceContext.policies_named`)."""
    policies = await ctx.policies_named(policy)
    if policies is None:
        decision = Decision(policy_name=None)
        decision.refuse("no_policy", "no appraisal policy is installed in this domain")
    else:
        refvalues = ctx.refvalues_if_cached(policies) or await ctx.run_db(
            ctx.refvalues_for, policies
        )
        decision = appraise_admitted(claims, policies, refvalues)
    if check_revocation:
        revoked = await ctx.run_db(revocation_reason, ctx, claims)
        if revoked is not None:
            decision.refuse(revoked.code, revoked.message, claim="instance-identity")
    return decision


def admitted_claims(
    ctx: ServiceContext, pem: str, now: dt.datetime
) -> tuple[dict[str, Any], AdmissionInfo]:
    """Check an admission certificate of this domain; return the claims it certifies.

    The issuer signature is checked once per distinct certificate (and CA); validity at
    ``now`` is checked on every call.
    """
    claims, info = _verified_admission(pem, ctx.domain.ca_certificate)
    if not info.is_valid_at(now):
        raise VerificationError(
            "admission certificate is not valid now", code="certificate_expired"
        )
    return dict(claims), info


@functools.lru_cache(maxsize=4096)
def _verified_admission(pem: str, ca: x509.Certificate) -> tuple[dict[str, Any], AdmissionInfo]:
    cert = certs.load_pem_certificate(pem.encode(), "certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise VerificationError(
            "certificate is not an admission certificate of this domain",
            code="certificate_untrusted",
        ) from None
    info = AdmissionInfo.from_certificate(cert)
    claims: dict[str, Any] = {
        "platform": info.platform,
        "measurement": info.measurement,
        "profile": info.profile.value if info.profile is not None else None,
        "admission_serial": format(info.serial_number, "x"),
    }
    return claims, info
