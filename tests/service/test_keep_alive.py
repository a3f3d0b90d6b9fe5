"""The service's protocol keeps uvicorn's keep-alive timeout with one timer per connection: an
idle connection is closed about ``timeout_keep_alive`` after its last response, one in use is
not (requests in a row, or one answered slower than the timeout), as by uvicorn's protocol."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("httptools")

from veritee.service.http_protocol import HotRoutesHttpToolsProtocol
from veritee.service.runner import RunningServer, start_in_thread

TIMEOUT = 1


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/slow":
        await asyncio.sleep(TIMEOUT * 1.6)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["ours", "uvicorn"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    http = HotRoutesHttpToolsProtocol if request.param == "ours" else "httptools"
    running = start_in_thread(app, http=http, timeout_keep_alive=TIMEOUT)
    try:
        yield running
    finally:
        running.stop()


def _request(s: socket.socket, path: str = "/") -> None:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = b""
    while not got.endswith(b"\r\n\r\nok"):
        chunk = s.recv(4096)
        assert chunk, "closed while in use"
        got += chunk
    assert got.startswith(b"HTTP/1.1 200")


def _closed_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False


def test_an_idle_connection_is_closed_after_the_timeout(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        _request(s)
        assert not _closed_within(s, TIMEOUT * 0.4)
        assert _closed_within(s, TIMEOUT * 5)


def test_a_connection_in_use_stays_open(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        end = time.monotonic() + TIMEOUT * 2.5
        while time.monotonic() < end:  # each pause shorter than the timeout
            _request(s)
            time.sleep(TIMEOUT * 0.3)
        _request(s, "/slow")  # answered after the timeout has passed since the last response
        _request(s)
        assert _closed_within(s, TIMEOUT * 5)
