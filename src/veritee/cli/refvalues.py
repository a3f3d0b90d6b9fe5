"""``veritee refvalues inspect``: read a CoRIM / CoMID and judge it (:mod:`veritee.refvalues.corim`).

``inspect FILE [--key PEM_OR_JWK] [--scheme S] [--at TIME] --json`` prints
``{"valid", "reasons", "reference_values", ...}``: one entry per reference-value triple (its
environment and measurements, bytes as hex), the signer recorded, the validity. Exit status: 0
valid, 1 not valid, 2 usage or I/O error (an unreadable file or key, an unknown scheme).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from veritee.refvalues import corim, profiles

__all__ = ["refvalues_group", "register"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


@click.group("refvalues")
def refvalues_group() -> None:
    """Reference values from their sources (CoRIM / CoMID)."""


def _usage(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _parse_at(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _usage(f"--at {text!r} is not an ISO 8601 time")
        raise  # unreachable
    if when.tzinfo is None:
        _usage("--at needs a time zone (e.g. 2026-01-15T00:00:00Z)")
    return when


@refvalues_group.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The signer's key: PEM public key, PEM certificate or JWK (for a signed CoRIM).",
)
@click.option(
    "--scheme",
    type=click.Choice(sorted(profiles.SCHEMES)),
    default=None,
    help="Refuse a CoRIM whose profile belongs to another scheme.",
)
@click.option(
    "--at", "at_text", default=None, help="Check the validity periods at this time (ISO 8601)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect_cmd(file: Path, key_path: Path | None, scheme: str | None, at_text: str | None,
                as_json: bool) -> None:  # fmt: skip
    """Read a CoRIM (signed or not) or CoMID and list its reference values."""
    try:
        data = file.read_bytes()
    except OSError as e:
        _usage(f"cannot read {file}: {e.strerror or e}")
        return
    key = None
    if key_path is not None:
        try:
            key = corim.load_key(key_path.read_bytes())
        except OSError as e:
            _usage(f"cannot read {key_path}: {e.strerror or e}")
        except ValueError as e:
            _usage(f"--key {key_path}: {e}")
    at = _parse_at(at_text)
    result = corim.inspect(data, key=key, scheme=scheme, at=at)
    if at is None:  # without --at the validity is reported against the clock, not enforced
        now = dt.datetime.now(dt.UTC)
        for what, validity in (("CoRIM", result.validity), ("signature", result.signer_validity)):
            if validity is not None and now > validity.not_after:
                result.warnings.append(
                    ("corim_expired", f"the {what} validity ended (give --at to enforce it)")
                )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        state = "valid" if result.valid else "NOT valid"
        click.echo(
            f"{file}: {state} {result.kind}"
            + (f", profile {result.profile}" if result.profile else "")
        )
        if result.signer is not None:
            click.echo(
                f"  signed by {result.signer.name} (key sha256 {result.signer.key_thumbprint})"
            )
        if result.validity is not None:
            click.echo(f"  valid until {corim._jsonable(result.validity.not_after)}")
        for code, message in result.reasons:
            click.echo(f"  refused [{code}] {message}")
        for code, message in result.warnings:
            click.echo(f"  warning [{code}] {message}")
        for comid, triple in result.reference_values:
            env = json.dumps(triple.environment.to_json())
            click.echo(f"  {comid.tag_id}: {env}: {len(triple.measurements)} measurement(s)")
    sys.exit(EXIT_OK if result.valid else EXIT_INVALID)


def register(cli: click.Group) -> None:
    cli.add_command(refvalues_group)
