"""``veritee measure`` and ``veritee platform-key``: the simulated platform's measurement of a
workload and its key id, as a policy names them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from veritee.cli.exits import handle_errors

__all__ = ["measure_cmd", "platform_key_cmd", "register"]


@click.command("measure")
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--list", "show_list", is_flag=True, help="Print the manifest (sha256sum lines) that is hashed."
)
@click.option(
    "--formula",
    type=click.Choice(["2", "1"]),
    default="2",
    show_default=True,
    help="1: the formula before issue 18 (files in the order given, bytecode included).",
)
@handle_errors
def measure_cmd(targets: tuple[str, ...], show_list: bool, formula: str) -> None:
    """Print the simulated-platform measurement (SHA-384) of TARGETS, as Trust(measure=...) does.

    A target is a file or folder, a module or package name (as Python imports it), or a
    pyproject.toml (its [tool.veritee] measure list, else the project's package and lock
    files). Bytecode and caches are skipped; files are sorted by relative path.
    """
    from veritee.platforms.measure import manifest, measure, measure_v1

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # module names resolve as under `python -m`, here
    if formula == "1":
        click.echo(measure_v1(targets))
        return
    if show_list:
        click.echo(manifest(targets), nl=False)
    click.echo(measure(targets))


@click.command("platform-key")
@click.option(
    "--platform-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The simulated platform's folder, as Trust(platform_dir=...) (default: "
    "$VERITEE_SIMULATED_DIR, else ~/.local/share/veritee/simulated-platform).",
)
@handle_errors
def platform_key_cmd(platform_dir: Path | None) -> None:
    """Print the simulated platform's key id: what a policy lists in
    platforms.simulated.platform_keys (SHA-256 of the key's SubjectPublicKeyInfo). The key is
    created there if there is none yet, as the first Trust would."""
    from veritee.platforms.simulated import (
        KEY_FILE,
        default_directory,
        load_or_create_platform_key,
        platform_key_id,
    )

    folder = platform_dir or default_directory()
    if not (folder / KEY_FILE).exists():
        click.echo(f"no simulated platform key in {folder} yet: created one", err=True)
    click.echo(platform_key_id(load_or_create_platform_key(folder)))


def register(group: click.Group) -> None:
    group.add_command(measure_cmd)
    group.add_command(platform_key_cmd)
