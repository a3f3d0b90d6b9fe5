"""Collateral that stays fresh (issue 16): the service fetches what it lacks and refreshes what
it holds before ``nextUpdate``, from AMD KDS and Intel PCS or a PCCS.

Where fetched collateral lives: **the database** (table ``collateral_fetched``, one row per
item, keyed by its cache path as :mod:`veritee.collateral.cache` lays it out). Every worker and
replica already shares the database (policies, marks, the collateral generation), while each
replica has a data folder of its own; a row is replaced in a transaction, so no reader sees half
an item, and the row also carries what fetchers must agree on: a lease (one fetcher per item at a
time, across workers and replicas), the count of consecutive failures and the time of the next
try (backoff is shared too: ten replicas do not hammer a failing PCS ten times as often).

What is fetched must pass the checks installed collateral passes before it may decide anything
(:meth:`CollateralRefresher.accept`): Intel sets are checked as the verifier checks them
(signatures and chains to the pinned Intel root, TCB info and QE identity by the TCB Signing
certificate, every TCB level's fields, every window open now), AMD chains to a pinned ARK and CRLs
signed by it and current; and nothing older than the domain's high-water marks is taken
(``tcbEvaluationDataNumber``, CRL ``thisUpdate``: :mod:`veritee.collateral.marks`; raised when a
newer item is stored). A refused or failed fetch leaves what was held before in place and is
retried with exponential backoff and jitter.

Time is an argument (``now``) throughout; the background loop passes the clock, tests pass
their own.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from veritee.collateral import Collateral
from veritee.collateral import marks as _marks
from veritee.collateral.fetch import fetch_for_evidence, fetch_item, refetchable, target_for
from veritee.collateral.freshness import Item, crl_item, items, refresh_after
from veritee.collateral.marks import Mark
from veritee.errors import CollateralError, MalformedError, UsageError, VeriteeError
from veritee.evidence import amd, dcap
from veritee.reasons import Code
from veritee.service.settings import CollateralFetch
from veritee.service.storage import StoredFetched

if TYPE_CHECKING:
    from veritee.service.context import ServiceContext

__all__ = ["CollateralRefresher", "Outcome"]

log = logging.getLogger(__name__)

#: How long a fetcher holds an item's lease beyond its HTTP timeouts (a crashed fetcher's lease
#: runs out).
LEASE_SLACK = dt.timedelta(seconds=30)
#: Seconds between looks at the database while another fetcher holds an item's lease.
OTHER_FETCH_POLL = 0.1
#: An Intel set is four requests, an AMD item one or two.
REQUESTS_PER_ITEM = 4

_INTEL = re.compile(r"intel/(tdx|sgx)/([0-9A-F]{12})-(processor|platform)\.json")
_AMD_CHAIN = re.compile(r"amd/(Milan|Genoa|Turin)/(vcek|vlek)_cert_chain\.pem")
_AMD_CRL = re.compile(r"amd/(Milan|Genoa|Turin)/(vcek|vlek)_crl\.der")
_AMD_LEAF = re.compile(r"amd/(Milan|Genoa|Turin)/vcek/[0-9a-f]{16,128}-[0-9a-f]{16}\.der")


@dataclass(frozen=True)
class Outcome:
    """What one fetch of one item came to."""

    path: str
    #: ``stored`` (new or newer, in force now), ``unchanged`` (the vendor has nothing newer),
    #: ``failed`` (held collateral stays; retried from ``next_try``), ``busy`` (another worker or
    #: replica holds the lease), ``waiting`` (backing off until ``next_try``).
    result: str
    code: str = ""
    message: str = ""
    next_try: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "result": self.result}
        if self.code:
            out |= {"code": self.code, "message": self.message}
        if self.next_try is not None:
            out["next_try"] = self.next_try.isoformat()
        return out


def intel_path(tee: str, fmspc: str, pck_ca: str) -> str:
    return f"intel/{tee.lower()}/{fmspc.upper()}-{pck_ca}.json"


class CollateralRefresher:
    """Fetches, checks and stores collateral for one service (every worker has one)."""

    def __init__(
        self,
        ctx: ServiceContext,
        fetch: CollateralFetch,
        *,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ctx = ctx
        self.fetch = fetch
        self.config = fetch.fetch_config()
        self._transport = transport
        self._rng = rng or random.SystemRandom()
        #: This fetcher's name in leases (host, process, instance).
        self.holder = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._inflight: dict[str, concurrent.futures.Future[Outcome]] = {}
        self._lock = threading.Lock()

    # --- what to fetch ----------------------------------------------------------------------
    def targets(self) -> list[str]:
        """Every item to keep fresh: what was fetched before, and the Intel sets and AMD CRLs of
        the collateral folder (so installed collateral is refreshed too)."""
        with self.ctx.storage.transaction(readonly=True) as tx:
            stored = {i.path for i in tx.fetched_collateral(with_data=False)}
        out = {p for p in stored if refetchable(p)}
        folder = self.ctx.folder_collateral()
        for doc in folder.documents:
            path = _intel_path_of(doc)
            if path is not None:
                out.add(path)
        pinned = {fp: p for fp, p in self.ctx.trust_root.amd.roots}
        for crl in folder.crls:
            item = crl_item(crl)
            if item is not None and item.vendor == "amd":
                product = item.subject.removeprefix("ARK-")
                if product.lower() in pinned.values():
                    out.add(f"amd/{product}/vcek_crl.der")
        return sorted(out)

    def run_once(self, now: dt.datetime) -> list[Outcome]:
        """Fetch every target that is due at ``now`` (and not backing off, nor leased by another
        fetcher); the background loop calls this every ``check_seconds``."""
        with self.ctx.storage.transaction(readonly=True) as tx:
            rows = {i.path: i for i in tx.fetched_collateral(with_data=False)}
        out = []
        for path in self.targets():
            row = rows.get(path)
            if row is not None and row.next_try is not None and now < row.next_try:
                continue
            out.append(self.refresh(path, now))
        return out

    # --- one item ---------------------------------------------------------------------------
    def refresh(self, path: str, now: dt.datetime) -> Outcome:
        """Fetch ``path`` now (under its lease), check it, store it if it is in order and not
        older than what is held."""
        if not self._lease(path, now):
            return Outcome(path, "busy")
        try:
            _item, data = fetch_item(path, self.config, transport=self._transport)
            return self.accept(path, data, now)
        except VeriteeError as e:
            return self._failed(path, e, now)

    def accept(
        self, path: str, data: bytes, now: dt.datetime, *, pool: Collateral | None = None
    ) -> Outcome:
        """Check ``data`` fetched for ``path`` as installed collateral is checked, and store it
        unless it is older than what the domain accepted before. Raises :class:`VeriteeError`
        (the caller records the failure); ``pool``: certificates fetched with it (a VCEK's chain)."""
        found = self._check(path, data, now, pool)
        parts = self._items(path, data)
        held_items = {i.key: i for i in items(self.ctx.own_collateral())}
        worse = [
            (p, h)
            for p in parts
            if (h := held_items.get(p.key)) is not None and p.version < h.version
        ]
        if worse:
            raise CollateralError(
                "; ".join(f"{p.vendor} {p.kind} {p.subject} issued {p.issued.isoformat()} is older than the one "
                          f"held (issued {h.issued.isoformat()})" for p, h in worse)
                + ": collateral is never replaced by an older version",
                code=Code.COLLATERAL_ROLLED_BACK,
            )  # fmt: skip
        with self.ctx.storage.transaction() as tx:
            held = tx.collateral_marks()
            older = held.rolled_back(found)
            if older:
                raise CollateralError(
                    "; ".join(
                        f"{f.describe()} is older than the {h.describe()} accepted before"
                        for f, h in older
                    )
                    + ": collateral is never rolled back",
                    code=Code.COLLATERAL_ROLLED_BACK,
                )
            row = tx.fetched_item(path)
            changed = row is None or row.sha256 != hashlib.sha256(data).hexdigest()
            next_try = refresh_after(
                parts, now, interval=self.fetch.interval, minimum=self.fetch.minimum
            )
            tx.record_fetch_success(
                path, data=data if changed else None, now=now, next_try=next_try
            )
            tx.raise_collateral_marks(found, now=now)
            if changed:
                generation = tx.advance_collateral_generation(now=now)
                tx.append_audit(
                    kind="collateral.fetch", actor="service", subject=path, decision=None,
                    details={"path": path, "sha256": hashlib.sha256(data).hexdigest(),
                             "marks": [m.to_json() for m in found], "generation": generation},
                    now=now,
                )  # fmt: skip
        self.ctx.metrics.inc("veritee_collateral_fetches_total", "Collateral fetches by result",
                             result="stored" if changed else "unchanged")  # fmt: skip
        if changed:
            self.ctx.collateral_changed()
            log.info("collateral %s fetched and in force", path)
        return Outcome(path, "stored" if changed else "unchanged", next_try=next_try)

    def _failed(self, path: str, e: VeriteeError, now: dt.datetime) -> Outcome:
        code = e.code or "collateral_invalid"
        with self.ctx.storage.transaction(readonly=True) as tx:
            row = tx.fetched_item(path)
        failures = (row.failures if row is not None else 0) + 1
        next_try = now + self.fetch.backoff.delay(failures, self._rng)
        with self.ctx.storage.transaction() as tx:
            tx.record_fetch_failure(path, error=f"{code}: {e.message}", now=now, next_try=next_try)
        self.ctx.metrics.inc(
            "veritee_collateral_fetches_total", "Collateral fetches by result", result="failed"
        )
        log.warning(
            "collateral %s: fetch failed (%s: %s); retry from %s",
            path,
            code,
            e.message,
            next_try.isoformat(),
        )
        return Outcome(path, "failed", code, e.message, next_try)

    def _lease(self, path: str, now: dt.datetime) -> bool:
        until = now + dt.timedelta(seconds=self.fetch.timeout * REQUESTS_PER_ITEM) + LEASE_SLACK
        with self.ctx.storage.transaction() as tx:
            return tx.take_fetch_lease(path, holder=self.holder, until=until, now=now)

    # --- checks (the same as installed collateral's) ------------------------------------------
    def _check(
        self, path: str, data: bytes, now: dt.datetime, pool: Collateral | None
    ) -> list[Mark]:
        trust = self.ctx.trust_root
        try:
            if m := _INTEL.fullmatch(path):
                (doc,) = Collateral.from_blobs([(path, data)]).documents
                checked = dcap.check_collateral_set(doc, now, trust.intel)
                want_ca = "Processor" if m[3] == "processor" else "Platform"
                if (
                    checked.fmspc != m[2]
                    or checked.tee.lower() != m[1]
                    or want_ca not in checked.pck_ca
                ):
                    raise CollateralError(
                        f"the set fetched for {path} is for {checked.tee} FMSPC {checked.fmspc} "
                        f"({checked.pck_ca})", code=Code.TCB_INFO_MISMATCH,
                    )  # fmt: skip
                return list(checked.marks)
            if m := _AMD_CHAIN.fullmatch(path):
                certs = _certs(data, path)
                product, _ark = amd.check_ca_chain(certs, now, trust.amd)
                self._product_is(product, m[1], path)
                return []
            if m := _AMD_CRL.fullmatch(path):
                crl = _crl(data, path)
                ark = self._ark(m[1], now)
                amd.check_crl(crl, ark, now)
                return [Mark("amd_crl", _marks.subject(f"{m[2]}:{crl.issuer.rfc4514_string()}"),
                             int(crl.last_update_utc.timestamp()), path)]  # fmt: skip
            if m := _AMD_LEAF.fullmatch(path):
                leaf = _certs(data, path)
                held = self.ctx.own_collateral()
                certs = list(held.certificates) + list(pool.certificates if pool else ())
                chain = amd.verify_chain(
                    leaf[0], certs, (), now, dataclasses.replace(trust.amd, cache=None)
                )
                self._product_is(chain.product, m[1], path)
                return []
        except (ValueError, TypeError) as e:
            raise CollateralError(
                f"{path} does not parse: {e}", code=Code.COLLATERAL_INVALID
            ) from None
        raise UsageError(f"collateral {path!r} is not an item the service fetches")

    @staticmethod
    def _product_is(product: amd.Product, name: str, path: str) -> None:
        if product.value != name.lower():
            raise CollateralError(
                f"{path} chains to the {product.value} ARK", code=Code.PRODUCT_MISMATCH
            )

    def _ark(self, product: str, now: dt.datetime) -> x509.Certificate:
        """The pinned ARK of ``product`` from the domain's collateral (folder or fetched);
        fetched first when the domain has none."""
        for attempt in range(2):
            pinned = {fp for fp, p in self.ctx.trust_root.amd.roots if p.value == product.lower()}
            for cert in self.ctx.own_collateral().certificates:
                if cert.subject == cert.issuer and _sha256(cert) in pinned:
                    return cert
            if attempt == 0:
                chain = f"amd/{product}/vcek_cert_chain.pem"
                _item, data = fetch_item(chain, self.config, transport=self._transport)
                self.accept(chain, data, now)
        raise CollateralError(
            f"no pinned ARK of {product} to check its CRL with", code=Code.COLLATERAL_MISSING
        )

    def _items(self, path: str, data: bytes) -> list[Item]:
        if path.endswith(".json"):
            return items(Collateral.from_blobs([(path, data)]))
        if path.endswith("_crl.der"):
            found = crl_item(x509.load_der_x509_crl(data))
            return [found] if found is not None else []
        return []

    # --- lazy: what an attestation lacks ------------------------------------------------------
    def fetch_for(self, evidence: bytes, now: dt.datetime) -> Outcome:
        """Fetch what ``evidence`` needs (the attestation of an FMSPC or chip whose collateral
        the domain lacks). Concurrent calls for the same item share one fetch; an item backing
        off after a failure is not fetched before its ``next_try``. Blocking: call it from a
        worker thread."""
        try:
            key = _lazy_key(evidence)
        except (VeriteeError, ValueError) as e:
            return Outcome(
                "-", "failed", getattr(e, "code", "") or Code.FETCH_NOT_APPLICABLE, str(e)
            )
        with self._lock:
            fut = self._inflight.get(key)
            owner = fut is None
            if fut is None:
                fut = concurrent.futures.Future()
                self._inflight[key] = fut
        if not owner:
            return fut.result(timeout=self.fetch.lazy_wait)
        try:
            outcome = self._fetch_for(key, evidence, now)
            fut.set_result(outcome)
            return outcome
        except BaseException as e:  # pragma: no cover - everything expected is an Outcome
            fut.set_exception(e)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def _await_other(self, key: str, before: StoredFetched | None, now: dt.datetime) -> Outcome:
        """Another worker or replica holds the lease on ``key``: wait (real time, at most
        ``lazy_wait``) until its fetch is recorded, and take its result."""
        deadline = time.monotonic() + self.fetch.lazy_wait
        seen = (before.checked_at, before.failures) if before is not None else (None, 0)
        while time.monotonic() < deadline:
            time.sleep(OTHER_FETCH_POLL)
            with self.ctx.storage.transaction(readonly=True) as tx:
                row = tx.fetched_item(key)
            if row is None or (row.checked_at, row.failures) == seen:
                continue
            self.ctx.collateral_changed()  # read what the other fetcher stored, here now
            if row.failures:
                code, _, message = (row.last_error or "").partition(": ")
                return Outcome(key, "failed", code, message, row.next_try)
            return Outcome(key, "stored")
        return Outcome(key, "busy")

    def _fetch_for(self, key: str, evidence: bytes, now: dt.datetime) -> Outcome:
        with self.ctx.storage.transaction(readonly=True) as tx:
            row = tx.fetched_item(key)
        if row is not None and row.failures and row.next_try is not None and now < row.next_try:
            return Outcome(
                key, "waiting", Code.COLLATERAL_FETCH_FAILED, row.last_error or "", row.next_try
            )
        if (
            row is not None
            and not row.failures
            and row.checked_at is not None
            and now < row.checked_at + self.fetch.minimum
        ):
            # Fetched a moment ago and still refused: the vendor has nothing newer (each refused
            # attestation does not ask the vendor again).
            return Outcome(key, "unchanged", next_try=row.checked_at + self.fetch.minimum)
        if not self._lease(key, now):
            return self._await_other(key, row, now)
        try:
            fetched = fetch_for_evidence(evidence, self.config, transport=self._transport)
        except VeriteeError as e:
            return self._failed(key, e, now)
        pool = Collateral.from_blobs((i.path, d) for i, d in fetched if i.path.endswith(".pem"))
        result: Outcome | None = None
        # Chains before leaves and CRLs (those are checked against the chain's ARK); an item
        # that fails is recorded (and backs off) on its own, the others are still taken.
        for item, data in sorted(fetched, key=lambda f: not f[0].path.endswith(".pem")):
            try:
                outcome = self.accept(item.path, data, now, pool=pool)
            except VeriteeError as e:
                outcome = self._failed(item.path, e, now)
            if item.path == key or (outcome.result == "failed" and result is None):
                result = outcome
        if result is None or result.path != key:
            # The key's own item came under another name (a version-2 SEV-SNP report names no
            # product: the Genoa VCEK answered) or another item failed: the key's row says so.
            with self.ctx.storage.transaction() as tx:
                if result is None:
                    tx.record_fetch_success(
                        key, data=None, now=now, next_try=now + self.fetch.minimum
                    )
                else:
                    tx.record_fetch_failure(key, error=f"{result.code}: {result.message}", now=now,
                                            next_try=result.next_try or now)  # fmt: skip
            return result or Outcome(key, "stored")
        return result


def _lazy_key(evidence: bytes) -> str:
    """The item an attestation's evidence needs first (its key for sharing one fetch)."""
    from veritee.collateral.fetch import TURIN_HWID_SIZE, SnpTarget

    target = target_for(evidence)
    if isinstance(target, SnpTarget):
        product = target.product or "Milan"
        if target.signing_key == "vlek":
            return f"amd/{product}/vlek_cert_chain.pem"
        hwid = target.chip_id[: TURIN_HWID_SIZE if product == "Turin" else None].hex()
        return f"amd/{product}/vcek/{hwid}-{target.reported_tcb[::-1].hex()}.der"
    return intel_path(target.tee, target.fmspc, target.pck_ca)


def _intel_path_of(doc: dict[str, Any]) -> str | None:
    """The cache path of the Intel set ``doc`` (test-vector layout) of the collateral folder."""
    if "tcb_info" not in doc or "pck_crl" not in doc:
        return None
    try:
        info = json.loads(doc["tcb_info"])
        crl = x509.load_der_x509_crl(bytes.fromhex(doc["pck_crl"]))
    except (ValueError, TypeError, RecursionError):
        return None
    item = crl_item(crl)
    if (
        not isinstance(info, dict)
        or item is None
        or item.kind != "pck_crl"
        or item.subject not in ("processor", "platform")
    ):
        return None
    tee, fmspc = str(info.get("id", "SGX")).lower(), str(info.get("fmspc", "")).upper()
    if tee not in ("sgx", "tdx") or not re.fullmatch(r"[0-9A-F]{12}", fmspc):
        return None
    return intel_path(tee, fmspc, item.subject)


def _certs(data: bytes, path: str) -> list[x509.Certificate]:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    from veritee import certs as _c

    try:
        with warnings.catch_warnings():  # AMD VCEKs carry serial number 0
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return [_c.checked_certificate(x509.load_der_x509_certificate(data), path)]
    except MalformedError as e:
        raise CollateralError(f"{path}: {e.message}", code=Code.COLLATERAL_INVALID) from None


def _crl(data: bytes, path: str) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(data)


def _sha256(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def collateral_metrics(ctx: ServiceContext) -> Iterator[Metric]:
    """Prometheus gauges of collateral freshness, computed at scrape time from what the domain
    holds (the folder and the database), so every worker and replica reports the same values
    (registered with :meth:`veritee.service.metrics.Metrics.add_collector`):

    * ``veritee_collateral_age_seconds{vendor,kind,subject}``: since the item was issued;
    * ``veritee_collateral_next_update_seconds{vendor,kind,subject}``: until its nextUpdate
      (negative once expired);
    * ``veritee_collateral_fetch_failures{path}``: consecutive failed fetches of an item;
    * ``veritee_collateral_checked_age_seconds{path}``: since the last successful fetch.
    """
    try:
        found = ctx.collateral_items()
        with ctx.storage.transaction(readonly=True) as tx:
            rows = tx.fetched_collateral(with_data=False)
    except VeriteeError as e:
        log.warning("collateral metrics unavailable: %s", e.code)
        return
    now = ctx.now()
    item_labels = ["vendor", "kind", "subject"]
    age = GaugeMetricFamily("veritee_collateral_age_seconds", "Seconds since each collateral item was issued",
                            labels=item_labels)  # fmt: skip
    left = GaugeMetricFamily(
        "veritee_collateral_next_update_seconds",
        "Seconds until each collateral item's nextUpdate (negative: expired)",
        labels=item_labels,
    )
    for i in found:
        age.add_metric([i.vendor, i.kind, i.subject], round(i.age(now)))
        left.add_metric([i.vendor, i.kind, i.subject], round(i.seconds_left(now)))
    failures = GaugeMetricFamily(
        "veritee_collateral_fetch_failures",
        "Consecutive failed fetches of each collateral item",
        labels=["path"],
    )
    checked = GaugeMetricFamily(
        "veritee_collateral_checked_age_seconds",
        "Seconds since each collateral item was last fetched successfully",
        labels=["path"],
    )
    for r in rows:
        failures.add_metric([r.path], r.failures)
        if r.checked_at is not None:
            checked.add_metric([r.path], round((now - r.checked_at).total_seconds()))
    yield from (age, left, failures, checked)
