"""``veritee collateral fetch``: get what a piece of evidence needs from AMD KDS / Intel PCS.

Each request shows as it goes (:func:`fetch_progress`): a rich progress display on a terminal
(spinner, requests done, the one in flight, time), one line per request on stderr otherwise
(none with ``--json``, whose stdout stays one JSON object).
"""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import httpx

from veritee.collateral.cache import CollateralCache, default_cache_dir
from veritee.collateral.fetch import (
    DEFAULT_AMD_KDS,
    DEFAULT_INTEL_PCS,
    FetchConfig,
    fetch_collateral,
)
from veritee.errors import CollateralError

__all__ = ["ProgressTransport", "fetch_progress", "register"]

#: A fetch that could not reach the server is an I/O error (exit 2), like a missing file.
_IO_CODES = {"fetch_unreachable"}


class ProgressTransport(httpx.BaseTransport):
    """An HTTP transport that reports each request before it is sent and when its answer's
    head arrives (``on_start(request)``, ``on_done(request, response | None)``)."""

    def __init__(self, inner: httpx.BaseTransport, on_start: Callable[[httpx.Request], None],
                 on_done: Callable[[httpx.Request, httpx.Response | None], None]) -> None:  # fmt: skip
        self._inner, self._on_start, self._on_done = inner, on_start, on_done

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._on_start(request)
        try:
            response = self._inner.handle_request(request)
        except BaseException:
            self._on_done(request, None)
            raise
        self._on_done(request, response)
        return response

    def close(self) -> None:
        self._inner.close()


def _where(request: httpx.Request) -> str:
    url = urllib.parse.urlsplit(str(request.url))
    path = url.path if len(url.path) <= 60 else url.path[:57] + "..."
    return f"{url.netloc}{path}"


@contextlib.contextmanager
def fetch_progress(console: Any, *, quiet: bool = False) -> Iterator[ProgressTransport]:
    """A transport for :func:`fetch_collateral` that shows each request on ``console`` (rich,
    on stderr): a live progress display on a terminal, else a line per request (nothing when
    ``quiet``)."""
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    inner = httpx.HTTPTransport()
    if console.is_terminal:
        progress = Progress(SpinnerColumn(), TextColumn("[bold]collateral[/]"), TextColumn("{task.completed} fetched"),
                            TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True)  # fmt: skip
        task = progress.add_task("", total=None)

        def start(request: httpx.Request) -> None:
            progress.update(task, description=escape(f"GET {_where(request)}"))

        def done(request: httpx.Request, response: httpx.Response | None) -> None:
            status = "no answer" if response is None else f"HTTP {response.status_code}"
            progress.advance(task)
            progress.console.print(escape(f"  {status}  GET {_where(request)}"), highlight=False)

        with progress:
            yield ProgressTransport(inner, start, done)
        return

    def line_start(request: httpx.Request) -> None:
        return None

    def line_done(request: httpx.Request, response: httpx.Response | None) -> None:
        if not quiet:
            status = "no answer" if response is None else f"HTTP {response.status_code}"
            console.print(
                escape(f"  {status}  GET {_where(request)}"), highlight=False, soft_wrap=True
            )

    yield ProgressTransport(inner, line_start, line_done)


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
    from veritee.cli.exits import EXIT_USAGE, handle_errors

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
        from rich.console import Console

        try:
            with fetch_progress(Console(stderr=True), quiet=as_json) as transport:
                items = fetch_collateral(evidence.read_bytes(), cache, config, transport=transport)
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
