"""The ``veritee`` command line. Only this package turns errors into exit codes, and only
through :mod:`veritee.cli.exits` (one table per kind of command).

Exit status: 0 success / accepted, 1 not accepted (including malformed evidence), 2 usage or I/O
error, 3 proven only in part (``veritee logs``: a log that verifies but was not closed). Each
command group lives in its own module of this package and is registered below.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from veritee.cli import (
    attest,
    audit,
    audit_ops,
    certificates,
    collateral,
    demo,
    domain,
    evidence_show,
    logs,
    measure,
    policy,
    policy_ops,
    refvalues,
    secrets,
    serve,
    tokens,
    verify,
)
from veritee.cli.exits import exit_code_for
from veritee.errors import VeriteeError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="veritee")
def cli() -> None:
    """veritee: verify TEE evidence, run a Certifier Service, release secrets, keep logs."""


def _register() -> None:
    # policy and audit before policy_ops and audit_ops, which add to their groups
    for module in (domain, serve, verify, measure, policy, audit, demo, collateral, logs, secrets, attest,
                   certificates, policy_ops, audit_ops, evidence_show, tokens, refvalues):  # fmt: skip
        module.register(cli)


def main(argv: list[str] | None = None) -> Any:
    _register()
    try:
        return cli.main(args=argv, prog_name="veritee", standalone_mode=True)
    except (VeriteeError, OSError) as e:  # pragma: no cover - commands handle their own errors
        click.echo(f"error: {e}", err=True)
        sys.exit(exit_code_for(e))
