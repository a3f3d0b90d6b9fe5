"""veritee.Trust against a real service (uvicorn in a thread): the six calls end to end."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fakes.sdk_service import ADMITTED, domain_ca_context, running_service

from veritee.domain import Domain
from veritee.errors import SealingError, VerificationError
from veritee.sdk.trust import Trust
from veritee.service.runner import RunningServer, start_in_thread

A, B = ADMITTED
X = "ee" * 48


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[RunningServer, Domain, Path]]:
    """The service over plain HTTP: for development-profile workloads only."""
    with running_service(tmp_path, tls=False) as s:
        yield s


@pytest.fixture
def tls_service(tmp_path: Path) -> Iterator[tuple[RunningServer, Domain, Path]]:
    """The service over HTTPS (its certificate from the domain CA), as workloads above
    development must reach it."""
    with running_service(tmp_path, tls=True) as s:
        yield s


def _trust(service: tuple[RunningServer, Domain, Path], tmp_path: Path, m: str, **kw: Any) -> Trust:
    server, domain, sim = service
    return Trust(
        server.url,
        domain.ca_pem,
        platform="simulated",
        store=tmp_path / f"store-{m[:4]}",
        measurement=m,
        platform_dir=sim,
        **kw,
    )


def test_seal_unseal_and_other_measurement(service: Any, tmp_path: Path) -> None:
    a, b = _trust(service, tmp_path, A), _trust(service, tmp_path, B)
    blob = a.seal(b"state")
    assert a.unseal(blob) == b"state"
    with pytest.raises(SealingError):
        b.unseal(blob)


def test_domain_sealed_state_survives_an_upgrade_over_https(
    tls_service: Any, tmp_path: Path
) -> None:
    """Production workloads, real TLS: version A seals with the domain-released key, version B
    (the policy admits both) opens it; a staging instance of A does not."""
    a = _trust(tls_service, tmp_path, A, profile="production", sealing="domain")
    b = _trust(tls_service, tmp_path, B, profile="production", sealing="domain")
    blob = a.seal(b"flaskr.sqlite", context=b"db")
    assert b.unseal(blob, context=b"db") == b"flaskr.sqlite"
    staging = Trust(tls_service[0].url, tls_service[1].ca_pem, platform="simulated", measurement=A,
                    profile="staging", platform_dir=tls_service[2], store=tmp_path / "staging",
                    sealing="domain")  # fmt: skip
    with pytest.raises(SealingError):
        staging.unseal(blob, context=b"db")
    for t in (a, b, staging):
        t.close()


def test_renewal_reaches_a_running_server(service: Any, tmp_path: Path) -> None:
    a, b = _trust(service, tmp_path, A), _trust(service, tmp_path, B)
    serials: list[int] = []

    def handler(conn: Any) -> None:
        conn.send(conn.recv())

    srv = b.serve("127.0.0.1", 0, handler, allowed_measurements={A})
    with a.connect("127.0.0.1", srv.port, allowed_measurements={B}) as conn:
        conn.send(b"one")
        assert conn.recv() == b"one"
        serials.append(conn.peer.serial_number)
    renewed = b.certify(force=True)
    with a.connect("127.0.0.1", srv.port, allowed_measurements={B}) as conn:
        conn.send(b"two")
        assert conn.recv() == b"two"
        serials.append(conn.peer.serial_number)
    assert serials[0] != serials[1] == renewed.serial_number
    a.close()
    b.close()


def test_unlisted_peer_refused_by_both_sides(service: Any, tmp_path: Path) -> None:
    a, b = _trust(service, tmp_path, A), _trust(service, tmp_path, B)
    done = threading.Event()
    srv = b.serve("127.0.0.1", 0, lambda c: done.set(), allowed_measurements={X})
    with pytest.raises(VerificationError):
        a.connect("127.0.0.1", srv.port, allowed_measurements={B})
    assert not done.is_set()
    a.close()
    b.close()


def test_get_secret_and_logger(tls_service: Any, tmp_path: Path) -> None:
    server, domain, _ = tls_service
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    httpx.put(f"{server.url}/v1/admin/secrets/db/password", headers=admin, json={
        "value": base64.b64encode(b"hunter2").decode(),
        "policy": {"allOf": [{"claim": "measurement", "equals": A}]}},
        verify=domain_ca_context(domain)).raise_for_status()  # fmt: skip
    a, b = _trust(tls_service, tmp_path, A, profile="production"), _trust(tls_service, tmp_path, B)
    assert a.get_secret("db/password") == b"hunter2"
    with pytest.raises(VerificationError) as e:
        b.get_secret("db/password")
    assert e.value.reasons  # type: ignore[attr-defined]
    a.logger.info("marker-7d1f secret stuff")
    a.workload_log.close()
    stored = b"".join(p.read_bytes() for p in (a.store_path / "logs").rglob("*") if p.is_file())
    assert stored and b"marker-7d1f" not in stored


def test_release_with_admission_certificate(service: Any, tmp_path: Path) -> None:
    """A certified workload gets a secret with its certificate + proof of possession."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, x25519

    from veritee.binding import spki_der
    from veritee.keybroker.release import possession_message, x25519_jwk

    server, domain, _ = service
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    httpx.put(
        f"{server.url}/v1/admin/secrets/app/key",
        headers=admin,
        json={
            "value": base64.b64encode(b"k3y").decode(),
            "policy": {"allOf": [{"claim": "measurement", "equals": A}]},
        },
    ).raise_for_status()
    a, b = _trust(service, tmp_path, A), _trust(service, tmp_path, B)
    assert a.get_secret("app/key", with_certificate=True) == b"k3y"
    with pytest.raises(VerificationError) as e:  # b's certificate carries another measurement
        b.get_secret("app/key", with_certificate=True)
    assert "release_denied" == e.value.code

    # a proof signed by another key than the certified one is refused, and audited
    cert_pem = a.keystore.certificate().public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[union-attr]
    nonce = bytes.fromhex(httpx.post(server.url + "/v1/challenge").json()["nonce"])
    eph = x25519.X25519PrivateKey.generate()
    wrong = ec.generate_private_key(ec.SECP256R1())
    sig = wrong.sign(
        possession_message("app/key", nonce, spki_der(eph.public_key())), ec.ECDSA(hashes.SHA256())
    )
    body = {
        "certificate": cert_pem,
        "nonce": nonce.hex(),
        "public_key": x25519_jwk(eph.public_key()),
        "signature": base64.b64encode(sig).decode(),
    }
    r = httpx.post(f"{server.url}/v1/secrets/app/key/release-certified", json=body)
    assert r.status_code == 403
    assert "possession_not_proven" in {x["code"] for x in r.json()["reasons"]}
    # a certificate from another domain is refused
    other = Domain.create(tmp_path / "other", now=dt.datetime.now(dt.UTC))
    body["certificate"] = other.ca_pem.decode()
    body["nonce"] = httpx.post(server.url + "/v1/challenge").json()["nonce"]
    r = httpx.post(f"{server.url}/v1/secrets/app/key/release-certified", json=body)
    assert r.status_code == 403 and r.json()["code"] == "certificate_untrusted"
    for garbage in ("not pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        body["certificate"] = garbage
        r = httpx.post(f"{server.url}/v1/secrets/app/key/release-certified", json=body)
        assert r.status_code == 400
    entries = httpx.get(
        f"{server.url}/v1/admin/audit", params={"limit": 1000}, headers=admin
    ).json()["entries"]
    via_cert = [e for e in entries if e["details"].get("via") == "admission_certificate"]
    assert {e["kind"] for e in via_cert} == {"secret.release", "secret.deny"}
    assert all("k3y" not in json.dumps(e) for e in entries)
    a.close()
    b.close()


def test_rolled_back_key_store_does_not_get_its_superseded_key_certified(
    service: Any, tmp_path: Path
) -> None:
    """Issue 13.1: the host keeps a copy of the key store, lets the workload rotate its key,
    then puts the copy back. The old key comes back with the store (sealing cannot tell), but
    the service must not certify it again."""
    a = _trust(service, tmp_path, A)
    a.certify()
    snapshot = a.keystore.path.read_bytes()
    old = a.keystore.private_key()
    assert old is not None
    a.keystore.rotate_key()
    a.certify()
    a.close()
    a.keystore.path.write_bytes(snapshot)  # the host's move
    again = _trust(service, tmp_path, A)  # the workload restarts on the old store
    restored = again.keystore.private_key()
    assert restored is not None and restored.private_numbers() == old.private_numbers()
    with pytest.raises(VerificationError) as e:
        again.certify(force=True)
    assert e.value.code == "key_superseded"
    # Recovery: a new key (the next generation of this store) is certified; the old never is.
    again.keystore.rotate_key()
    cert = again.certify()
    assert cert.public_key().public_numbers() != old.public_key().public_numbers()
    again.close()


class _HostOnThePath(httpx.BaseTransport):
    """Relays everything to the real service, but answers each release with a secret of its
    own choosing, encrypted to the workload's public key (which it sees in the request)."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        from cryptography.hazmat.primitives.asymmetric import x25519

        from veritee.keybroker.wrap import b64url_decode, hpke_seal, release_info

        response = self._inner.handle_request(request)
        if not request.url.path.endswith("/release") or response.status_code != 200:
            return response
        response.read()
        sent, envelope = json.loads(request.content), response.json()
        public = x25519.X25519PublicKey.from_public_bytes(
            b64url_decode(sent["public_key"]["x"], "x")
        )
        info = release_info(envelope["name"], envelope["version"], bytes.fromhex(sent["nonce"]))
        envelope["ciphertext"] = base64.b64encode(
            hpke_seal(b"chosen-by-the-host", public, info=info)
        ).decode()
        return httpx.Response(200, json=envelope)

    def close(self) -> None:
        self._inner.close()


def test_a_host_on_the_path_cannot_hand_the_workload_a_secret(service: Any, tmp_path: Path) -> None:
    """Issue 13.5: the release envelope is the key broker's, signed; a substituted one is
    refused instead of handed to the application."""
    server, domain, sim = service
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    httpx.put(
        f"{server.url}/v1/admin/secrets/db/password",
        headers=admin,
        json={
            "value": base64.b64encode(b"hunter2").decode(),
            "policy": {"allOf": [{"claim": "measurement", "equals": A}]},
        },
    ).raise_for_status()
    honest = _trust(service, tmp_path, A)
    assert honest.get_secret("db/password") == b"hunter2"
    honest.close()
    a = Trust(
        server.url,
        domain.ca_pem,
        platform="simulated",
        store=tmp_path / "store-mitm",
        measurement=A,
        platform_dir=sim,
        transport=_HostOnThePath(),
    )
    with pytest.raises(VerificationError) as e:
        a.get_secret("db/password")
    assert e.value.code == "envelope_signature_invalid"
    a.close()


def test_plain_http_is_refused_outside_development(service: Any, tmp_path: Path) -> None:
    from veritee.errors import UsageError

    for profile in ("testing", "staging", "production"):
        with pytest.raises(UsageError) as e:
            _trust(service, tmp_path, A, profile=profile)
        assert e.value.code == "service_url_insecure"
    _trust(service, tmp_path, A, profile="development").close()


def test_a_rolled_back_key_store_does_not_open_with_a_service_counter(
    service: Any, tmp_path: Path
) -> None:
    """Issue 13.1, the optional freshness counter held by the service: the host puts back an
    older key store (its items, not only its key); with freshness='service' it is refused."""
    from veritee.errors import SealingError

    a = _trust(service, tmp_path, A, freshness="service")
    a.certify()
    a.keystore.put("balance", b"100")
    assert a.keystore.fresh
    snapshot = a.keystore.path.read_bytes()
    a.keystore.put("balance", b"50")
    a.close()
    a.keystore.path.write_bytes(snapshot)  # the host's move
    with pytest.raises(SealingError) as e:
        _trust(service, tmp_path, A, freshness="service")
    assert e.value.code == "keystore_rolled_back"
    # Without the counter the older copy opens (sealing alone cannot tell).
    stale = _trust(service, tmp_path, A)
    assert stale.keystore.get("balance") == b"100"
    stale.close()


def test_the_counter_follows_rotation_and_restarts(service: Any, tmp_path: Path) -> None:
    a = _trust(service, tmp_path, A, freshness="service")
    a.keystore.put("before-certify", b"x")  # no certificate yet: tied at certify()
    a.certify()
    assert a.keystore.fresh
    a.keystore.rotate_key()  # the new key has no certificate: the step waits
    assert not a.keystore.fresh
    a.certify()
    assert a.keystore.fresh
    a.keystore.put("after", b"y")
    a.close()
    again = _trust(service, tmp_path, A, freshness="service")
    assert again.keystore.fresh and again.keystore.get("after") == b"y"
    again.close()


class _ForgedCounter(httpx.BaseTransport):
    """Relays to the real service but answers counter reads with 0 (a rolled-back value)."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if not request.url.path.endswith("/keystores/counter") or response.status_code != 200:
            return response
        response.read()
        answer = response.json()
        answer["counter"] = 0
        return httpx.Response(200, json=answer)

    def close(self) -> None:
        self._inner.close()


def test_a_forged_counter_answer_is_refused(service: Any, tmp_path: Path) -> None:
    server, domain, sim = service
    a = _trust(service, tmp_path, A, freshness="service")
    a.certify()
    a.keystore.put("k", b"v")
    a.close()
    with pytest.raises(VerificationError) as e:
        Trust(server.url, domain.ca_pem, platform="simulated", store=tmp_path / f"store-{A[:4]}",
              measurement=A, platform_dir=sim, transport=_ForgedCounter(), freshness="service")  # fmt: skip
    assert e.value.code == "counter_answer_invalid"


def test_platform_freshness_needs_a_platform_counter(service: Any, tmp_path: Path) -> None:
    from veritee.errors import UsageError

    with pytest.raises(UsageError) as e:
        _trust(service, tmp_path, A, freshness="platform")  # the simulated platform has none
    assert e.value.code == "counter_unavailable"


def test_a_production_log_leaves_the_sdk_loggers_as_they_are(
    tls_service: Any, tmp_path: Path
) -> None:
    """Announcing the tenant key (VT-0104) once set veritee.sdk's propagation off for the whole
    process: caplog, and the application's own handlers, lost every SDK record after it."""
    import logging

    from cryptography.hazmat.primitives.asymmetric import x25519

    t = _trust(tls_service, tmp_path, A, profile="production",
               tenant_key=x25519.X25519PrivateKey.generate().public_key())  # fmt: skip
    t.certify()
    t.logger.info("x")
    assert logging.getLogger("veritee.sdk").propagate and logging.getLogger("veritee").propagate
    t.close()


class _Hello:
    """A tiny ASGI app (issue 18 item 6): answers every request, records the paths."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})


def test_an_http_app_and_its_clients_run_unchanged_over_admitted_tls(
    service: Any, tmp_path: Path
) -> None:
    """uvicorn serves the app with Trust.server_ssl_context; httpx reaches it with
    Trust.httpx_client. Clients the policy does not allow, or the domain revoked, never reach
    the app; a client refuses a server its policy does not allow before sending anything."""
    import queue

    from veritee import ChannelPolicy

    server, domain, _sim = service
    app, refusals = _Hello(), queue.Queue[VerificationError]()
    b = _trust(service, tmp_path, B)
    ctx = b.server_ssl_context(
        policy=ChannelPolicy.allow(measurements={A}), on_refusal=refusals.put
    )
    assert b.renewal is not None  # the context follows the renewed certificate
    web = start_in_thread(app, ssl_context_factory=lambda config, default: ctx)
    try:
        a1 = _trust(service, tmp_path / "1", A)
        a2 = _trust(service, tmp_path / "2", A)
        # revoked before anyone fetched the CRL (the SDK caches it for 30 s)
        serial = format(a2.certify().serial_number, "x")
        httpx.post(server.url + "/v1/admin/revocations", json={"serial": serial, "reason": "test"},
                   headers={"Authorization": f"Bearer {domain.admin_token()}"}).raise_for_status()  # fmt: skip
        to_b = ChannelPolicy.allow(measurements={B})
        with pytest.raises(httpx.TransportError), a2.httpx_client(policy=to_b) as c:
            c.get(web.url + "/revoked")
        assert refusals.get(timeout=10).code == "certificate_revoked"

        with a1.httpx_client(policy=to_b, base_url=web.url) as c:
            r = c.get("/items")
        assert (r.status_code, r.text) == (200, "hello")

        b2 = _trust(service, tmp_path / "3", B)  # admitted by the domain, not by this app
        with pytest.raises(httpx.TransportError), b2.httpx_client() as c:
            c.get(web.url + "/not-allowed")
        assert refusals.get(timeout=10).code == "peer_measurement_not_allowed"

        # a1's default policy: a server running A (its own measurement); this one runs B
        with pytest.raises(VerificationError) as e, a1.httpx_client() as c:
            c.get(web.url + "/never-sent")
        assert e.value.code == "peer_measurement_not_allowed"
        assert app.paths == ["/items"]
        for t in (a1, a2, b2):
            t.close()
    finally:
        web.stop()
        b.close()
