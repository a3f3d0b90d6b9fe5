"""The one exit-status table of the command line (veritee.cli.exits): each kind of command maps
each error class to the status it had before the tables were gathered in one module."""

from __future__ import annotations

import pytest

from veritee.cli.exits import (
    DEFAULT,
    EXIT_NOT_ACCEPTED,
    EXIT_OK,
    EXIT_USAGE,
    INPUTS,
    PARSE,
    REFUSALS,
    ExitTable,
    exit_code_for,
    exit_for,
)
from veritee.errors import (
    AuthenticationError,
    CollateralError,
    MalformedError,
    NonceError,
    NotFoundError,
    OversizedError,
    PolicyError,
    StorageError,
    UsageError,
    VerificationError,
)

U, N = EXIT_USAGE, EXIT_NOT_ACCEPTED
ERRORS: list[BaseException] = [
    UsageError("u"), OSError("io"), MalformedError("m"), OversizedError("o"), VerificationError("v"),
    CollateralError("c"), PolicyError("p"), NonceError("n"), AuthenticationError("a"), NotFoundError("nf"),
    StorageError("s"), ValueError("not veritee's"),
]  # fmt: skip
EXPECTED: dict[str, tuple[ExitTable, list[int]]] = {
    #           usage os malformed oversized verif colla policy nonce auth notfound storage other
    "DEFAULT": (DEFAULT, [U, U, N, N, N, N, U, U, U, U, U, U]),
    "INPUTS": (INPUTS, [U, U, U, U, U, U, U, U, U, U, U, U]),
    "REFUSALS": (REFUSALS, [U, U, U, U, N, N, U, N, N, N, U, U]),
    "PARSE": (PARSE, [U, U, N, U, N, N, N, N, N, N, N, U]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_table_maps_each_error_class(name: str) -> None:
    table, statuses = EXPECTED[name]
    got = [exit_code_for(e, table) for e in ERRORS]
    assert got == statuses, [
        (type(e).__name__, g, s) for e, g, s in zip(ERRORS, got, statuses, strict=True) if g != s
    ]


def test_default_table_is_the_default() -> None:
    assert [exit_code_for(e) for e in ERRORS] == EXPECTED["DEFAULT"][1]


def test_verdict() -> None:
    assert (exit_for(True), exit_for(False)) == (EXIT_OK, EXIT_NOT_ACCEPTED) == (0, 1)
