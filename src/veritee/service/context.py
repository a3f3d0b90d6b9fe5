"""What every request handler needs: the domain, storage, collateral and the appraiser.

The appraisal workflow is pure and shared with ``veritee verify``
(:func:`veritee.appraisal.attest.appraise_evidence`: verify, appraise, check the binding); this
module does the I/O around it: reading the active policy from the database (cached briefly) and
the collateral folder of the domain, and sorting collateral by who supplied it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from cryptography.hazmat.primitives import serialization

from veritee import binding, evidence
from veritee.appraisal import Decision, Policy, PolicySet
from veritee.appraisal.attest import Appraisal, appraise_evidence
from veritee.appraisal.evaluate import RefValues
from veritee.binding import ExpectedBinding
from veritee.collateral import Collateral
from veritee.collateral.freshness import Item, items
from veritee.collateral.marks import Mark
from veritee.domain import Domain
from veritee.errors import NotFoundError, VerificationError, VeriteeError
from veritee.evidence import amd, dcap
from veritee.evidence.trust import TrustRoot
from veritee.keybroker.kek import KeyEncryptionKey
from veritee.reasons import Code
from veritee.refvalues.sets import RefValueSet
from veritee.service.metrics import Metrics
from veritee.service.settings import Settings
from veritee.service.storage import Storage
from veritee.service.storage.tx import COLLATERAL_GENERATION, REFVALUE_GENERATION

__all__ = ["LAZY_FETCH_CODES", "Appraisal", "ServiceContext"]

#: Refusals that a fetch of the evidence's collateral may cure.
LAZY_FETCH_CODES = frozenset(
    {
        Code.COLLATERAL_MISSING,
        Code.COLLATERAL_EXPIRED,
        Code.CRL_EXPIRED,
        Code.TCB_INFO_MISMATCH,
    }
)

if TYPE_CHECKING:
    from veritee.service.collateral_refresh import CollateralRefresher

T = TypeVar("T")

#: Threads running PostgreSQL calls of the handlers (the storage's pool holds 10 + 10 connections).
DB_THREADS = 16


class ServiceContext:
    def __init__(
        self, settings: Settings, domain: Domain, storage: Storage, kek: KeyEncryptionKey
    ) -> None:
        self.settings = settings
        self.domain = domain
        self.storage = storage
        #: The key-encryption key of the secrets at rest (:mod:`veritee.keybroker.kek`).
        self.kek = kek
        self.metrics = Metrics()
        if settings.clock is not None:
            self.now = settings.clock  # type: ignore[method-assign]
        self._lock = threading.Lock()
        # (monotonic time of the last read, each policy in force by its row's (id, digest), the set)
        self._policy: tuple[float, dict[tuple[int, str], Policy], PolicySet | None] = (
            0.0,
            {},
            None,
        )
        self._collateral: Collateral | None = None
        self._folder: Collateral | None = None
        self._own: Collateral | None = None
        self._items: list[Item] | None = None
        #: Fetches and refreshes collateral (None: the setting ``collateral_fetch`` is off).
        self.refresher: CollateralRefresher | None = None
        #: Parts of the collateral folder older than the domain's recorded marks, each with the
        #: mark (as of the last read of the folder): they do not decide.
        self.rolled_back: list[tuple[Mark, Mark]] = []
        #: Why DCAP sets of the folder were not marked (their signatures or chains do not verify).
        self.unverified: list[str] = []
        # (monotonic time of the last look, the domain's collateral generation then)
        self._collateral_generation: tuple[float, str | None] = (0.0, None)
        # reference-value sets by name, least recently used first (at most MAX_REFVALUE_SETS),
        # and (monotonic time of the last look, the domain's reference-value generation then)
        self._refvalue_sets: OrderedDict[str, RefValueSet] = OrderedDict()
        self._refvalue_generation: tuple[float, str | None] = (0.0, None)
        # id(policy) -> (the policy, its sets' lookup function, when a source of them expires or begins)
        self._refvalue_resolvers: dict[int, tuple[object, RefValues, dt.datetime | None]] = {}
        #: What is trusted a priori: the pinned vendor roots (never taken from a request).
        self.trust_root = settings.trust_root or TrustRoot.default()
        #: The service's evidence of itself (``settings.attest_self``;
        #: :class:`veritee.service.self_attest.ServiceAttester`), or None.
        self.service_attester: Any = None
        self._db_threads: concurrent.futures.ThreadPoolExecutor | None = None

    async def run_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking storage call from an async handler, off the event loop.

        SQLite: the call goes to the storage's group commit (:meth:`Storage.run`): the
        calls waiting are run in one transaction and acknowledged by one sync of the WAL
        (``synchronous=FULL`` makes every commit wait for the disk; run inline, each commit
        held the event loop for that long). A networked database (PostgreSQL) runs the call in
        a worker thread so that its round trips never block the event loop.
        """
        call = functools.partial(fn, *args, **kwargs)
        if self.storage.dialect == "sqlite":
            return await self.storage.run(call)
        # A pool of this context's own: a third of the CPU time of anyio's worker threads
        # per call (no capacity limiter, no context copy); as many threads as the storage
        # pools connections.
        pool = self._db_threads
        if pool is None:
            pool = self._db_threads = concurrent.futures.ThreadPoolExecutor(
                max_workers=DB_THREADS, thread_name_prefix="veritee-db"
            )
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    def close(self) -> None:
        """The service is stopping: wait for the database calls under way (PostgreSQL's threads)."""
        pool, self._db_threads = self._db_threads, None
        if pool is not None:
            pool.shutdown(wait=True)

    @staticmethod
    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    # --- collateral ---------------------------------------------------------------------
    def collateral(self) -> Collateral:
        """The domain's collateral folder, read once, and again after a reload anywhere: when
        the domain's collateral generation (counted in the database by
        :meth:`reload_collateral`) has changed, looked up at most every
        ``settings.policy_cache_seconds``."""
        looked_at, generation = self._collateral_generation
        if time.monotonic() - looked_at >= self.settings.policy_cache_seconds:
            with self.storage.transaction(readonly=True) as tx:
                current = tx.domain_fact(COLLATERAL_GENERATION)
            self._collateral_generation = (time.monotonic(), current)
            if current != generation:
                self._forget_collateral()
        if self._collateral is None:
            self._collateral = self._with_marks(self.own_collateral())
        return self._collateral

    def folder_collateral(self) -> Collateral:
        """The domain's collateral folder as read last (read now if it was not)."""
        folder = self._folder
        if folder is None:
            path = self.domain.collateral_dir
            folder = Collateral.from_paths([path]) if path.is_dir() else Collateral.empty()
            self._folder = folder
        return folder

    def own_collateral(self) -> Collateral:
        """The relying party's own collateral: the folder and what the service fetched
        (:mod:`veritee.service.collateral_refresh`; checked as the folder's is before it was
        stored). A CRL the service fetched supersedes older CRLs of the same issuer (an
        expired CRL installed long ago does not fail verification once a current one is held)."""
        own = self._own
        if own is None:
            with self.storage.transaction(readonly=True) as tx:
                rows = [
                    (f"fetched:{r.path}", r.data)
                    for r in tx.fetched_collateral()
                    if r.data is not None
                ]
            fetched = Collateral.from_blobs(rows)
            own = _superseding(self.folder_collateral(), fetched)
            self._own = own
        return own

    def collateral_changed(self) -> None:
        """Fetched collateral was stored here: read it from now on (the collateral generation
        the fetch advanced tells every other worker and replica)."""
        self._forget_collateral()

    def _with_marks(self, own: Collateral) -> Collateral:
        """``own`` (the folder's collateral) judged against the domain's high-water marks: the
        marks of its authentic DCAP sets are recorded in the database (only ever raised, by
        every replica), and every set older than a recorded mark is refused when it would
        decide (``collateral_rolled_back``; :attr:`rolled_back` names them).

        A read that raises a mark (a replica started on a newer folder, without a reload) counts
        one more collateral generation, so every other worker and replica reads its folder again
        within ``settings.policy_cache_seconds`` and holds it against the new mark (a replica
        that reads no newer mark writes nothing: no loop)."""
        found, self.unverified = dcap.collateral_marks(own, self.trust_root.intel)
        with self.storage.transaction(readonly=True) as tx:
            held = tx.collateral_marks()
        if any((h := held.get(m.key)) is None or m.value > h.value for m in found):
            with self.storage.transaction() as tx:
                if tx.raise_collateral_marks(found, now=self.now()):
                    generation = tx.advance_collateral_generation(now=self.now())
                    self._collateral_generation = (time.monotonic(), generation)
                held = tx.collateral_marks()
        self.rolled_back = held.rolled_back(found)
        return own.with_marks(held)

    def reload_collateral(self) -> Collateral:
        """Read the domain's collateral folder again and forget every verified set, chain and
        ranking cached from earlier collateral (DCAP, AMD): the new set decides from now on, in
        this process at once and in every other worker and replica within
        ``settings.policy_cache_seconds`` (the generation counted in the database)."""
        with self.storage.transaction() as tx:
            generation = tx.advance_collateral_generation(now=self.now())
        self._forget_collateral()
        self._collateral_generation = (time.monotonic(), generation)
        return self.collateral()

    def _forget_collateral(self) -> None:
        self._collateral = None
        self._folder = None
        self._own = None
        self._items = None
        dcap.clear_caches()  # the shared DCAP cache and the checked certificates
        amd.DEFAULT_CHAIN_CACHE.clear()
        # The trust root's own caches too (settings.trust_root; the shared ones again: a no-op).
        self.trust_root.intel.cache.clear()
        if self.trust_root.amd.cache is not None:
            self.trust_root.amd.cache.clear()

    def collateral_items(self) -> list[Item]:
        """The newest version of every item of the domain's collateral (folder and fetched),
        with its window (:mod:`veritee.collateral.freshness`), for /readyz and /metrics."""
        found = self._items
        if found is None or self._own is None:
            found = items(self.own_collateral())
            self._items = found
        return found

    async def appraise_fetching(self, data: bytes, **kwargs: Any) -> Appraisal:
        """:meth:`appraise`, and when the evidence was refused for collateral the domain lacks,
        :meth:`fetch_lacking` and appraise again."""
        appraisal = await self.appraise_async(data, **kwargs)
        if await self.fetch_lacking(data, appraisal.decision):
            return await self.appraise_async(data, **kwargs)
        return appraisal

    async def appraise_async(self, data: bytes, **kwargs: Any) -> Appraisal:
        """:meth:`appraise` for async handlers: what it would read from the database (the
        domain's collateral generation, the policies in force, the reference values of the
        policy) is looked up first, off the event loop when that needs the database
        (:meth:`current_collateral`, :meth:`current_policy`, :meth:`refvalues_async`), and
        handed to :meth:`appraise`, so that the appraisal on the loop reads nothing."""
        if kwargs.get("policy") is None and kwargs.pop("use_active_policy", True):
            kwargs["policy"] = await self.current_policy()
        kwargs["use_active_policy"] = False
        policy = kwargs.get("policy")
        if policy is not None and kwargs.get("refvalues") is None:
            kwargs["refvalues"] = await self.refvalues_async(policy, kwargs.get("at"))
        if kwargs.get("domain_collateral") is None:
            kwargs["domain_collateral"] = await self.current_collateral()
        return self.appraise(data, **kwargs)

    async def current_collateral(self) -> Collateral:
        """:meth:`collateral` for async handlers: the cached collateral without a trip to a
        worker thread, the database (the collateral generation) only when its look-up is due."""
        looked_at, _generation = self._collateral_generation
        collateral = self._collateral
        if (
            collateral is not None
            and time.monotonic() - looked_at < self.settings.policy_cache_seconds
        ):
            return collateral
        return await self.run_db(self.collateral)

    async def fetch_lacking(self, data: bytes, decision: Decision) -> bool:
        """When ``decision`` refused ``data`` for collateral the domain lacks (none for its FMSPC
        or chip, or only expired collateral; :data:`LAZY_FETCH_CODES`), fetch it once (sharing a
        fetch already under way, not before a failed one's backoff ends, waiting at most
        ``collateral_fetch.lazy_wait`` seconds). True: newer collateral is in force, appraise
        again. False: nothing changed; if a fetch was tried, the warning
        ``collateral_fetch_failed`` on ``decision`` says why."""
        refresher = self.refresher
        if refresher is None or not refresher.fetch.lazy or decision.accepted:
            return False
        if not any(r.code in LAZY_FETCH_CODES for r in decision.reasons):
            return False
        try:
            with anyio.fail_after(refresher.fetch.lazy_wait):
                outcome = await anyio.to_thread.run_sync(
                    refresher.fetch_for, data, self.now(), abandon_on_cancel=True
                )
        except TimeoutError:
            outcome = None
        if outcome is not None and outcome.result == "stored":
            return True
        if outcome is None:
            why = f"no answer within {refresher.fetch.lazy_wait:g} s"
        elif outcome.result == "unchanged":
            why = "the vendor has nothing newer than the collateral held"
        elif outcome.result == "busy":
            why = "another worker or replica is fetching it; try again shortly"
        else:
            retry = f"; retried from {outcome.next_try.isoformat()}" if outcome.next_try else ""
            why = f"{outcome.code}: {outcome.message}{retry}"
        decision.warn(
            Code.COLLATERAL_FETCH_FAILED,
            f"collateral for this evidence could not be fetched ({why})",
        )
        return False

    # --- policy -------------------------------------------------------------------------
    def policy(self) -> PolicySet | None:
        """The appraisal policies in force, one per name (None: none is installed); each one's
        signature is re-checked whenever another version of it is read.

        Every worker and replica decides under the policies in force within
        ``settings.policy_cache_seconds`` (1 s by default) of an installation anywhere: after
        that long the rows in force are read again, and a cached policy is kept only if its row
        is the same one (its id and digest; version numbers are per policy name, so ``strict``
        v2 and ``open`` v2 are different policies).
        """
        fetched_at, key, policies = self._policy
        if time.monotonic() - fetched_at < self.settings.policy_cache_seconds:
            return policies
        with self.storage.transaction(readonly=True) as tx:
            stored = tx.policies_in_force()
        in_force = {
            (row.id, row.digest): key.get((row.id, row.digest))
            or self.domain.verify_policy(row.document, stored=True).policy
            for row in stored
        }
        if in_force.keys() != key.keys() or policies is None:
            policies = PolicySet(in_force.values()) if in_force else None
        self._policy = (time.monotonic(), in_force, policies)
        return policies

    async def current_policy(self) -> PolicySet | None:
        """:meth:`policy` for async handlers: the cached policies without a trip to a worker
        thread, the database only when the cache has expired."""
        fetched_at, _key, policies = self._policy
        if time.monotonic() - fetched_at < self.settings.policy_cache_seconds:
            return policies
        return await self.run_db(self.policy)

    async def policies_named(self, name: str | None) -> PolicySet | None:
        """The policies in force, or only the one a request names (DESIGN "Several named
        policies"); a name not in force is a 404 ``no_policy`` (raised before any nonce is used)."""
        policies = await self.current_policy()
        if name is None:
            return policies
        named = policies.named(name) if policies is not None else None
        if named is None:
            raise NotFoundError(f"no appraisal policy named {name!r} is in force", code="no_policy")
        return PolicySet([named])

    # --- reference values (issue 17) ----------------------------------------------------------
    MAX_REFVALUE_SETS = 64

    def _refvalue_generation_check(self) -> None:
        """Forget every set after a change anywhere (the domain's reference-value generation,
        looked up at most every ``settings.policy_cache_seconds``, as for policies)."""
        looked_at, generation = self._refvalue_generation
        if time.monotonic() - looked_at >= self.settings.policy_cache_seconds:
            with self.storage.transaction(readonly=True) as tx:
                current = tx.domain_fact(REFVALUE_GENERATION)
            self._refvalue_generation = (time.monotonic(), current)
            if current != generation:
                self._forget_refvalues()

    def _forget_refvalues(self) -> None:
        with self._lock:
            self._refvalue_sets.clear()
            self._refvalue_resolvers.clear()

    def refvalue_set(self, name: str, at: dt.datetime | None = None) -> RefValueSet:
        """The values of a named set that count at ``at`` (now): read once and kept (at most
        :attr:`MAX_REFVALUE_SETS` sets, least recently used dropped), read again after any
        change anywhere (:meth:`_refvalue_generation_check`) or when a source expires or begins."""
        now = at or self.now()
        self._refvalue_generation_check()
        return self._refvalue_set(name, now)

    def _refvalue_set(self, name: str, now: dt.datetime) -> RefValueSet:
        cached = self._refvalue_sets.get(name)
        if cached is not None and (cached.valid_until is None or now < cached.valid_until):
            return cached
        with self.storage.transaction(readonly=True) as tx:
            rows = tx.refvalue_set(name, now=now)
            until = tx.refvalue_set_changes_after(name, now=now)
        fresh = RefValueSet.of(name, rows, until)
        with self._lock:
            self._refvalue_sets[name] = fresh
            self._refvalue_sets.move_to_end(name)
            while len(self._refvalue_sets) > self.MAX_REFVALUE_SETS:
                self._refvalue_sets.popitem(last=False)
            self._refvalue_resolvers.clear()  # they hold the sets they were built from
        return fresh

    def refvalues_for(self, policy: Policy | PolicySet, at: dt.datetime | None = None) -> RefValues:
        """The reference-value sets ``policy`` refers to, as one lookup function, built once
        per policy (at most :attr:`MAX_REFVALUE_SETS` kept) and kept until a set changes anywhere
        or one of its sources expires or begins: an appraisal then costs two dict lookups per allow-list. A set with no values
        counts as unknown (``refvalues_unavailable``)."""
        now = at or self.now()
        self._refvalue_generation_check()
        # keyed by the policy object (the service keeps the policies in force as long-lived
        # objects): reading a frozen model's names on every appraisal would cost more than the
        # lookups it saves
        entry = self._refvalue_resolvers.get(id(policy))
        if entry is not None and entry[0] is policy and (entry[2] is None or now < entry[2]):
            return entry[1]
        names = policy.refvalue_sets() if isinstance(policy, Policy) else frozenset().union(
            *(p.refvalue_sets() for p in policy))  # fmt: skip
        sets = {name: self._refvalue_set(name, now) for name in names}
        ends = [s.valid_until for s in sets.values() if s.valid_until is not None]
        resolver = {name: found for name, found in sets.items() if len(found)}.get
        with self._lock:
            self._refvalue_resolvers[id(policy)] = (policy, resolver, min(ends) if ends else None)
            while len(self._refvalue_resolvers) > self.MAX_REFVALUE_SETS:
                self._refvalue_resolvers.pop(next(iter(self._refvalue_resolvers)))
        return resolver

    def refvalues_if_cached(
        self, policy: Policy | PolicySet, at: dt.datetime | None = None
    ) -> RefValues | None:
        """:meth:`refvalues_for` without any database read (for async handlers): None when it
        would have to read (then call :meth:`refvalues_for` through :meth:`run_db`)."""
        if time.monotonic() - self._refvalue_generation[0] >= self.settings.policy_cache_seconds:
            return None
        entry = self._refvalue_resolvers.get(id(policy))
        if (
            entry is None
            or entry[0] is not policy
            or (entry[2] is not None and (at or self.now()) >= entry[2])
        ):
            return None
        return entry[1]

    async def refvalues_async(
        self, policy: Policy | PolicySet, at: dt.datetime | None = None
    ) -> RefValues:
        """:meth:`refvalues_for` for async handlers: the cached lookup when it needs no read
        (:meth:`refvalues_if_cached`, same freshness bound), else :meth:`refvalues_for` through
        :meth:`run_db`, never a database read on the event loop."""
        cached = self.refvalues_if_cached(policy, at)
        if cached is not None:
            return cached
        return await self.run_db(self.refvalues_for, policy, at)

    def invalidate_refvalues(self) -> None:
        self._forget_refvalues()
        self._refvalue_generation = (0.0, None)

    def invalidate_policy(self) -> None:
        self._policy = (0.0, {}, None)

    # --- appraisal ----------------------------------------------------------------------
    def appraise(
        self,
        data: bytes,
        *,
        at: dt.datetime,
        format: str = "auto",
        nonce: bytes | None = None,
        spki: bytes | None = None,
        key_store: binding.KeyStoreProof | None = None,
        attester_collateral: Collateral | None = None,
        operator_collateral: Collateral | None = None,
        policy: Policy | PolicySet | None = None,
        use_active_policy: bool = True,
        refvalues: RefValues | None = None,
        domain_collateral: Collateral | None = None,
    ) -> Appraisal:
        """Verify ``data`` and hold it against the policy; never raises for bad evidence.

        When ``nonce`` is given, the report data must bind it, ``spki`` (the workload key, or
        no key), the attested profile and ``key_store`` (:func:`veritee.binding.check`).

        Collateral by provenance (:mod:`veritee.collateral`): the domain's folder, plus
        ``operator_collateral`` (an admin's dry run: the relying party's own too), plus
        ``attester_collateral`` (sent with the evidence): its certificates are path candidates
        only; its TCB info, QE identity and CRLs are used only when the setting
        ``accept_attester_collateral`` is on, and rank below the domain's. What is left out is
        reported as the warning ``attester_collateral_ignored``.

        ``refvalues``: the reference values of ``policy``, looked up by the caller
        (:meth:`appraise_async`); None: looked up here (:meth:`refvalues_for`).
        ``domain_collateral``: the domain's collateral, looked up by the caller
        (:meth:`current_collateral`); None: looked up here (:meth:`collateral`).
        """
        collateral = domain_collateral if domain_collateral is not None else self.collateral()
        if operator_collateral is not None:
            collateral = collateral.joined(operator_collateral)
        left_out: tuple[str, ...] = ()
        if attester_collateral is not None:
            collateral, left_out = collateral.with_attester(
                attester_collateral, admit_endorsements=self.settings.accept_attester_collateral
            )
        trust = self.trust_root
        if (
            self._format_of(data, format) == "tpm"
        ):  # AK certificates this domain issued at enrollment
            trust = trust.with_tpm_roots(self._domain_ca_fingerprint())
            collateral = collateral.joined(Collateral(certificates=(self.domain.ca_certificate,)))
        if policy is None and use_active_policy:
            policy = self.policy()
        expected = (
            None if nonce is None else ExpectedBinding(nonce=nonce, spki=spki, key_store=key_store)
        )
        appraisal = appraise_evidence(
            data, collateral=collateral, at=at, format=format, trust=trust, policy=policy,
            binding=expected, refvalues=self._refvalues(policy, at, refvalues),
        )  # fmt: skip
        self._left_out(appraisal.decision, left_out)
        return appraisal

    def _refvalues(
        self, policy: Policy | PolicySet | None, at: dt.datetime, given: RefValues | None
    ) -> RefValues | None:
        if policy is None:
            return None
        return given if given is not None else self.refvalues_for(policy, at)

    @staticmethod
    def _left_out(decision: Decision, left_out: tuple[str, ...]) -> Decision:
        if left_out:
            decision.warn(
                "attester_collateral_ignored",
                "collateral sent with the evidence was not used (" + ", ".join(left_out) + "): "
                "the domain's own collateral decides (setting accept_attester_collateral)",
            )
        return decision

    @staticmethod
    def _format_of(data: bytes, format: str) -> str:
        if format != "auto":
            return format
        try:
            return evidence.detect_format(data)
        except VeriteeError:
            return "auto"  # evidence.verify raises the same error, where it is handled

    def _domain_ca_fingerprint(self) -> frozenset[str]:
        """TPM AK certificates may chain to this domain's CA (it enrolled them)."""
        der = self.domain.ca_certificate.public_bytes(serialization.Encoding.DER)
        return frozenset({hashlib.sha256(der).hexdigest()})

    def verification_error(self, appraisal: Appraisal) -> VerificationError:
        """A 403 error carrying every reason of a refused appraisal."""
        err = VerificationError(
            "attestation refused: " + "; ".join(r.message for r in appraisal.decision.reasons),
            code="attestation_refused",
        )
        err.reasons = [r.to_json() for r in appraisal.decision.reasons]
        # The policy that came closest to admitting it, when one did (of those in force): what
        # an admin amends.
        d = appraisal.decision
        err.policy = d.policy_name if len(d.closest) <= 1 else None
        return err


def _superseding(folder: Collateral, fetched: Collateral) -> Collateral:
    """``folder`` and ``fetched`` joined; of the CRLs in either, a fetched CRL drops the older
    ones of its issuer (the verifier already takes the newest CRLs inside DCAP sets)."""
    newest: dict[bytes, dt.datetime] = {}
    for crl in fetched.crls:
        issuer = crl.issuer.public_bytes()
        newest[issuer] = max(newest.get(issuer, crl.last_update_utc), crl.last_update_utc)
    joined = folder.joined(fetched)
    if not newest:
        return joined
    kept = tuple(
        c for c in joined.crls
        if (n := newest.get(c.issuer.public_bytes())) is None or c.last_update_utc >= n
    )  # fmt: skip
    return dataclasses.replace(joined, crls=kept)
