"""POST /v1/challenge and POST /v1/attest answered by the service's uvicorn protocol itself
(HotRoutesHttpToolsProtocol): on the wire, the same responses (status, headers, body), the same
refusals, metrics and closes as the ASGI path, for ordinary and unusual requests alike."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httptools")

from tests.conftest import TESTVECTORS, manifest_cases, testvectors_dir
from tests.service.conftest import GOOD, default_policy

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service import routes_attest
from veritee.service.app import create_app
from veritee.service.http_protocol import (
    CoalescingHttpToolsProtocol,
    HotRoutesHttpToolsProtocol,
    hot_routes,
)
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings

MAX_BODY = 96 * 1024  # above what uvicorn buffers unpaused (64 KiB): both sides of it are tried
ANSWERED: list[str] = []  # the paths the protocol answered itself


class Recording(HotRoutesHttpToolsProtocol):
    """Records what it answers itself. uvicorn's access log is taken as off (pytest's log
    capture gives its logger handlers here; ``veritee serve`` gives it none)."""

    def connection_made(self, transport: Any) -> None:
        self.access_log = False
        super().connection_made(transport)

    def _write(self, cycle: Any, response: Any, *, close: bool = False) -> None:
        ANSWERED.append(cycle.scope["path"])
        super()._write(cycle, response, close=close)


@dataclass
class Servers:
    hot: RunningServer
    asgi: RunningServer
    domain: Domain
    platform: SimulatedPlatform


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """One domain and database; two apps, one served by the hot-route protocol, one by the
    protocol without them (every request the ASGI way)."""
    tmp = tmp_path_factory.mktemp("hot")
    domain = Domain.create(tmp / "domain", name="test", now=dt.datetime.now(dt.UTC))
    settings = Settings(data_dir=domain.path, policy_cache_seconds=0, max_body_bytes=MAX_BODY)
    platform = SimulatedPlatform(tmp / "sim", measurement=GOOD)
    hot = start_in_thread(create_app(settings), http=Recording)
    asgi = start_in_thread(create_app(settings), http=CoalescingHttpToolsProtocol)
    try:
        doc = sign_policy(load_policy(json.dumps(default_policy(platform))), domain.policy_key)
        body = b"".join(_responses(_exchange(hot, _request(
            "PUT", "/v1/admin/policy", doc, content_type="application/json", close=True,
            extra=f"Authorization: Bearer {domain.admin_token()}\r\n")))[0][2:])  # fmt: skip
        assert b'"version"' in body, body
        yield Servers(hot, asgi, domain, platform)
    finally:
        hot.stop()
        asgi.stop()


def _request(
    method: str, path: str, body: bytes = b"", *, content_type: str | None = "application/json",
    close: bool = False, extra: str = "", length: int | None = None, version: str = "1.1",
) -> bytes:  # fmt: skip
    head = f"{method} {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if length != -1:
        head += f"Content-Length: {len(body) if length is None else length}\r\n"
    head += extra + ("Connection: close\r\n" if close else "") + "\r\n"
    return head.encode() + body


def _exchange(server: RunningServer, raw: bytes, *, half_close: bool = False) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(raw)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _responses(raw: bytes) -> list[tuple[Any, ...]]:
    """Each response as (status line, header lines without the date, body), in order."""
    out: list[tuple[Any, ...]] = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = [h for h in lines[1:] if not h.startswith(b"date: ")]
        m = re.search(rb"\r\ncontent-length: (\d+)", head)
        length = int(m.group(1)) if m else 0 if lines[0][9:10] == b"1" else len(rest)
        out.append((lines[0], *headers, rest[:length]))
        raw = rest[length:]
    return out


def _normal(raw: bytes) -> list[tuple[Any, ...]]:
    """:func:`_responses` with what differs from one answer to the next taken out (a nonce, its
    expiry, a token, the claims' report data) and the lengths checked instead of compared."""
    out = []
    for status, *headers, body in _responses(raw):
        try:
            doc = json.loads(body)
        except ValueError:
            doc = body
        if isinstance(doc, dict):
            for volatile in ("nonce", "expires_at", "token"):
                if volatile in doc:
                    doc[volatile] = type(doc[volatile]).__name__
            if isinstance(doc.get("claims"), dict):
                doc["claims"].pop("report_data", None)
        kept = []
        for h in headers:
            if h.startswith(b"content-length: "):
                assert int(h.split(b": ")[1]) == len(body)
                h = b"content-length: n"
            kept.append(h)
        out.append((status, *kept, doc))
    return out


def _nonce(server: RunningServer) -> str:
    raw = _exchange(server, _request("POST", "/v1/challenge", close=True))
    nonce: str = json.loads(_responses(raw)[0][-1])["nonce"]
    return nonce


def _attest_body(s: Servers, server: RunningServer, **extra: Any) -> bytes:
    nonce = _nonce(server)
    ev = s.platform.evidence(report_data_for(bytes.fromhex(nonce), b"", profile=s.platform.profile))
    return json.dumps({"evidence": base64.b64encode(ev).decode(), "nonce": nonce,
                       "format": "simulated", **extra}).encode()  # fmt: skip


def _tampered(s: Servers, server: RunningServer) -> bytes:
    doc = json.loads(_attest_body(s, server))
    ev = bytearray(base64.b64decode(doc["evidence"]))
    ev[10] ^= 1
    return json.dumps({**doc, "evidence": base64.b64encode(bytes(ev)).decode()}).encode()


def _attest(body: bytes, **kw: Any) -> bytes:
    return _request("POST", "/v1/attest", body, **kw)


Case = Callable[[Servers, RunningServer], bytes]

CASES: dict[str, Case] = {
    "challenge": lambda s, v: _request("POST", "/v1/challenge", close=True),
    "challenge without a content type": lambda s, v: _request("POST", "/v1/challenge", content_type=None, close=True),
    "challenge with a body": lambda s, v: _request("POST", "/v1/challenge", b'{"a": 1}', close=True),
    "challenge with a query": lambda s, v: _request("POST", "/v1/challenge?x=1", close=True),
    "challenge escaped": lambda s, v: _request("POST", "/v1/%63hallenge", close=True),
    "challenge by GET": lambda s, v: _request("GET", "/v1/challenge", close=True),
    "challenge, HTTP/1.0": lambda s, v: _request("POST", "/v1/challenge", version="1.0"),
    "challenge, authorization": lambda s, v: _request(
        "POST", "/v1/challenge", close=True, extra="Authorization: Bearer x\r\n"),
    "challenge, forwarded": lambda s, v: _request(
        "POST", "/v1/challenge", close=True, extra="X-Forwarded-For: 10.0.0.1\r\n"),
    "good": lambda s, v: _attest(_attest_body(s, v), close=True),
    "good, kept alive then closed": lambda s, v: _attest(_attest_body(s, v))
    + _request("POST", "/v1/challenge", close=True),
    "tampered": lambda s, v: _attest(_tampered(s, v), close=True),
    "nonce used twice, pipelined": lambda s, v: (lambda b: _attest(b) + _attest(b, close=True))(
        _attest_body(s, v)),
    "pipelined": lambda s, v: _request("POST", "/v1/challenge") + _attest(_attest_body(s, v))
    + _attest(b"{not json") + _request("POST", "/v1/challenge", close=True),
    "unknown nonce": lambda s, v: _attest(json.dumps({**json.loads(_attest_body(s, v)),
                                                      "nonce": "ab" * 32}).encode(), close=True),
    "malformed": lambda s, v: _attest(b"{not json", close=True),
    "empty": lambda s, v: _attest(b"", close=True),
    "an array": lambda s, v: _attest(b"[1, 2]", close=True),
    "too deep": lambda s, v: _attest(b"[" * 100 + b"]" * 100, close=True),
    "missing nonce": lambda s, v: _attest(b'{"evidence": "AAAA"}', close=True),
    "unknown field": lambda s, v: _attest(json.dumps({**json.loads(_attest_body(s, v)),
                                                      "bogus": 1}).encode(), close=True),
    "wrong content type": lambda s, v: _attest(_attest_body(s, v), content_type="text/plain", close=True),
    "no content type": lambda s, v: _attest(_attest_body(s, v), content_type=None, close=True),
    "+json content type": lambda s, v: _attest(_attest_body(s, v), content_type="application/x+json",
                                               close=True),
    "two content types": lambda s, v: _attest(_attest_body(s, v), close=True,
                                              extra="Content-Type: text/plain\r\n"),
    "two lengths": lambda s, v: (lambda b: _attest(b, close=True, extra=f"Content-Length: {len(b)}\r\n"))(
        _attest_body(s, v)),
    "chunked": lambda s, v: (lambda b: _attest(b"%x\r\n" % len(b) + b + b"\r\n0\r\n\r\n", length=-1,
                                               close=True, extra="Transfer-Encoding: chunked\r\n"))(
        _attest_body(s, v)),
    "expect 100-continue": lambda s, v: _attest(_attest_body(s, v), close=True,
                                                extra="Expect: 100-continue\r\n"),
    "oversized": lambda s, v: _attest(b"{" + b" " * MAX_BODY + b"}", close=True),
    "over the unpaused buffer": lambda s, v: _attest(
        _attest_body(s, v)[:-1] + b" " * (70 * 1024) + b"}", close=True),
    "with a query": lambda s, v: _request("POST", "/v1/attest?x=1", _attest_body(s, v), close=True),
    "trailing slash": lambda s, v: _request("POST", "/v1/attest/", _attest_body(s, v), close=True),
    "no such policy": lambda s, v: _attest(_attest_body(s, v, policy="nope"), close=True),
    "bad audience": lambda s, v: _attest(_attest_body(s, v, audience="a b"), close=True),
    "invalid request line": lambda s, v: b"POST /v1/attest HTTP/1.1\r\nContent-Length: x\r\n\r\n",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_protocol_answers_as_the_asgi_path(servers: Servers, name: str) -> None:
    answers = [_normal(_exchange(v, CASES[name](servers, v))) for v in (servers.hot, servers.asgi)]
    assert answers[0] == answers[1]
    assert answers[0], "no answer"


def test_ordinary_requests_are_answered_by_the_protocol(servers: Servers) -> None:
    ANSWERED.clear()
    out = _responses(_exchange(servers.hot, CASES["pipelined"](servers, servers.hot)))
    ok, bad = b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"
    assert [r[0] for r in out] == [ok, ok, bad, ok]
    # the malformed attest went the ASGI way; the nonce's own challenge was one more
    assert ANSWERED == ["/v1/challenge", "/v1/challenge", "/v1/attest", "/v1/challenge"]
    ANSWERED.clear()
    _exchange(servers.hot, CASES["wrong content type"](servers, servers.hot))
    _exchange(servers.hot, CASES["challenge, HTTP/1.0"](servers, servers.hot))
    assert ANSWERED == ["/v1/challenge"]  # only the nonce of the first


def test_a_truncated_body_gets_no_answer_on_either_path(servers: Servers) -> None:
    for server in (servers.hot, servers.asgi):
        body = _attest_body(servers, server)
        raw = _attest(body, length=len(body) + 10)
        assert _exchange(server, raw, half_close=True) == b""


def test_an_accepted_token_from_the_protocol_verifies(servers: Servers) -> None:
    from veritee.tokens import decode_ear

    raw = _exchange(servers.hot, CASES["good"](servers, servers.hot))
    ((status, *headers, body),) = _responses(raw)
    assert status == b"HTTP/1.1 200 OK" and b"content-type: application/json" in headers
    doc = json.loads(body)
    assert doc["accepted"] is True
    decode_ear(
        doc["token"], servers.domain.token_key.public_key(), issuer="veritee", audience="veritee"
    )


def test_the_same_series_are_counted(servers: Servers) -> None:
    def series(server: RunningServer) -> dict[str, float]:
        text = _responses(
            _exchange(server, _request("GET", "/metrics", content_type=None, close=True))
        )
        found = {}
        for line in text[0][-1].decode().splitlines():
            m = re.match(r'(veritee_(?:http_requests_total|request_duration_seconds_count))'
                         r'(\{route="/v1/(?:attest|challenge)".*\}) (\S+)', line)  # fmt: skip
            if m:
                found[m.group(1) + m.group(2)] = float(m.group(3))
        return found

    before = [series(v) for v in (servers.hot, servers.asgi)]
    for name in ("good", "tampered", "malformed", "pipelined", "oversized", "chunked"):
        for server in (servers.hot, servers.asgi):
            _exchange(server, CASES[name](servers, server))
    after = [series(v) for v in (servers.hot, servers.asgi)]
    grown = [
        {k: v - b.get(k, 0.0) for k, v in a.items() if v != b.get(k)} for a, b in zip(after, before)
    ]
    assert grown[0] == grown[1]
    # good, tampered, pipelined, chunked
    assert grown[0]['veritee_http_requests_total{route="/v1/attest",status="200"}'] == 4.0


def test_an_unexpected_error_is_a_500_then_a_close(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("broken")

    bodies = {v.port: _attest_body(servers, v) for v in (servers.hot, servers.asgi)}
    monkeypatch.setattr(routes_attest, "attest_response", broken)
    answers = []
    for server in (servers.hot, servers.asgi):  # the challenge after it is never answered
        raw = _attest(bodies[server.port]) + _request("POST", "/v1/challenge", close=True)
        answers.append(_normal(_exchange(server, raw)))
    assert answers[0] == answers[1]
    assert len(answers[0]) == 1 and answers[0][0][0] == b"HTTP/1.1 500 Internal Server Error"


VECTORS = [c for c in manifest_cases() if c["format"] in ("sgx", "tdx", "sev-snp", "nitro")][:8]


@pytest.mark.parametrize("case", VECTORS, ids=[c["evidence"] for c in VECTORS])
@pytest.mark.parametrize("mutation", ["as is", "one bit", "cut"])
def test_real_evidence_and_its_mutations_are_answered_alike(
    servers: Servers, case: dict[str, Any], mutation: str
) -> None:
    testvectors_dir()
    ev = (TESTVECTORS / case["evidence"]).read_bytes()
    if mutation == "one bit":
        ev = ev[: len(ev) // 2] + bytes([ev[len(ev) // 2] ^ 1]) + ev[len(ev) // 2 + 1 :]
    elif mutation == "cut":
        ev = ev[: len(ev) * 2 // 3]
    answers = []
    for server in (servers.hot, servers.asgi):
        body = json.dumps({"evidence": base64.b64encode(ev).decode(), "nonce": _nonce(server),
                           "format": case["format"]}).encode()  # fmt: skip
        answers.append(_normal(_exchange(server, _attest(body, close=True))))
    assert answers[0] == answers[1]


def test_the_protocol_answers_only_for_the_service_as_built(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from starlette.middleware.gzip import GZipMiddleware
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    domain = Domain.create(tmp_path / "domain", name="test", now=dt.datetime.now(dt.UTC))
    app = create_app(Settings(data_dir=domain.path))
    assert hot_routes(app) is app.state.hot_routes is not None
    assert hot_routes(ProxyHeadersMiddleware(app)) is app.state.hot_routes
    assert hot_routes(FastAPI()) is None
    assert hot_routes(GZipMiddleware(app)) is None
    logged = create_app(Settings(data_dir=domain.path, access_log=True))
    assert hot_routes(logged) is None
    app.add_middleware(GZipMiddleware)
    assert hot_routes(app) is None


def test_the_challenge_is_rendered_as_json_response_would(tmp_path: Path) -> None:
    from starlette.responses import JSONResponse

    domain = Domain.create(tmp_path / "domain", name="test", now=dt.datetime.now(dt.UTC))
    ctx = create_app(Settings(data_dir=domain.path)).state.ctx
    for _ in range(50):
        answer = routes_attest.challenge_response(ctx)
        doc = json.loads(answer.body)
        assert list(doc) == ["nonce", "expires_at"] and len(bytes.fromhex(doc["nonce"])) == 32
        assert dt.datetime.fromisoformat(doc["expires_at"]).tzinfo is not None
        reference = JSONResponse(doc)
        assert (answer.status_code, answer.raw_headers, answer.body) == (
            reference.status_code,
            reference.raw_headers,
            reference.body,
        )


@pytest.mark.parametrize(
    "content",
    [
        {"token": "a.b.c", "accepted": True, "claims": {"m": "é\u2028", "n": None, "f": 1.5}},
        {"reasons": [{"code": "x", "message": '"quoted" \\ \x00'}], "policy": {"name": None}},
        [],
        "text",
    ],
)
def test_json_response_is_json_response(content: Any) -> None:
    from starlette.responses import JSONResponse

    made, reference = routes_attest.json_response(content), JSONResponse(content)
    assert type(made) is JSONResponse
    assert made.__dict__ == reference.__dict__
    again = routes_attest.rendered_json(reference.body)
    assert type(again) is JSONResponse and again.__dict__ == reference.__dict__


def test_json_response_refuses_what_json_response_refuses() -> None:
    from starlette.responses import JSONResponse

    for bad in ({"x": float("nan")}, {"x": object()}):
        with pytest.raises((TypeError, ValueError)) as made:
            routes_attest.json_response(bad)
        with pytest.raises(type(made.value)):
            JSONResponse(bad)
