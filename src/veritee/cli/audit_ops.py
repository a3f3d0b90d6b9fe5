"""``veritee audit list|show``: the audit log's entries over the admin API, as the tables
``veritee demo`` draws (:mod:`veritee.cli.tables`); ``--json`` for scripts.

``list`` shows the newest entries first-to-last (``--limit N``), optionally only decisions on
one platform (``--platform``) or only accepted / refused ones (``--accepted`` / ``--refused``);
it pages back from the log's head, so the filters see the whole log. ``show SEQ`` prints one
entry with every recorded detail (reasons and the evidence's claims opened), never more than
the log holds (hashes and identifiers, no evidence, key or secret).

Exit status: 0 done, 1 no such entry or refused by the service, 2 usage or unreachable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from veritee.cli.secrets import _Admin, _admin_options, _handle
from veritee.errors import NotFoundError

__all__ = ["register", "select_entries"]

PAGE = 1000  # the admin API's largest page


def _matches(
    entry: dict[str, Any], platform: str | None, outcome: str | None, kind: str | None
) -> bool:
    from veritee.cli.tables import decision_of

    if kind is not None and not (
        entry.get("kind") == kind or str(entry.get("kind", "")).startswith(kind + ".")
    ):
        return False
    if platform is not None and (entry.get("details") or {}).get("platform") != platform:
        return False
    return outcome is None or decision_of(entry) == outcome


def select_entries(conn: tuple[Any, ...], *, limit: int, platform: str | None, outcome: str | None,
                   kind: str | None, scan: int = 100_000) -> tuple[list[dict[str, Any]], int, int]:  # fmt: skip
    """(the newest ``limit`` entries that match, oldest first; how many entries were read; the
    log's head): pages of the admin API read back from the head (``GET /v1/admin/audit/head``,
    then ``?after=&limit=``), at most ``scan`` entries."""
    head = int(_Admin(*conn).call("GET", "/v1/admin/audit/head")["seq"])
    found: list[dict[str, Any]] = []
    top = head
    while top > 0 and len(found) < limit and head - top < scan:
        after = max(0, top - min(PAGE, scan - (head - top)))
        params = {"after": str(after), "limit": str(top - after)}
        page = _Admin(*conn).call("GET", "/v1/admin/audit", params=params)["entries"]
        window = [e for e in page if after < int(e["seq"]) <= top]
        found = [e for e in window if _matches(e, platform, outcome, kind)] + found
        top = after
    return found[-limit:], head - top, head


@click.command("list")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=20,
    show_default=True,
    help="How many entries (the newest).",
)
@click.option(
    "--platform",
    default=None,
    help="Only decisions on this platform (sev-snp, tdx, simulated, ...).",
)
@click.option(
    "--accepted", "outcome", flag_value="accepted", default=None, help="Only accepted decisions."
)
@click.option("--refused", "outcome", flag_value="refused", help="Only refused decisions.")
@click.option(
    "--kind", default=None, help="Only entries of this kind (attest, certify, secret, policy, ...)."
)
@click.option("--scan", type=click.IntRange(1, 10_000_000), default=100_000, show_default=True,
              help="Read at most this many of the newest entries looking for matches.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def list_cmd(limit: int, platform: str | None, outcome: str | None, kind: str | None, scan: int, as_json: bool,
             url: str, data: Path | None, admin_token: str | None, ca: Path | None) -> None:  # fmt: skip
    """List the newest audit entries (seq, time, kind, decision, platform, subject, first reason)."""
    from veritee.cli.tables import audit_table, console

    entries, scanned, head = select_entries((url, data, admin_token, ca), limit=limit, platform=platform,
                                            outcome=outcome, kind=kind, scan=scan)  # fmt: skip
    partial = scanned < head and len(entries) < limit
    if as_json:
        click.echo(json.dumps({"entries": entries, "head": head, "scanned": scanned}, indent=2))
        return
    note = (
        f" (read the newest {scanned} of {head} entries: --scan N reads further)" if partial else ""
    )
    if not entries:
        click.echo("no audit entries match" + note)
        return
    filters = [f for f in (platform, outcome, kind) if f]
    title = f"audit log: the newest {len(entries)} entries" + (
        f" ({', '.join(filters)})" if filters else ""
    )
    console().print(audit_table(entries, title=title, wide=True))
    if note:
        click.echo(note.strip(" ()"))


@click.command("show")
@click.argument("seq", type=click.IntRange(1, 2**63 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
@_admin_options
@_handle
def show_cmd(
    seq: int, as_json: bool, url: str, data: Path | None, admin_token: str | None, ca: Path | None
) -> None:
    """Show audit entry SEQ with every recorded detail (reasons, the evidence's claims, hashes)."""
    from veritee.cli.tables import audit_entry_table, console

    page = _Admin(url, data, admin_token, ca).call("GET", "/v1/admin/audit",
                                                   params={"after": str(seq - 1), "limit": "1"})["entries"]  # fmt: skip
    entry = next((e for e in page if int(e["seq"]) == seq), None)
    if entry is None:
        raise NotFoundError(f"the audit log has no entry {seq}", code="not_found")
    if as_json:
        click.echo(json.dumps(entry, indent=2))
        return
    console().print(audit_entry_table(entry))


def register(group: click.Group) -> None:
    from veritee.cli.audit import audit_group

    audit_group.add_command(list_cmd)
    audit_group.add_command(show_cmd)
