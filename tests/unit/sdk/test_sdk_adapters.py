"""Adapters (issue 18 item 6): a tiny ASGI app under real uvicorn with an
:class:`AdmissionContext`, reached with real httpx over real TLS 1.3. Admitted clients get
through; clients the policy does not allow, expired, revoked or without a certificate are
refused at the handshake, before the app sees a request; the client refuses a server the
policy does not allow, before sending one."""

from __future__ import annotations

import datetime as dt
import queue
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from tests.unit.sdk.sdk_pki import TestCA, measurement_of, now

from veritee.errors import UsageError, VerificationError
from veritee.sdk import adapters
from veritee.sdk.adapters import AdmissionContext
from veritee.sdk.channel import ChannelPolicy
from veritee.sdk.revocation import RevocationList
from veritee.service.runner import RunningServer, start_in_thread

M_SERVER = measurement_of("http-server")
M_CLIENT = measurement_of("http-client")
M_OTHER = measurement_of("someone-else")
WAIT = 10.0


class App:
    """A tiny ASGI app that records the requests it serves."""

    def __init__(self) -> None:
        self.requests: queue.Queue[str] = queue.Queue()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests.put(scope["path"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})


class Served:
    def __init__(
        self, ca: TestCA, policy: ChannelPolicy, loop: str = "auto", **kwargs: Any
    ) -> None:
        self.app = App()
        self.refusals: queue.Queue[VerificationError] = queue.Queue()
        self.key, self.cert = ca.workload(M_SERVER)
        self.ctx = AdmissionContext.create(True, key=self.key, cert=self.cert, ca_cert=ca.cert,
                                           policy=policy, on_refusal=self.refusals.put, **kwargs)  # fmt: skip
        self.server: RunningServer = start_in_thread(
            self.app, ssl_context_factory=lambda config, default: self.ctx, loop=loop
        )
        self.url = self.server.url

    def refusal(self) -> VerificationError:
        return self.refusals.get(timeout=WAIT)


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def served(ca: TestCA) -> Iterator[Served]:
    s = Served(ca, ChannelPolicy.allow(measurements={M_CLIENT}))  # uvloop where installed
    try:
        yield s
    finally:
        s.server.stop()


def client_context(ca: TestCA, measurement: str = M_CLIENT, *, policy: ChannelPolicy | None = None,
                   **issue: Any) -> AdmissionContext:  # fmt: skip
    key, cert = ca.workload(measurement, **issue)
    return AdmissionContext.create(False, key=key, cert=cert, ca_cert=ca.cert,
                                   policy=policy or ChannelPolicy.allow(measurements={M_SERVER}))  # fmt: skip


def get(ctx: ssl.SSLContext, url: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(verify=ctx), timeout=WAIT) as c:
        return c.get(url + "/items")


def server_serial(ctx: ssl.SSLContext, url: str) -> int:
    """The serial number of the certificate the server presented on a new connection."""
    with (
        httpx.Client(transport=httpx.HTTPTransport(verify=ctx), timeout=WAIT) as c,
        c.stream("GET", url) as r,
    ):
        der = r.extensions["network_stream"].get_extra_info("ssl_object").getpeercert(True)
        return x509.load_der_x509_certificate(der).serial_number


def test_all_exported() -> None:
    import veritee

    for name in adapters.__all__:
        assert hasattr(adapters, name)
    for name in veritee.__all__:
        assert hasattr(veritee, name)
    assert veritee.AdmissionContext is AdmissionContext


def test_an_admitted_client_reaches_the_app(ca: TestCA, served: Served) -> None:
    ctx = client_context(ca)
    r = get(ctx, served.url)
    assert r.status_code == 200 and r.text == "hello /items"
    assert served.app.requests.get(timeout=WAIT) == "/items"
    assert served.refusals.empty()
    assert isinstance(ctx, ssl.SSLContext) and ctx.minimum_version is ssl.TLSVersion.TLSv1_3


def test_the_asyncio_loop_admits_and_refuses_alike(ca: TestCA) -> None:
    s = Served(ca, ChannelPolicy.allow(measurements={M_CLIENT}), loop="asyncio")
    try:
        assert get(client_context(ca), s.url).text == "hello /items"
        assert s.app.requests.get(timeout=WAIT) == "/items"
        assert _refused(client_context(ca, M_OTHER), s).code == "peer_measurement_not_allowed"
    finally:
        s.server.stop()


def test_a_blocking_server_with_a_wrapped_listening_socket_admits_and_refuses(ca: TestCA) -> None:
    """The werkzeug pattern: the listening socket is wrapped, each accept() does the handshake."""
    import http.server
    import threading

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"blocking")

        def log_message(self, *args: Any) -> None:
            pass

    refusals: queue.Queue[VerificationError] = queue.Queue()
    key, cert = ca.workload(M_SERVER)
    ctx = AdmissionContext.create(True, key=key, cert=cert, ca_cert=ca.cert,
                                  policy=ChannelPolicy.allow(measurements={M_CLIENT}),
                                  on_refusal=refusals.put)  # fmt: skip
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert get(client_context(ca), url).text == "blocking"
        renewed = ca.issue(key.public_key(), measurement=M_SERVER)
        ctx.update_credentials(key=key, cert=renewed, ca_cert=ca.cert)
        assert server_serial(client_context(ca), url) == renewed.serial_number
        with pytest.raises(httpx.TransportError):
            get(client_context(ca, M_OTHER), url)
        assert refusals.get(timeout=WAIT).code == "peer_measurement_not_allowed"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _refused(ctx: ssl.SSLContext, served: Served) -> VerificationError:
    with pytest.raises(httpx.TransportError):
        get(ctx, served.url)
    error = served.refusal()
    assert served.app.requests.empty(), "a refused client reached the app"
    return error


def test_a_client_whose_measurement_the_policy_does_not_allow_is_refused(
    ca: TestCA, served: Served
) -> None:
    assert _refused(client_context(ca, M_OTHER), served).code == "peer_measurement_not_allowed"


def test_a_client_of_another_profile_is_refused(ca: TestCA, served: Served) -> None:
    # The policy left profiles open: "the same as mine" (production).
    ctx = client_context(
        ca,
        profile="development",
        policy=ChannelPolicy.allow(measurements={M_SERVER}, profiles={"production"}),
    )
    assert _refused(ctx, served).code == "peer_profile_not_allowed"


def test_an_expired_client_is_refused(ca: TestCA, served: Served) -> None:
    ctx = client_context(
        ca, not_before=now() - dt.timedelta(hours=2), not_after=now() - dt.timedelta(minutes=1)
    )
    assert _refused(ctx, served).code == "peer_certificate_invalid"


def test_a_client_of_another_domain_is_refused(ca: TestCA, served: Served) -> None:
    key, cert = TestCA("another domain").workload(M_CLIENT)
    ctx = AdmissionContext.create(False, key=key, cert=cert, ca_cert=ca.cert,
                                  policy=ChannelPolicy.allow(measurements={M_SERVER}))  # fmt: skip
    assert _refused(ctx, served).code == "peer_certificate_invalid"


def test_a_client_without_a_certificate_is_refused(ca: TestCA, served: Served) -> None:
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    plain.load_verify_locations(cadata=ca.cert.public_bytes(serialization.Encoding.PEM).decode())
    plain.check_hostname = False
    assert _refused(plain, served).code == "peer_certificate_missing"


def _crl(ca: TestCA, serials: list[int]) -> RevocationList:
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
         .last_update(now() - dt.timedelta(minutes=1)).next_update(now() + dt.timedelta(hours=1)))  # fmt: skip
    for serial in serials:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now()).build()
        )
    return RevocationList(b.sign(ca.key, hashes.SHA384()), ca.cert)


def test_a_revoked_client_is_refused_and_its_sibling_admitted(ca: TestCA) -> None:
    key, revoked = ca.workload(M_CLIENT)
    s = Served(
        ca,
        ChannelPolicy.allow(measurements={M_CLIENT}),
        revocations=_crl(ca, [revoked.serial_number]),
    )
    try:
        policy = ChannelPolicy.allow(measurements={M_SERVER})
        ctx = AdmissionContext.create(False, key=key, cert=revoked, ca_cert=ca.cert, policy=policy)
        assert _refused(ctx, s).code == "certificate_revoked"
        assert get(client_context(ca), s.url).status_code == 200
    finally:
        s.server.stop()


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        (ChannelPolicy.allow(measurements={M_OTHER}), "peer_measurement_not_allowed"),
        (
            ChannelPolicy.allow(measurements={M_SERVER}, profiles={"staging"}),
            "peer_profile_not_allowed",
        ),
        (
            ChannelPolicy.allow(measurements={M_SERVER}, platforms={"sev-snp"}),
            "peer_platform_not_allowed",
        ),
    ],
)
def test_the_client_refuses_a_server_the_policy_does_not_allow_before_sending(
    ca: TestCA, served: Served, policy: ChannelPolicy, code: str
) -> None:
    # The server admits this client; the client does not admit the server.
    with pytest.raises(VerificationError) as e:
        get(client_context(ca, policy=policy), served.url)
    assert e.value.code == code
    assert served.app.requests.empty(), "the request was sent to a refused server"


def test_the_client_refuses_a_revoked_server(ca: TestCA, served: Served) -> None:
    key, cert = ca.workload(M_CLIENT)
    ctx = AdmissionContext.create(False, key=key, cert=cert, ca_cert=ca.cert,
                                  policy=ChannelPolicy.allow(measurements={M_SERVER}),
                                  revocations=_crl(ca, [served.cert.serial_number]))  # fmt: skip
    with pytest.raises(VerificationError) as e:
        get(ctx, served.url)
    assert e.value.code == "certificate_revoked"
    assert served.app.requests.empty()


def test_the_async_client_refuses_too(ca: TestCA, served: Served) -> None:
    import anyio

    async def main() -> None:
        ctx = client_context(ca, policy=ChannelPolicy.allow(measurements={M_OTHER}))
        async with httpx.AsyncClient(verify=ctx, timeout=WAIT) as c:
            with pytest.raises(VerificationError) as e:
                await c.get(served.url + "/x")
            assert e.value.code == "peer_measurement_not_allowed"
        async with httpx.AsyncClient(verify=client_context(ca), timeout=WAIT) as c:
            assert (await c.get(served.url + "/y")).text == "hello /y"

    anyio.run(main)
    assert served.app.requests.get(timeout=WAIT) == "/y"


def test_a_renewed_certificate_is_presented_to_new_connections(ca: TestCA, served: Served) -> None:
    ctx = client_context(ca)
    assert server_serial(ctx, served.url) == served.cert.serial_number
    renewed = ca.issue(served.key.public_key(), measurement=M_SERVER)
    served.ctx.update_credentials(key=served.key, cert=renewed, ca_cert=ca.cert)
    assert server_serial(ctx, served.url) == renewed.serial_number


def test_credentials_that_are_not_an_admission_certificate_are_refused(ca: TestCA) -> None:
    key, cert = ca.workload(M_SERVER)
    bare = ca.issue(key.public_key(), measurement=None)
    with pytest.raises(UsageError) as e:
        AdmissionContext.create(True, key=key, cert=bare, ca_cert=ca.cert)
    assert e.value.code == "not_an_admission_certificate"
    ctx = AdmissionContext.create(True, key=key, cert=cert, ca_cert=ca.cert)
    with pytest.raises(UsageError):
        ctx.update_credentials(key=key, cert=bare, ca_cert=ca.cert)


def test_the_client_refuses_a_server_of_another_domain_or_expired_with_a_reason_code(
    ca: TestCA,
) -> None:
    expired = ca.workload(M_SERVER, not_before=now() - dt.timedelta(hours=2),
                          not_after=now() - dt.timedelta(minutes=1))  # fmt: skip
    for key, cert in (TestCA("another domain").workload(M_SERVER), expired):
        refusals: queue.Queue[VerificationError] = queue.Queue()
        app = App()
        if cert is expired[1]:  # a context is made for a valid certificate, then left to expire
            ctx = AdmissionContext.create(True, key=key, cert=ca.issue(key.public_key(), measurement=M_SERVER),
                                          ca_cert=ca.cert, on_refusal=refusals.put,
                                          policy=ChannelPolicy.allow(measurements={M_CLIENT}))  # fmt: skip
            ctx.update_credentials(key=key, cert=cert, ca_cert=ca.cert)
        else:
            ctx = AdmissionContext.create(True, key=key, cert=cert, ca_cert=ca.cert, on_refusal=refusals.put,
                                          policy=ChannelPolicy.allow(measurements={M_CLIENT}))  # fmt: skip
        web = start_in_thread(app, ssl_context_factory=lambda config, default, ctx=ctx: ctx)
        try:
            with pytest.raises(VerificationError) as e:
                get(client_context(ca), web.url)
            assert e.value.code == "peer_certificate_invalid"
            assert app.requests.empty()
            if cert is expired[1]:  # the server says why its clients leave
                assert refusals.get(timeout=WAIT).code == "own_certificate_expired"
        finally:
            web.stop()


class _BrokenRevocations:
    """A revocation check that fails with something other than a refusal (a bug, a library)."""

    def check(self, serial: int, at: dt.datetime) -> None:
        raise RuntimeError("not a VeriteeError")


def test_an_admission_check_that_breaks_refuses_the_client(ca: TestCA) -> None:
    s = Served(ca, ChannelPolicy.allow(measurements={M_CLIENT}), revocations=_BrokenRevocations())
    try:
        assert _refused(client_context(ca), s).code == "tls_handshake_failed"
    finally:
        s.server.stop()


def test_a_wsgi_app_under_werkzeug_reads_the_clients_claims(ca: TestCA) -> None:
    """Flask's server (werkzeug) with the context: refused clients never reach the app, and
    the app reads an admitted client's claims with peer_of(environ)."""
    serving = pytest.importorskip("werkzeug.serving")
    import threading

    seen: list[str] = []

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        peer = adapters.peer_of(environ)
        seen.append(peer.measurement)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{peer.platform} {peer.profile.value if peer.profile else '-'}".encode()]

    refusals: queue.Queue[VerificationError] = queue.Queue()
    key, cert = ca.workload(M_SERVER)
    ctx = AdmissionContext.create(True, key=key, cert=cert, ca_cert=ca.cert, on_refusal=refusals.put,
                                  policy=ChannelPolicy.allow(measurements={M_CLIENT}))  # fmt: skip
    httpd = serving.make_server("127.0.0.1", 0, wsgi, threaded=True, ssl_context=ctx)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert get(client_context(ca), url).text == "simulated production"
        with pytest.raises(httpx.TransportError):
            get(client_context(ca, M_OTHER), url)
        assert refusals.get(timeout=WAIT).code == "peer_measurement_not_allowed"
        assert seen == [M_CLIENT]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_peer_of_refuses_a_connection_no_admission_context_made() -> None:
    for what in ({}, {"werkzeug.socket": object()}, None, ssl.create_default_context()):
        with pytest.raises(VerificationError) as e:
            adapters.peer_of(what)
        assert e.value.code == "peer_certificate_missing"
