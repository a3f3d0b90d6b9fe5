"""uvicorn's httptools protocol, writing a response's head and its body in one send.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and the
body when it sends ``http.response.body``: two writes to the socket, so two TCP segments, for
every response (on loopback each send also runs the receiving side of the TCP stack in the
sender's time). Here the head is held until the first body message and written with it, in
one ``transport.write``: one segment for a response that fits one. The bytes on the wire are
the same; only their grouping into sends changes: a head still held when the app returns or
fails (it started a response and sent no body) is written then, before uvicorn ends the
response or closes the connection, as uvicorn would have written it.

:class:`HotRoutesHttpToolsProtocol` also answers the two requests of every attestation round trip,
``POST /v1/challenge`` and ``POST /v1/attest``, itself when they are ordinary (see its
documentation): without the ASGI task, messages, middleware and response objects, which cost
the service more CPU than the challenge and as much as the attest's own work besides its
signature check. ``veritee serve`` uses it (``http=`` :data:`PROTOCOL`) when httptools is
installed, which is uvicorn's own choice then.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from veritee.service.app import (
    ATTEST_PATH,
    CHALLENGE_PATH,
    HotRoutes,
    _content_type,
    attest_answer,
    attest_body,
)
from veritee.service.bodies import is_json
from veritee.service.problems import unexpected_problem
from veritee.service.routes_attest import challenge_response

__all__ = ["PROTOCOL", "CoalescingHttpToolsProtocol", "HotRoutesHttpToolsProtocol"]

#: The import string of the protocol class, for uvicorn's ``http`` setting (also in workers).
PROTOCOL = "veritee.service.http_protocol:HotRoutesHttpToolsProtocol"


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
        transport, on_response = self.transport, self.on_response
        held = _Held()
        completed: list[bool] = []
        self.transport = held  # type: ignore[assignment]
        # uvicorn calls on_response (which starts the next pipelined request, possibly answered
        # at once by HotRoutesHttpToolsProtocol) when the response is complete: after the write
        self.on_response = lambda: completed.append(True)
        try:
            await super().send(message)
        finally:
            self.transport, self.on_response = transport, on_response
        data = b"".join(held.data)
        if message["type"] == "http.response.start" and not held.closed:
            return data
        if head:
            data = head + data
        if data:
            transport.write(data)
        if held.closed:
            transport.close()
        if completed:
            on_response()
        return None


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`_CoalescingCycle` for every request."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = _CoalescingCycle
        super()._start_asgi_task(cycle, app)


#: The request headers of an ordinary hot request; any other (Authorization, Expect,
#: Transfer-Encoding, Upgrade, X-Forwarded-*, ...) sends the request the ASGI way.
ORDINARY_HEADERS = frozenset(
    (b"host", b"user-agent", b"accept", b"accept-encoding", b"connection", b"content-type",
     b"content-length")
)  # fmt: skip
_RAW_PATHS = {CHALLENGE_PATH: CHALLENGE_PATH.encode(), ATTEST_PATH: ATTEST_PATH.encode()}


def hot_routes(app: Any) -> HotRoutes | None:
    """The service's :class:`veritee.service.app.HotRoutes` behind uvicorn's ``app`` (the app,
    or the app under uvicorn's proxy-headers middleware, which changes nothing for a request
    without forwarded headers); None for any other app or wrapper, or an app whose middleware
    changed since."""
    if isinstance(app, ProxyHeadersMiddleware):
        app = app.app
    if not isinstance(app, FastAPI):
        return None
    hot = getattr(app.state, "hot_routes", None)
    if not isinstance(hot, HotRoutes) or tuple(app.user_middleware) != hot.middleware:
        return None
    return hot


class HotRoutesHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """:class:`CoalescingHttpToolsProtocol` answering the hot routes itself.

    A request is answered here when it is exactly ``POST /v1/challenge`` or ``POST /v1/attest``
    (no query, no escapes, no root path) over HTTP/1.1, carries only
    :data:`ORDINARY_HEADERS`, one decimal Content-Length within the body limit (and within
    what uvicorn buffers without pausing), an attest a JSON content type, and the app is the
    service's with its middleware as built (:func:`hot_routes`; the access log off). uvicorn has
    parsed it and made its request-response cycle as for any request; the protocol waits for
    the whole body, then answers with the functions the ASGI path calls
    (:func:`veritee.service.routes_attest.challenge_response`,
    :func:`veritee.service.app.attest_body` and :func:`veritee.service.app.attest_answer`,
    :func:`veritee.service.problems.unexpected_problem`), counts it in the same series
    (:class:`veritee.service.app.RequestCounts`) and writes the response's head and body as
    uvicorn would, in one send. An attest runs in a task of its own under uvicorn's exception
    handling (an unexpected error: the 500 problem, then the connection closed, as under the
    ASGI path). Anything else, an attest body the route would refuse (the ASGI path gets it
    whole and answers the same 400), a challenge that fails, a client that left before its
    body came, or a transport that does not take writes now, goes the ASGI way unchanged.
    Pipelined requests keep their order: uvicorn starts each when the one before is complete.

    A challenge is answered in the parser's callback, without a task: it is never seen in
    progress, so it does not touch the requests-in-progress gauge (every other series as
    before).
    """

    _hot: HotRoutes | None = None
    _waiting: tuple[RequestResponseCycle, str] | None = None
    #: The loop's time when the connection last fell idle (its last response complete, nothing
    #: received since); None while a request is received or answered.
    _idle_since: float | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if not self.root_path and not self.access_log:
            self._hot = hot_routes(self.app)

    def connection_lost(self, exc: Exception | None) -> None:
        waiting, self._waiting = self._waiting, None
        super().connection_lost(exc)
        timer, self.timeout_keep_alive_task = self.timeout_keep_alive_task, None
        if timer is not None:
            timer.cancel()
        if waiting is not None:  # the body never came: the ASGI way, as it would have gone
            super()._start_asgi_task(waiting[0], self.app)

    # The keep-alive timeout as uvicorn keeps it (a connection idle that long after its last
    # response is closed), without a timer cancelled at every request and made again at every
    # response: one timer stays armed and, when it fires, closes the connection if it has been
    # idle long enough, else waits for the rest (idle) or for the next response (busy).
    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None

    def on_response_complete(self) -> None:
        """uvicorn's, the keep-alive timer kept (see above)."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_due
            )

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None:  # busy: armed again when its response is complete
            return
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_due)
        else:
            self.timeout_keep_alive_handler()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if self._hot is not None and app is self.app:
            path = self._hot_path(cycle)
            if path is not None:
                if cycle.more_body:  # answered when the body is complete
                    self._waiting = (cycle, path)
                    return
                if self._answer(cycle, path):
                    return
        super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        waiting = self._waiting
        if waiting is not None and waiting[0] is self.cycle and not self.cycle.more_body:
            self._waiting = None
            if not self._answer(*waiting):
                super()._start_asgi_task(waiting[0], self.app)

    def _hot_path(self, cycle: RequestResponseCycle) -> str | None:
        """The path of a hot request that this protocol may answer, else None."""
        hot = self._hot
        assert hot is not None
        scope: Any = cycle.scope
        path = scope["path"]
        route = (
            hot.challenge if path == CHALLENGE_PATH else hot.attest if path == ATTEST_PATH else None
        )
        if (
            route is None or scope["method"] != "POST" or scope["query_string"]
            or scope["raw_path"] != _RAW_PATHS[path] or scope["http_version"] != "1.1"
            or cycle.waiting_for_100_continue
        ):  # fmt: skip
            return None
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                if length is not None or not value.isdigit() or len(value) > 9:
                    return None
                length = int(value)
            elif name not in ORDINARY_HEADERS:
                return None
        if length is None or length > hot.max_body or length > HIGH_WATER_LIMIT:
            return None
        if path == ATTEST_PATH and not is_json(_content_type(scope)):
            return None
        hot_path: str = path
        return hot_path

    def _answer(self, cycle: RequestResponseCycle, path: str) -> bool:
        """Answer the hot request of ``cycle``, complete; False to send it the ASGI way."""
        hot = self._hot
        assert hot is not None
        if self.flow.write_paused or cycle.disconnected:
            return False
        if path == CHALLENGE_PATH:
            start = time.perf_counter()
            try:
                response = challenge_response(hot.ctx)
            except Exception:  # nothing done: the ASGI way answers (or fails) as it would
                return False
            hot.counts.count(hot.challenge.path, response.status_code)
            self._write(cycle, response)
            hot.counts.observe(hot.challenge.path, time.perf_counter() - start)
            return True
        body = attest_body(bytes(cycle.body))
        if body is None:  # the route refuses it: the ASGI way says how
            return False

        async def answer(scope: Any, receive: Any, send: Any) -> None:
            await self._attest(cycle, body)

        HttpToolsProtocol._start_asgi_task(self, cycle, answer)  # uvicorn's task and handling
        return True

    async def _attest(self, cycle: RequestResponseCycle, body: Any) -> None:
        hot = self._hot
        assert hot is not None
        path, counts = hot.attest.path, hot.counts
        start = counts.begin()
        try:
            response = await attest_answer(hot.ctx, body)
        except Exception as exc:  # as the server-error middleware and uvicorn: 500, then close
            counts.count(path, 500)
            counts.end(path, start)
            await self._send(cycle, unexpected_problem(exc), close=True)
            raise
        except BaseException:
            counts.count(path, 500)
            counts.end(path, start)
            raise
        counts.count(path, response.status_code)
        try:
            await self._send(cycle, response)
        finally:
            counts.end(path, start)

    async def _send(
        self, cycle: RequestResponseCycle, response: Response, *, close: bool = False
    ) -> None:
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()
        if not cycle.disconnected:  # a client that left gets nothing, as from uvicorn's send
            self._write(cycle, response, close=close)

    def _write(
        self, cycle: RequestResponseCycle, response: Response, *, close: bool = False
    ) -> None:
        """``response`` (a complete Starlette response: status, headers with its length, body)
        written as uvicorn writes it, and the cycle completed as uvicorn's ``send`` does;
        ``close``: then the connection closed, no pipelined request answered (as uvicorn
        closes it after an app's failure)."""
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        out = [STATUS_LINE[response.status_code]]
        for name, value in cycle.default_headers:
            out += (name, b": ", value, b"\r\n")
        for name, value in response.raw_headers:
            out += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            out.append(b"connection: close\r\n")
        out += (b"\r\n", bytes(response.body))
        self.transport.write(b"".join(out))
        cycle.response_complete = True
        cycle.message_event.set()
        if close or not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()
