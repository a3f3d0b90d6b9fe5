"""How fresh the relying party's collateral is, and when to fetch it again (pure: no I/O, no
clock; ``now`` is an argument).

An *item* is one part of collateral that has a publication time and a ``nextUpdate``:

============  ==========================  ===============================================
vendor/kind   subject                     issued / next update
============  ==========================  ===============================================
intel         ``tcb_info``                ``<id>:<FMSPC>`` (``TDX:B0C06F000000``): ``issueDate`` / ``nextUpdate``
intel         ``qe_identity``             its ``id`` (``QE``, ``TD_QE``): ``issueDate`` / ``nextUpdate``
intel         ``pck_crl``                 ``processor`` or ``platform``: ``thisUpdate`` / ``nextUpdate``
intel         ``root_crl``                ``Intel SGX Root CA``: ``thisUpdate`` / ``nextUpdate``
amd           ``crl``                     the ARK (``ARK-Milan``): ``thisUpdate`` / ``nextUpdate``
============  ==========================  ===============================================

Where several versions of an item are held (the collateral folder and what the service
fetched), the newest decides (highest ``tcbEvaluationDataNumber``, then latest issue), as the
verifier chooses (:mod:`veritee.collateral`). :func:`items` lists the newest of each;
:func:`readiness` sums them up for ``/readyz`` and :func:`refresh_after` says when a fetched
item is due again.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from veritee.collateral import Collateral

__all__ = [
    "Backoff",
    "Item",
    "Readiness",
    "items",
    "readiness",
    "refresh_after",
]


@dataclass(frozen=True)
class Item:
    """One part of collateral and its window (module docstring)."""

    vendor: str
    kind: str
    subject: str
    issued: dt.datetime
    next_update: dt.datetime
    #: What orders versions of the same item: (tcbEvaluationDataNumber or -1, issued).
    version: tuple[int, dt.datetime]
    source: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.vendor, self.kind, self.subject

    def age(self, now: dt.datetime) -> float:
        """Seconds since it was issued."""
        return (now - self.issued).total_seconds()

    def seconds_left(self, now: dt.datetime) -> float:
        """Seconds until its ``nextUpdate`` (negative: expired)."""
        return (self.next_update - now).total_seconds()

    def state(self, now: dt.datetime, warn_before: dt.timedelta) -> str:
        """``ok``, ``warning`` (within ``warn_before`` of ``nextUpdate``) or ``expired``."""
        if now > self.next_update:
            return "expired"
        if self.next_update - now <= warn_before:
            return "warning"
        return "ok"

    def to_json(self, now: dt.datetime, warn_before: dt.timedelta) -> dict[str, Any]:
        return {
            "vendor": self.vendor, "kind": self.kind, "subject": self.subject,
            "issued": self.issued.isoformat(), "next_update": self.next_update.isoformat(),
            "age_seconds": round(self.age(now)), "seconds_left": round(self.seconds_left(now)),
            "state": self.state(now, warn_before),
        }  # fmt: skip


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _json(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except (ValueError, RecursionError):
            return None
        return doc if isinstance(doc, dict) else None
    return None


def _signed(vendor: str, kind: str, body: dict[str, Any] | None, source: str) -> Item | None:
    if body is None:
        return None
    issued, nxt = _time(body.get("issueDate")), _time(body.get("nextUpdate"))
    if issued is None or nxt is None:
        return None
    number = body.get("tcbEvaluationDataNumber")
    number = number if isinstance(number, int) and not isinstance(number, bool) else -1
    if kind == "tcb_info":
        subject = f"{body.get('id', 'SGX')}:{str(body.get('fmspc', '')).upper()}"
    else:
        subject = str(body.get("id", "QE"))
    return Item(vendor, kind, subject, issued, nxt, (number, issued), source)


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def crl_item(crl: x509.CertificateRevocationList, source: str = "") -> Item | None:
    """The item of a CRL (Intel PCK or root CA CRL, AMD ARK CRL), or None for another CRL."""
    nxt = crl.next_update_utc
    if nxt is None:
        return None
    cn = _cn(crl.issuer)
    if cn.startswith("ARK-"):
        vendor, kind, subject = "amd", "crl", cn
    elif cn == "Intel SGX Root CA":
        vendor, kind, subject = "intel", "root_crl", cn
    elif cn.startswith("Intel SGX PCK"):
        vendor, kind = "intel", "pck_crl"
        subject = "processor" if "Processor" in cn else "platform" if "Platform" in cn else cn
    else:
        return None
    last = crl.last_update_utc
    return Item(vendor, kind, subject, last, nxt, (-1, last), source)


def _hex_crl(value: Any, source: str) -> Item | None:
    if not isinstance(value, str):
        return None
    try:
        return crl_item(x509.load_der_x509_crl(bytes.fromhex(value)), source)
    except ValueError:
        return None


def _of_document(doc: dict[str, Any]) -> Iterable[Item | None]:
    source = str(doc.get("_source", ""))
    if "tcb_info" in doc:  # the test-vector layout (and what `veritee collateral fetch` writes)
        yield _signed("intel", "tcb_info", _json(doc.get("tcb_info")), source)
        yield _signed("intel", "qe_identity", _json(doc.get("qe_identity")), source)
        yield _hex_crl(doc.get("pck_crl"), source)
        yield _hex_crl(doc.get("root_ca_crl"), source)
    elif "tcbInfo" in doc:
        yield _signed("intel", "tcb_info", _json(doc.get("tcbInfo")), source)
    elif "enclaveIdentity" in doc:
        yield _signed("intel", "qe_identity", _json(doc.get("enclaveIdentity")), source)


def items(collateral: Collateral) -> list[Item]:
    """The newest version of every item of the relying party's own collateral (never the
    attester's), sorted by vendor, kind and subject. Parts that do not parse are skipped (the
    verifier names them when they would decide)."""
    found: list[Item | None] = []
    for doc in collateral.documents:
        found += _of_document(doc)
    found += (crl_item(c) for c in collateral.crls)
    best: dict[tuple[str, str, str], Item] = {}
    for item in found:
        if item is None:
            continue
        held = best.get(item.key)
        if held is None or item.version > held.version:
            best[item.key] = item
    return [best[k] for k in sorted(best)]


@dataclass(frozen=True)
class Readiness:
    """What ``/readyz`` says of collateral: ``ok``, ``warning`` (an item is within
    ``warn_before`` of its ``nextUpdate``) or ``failing`` (an item is past it)."""

    status: str
    warning: tuple[Item, ...]
    expired: tuple[Item, ...]

    def to_json(self, now: dt.datetime, warn_before: dt.timedelta) -> dict[str, Any]:
        return {
            "status": self.status,
            "expired": [i.to_json(now, warn_before) for i in self.expired],
            "expiring": [i.to_json(now, warn_before) for i in self.warning],
        }


def readiness(found: Iterable[Item], now: dt.datetime, warn_before: dt.timedelta) -> Readiness:
    every = list(found)
    expired = tuple(i for i in every if i.state(now, warn_before) == "expired")
    warning = tuple(i for i in every if i.state(now, warn_before) == "warning")
    status = "failing" if expired else "warning" if warning else "ok"
    return Readiness(status, warning, expired)


def refresh_after(
    found: Iterable[Item], now: dt.datetime, *, interval: dt.timedelta, minimum: dt.timedelta
) -> dt.datetime:
    """When an item holding ``found`` is due to be fetched again: at half of the shortest
    window (issued .. nextUpdate) of its parts, at the latest ``interval`` from ``now`` (new
    revocations are picked up at least that often), at the earliest ``minimum`` from ``now``
    (a vendor that publishes nothing newer is not asked in a loop)."""
    due = now + interval
    for item in found:
        half = item.issued + (item.next_update - item.issued) / 2
        due = min(due, half)
    return max(due, now + minimum)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter for failed fetches: the n-th consecutive failure waits
    ``base * 2**(n-1)`` capped at ``cap``, of which a random part (``jitter``, 0..1) is taken off,
    so replicas that failed together do not retry together ("equal jitter")."""

    base: dt.timedelta = dt.timedelta(seconds=30)
    cap: dt.timedelta = dt.timedelta(hours=1)
    jitter: float = 0.5

    def delay(self, failures: int, rng: random.Random) -> dt.timedelta:
        n = max(1, failures)
        full: dt.timedelta = min(self.cap, self.base * (2 ** min(n - 1, 30)))
        factor: float = 1 - self.jitter * rng.random()
        return full * factor
