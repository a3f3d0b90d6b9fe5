"""The tables the CLI and ``veritee demo`` draw (rich), written once: audit entries, one audit
entry, a policy's versions, certificates, key/value listings and event logs.

Every function takes JSON-ready dicts (what the admin API answers), so the demo, ``veritee
audit list|show``, ``veritee policy history``, ``veritee cert list`` and ``veritee evidence
show`` print the same columns. Absent values print as ``-`` (or ``not reported`` for claims),
never ``None``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = [
    "audit_entry_table",
    "audit_table",
    "certificate_table",
    "console",
    "decision_of",
    "event_log_table",
    "fields_table",
    "flatten",
    "policy_history_table",
]


def console() -> Console:
    """A console on stdout: the terminal's width, or 200 columns when piped (no folding of
    digests in captured output)."""
    tty = sys.stdout.isatty()
    return Console(width=None if tty else 200, highlight=False, soft_wrap=not tty)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return escape(str(value))


def decision_of(entry: Mapping[str, Any]) -> str:
    """``accepted``, ``refused`` or ``-`` for an audit entry (its ``decision`` field)."""
    d = entry.get("decision")
    if d in ("accept", "allow", "release", "accepted"):
        return "accepted"
    if d in ("reject", "deny", "refuse", "refused"):
        return "refused"
    return "-" if d is None else str(d)


def _styled_decision(entry: Mapping[str, Any]) -> str:
    d = decision_of(entry)
    return {"accepted": "[green]accepted[/]", "refused": "[red]refused[/]"}.get(d, escape(d))


def audit_table(
    entries: Iterable[Mapping[str, Any]], *, title: str | None = None, wide: bool = False
) -> Table:
    """One row per audit entry: seq, time, kind, decision, subject; ``wide`` adds the platform
    and the first reason code (``veritee audit list``; the demo draws the narrow one)."""
    columns = ["seq", "kind", "decision", "subject"]
    if wide:
        columns = ["seq", "at", "kind", "decision", "platform", "subject", "reason"]
    table = Table(*columns, title=title)
    for e in entries:
        details = e.get("details") or {}
        if wide:
            reasons = details.get("reasons") or []
            first = (
                reasons[0].get("code")
                if reasons and isinstance(reasons[0], Mapping)
                else details.get("reason")
            )
            table.add_row(str(e["seq"]), _cell(e.get("at")), _cell(e.get("kind")), _styled_decision(e),
                          _cell(details.get("platform")), _cell(str(e.get("subject") or "")[:24]), _cell(first))  # fmt: skip
        else:
            table.add_row(
                str(e["seq"]),
                _cell(e.get("kind")),
                _styled_decision(e),
                _cell(str(e.get("subject"))[:20]),
            )
    return table


def flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    """Rows ``(dotted.name, text)`` for a JSON value: dicts and lists of dicts are opened, other
    lists are JSON, None is ``not reported``."""
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for i, v in enumerate(value):
            flatten(f"{prefix}[{i}]", v, out)
    elif value is None:
        out.append((prefix, "not reported"))
    elif isinstance(value, list | bool | Mapping):
        out.append((prefix, json.dumps(value)))
    else:
        out.append((prefix, str(value)))


def fields_table(
    fields: Mapping[str, Any], *, title: str | None = None, skip: Iterable[str] = ()
) -> Table:
    """Every field of a JSON object, one row each (nested names dotted)."""
    table = Table("field", "value", title=title)
    table.columns[1].overflow = "fold"
    rows: list[tuple[str, str]] = []
    flatten("", {k: v for k, v in fields.items() if k not in set(skip)}, rows)
    for k, v in rows:
        table.add_row(escape(k), escape(v))
    return table


def audit_entry_table(entry: Mapping[str, Any]) -> Table:
    """One audit entry: its header fields, then every detail (reasons and claims opened)."""
    head = {k: entry.get(k) for k in ("seq", "at", "kind", "actor", "subject")}
    head["decision"] = decision_of(entry)
    table = fields_table({**head, "details": entry.get("details") or {},
                          "prev_hash": entry.get("prev_hash"), "entry_hash": entry.get("entry_hash")},
                         title=f"audit entry {entry.get('seq')}")  # fmt: skip
    return table


def policy_history_table(name: str, versions: Iterable[Mapping[str, Any]]) -> Table:
    """A policy's versions: number, in force, when, by whom, envelope digest, same as."""
    table = Table(
        "version",
        "in force",
        "installed at",
        "by",
        "envelope sha256",
        "same as",
        title=f"policy {name}",
    )
    for v in versions:
        table.add_row(str(v["version"]), "[green]yes[/]" if v.get("in_force") else "no", _cell(v.get("installed_at")),
                      _cell(v.get("actor")), _cell(v.get("digest")),
                      f"version {v['same_as']}" if v.get("same_as") else "-")  # fmt: skip
    return table


def certificate_table(certificates: Iterable[Mapping[str, Any]]) -> Table:
    """Admission certificates: serial, state, platform, measurement, validity."""
    styles = {"valid": "green", "expiring": "yellow", "expired": "dim", "revoked": "red"}
    table = Table("serial", "state", "platform", "measurement", "not before", "not after")
    for c in certificates:
        state = str(c.get("state"))
        table.add_row(_cell(c.get("serial")), f"[{styles.get(state, 'white')}]{escape(state)}[/]",
                      _cell(c.get("platform")), _cell(c.get("measurement")), _cell(c.get("not_before")),
                      _cell(c.get("not_after")))  # fmt: skip
    return table


def event_log_table(
    events: Iterable[Mapping[str, Any]], *, register: str = "index", title: str | None = None
) -> Table:
    """A TCG / CCEL event log: one row per event (number, register, type, digests, data)."""
    table = Table("#", register, "type", "digest", "data", title=title)
    table.columns[3].overflow = "fold"
    table.columns[4].overflow = "fold"
    for i, e in enumerate(events):
        digests = e.get("digests") or {}
        digest = (
            "\n".join(f"{alg}:{d}" for alg, d in digests.items())
            if digests
            else _cell(e.get("digest"))
        )
        text = e.get("text") if e.get("text") is not None else e.get("unverified_text")
        data = f"{e.get('data_size', 0)} bytes"
        if text:
            data += f": {text if e.get('data_verified') else '(unverified) ' + str(text)}"
        table.add_row(
            str(i),
            _cell(e.get(register)),
            _cell(e.get("type_name")),
            escape(str(digest)),
            escape(data),
        )
    return table
