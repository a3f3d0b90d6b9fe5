"""The ``veritee`` command line. The only place that turns errors into exit codes.

Exit status: 0 success / accepted, 1 not accepted (including malformed evidence), 2 usage or I/O
error, 3 proven only in part (``veritee logs``: a log that verifies but was not closed). Each
command group lives in its own module of this package and is registered below.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from veritee.errors import (
    MalformedError,
    UsageError,
    VerificationError,
    VeriteeError,
)

__all__ = ["EXIT_INCOMPLETE", "EXIT_NOT_ACCEPTED", "EXIT_OK", "EXIT_USAGE", "cli", "main"]

EXIT_OK = 0
EXIT_NOT_ACCEPTED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="veritee")
def cli() -> None:
    """veritee: verify TEE evidence, run a Certifier Service, release secrets, keep logs."""


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, MalformedError | VerificationError):
        return EXIT_NOT_ACCEPTED
    return EXIT_USAGE


def _register() -> None:
    # --- command registration: one line per command module -------------------------------
    from veritee.cli import commands_core

    commands_core.register(cli)
    # (add further `from veritee.cli import X; X.register(cli)` lines here)
    from veritee.cli import collateral as _collateral_cli; _collateral_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import logs as _logs_cli; _logs_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import secrets as _secrets_cli; _secrets_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import attest as _attest_cli; _attest_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import certificates as _certificates_cli; _certificates_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import policy as _policy_cli; _policy_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import policy_ops as _policy_ops_cli; _policy_ops_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import audit_ops as _audit_ops_cli; _audit_ops_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import evidence_show as _evidence_show_cli; _evidence_show_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import tokens as _tokens_cli; _tokens_cli.register(cli)  # noqa: E702, I001
    from veritee.cli import refvalues as _refvalues_cli; _refvalues_cli.register(cli)  # noqa: E702, I001
    # ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Any:
    _register()
    try:
        return cli.main(args=argv, prog_name="veritee", standalone_mode=True)
    except VeriteeError as e:  # pragma: no cover - commands handle their own errors
        click.echo(f"error: {e.message}", err=True)
        sys.exit(exit_code_for(e))
    except OSError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_USAGE)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for command functions: map veritee errors to a message and an exit code."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UsageError, OSError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_USAGE)
        except VeriteeError as e:
            click.echo(f"error [{e.code}]: {e.message}", err=True)
            sys.exit(exit_code_for(e))

    return wrapper
