"""What the console shows, read through the storage's own queries (no SQL of its own).

Decisions are the audit log's entries that carry one (``accept`` / ``reject``): appraisals
(``attest``, ``certify``, ``kbs.attest``, ``tpm.enroll``) and releases (``secret.*``,
``sealing_key.*``). Their details hold what the service recorded of the evidence: its claims
(platform, measurement, profile, TCB status, ...), the policy, every reason; hashes and
identifiers only, never the evidence, a key, a token or a secret value (the audit log's rule,
:mod:`veritee.service.storage.audit`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from veritee.service.storage import AuditEntry, Tx

__all__ = ["RANGES", "Decision", "buckets", "decisions", "latest_decisions", "recent_entries"]

#: How many of the newest audit entries the charts read (the admin API's largest page).
WINDOW = 10_000

#: Chart ranges: name -> (bucket length, number of buckets).
RANGES: dict[str, tuple[dt.timedelta, int]] = {
    "24h": (dt.timedelta(hours=1), 24),
    "7d": (dt.timedelta(days=1), 7),
    "30d": (dt.timedelta(days=1), 30),
}

#: Details that are no claim (shown apart, or not at all: they are lists already shown).
_NOT_CLAIMS = frozenset({"reasons", "release_reasons", "reason", "warnings", "status"})


@dataclass(frozen=True)
class Decision:
    seq: int
    at: dt.datetime
    kind: str
    accepted: bool
    subject: str
    platform: str
    #: (code, message) of every reason recorded, appraisal and release.
    reasons: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]
    #: Every other recorded detail: the evidence's claims and the decision's identifiers.
    claims: dict[str, Any] = field(hash=False)


def recent_entries(tx: Tx, count: int = WINDOW) -> list[AuditEntry]:
    """The newest ``count`` audit entries, oldest first (the admin API's query, from the head)."""
    head, _ = tx.audit_head()
    return tx.audit_entries(after_seq=max(0, head - count), limit=count) if head else []


def latest_decisions(
    tx: Tx, count: int, keep: Callable[[Decision], bool] = lambda d: True, *, batch: int = 1000
) -> list[Decision]:
    """The newest ``count`` decisions that ``keep`` admits, newest first: read back from the head
    a batch of entries at a time, never more than :data:`WINDOW` entries in all."""
    head, _ = tx.audit_head()
    found: list[Decision] = []
    end, read = head, 0
    while end > 0 and len(found) < count and read < WINDOW:
        n = min(batch, end, WINDOW - read)
        chunk = [d for d in decisions(tx.audit_entries(after_seq=end - n, limit=n)) if keep(d)]
        found += reversed(chunk)
        end, read = end - n, read + n
    return found[:count]


def parse_at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _reasons(details: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key in ("reasons", "release_reasons"):
        items = details.get(key)
        if isinstance(items, list):
            for r in items:
                if isinstance(r, dict):
                    pair = (str(r.get("code", "?")), str(r.get("message", "")))
                    if pair not in out:
                        out.append(pair)
    if isinstance(details.get("reason"), str):  # a refused nonce
        out.append((details["reason"], "the challenge nonce was refused"))
    return tuple(out)


def decision_of(entry: AuditEntry) -> Decision | None:
    """The decision an audit entry records, or None (an admin action)."""
    if entry.decision is None:
        return None
    details = dict(entry.details)
    warnings = details.get("warnings")
    claims = {k: v for k, v in details.items() if k not in _NOT_CLAIMS}
    if isinstance(details.get("claims"), dict):  # a future record of the claims themselves
        claims = {**claims.pop("claims"), **claims}
    return Decision(
        seq=entry.seq, at=parse_at(entry.at), kind=entry.kind, accepted=entry.decision == "accept",
        subject=entry.subject, platform=str(details.get("platform") or "unknown"),
        reasons=_reasons(details),
        warnings=tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
        claims=claims,
    )  # fmt: skip


def decisions(entries: Iterable[AuditEntry]) -> list[Decision]:
    return [d for e in entries if (d := decision_of(e)) is not None]


def buckets(
    items: Sequence[Decision], *, now: dt.datetime, length: dt.timedelta, count: int
) -> tuple[list[str], dict[str, list[int]]]:
    """Accepted and refused per time bucket: ``count`` buckets of ``length`` up to ``now``."""
    step = int(length.total_seconds())
    end = (int(now.timestamp()) // step + 1) * step
    start = end - step * count
    accepted, refused = [0] * count, [0] * count
    for d in items:
        t = int(d.at.timestamp())
        if start <= t < end:
            i = (t - start) // step
            (accepted if d.accepted else refused)[i] += 1
    fmt = "%H:00" if step < 86400 else "%m-%d"
    labels = [
        dt.datetime.fromtimestamp(start + i * step, dt.UTC).strftime(fmt) for i in range(count)
    ]
    return labels, {"accepted": accepted, "refused": refused}


def series_by(
    items: Sequence[Decision],
    key: Callable[[Decision], Iterable[str]],
    *,
    now: dt.datetime,
    length: dt.timedelta,
    count: int,
    top: int = 5,
) -> tuple[list[str], dict[str, list[int]]]:
    """Per time bucket, how many decisions fall under each ``key`` (a platform, a reason code):
    the ``top`` most frequent keys as series, the rest as ``other``."""
    labels, _ = buckets((), now=now, length=length, count=count)
    step = int(length.total_seconds())
    start = (int(now.timestamp()) // step + 1) * step - step * count
    per: dict[str, list[int]] = {}
    for d in items:
        i = (int(d.at.timestamp()) - start) // step
        if 0 <= i < count:
            for k in key(d):
                per.setdefault(k, [0] * count)[i] += 1
    ranked = sorted(per, key=lambda k: -sum(per[k]))
    out = {k: per[k] for k in ranked[:top]}
    if len(ranked) > top:
        out["other"] = [sum(per[k][i] for k in ranked[top:]) for i in range(count)]
    return labels, out


def reason_codes(d: Decision) -> set[str]:
    """The reason codes of a refusal (none for an acceptance)."""
    if d.accepted:
        return set()
    return {c for c, _ in d.reasons} or {"(no reason recorded)"}


def by_platform(items: Iterable[Decision]) -> list[tuple[str, dict[str, int]]]:
    counts: dict[str, Counter[str]] = {}
    for d in items:
        counts.setdefault(d.platform, Counter())["accepted" if d.accepted else "refused"] += 1
    return sorted(((k, dict(v)) for k, v in counts.items()), key=lambda kv: -sum(kv[1].values()))


def by_reason(items: Iterable[Decision]) -> list[tuple[str, dict[str, int]]]:
    counts: Counter[str] = Counter()
    for d in items:
        counts.update(reason_codes(d))
    return [(code, {"refused": n}) for code, n in counts.most_common(25)]


def compact(value: Any) -> str:
    """A recorded value as text (lists and objects as compact JSON)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
