"""The exit status of every ``veritee`` command: the one place that turns an error into a number.

0 success / accepted, 1 not accepted (the thing the command judges was refused, including
evidence that does not parse), 2 usage or I/O error, 3 proven only in part (``veritee logs``: a
log that verifies but was not closed).

Which errors mean "not accepted" depends on what a command judges, so the rule is a table (the
first row whose error classes match wins; an error no row names is a usage error) and each
command names its table:

* :data:`DEFAULT` (every command under :func:`handle_errors`, and ``main()``): malformed input or
  a failed verification is not accepted; a bad flag, an unreadable file and any other error are
  usage errors.
* :data:`INPUTS` (``verify``, ``policy dry-run``): the verdict is in the printed result; an error
  raised is about a file the caller gave to steer the check (a malformed policy or collateral),
  hence usage.
* :data:`REFUSALS` (the commands that ask the service through its admin API: ``secret``,
  ``admit``, ``policy list|retire|show|...``, ``audit list|show``): the service's refusal
  (authentication, not found, a failed verification, a nonce) is not accepted; the rest, the
  service unreachable included, is usage.
* :data:`PARSE` (``evidence show``): only parsing is judged: input that does not parse is not
  accepted; an oversized or unreadable file is usage.

Example::

    try:
        ...
    except VeriteeError as e:
        click.echo(f"error [{e.code}]: {e.message}", err=True)
        sys.exit(exit_code_for(e, INPUTS))
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from veritee.errors import (
    AuthenticationError,
    MalformedError,
    NonceError,
    NotFoundError,
    OversizedError,
    UsageError,
    VerificationError,
    VeriteeError,
)

__all__ = [
    "DEFAULT",
    "EXIT_INCOMPLETE",
    "EXIT_NOT_ACCEPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "INPUTS",
    "PARSE",
    "REFUSALS",
    "REFUSED",
    "ExitTable",
    "exit_code_for",
    "exit_for",
    "handle_errors",
]

EXIT_OK = 0
EXIT_NOT_ACCEPTED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3

#: Rows of (error classes, exit status); the first row that matches decides.
ExitTable = tuple[tuple[tuple[type[BaseException], ...], int], ...]

#: The service's refusals, as the admin-API commands report them ("refused [code]: ...").
REFUSED: tuple[type[VeriteeError], ...] = (
    AuthenticationError,
    NotFoundError,
    VerificationError,
    NonceError,
)

DEFAULT: ExitTable = (
    ((UsageError, OSError), EXIT_USAGE),
    ((MalformedError, VerificationError), EXIT_NOT_ACCEPTED),
    ((VeriteeError,), EXIT_USAGE),
)
INPUTS: ExitTable = (((UsageError, OSError, VeriteeError), EXIT_USAGE),)
REFUSALS: ExitTable = (
    ((OSError,), EXIT_USAGE),
    (REFUSED, EXIT_NOT_ACCEPTED),
    ((VeriteeError,), EXIT_USAGE),
)
PARSE: ExitTable = (
    ((UsageError, OversizedError, OSError), EXIT_USAGE),
    ((VeriteeError,), EXIT_NOT_ACCEPTED),
)


def exit_code_for(error: BaseException, table: ExitTable = DEFAULT) -> int:
    """The exit status for ``error`` under ``table`` (:data:`EXIT_USAGE` when no row names it)."""
    for classes, status in table:
        if isinstance(error, classes):
            return status
    return EXIT_USAGE


def exit_for(accepted: bool) -> int:
    """The exit status of a verdict: :data:`EXIT_OK` accepted, else :data:`EXIT_NOT_ACCEPTED`."""
    return EXIT_OK if accepted else EXIT_NOT_ACCEPTED


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for command functions: a veritee error or an OSError becomes a one-line message
    on stderr and the exit status :data:`DEFAULT` gives it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UsageError, OSError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(exit_code_for(e))
        except VeriteeError as e:
            click.echo(f"error [{e.code}]: {e.message}", err=True)
            sys.exit(exit_code_for(e))

    return wrapper
