"""The service's uvicorn protocol writes a response's head with its body: the same bytes as
uvicorn's own httptools protocol, in one send."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("httptools")

from veritee.service.http_protocol import CoalescingHttpToolsProtocol
from veritee.service.runner import RunningServer, start_in_thread

WRITES: list[bytes] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/json":
        payload = b'{"ok":true,"echo":' + str(len(body)).encode() + b"}"
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(payload)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
    elif path == "/stream":  # no length: chunked, three pieces
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"one", b"two"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"three"})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/fail":  # started, then failed: the connection is closed
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})  # fmt: skip
        raise RuntimeError("failed after the start")
    else:
        headers = [(b"content-length", b"9")]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": b"not found"})


class Recording(CoalescingHttpToolsProtocol):
    """Records every write to the socket."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(_Recorder(transport))


class _Recorder:
    def __init__(self, transport: Any) -> None:
        self._t = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self._t.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


@pytest.fixture
def servers() -> Iterator[tuple[RunningServer, RunningServer]]:
    ours = start_in_thread(app, http=Recording)
    theirs = start_in_thread(app, http="httptools")
    try:
        yield ours, theirs
    finally:
        ours.stop()
        theirs.stop()


def _exchange(server: RunningServer, raw: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(raw)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return re.sub(rb"date: [^\r]*\r\n", b"", out)


def _get(path: str, *, method: str = "GET", body: bytes = b"", close: bool = True) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


REQUESTS = {
    "json": _get("/json", method="POST", body=b"12345"),
    "head": _get("/json", method="HEAD"),
    "chunked": _get("/stream"),
    "204": _get("/empty"),
    "404": _get("/nowhere"),
    "failed after the start": _get("/fail"),
    "keep-alive, then close": _get("/json", close=False) + _get("/stream"),
    "pipelined": _get("/json", close=False) + _get("/empty", close=False) + _get("/json"),
    "http/1.0": b"GET /json HTTP/1.0\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_the_bytes_are_uvicorn_s(servers: tuple[RunningServer, RunningServer], name: str) -> None:
    ours, theirs = servers
    assert _exchange(ours, REQUESTS[name]) == _exchange(theirs, REQUESTS[name])


def test_a_response_is_one_write(servers: tuple[RunningServer, RunningServer]) -> None:
    ours, _ = servers
    WRITES.clear()
    out = _exchange(ours, _get("/json", method="POST", body=b"abc"))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b'{"ok":true,"echo":3}')
    assert len(WRITES) == 1 and WRITES[0].endswith(b'{"ok":true,"echo":3}')
    WRITES.clear()
    _exchange(ours, _get("/stream"))  # the head goes with the first piece
    assert len(WRITES) == 3 and WRITES[0].startswith(b"HTTP/1.1 200 OK")
    assert WRITES[0].endswith(b"3\r\none\r\n")
