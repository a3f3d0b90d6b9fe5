"""``veritee collateral fetch``: get what a piece of evidence needs from AMD KDS / Intel PCS."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from veritee.collateral.cache import CollateralCache, default_cache_dir
from veritee.collateral.fetch import (
    DEFAULT_AMD_KDS,
    DEFAULT_INTEL_PCS,
    FetchConfig,
    fetch_collateral,
)
from veritee.errors import CollateralError

__all__ = ["register"]

#: A fetch that could not reach the server is an I/O error (exit 2), like a missing file.
_IO_CODES = {"fetch_unreachable"}


@click.group("collateral")
def collateral_group() -> None:
    """Fetch and cache vendor collateral (AMD KDS, Intel PCS)."""


@collateral_group.command("fetch")
@click.argument("evidence", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache folder (default: $XDG_CACHE_HOME/veritee/collateral).",
)
@click.option("--amd-kds", default=DEFAULT_AMD_KDS, show_default=True, help="AMD KDS base URL.")
@click.option(
    "--intel-pcs", default=DEFAULT_INTEL_PCS, show_default=True, help="Intel PCS base URL."
)
@click.option(
    "--intel-root-crl",
    default=None,
    help="URL of the Intel SGX Root CA CRL (default: the root certificate's CRL DP).",
)
@click.option(
    "--product",
    type=click.Choice(["Milan", "Genoa", "Turin"]),
    default=None,
    help="AMD product, for reports that do not name it (version 2).",
)
@click.option("--timeout", type=float, default=15.0, show_default=True, help="Seconds per request.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fetch_command(
    evidence: Path,
    cache_dir: Path | None,
    amd_kds: str,
    intel_pcs: str,
    intel_root_crl: str | None,
    product: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Fetch the collateral EVIDENCE needs into the cache, and print what was fetched."""
    from veritee.cli.main import EXIT_USAGE, handle_errors

    @handle_errors
    def run() -> None:
        cache = CollateralCache(cache_dir or default_cache_dir())
        config = FetchConfig(
            amd_kds=amd_kds,
            intel_pcs=intel_pcs,
            intel_root_crl=intel_root_crl,
            product=product,
            timeout=timeout,
        )
        try:
            items = fetch_collateral(evidence.read_bytes(), cache, config)
        except CollateralError as e:
            if e.code in _IO_CODES:
                click.echo(f"error [{e.code}]: {e.message}", err=True)
                sys.exit(EXIT_USAGE)
            raise
        if as_json:
            out = {
                "cache": str(cache.root),
                "fetched": [
                    {"kind": i.kind, "url": i.url, "path": str(cache.path_for(i.path))}
                    for i in items
                ],
            }
            click.echo(json.dumps(out, indent=2))
            return
        for i in items:
            click.echo(f"{i.kind:<22} {cache.path_for(i.path)}")
        click.echo(f"cache: {cache.root}")

    run()


def register(group: click.Group) -> None:
    """Add the ``collateral`` command group to the ``veritee`` command line."""
    group.add_command(collateral_group)
