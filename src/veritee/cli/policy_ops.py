"""``veritee policy show|history|diff|rollback|dry-run``: living with a domain's named
appraisal policies (issue 16).

``show``, ``history``, ``diff`` and ``rollback`` read the service's admin API (admin credential,
URL and CA as for ``veritee secret``); ``dry-run`` needs no service: it appraises evidence
files against a policy file here, as ``veritee verify --policy`` does, and installs nothing.

Policies are shown and compared in their canonical form (the policy model's JSON, keys sorted;
YAML by default, ``--format json``), so a diff shows what changed in meaning, not layout.
``rollback`` installs an earlier version's signed envelope again as the name's next version
(``POST /v1/admin/policy/rollback``, audited as ``policy.rollback``): history is never
rewritten.

Exit status: 0 done (dry-run: every evidence accepted), 1 refused, not found, declined (dry-run:
some evidence not accepted), 2 usage, bad file or the service unreachable.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import click

from veritee.cli.exits import EXIT_NOT_ACCEPTED, INPUTS, exit_code_for, exit_for
from veritee.cli.secrets import _Admin, _admin_options, _handle
from veritee.errors import UsageError, VeriteeError

__all__ = ["canonical_text", "policy_diff", "register"]

_FORMATS = click.Choice(["yaml", "json"])


def canonical_text(policy: Any, fmt: str = "yaml") -> str:
    """A policy's canonical text: its JSON form with sorted keys, as YAML or indented JSON."""
    if fmt == "json":
        return json.dumps(policy, indent=2, sort_keys=True) + "\n"
    import yaml

    text: str = yaml.safe_dump(policy, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return text


def policy_diff(
    before: Any, after: Any, label_before: str, label_after: str, fmt: str = "yaml"
) -> str:
    """The unified diff of two policies' canonical texts ("" when they mean the same)."""
    return "".join(difflib.unified_diff(
        canonical_text(before, fmt).splitlines(keepends=True), canonical_text(after, fmt).splitlines(keepends=True),
        label_before, label_after,
    ))  # fmt: skip


def _get(args: tuple[Any, ...], name: str, version: int | None = None) -> dict[str, Any]:
    params = {"name": name} | ({"version": str(version)} if version is not None else {})
    return _Admin(*args).call("GET", "/v1/admin/policy", params=params)


@click.command("show")
@click.argument("name", required=False)
@click.option(
    "--version",
    "version",
    type=click.IntRange(1),
    default=None,
    help="That version (default: the newest).",
)
@click.option(
    "--format",
    "fmt",
    type=_FORMATS,
    default="yaml",
    show_default=True,
    help="Canonical YAML or JSON.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON object(s).")
@_admin_options
@_handle
def show_cmd(name: str | None, version: int | None, fmt: str, as_json: bool, url: str, data: Path | None,
             admin_token: str | None, ca: Path | None) -> None:  # fmt: skip
    """Show appraisal policy NAME (default: every policy in force) in canonical form, with its
    version, envelope digest and whether it is in force."""
    conn = (url, data, admin_token, ca)
    if name is None:
        if version is not None:
            raise UsageError("--version needs a policy NAME")
        names = [p["name"] for p in _Admin(*conn).call("GET", "/v1/admin/policies")["policies"]]
        if not names:
            click.echo("no appraisal policy is in force")
            return
    else:
        names = [name]
    shown = [_get(conn, n, version) for n in names]
    if as_json:
        click.echo(json.dumps(shown[0] if name is not None else {"policies": shown}, indent=2))
        return
    for i, p in enumerate(shown):
        state = "in force" if p["in_force"] else "not in force"
        click.echo(f"# policy {p['name']!r} version {p['version']} ({state}; installed {p.get('installed_at', '?')} "
                   f"by {p.get('actor', '?')}; envelope sha256 {p['digest']})")  # fmt: skip
        click.echo(canonical_text(p["policy"], fmt), nl=False)
        if i + 1 < len(shown):
            click.echo("")


@click.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def history_cmd(name: str, as_json: bool, url: str, data: Path | None, admin_token: str | None,
                ca: Path | None) -> None:  # fmt: skip
    """List every version of appraisal policy NAME: digest, who installed it and when, which
    is in force, and which earlier version a rollback re-installed."""
    from veritee.cli.tables import console, policy_history_table

    reply = _Admin(url, data, admin_token, ca).call(
        "GET", "/v1/admin/policy/history", params={"name": name}
    )
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    console().print(policy_history_table(name, reply["versions"]))


@click.command("diff")
@click.argument("name")
@click.argument("v1", type=click.IntRange(1))
@click.argument("v2", type=click.IntRange(1))
@click.option(
    "--format",
    "fmt",
    type=_FORMATS,
    default="yaml",
    show_default=True,
    help="Compare canonical YAML or JSON.",
)
@_admin_options
@_handle
def diff_cmd(name: str, v1: int, v2: int, fmt: str, url: str, data: Path | None, admin_token: str | None,
             ca: Path | None) -> None:  # fmt: skip
    """Unified diff of appraisal policy NAME between versions V1 and V2 (canonical form)."""
    conn = (url, data, admin_token, ca)
    a, b = _get(conn, name, v1), _get(conn, name, v2)
    text = policy_diff(
        a["policy"], b["policy"], f"{name} version {v1}", f"{name} version {v2}", fmt
    )
    if not text:
        click.echo(f"policy {name!r}: versions {v1} and {v2} are the same policy")
        return
    click.echo(text, nl=False)


@click.command("rollback")
@click.argument("name")
@click.argument("version", type=click.IntRange(1))
@click.option("--yes", is_flag=True, help="Do not ask before installing.")
@_admin_options
@_handle
def rollback_cmd(name: str, version: int, yes: bool, url: str, data: Path | None, admin_token: str | None,
                 ca: Path | None) -> None:  # fmt: skip
    """Put VERSION of appraisal policy NAME back in force, as its next version (audited; the
    versions in between stay stored). Shows the diff from the newest version and asks."""
    conn = (url, data, admin_token, ca)
    current, target = _get(conn, name), _get(conn, name, version)
    text = policy_diff(current["policy"], target["policy"], f"{name} version {current['version']} (newest)",
                       f"{name} version {version}")  # fmt: skip
    if text:
        click.echo(text, nl=False)
    else:
        click.echo(
            f"version {version} is the same policy as version {current['version']} (the newest)"
        )
    if not (yes or click.confirm(f"install version {version} of policy {name!r} again, as its next version?",
                                 default=False)):  # fmt: skip
        click.echo("nothing installed", err=True)
        sys.exit(EXIT_NOT_ACCEPTED)
    reply = _Admin(*conn).call(
        "POST", "/v1/admin/policy/rollback", {"name": name, "version": version}
    )
    click.echo(
        f"policy {name!r}: version {reply['rollback_of']} installed again as version {reply['version']} (in force)"
    )


@click.command("dry-run")
@click.argument("policy_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("evidence_files", metavar="EVIDENCE...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))  # fmt: skip
@click.option("--format", "fmt", default="auto", show_default=True, help="The evidence's format.")
@click.option("--collateral", "collateral", multiple=True, type=click.Path(path_type=Path),
              help="Collateral file or folder (repeatable).")  # fmt: skip
@click.option("--at", "at", default=None, help="Verification time, ISO-8601 (default: now).")
@click.option("--platform-key", "platform_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A platform key to trust (repeatable), as for `veritee verify`.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def dry_run_cmd(policy_file: Path, evidence_files: tuple[Path, ...], fmt: str, collateral: tuple[Path, ...],
                at: str | None, platform_keys: tuple[Path, ...], as_json: bool) -> None:  # fmt: skip
    """Appraise each EVIDENCE file against POLICY_FILE (a draft, YAML or JSON, or a signed
    envelope) here, without installing it: what the policy would decide, with every reason."""
    from veritee.appraisal.policy import MAX_POLICY_BYTES
    from veritee.cli.options import FORMATS, parse_time
    from veritee.cli.verify import verify_evidence
    from veritee.evidence import MAX_EVIDENCE_BYTES

    try:
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
        if not policy_file.is_file():
            raise UsageError(f"policy file not found: {policy_file}")
        if policy_file.stat().st_size > MAX_POLICY_BYTES:
            raise UsageError(
                f"{policy_file} is larger than {MAX_POLICY_BYTES} bytes", code="oversized"
            )
        policy_text = policy_file.read_bytes()
        when = parse_time(at)
        results = []
        for f in evidence_files:
            if not f.is_file():
                raise UsageError(f"evidence file not found: {f}")
            with f.open("rb") as fh:
                raw = fh.read(MAX_EVIDENCE_BYTES + 1)
            result = verify_evidence(raw, format=fmt, collateral_paths=list(collateral), at=when,
                                     policy_text=policy_text, nonce=None, platform_keys=list(platform_keys))  # fmt: skip
            results.append({"evidence": str(f), **result})
    except (UsageError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(exit_code_for(e, INPUTS))
    except VeriteeError as e:  # a malformed policy or collateral file
        where = f" ({policy_file})" if e.code.startswith("policy") else ""
        click.echo(f"error [{e.code}]: {e.message}{where}", err=True)
        sys.exit(exit_code_for(e, INPUTS))
    accepted = all(r["accepted"] for r in results)
    if as_json:
        click.echo(json.dumps({"dry_run": True, "policy": str(policy_file), "accepted": accepted,
                               "results": results}, indent=2))  # fmt: skip
    else:
        _print_dry_run(policy_file, results, when)
    sys.exit(exit_for(accepted))


def _print_dry_run(policy_file: Path, results: list[dict[str, Any]], when: dt.datetime) -> None:
    from rich.markup import escape
    from rich.table import Table

    from veritee.cli.tables import console
    from veritee.cli.verify import shown

    table = Table("evidence", "format", "decision", "platform", "measurement", "reasons",
                  title=f"dry run of {escape(str(policy_file))} at {when.isoformat()} (nothing installed)")  # fmt: skip
    for column in (0, 4, 5):
        table.columns[column].overflow = "fold"
    for r in results:
        claims = r.get("claims") or {}
        verdict = "[green]accepted[/]" if r["accepted"] else "[red]not accepted[/]"
        reasons = (
            "\n".join(f"[{x['code']}] {x['message']}" for x in r["reasons"] if not r["accepted"])
            or "-"
        )
        table.add_row(escape(r["evidence"]), escape(str(r["format"])), verdict, escape(shown(claims.get("platform"))),
                      escape(shown(claims.get("measurement"))), escape(reasons))  # fmt: skip
    console().print(table)


def register(group: click.Group) -> None:
    from veritee.cli.policy import policy_group

    for cmd in (show_cmd, history_cmd, diff_cmd, rollback_cmd, dry_run_cmd):
        policy_group.add_command(cmd)
