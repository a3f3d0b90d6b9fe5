"""`veritee collateral fetch` shows its requests as they go (issue 16): a rich live display on a
terminal, a line per request otherwise, nothing extra with --json. Against a real local HTTP
server serving the SGX test vector's PCS responses (the stand-in of tests/unit/collateral)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from rich.console import Console
from tests.fakes.pcs import ROOT_CRL_PATH, FileServer, serve_sgx_sample

from veritee.cli.collateral import fetch_progress
from veritee.cli.main import _register, cli
from veritee.collateral.cache import CollateralCache
from veritee.collateral.fetch import FetchConfig, fetch_collateral

_register()


@pytest.fixture
def server() -> Iterator[FileServer]:
    s = FileServer()
    yield s
    s.close()


def _config(files: FileServer) -> FetchConfig:
    return FetchConfig(intel_pcs=files.url, intel_root_crl=files.url + ROOT_CRL_PATH, timeout=5)


def test_a_terminal_shows_each_request(server: FileServer, tmp_path: Path) -> None:
    quote, _ = serve_sgx_sample(server)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    with fetch_progress(console) as transport:
        items = fetch_collateral(
            quote, CollateralCache(tmp_path / "cache"), _config(server), transport=transport
        )
    assert [i.kind for i in items] == ["sgx_collateral"]
    text = out.getvalue()
    assert len(server.requests) >= 3
    for path in server.requests:  # every request the server saw was shown, with its status
        assert f"HTTP 200  GET {server.url.removeprefix('http://')}{path.split('?')[0]}" in text
    assert "collateral" in text and "fetched" in text  # the live progress line


def test_a_failed_request_shows_too(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = io.StringIO()
    with fetch_progress(Console(file=out, force_terminal=False, width=160)) as transport, \
            httpx.Client(transport=transport) as client:  # fmt: skip
        try:
            client.get(f"http://127.0.0.1:{port}/sgx/certification/v4/tcb")
        except httpx.ConnectError:
            pass
    assert f"no answer  GET 127.0.0.1:{port}/sgx/certification/v4/tcb" in out.getvalue()


def test_the_cli_prints_lines_and_json_stays_clean(server: FileServer, tmp_path: Path) -> None:
    quote, _ = serve_sgx_sample(server)
    ev = tmp_path / "quote.bin"
    ev.write_bytes(quote)
    args = ["collateral", "fetch", str(ev), "--cache", str(tmp_path / "cache"), "--intel-pcs", server.url,
            "--intel-root-crl", server.url + ROOT_CRL_PATH]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert r.stderr.count("HTTP 200  GET 127.0.0.1") == len(server.requests) >= 3
    assert "sgx_collateral" in r.stdout
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0 and r.stderr == ""
    assert json.loads(r.stdout)["fetched"][0]["kind"] == "sgx_collateral"
