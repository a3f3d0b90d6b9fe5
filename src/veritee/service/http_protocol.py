"""uvicorn's httptools protocol, writing a response's head and its body in one send.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and the
body when it sends ``http.response.body``: two writes to the socket, so two TCP segments, for
every response (on loopback each send also runs the receiving side of the TCP stack in the
sender's time). Here the head is held until the first body message and written with it, in
one ``transport.write``: one segment for a response that fits one. The bytes on the wire are
the same; only their grouping into sends changes: a head still held when the app returns or
fails (it started a response and sent no body) is written then, before uvicorn ends the
response or closes the connection, as uvicorn would have written it.

``veritee serve`` uses it (``http=`` :data:`PROTOCOL`) when httptools is installed, which is
uvicorn's own choice then.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

__all__ = ["PROTOCOL", "CoalescingHttpToolsProtocol"]

#: The import string of the protocol class, for uvicorn's ``http`` setting (also in workers).
PROTOCOL = "veritee.service.http_protocol:CoalescingHttpToolsProtocol"


class _Held:
    """Stands in for the transport while uvicorn writes: keeps the bytes, and a ``close``."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def close(self) -> None:
        self.closed = True


class _CoalescingCycle(RequestResponseCycle):
    """A request-response cycle whose response head waits for the first body message."""

    _head: bytes | None = None

    async def run_asgi(self, app: Any) -> None:
        async def flushing(scope: Any, receive: Any, send: Any) -> None:
            try:
                await app(scope, receive, send)
            finally:  # a head whose body never came: written as uvicorn would have
                head, self._head = self._head, None
                if head and not self.transport.is_closing():
                    self.transport.write(head)

        await super().run_asgi(flushing)

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            self._head = await self._send_held(message, None)
            return
        head, self._head = self._head, None
        await self._send_held(message, head)

    async def _send_held(self, message: Any, head: bytes | None) -> bytes | None:
        """uvicorn's ``send`` with its writes held; ``head`` (if any) goes first. Returns the
        bytes written for a response start (held for the body), else writes them all."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()  # before the writes are held: nothing else writes meanwhile
        transport = self.transport
        held = _Held()
        self.transport = held  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
        data = b"".join(held.data)
        if message["type"] == "http.response.start" and not held.closed:
            return data
        if head:
            data = head + data
        if data:
            transport.write(data)
        if held.closed:
            transport.close()
        return None


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`_CoalescingCycle` for every request."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = _CoalescingCycle
        super()._start_asgi_task(cycle, app)
