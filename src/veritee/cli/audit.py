"""``veritee audit verify|head``: check the audit hash chain (optionally against signed anchors)
and sign its head. ``audit list|show`` (over the admin API) are in :mod:`veritee.cli.audit_ops`."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from veritee.cli.exits import EXIT_NOT_ACCEPTED, handle_errors
from veritee.cli.options import data_dir, data_option
from veritee.errors import UsageError, VeriteeError

__all__ = ["audit_group", "register"]


@click.group("audit")
def audit_group() -> None:
    """Inspect the audit log."""


@audit_group.command("verify")
@data_option
@click.option("--db", default=None, help="Database URL (default: the data folder's SQLite).")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="An anchor from `veritee audit head` (repeatable): the log must still hold that entry.",
)
@handle_errors
def audit_verify(data: Path | None, db: str | None, anchors: tuple[Path, ...]) -> None:
    """Check the audit hash chain; name the first broken entry.

    With --anchor, also check that the log was neither truncated nor rewritten since each
    anchor was signed.
    """
    from veritee.anchors import check_log_against
    from veritee.service.storage import Storage

    path = data_dir(data)
    signed = _read_anchors(path, anchors)
    store = Storage(db or _domain_database(path))
    try:
        report = _audit_report(store, path, db)
        if report.ok:
            try:
                check_log_against(store, signed)
            except VeriteeError as e:
                click.echo(f"audit chain intact ({report.count} entries) but {e.message}")
                sys.exit(EXIT_NOT_ACCEPTED)
    finally:
        store.close()
    if report.ok:
        held = f"; holds {len(signed)} anchor(s)" if signed else ""
        click.echo(f"audit chain intact: {report.count} entries{held}")
    else:
        click.echo(f"audit chain BROKEN at entry {report.first_broken}: {report.message}")
        sys.exit(EXIT_NOT_ACCEPTED)


def _domain_database(path: Path) -> str:
    """The SQLite URL of the domain in ``path``; "no domain here" (not a database error, and no
    empty database left behind) when the folder holds none."""
    database = path / "veritee.db"
    if not database.is_file():
        raise UsageError(f"no domain here: {path} holds no veritee domain (no {database.name}); pass "
                         f"--data DOMAIN_DIR or --db URL, or create one with `veritee init --data {path}`",
                         code="no_domain")  # fmt: skip
    return f"sqlite:///{database}"


def _audit_report(store: Any, path: Path, db: str | None) -> Any:
    """:func:`verify_audit_chain`, saying "no domain here" for a database without an audit log."""
    from veritee.errors import StorageError
    from veritee.service.storage import verify_audit_chain

    try:
        return verify_audit_chain(store)
    except StorageError as e:
        if "no such table" in e.message or "does not exist" in e.message:
            where = db or str(path)
            raise UsageError(f"no domain here: {where} has no audit log (not a veritee domain's database)",
                             code="no_domain") from None  # fmt: skip
        raise


def _read_anchors(path: Path, files: tuple[Path, ...]) -> list[Any]:
    """Each file's anchor, verified with the domain's token key (errors name the file)."""
    from veritee.anchors import MAX_ANCHOR_BYTES, read_anchor
    from veritee.domain import Domain

    if not files:
        return []
    public = Domain.open(path).token_key.public_key()
    out = []
    for f in files:
        try:
            with f.open("rb") as fh:
                text = fh.read(MAX_ANCHOR_BYTES + 1)
        except OSError as e:
            raise UsageError(f"cannot read anchor {f}: {e.strerror}") from None
        try:
            out.append(read_anchor(text, public))
        except VeriteeError as e:
            e.message = f"anchor {f}: {e.message}"
            raise
    return out


@audit_group.command("head")
@data_option
@click.option("--db", default=None, help="Database URL (default: the data folder's SQLite).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the anchor here (default: print it).",
)
@handle_errors
def audit_head(data: Path | None, db: str | None, output: Path | None) -> None:
    """Sign the audit log's head with the domain's token key: an anchor to keep elsewhere.

    `veritee audit verify --anchor FILE` later shows whether the log was truncated or
    rewritten since.
    """
    from veritee.anchors import sign_anchor
    from veritee.domain import Domain
    from veritee.service.storage import Storage

    path = data_dir(data)
    domain = Domain.open(path)
    store = Storage(db or domain.database_url)
    try:
        with store.transaction(readonly=True) as tx:
            seq, digest = tx.audit_head()
    finally:
        store.close()
    anchor = sign_anchor(domain.token_key, kid=domain.token_kid, issuer=domain.name, seq=seq,
                         entry_hash=digest, now=dt.datetime.now(dt.UTC))  # fmt: skip
    if output is None:
        click.echo(anchor)
    else:
        output.write_text(anchor + "\n")
        click.echo(f"anchor of entry {seq} written to {output}")


def register(group: click.Group) -> None:
    group.add_command(audit_group)
