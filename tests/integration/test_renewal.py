"""The admission certificate is renewed in the background (issue 18 item 5), against a real
service (uvicorn in a thread) whose policy issues 10-second certificates: a peer connecting after
the first certificate expired gets a valid one; with the service down the renewal retries with
backoff, says which URL failed and why, and recovers when the service is back."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from veritee.appraisal import load_policy, sign_policy
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.sdk.trust import Trust
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings

A, B = "a1" * 48, "b2" * 48
LIFETIME = 10


class Service:
    """A running service with a policy issuing ``LIFETIME``-second certificates; restartable."""

    def __init__(self, tmp_path: Path) -> None:
        self.trusts: list[Trust] = []
        self.domain = Domain.create(tmp_path / "domain", now=dt.datetime.now(dt.UTC))
        self.sim = tmp_path / "sim"
        self.server: RunningServer = self._run(0)
        key_id = SimulatedPlatform(self.sim, measurement=A).key_id
        doc = {
            "version": 1,
            "name": "renewal",
            "certificate_lifetime": LIFETIME,
            "platforms": {
                "simulated": {
                    "measurements": [A, B],
                    "platform_keys": [key_id],
                    "allow_debug": True,
                }
            },
        }
        httpx.put(self.server.url + "/v1/admin/policy",
                  content=sign_policy(load_policy(json.dumps(doc)), self.domain.policy_key),
                  headers={"Authorization": f"Bearer {self.domain.admin_token()}"}).raise_for_status()  # fmt: skip
        self.url = self.server.url

    def _run(self, port: int) -> RunningServer:
        return start_in_thread(
            create_app(Settings(data_dir=self.domain.path, policy_cache_seconds=0)), port=port
        )

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server = self._run(self.server.port)

    def trust(self, tmp_path: Path, m: str) -> Trust:
        t = Trust(self.url, self.domain.ca_pem, platform="simulated", measurement=m,
                  platform_dir=self.sim, store=tmp_path / f"store-{m[:4]}")  # fmt: skip
        self.trusts.append(t)
        return t


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        for t in svc.trusts:  # their renewal threads and servers end with the test
            t.close()
        svc.stop()


def _echo(conn: Any) -> None:
    conn.send(conn.recv())


def _wait_until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _until_expired(cert: Any) -> None:
    time.sleep(max(0.0, (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds()) + 1.0)


def test_a_peer_connecting_after_the_first_certificate_expired_gets_a_valid_one(
    service: Service, tmp_path: Path
) -> None:
    server_side, client = service.trust(tmp_path, B), service.trust(tmp_path, A)
    srv = server_side.serve("127.0.0.1", 0, _echo, allowed_measurements={A})
    first = server_side.keystore.certificate()
    assert first is not None
    assert (first.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() <= LIFETIME
    _until_expired(first)
    with client.connect("127.0.0.1", srv.port, allowed_measurements={B}) as conn:
        conn.send(b"after expiry")
        assert conn.recv() == b"after expiry"
        assert conn.peer.serial_number != first.serial_number
        assert conn.peer.not_after > dt.datetime.now(dt.UTC)
    renewal = server_side.renewal
    assert renewal is not None and renewal.renewed >= 1 and not renewal.failures


def test_with_the_service_down_renewal_backs_off_names_the_url_and_recovers(
    service: Service, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server_side, client = service.trust(tmp_path, B), service.trust(tmp_path, A)
    renewal = server_side.renew_in_background(first_retry=0.2, max_retry=1.0)
    srv = server_side.serve("127.0.0.1", 0, _echo, allowed_measurements={A})
    first = renewal.certificate
    service.stop()
    with caplog.at_level(logging.WARNING, logger="veritee.sdk"):
        _until_expired(first)
        _wait_until(lambda: len(renewal.failures) >= 5, 10)
    failures = list(renewal.failures)
    assert [f.retry_in for f in failures[:5]] == [0.2, 0.4, 0.8, 1.0, 1.0]
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(failures[:5])]
    assert all(gap >= f.retry_in for gap, f in zip(gaps, failures, strict=False)), gaps
    err = failures[-1].error
    assert err.code == "service_unreachable"
    assert f"POST {service.url}/v1/" in err.message and "ConnectError" in err.message, err.message
    logged = [
        r.getMessage() for r in caplog.records if "certificate_renewal_failed" in r.getMessage()
    ]
    assert len(logged) >= 5 and service.url in logged[0] and "EXPIRED" in logged[-1]
    assert renewal.renewed == 0

    service.restart()
    _wait_until(lambda: renewal.renewed >= 1, 10)
    assert renewal.attempts == 0
    with client.connect("127.0.0.1", srv.port, allowed_measurements={B}) as conn:
        conn.send(b"back")
        assert conn.recv() == b"back"
        assert conn.peer.serial_number == renewal.certificate.serial_number != first.serial_number


def test_an_unreachable_service_is_named_in_the_error(tmp_path: Path) -> None:
    domain = Domain.create(tmp_path / "domain", now=dt.datetime.now(dt.UTC))
    down = "http://127.0.0.1:9"  # discard port: nothing listens
    t = Trust(down, domain.ca_pem, platform="simulated", measurement=A, platform_dir=tmp_path / "sim",
              store=tmp_path / "store")  # fmt: skip
    with pytest.raises(Exception) as e:
        t.certify()
    assert getattr(e.value, "code", None) == "service_unreachable"
    assert f"POST {down}/v1/challenge" in str(e.value) and "ConnectError" in str(e.value)
    t.close()


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})


def test_an_http_server_presents_the_renewed_certificate_after_the_first_expired(
    service: Service, tmp_path: Path
) -> None:
    """Trust.server_ssl_context under uvicorn (issue 18 item 6): the context follows renewal."""
    from veritee import ChannelPolicy

    server_side, client = service.trust(tmp_path, B), service.trust(tmp_path, A)
    ctx = server_side.server_ssl_context(policy=ChannelPolicy.allow(measurements={A}))
    web = start_in_thread(_hello, ssl_context_factory=lambda config, default: ctx)
    try:
        first = server_side.keystore.certificate()
        assert first is not None
        _until_expired(first)
        client.renew_in_background()  # the client's certificate has expired too
        _wait_until(
            lambda: (
                client.keystore.needs_renewal(dt.datetime.now(dt.UTC), dt.timedelta(0)) is False
            ),
            10,
        )
        with client.httpx_client(policy=ChannelPolicy.allow(measurements={B})) as c, \
                c.stream("GET", web.url + "/") as r:  # fmt: skip
            der = r.extensions["network_stream"].get_extra_info("ssl_object").getpeercert(True)
            r.read()
        assert r.text == "hello"
        presented = x509.load_der_x509_certificate(der)
        assert presented.serial_number != first.serial_number
        assert presented.not_valid_after_utc > dt.datetime.now(dt.UTC)
    finally:
        web.stop()
