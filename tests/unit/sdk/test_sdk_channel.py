"""Attested mutual-TLS channel: real TLS 1.3 over 127.0.0.1 between test workloads."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.unit.sdk.sdk_pki import TestCA, measurement_of, now

from veritee.errors import OversizedError, UsageError, VerificationError, VeriteeError
from veritee.sdk import channel
from veritee.sdk.channel import AttestedConnection, AttestedServer, connect, serve

M_A = measurement_of("workload-a")
M_B = measurement_of("workload-b")
M_C = measurement_of("workload-c")
WAIT = 10.0


class Workload:
    def __init__(self, ca: TestCA, measurement: str, **kwargs: Any) -> None:
        self.ca = ca
        self.key, self.cert = ca.workload(measurement, **kwargs)


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def a(ca: TestCA) -> Workload:
    return Workload(ca, M_A)


@pytest.fixture(scope="module")
def b(ca: TestCA) -> Workload:
    return Workload(ca, M_B)


class Harness:
    """A running server plus queues of what its handler saw and whom it refused."""

    def __init__(self) -> None:
        self.refusals: queue.Queue[tuple[tuple[str, int], VeriteeError]] = queue.Queue()
        self.seen: queue.Queue[Any] = queue.Queue()

    def on_refusal(self, addr: tuple[str, int], error: VeriteeError) -> None:
        self.refusals.put((addr, error))

    def refusal(self) -> VeriteeError:
        return self.refusals.get(timeout=WAIT)[1]

    def echo(self, conn: AttestedConnection) -> None:
        assert conn.peer is not None
        self.seen.put(conn.peer)
        conn.send(b"hello " + conn.peer.measurement[:8].encode())
        for msg in conn:
            conn.send(b"echo:" + msg)


@contextlib.contextmanager
def running(
    server_wl: Workload, handler: Any = None, **kwargs: Any
) -> Iterator[tuple[AttestedServer, Harness]]:
    h = Harness()
    kwargs.setdefault("allowed_measurements", {M_A, M_B})
    srv = serve(
        "127.0.0.1",
        0,
        handler or h.echo,
        key=server_wl.key,
        cert=server_wl.cert,
        ca_cert=kwargs.pop("ca_cert", server_wl.ca.cert),
        on_refusal=h.on_refusal,
        **kwargs,
    )
    with srv:
        yield srv, h


def dial(srv: AttestedServer, wl: Workload, **kwargs: Any) -> AttestedConnection:
    kwargs.setdefault("allowed_measurements", {M_A, M_B})
    return connect(
        "127.0.0.1",
        srv.port,
        key=wl.key,
        cert=wl.cert,
        ca_cert=kwargs.pop("ca_cert", wl.ca.cert),
        timeout=WAIT,
        **kwargs,
    )


def test_all_exported() -> None:
    for name in channel.__all__:
        assert hasattr(channel, name)


def test_two_workloads_exchange_messages_both_ways(a: Workload, b: Workload) -> None:
    with running(a) as (srv, h), dial(srv, b) as conn:
        assert conn.peer is not None and conn.peer.measurement == M_A
        assert conn.local.measurement == M_B
        assert conn.recv() == b"hello " + M_B[:8].encode()
        for msg in (b"one", b"", b"\x00" * 100_000):
            conn.send(msg)
            assert conn.recv() == b"echo:" + msg
        server_saw = h.seen.get(timeout=WAIT)
        assert server_saw.measurement == M_B and server_saw.platform == "simulated"
        assert h.refusals.empty()


def test_default_allow_list_is_own_measurement(ca: TestCA, a: Workload, b: Workload) -> None:
    a2 = Workload(ca, M_A)
    with running(a, allowed_measurements=None) as (srv, _h):
        with dial(srv, a2, allowed_measurements=None) as conn:
            assert conn.recv().startswith(b"hello")
        with pytest.raises(VerificationError) as e:
            dial(srv, b, allowed_measurements=None)  # b allows only M_B; server is M_A
        assert e.value.code == "peer_measurement_not_allowed"


def test_client_refuses_unlisted_server(a: Workload, b: Workload) -> None:
    with running(a) as (srv, h):
        with pytest.raises(VerificationError) as e:
            dial(srv, b, allowed_measurements={M_B, M_C})
        assert e.value.code == "peer_measurement_not_allowed"
        assert "allow-list" in str(e.value)
        server_side = h.refusal()
        assert server_side.code == "refused_by_peer"
        assert "peer_measurement_not_allowed" in str(server_side)
        assert h.seen.empty()  # the handler never ran


def test_server_refuses_unlisted_client(a: Workload, b: Workload) -> None:
    with running(a, allowed_measurements={M_A, M_C}) as (srv, h):
        with pytest.raises(VerificationError) as e:
            dial(srv, b)
        assert e.value.code == "refused_by_peer"
        assert "peer_measurement_not_allowed" in str(e.value)
        assert h.refusal().code == "peer_measurement_not_allowed"
        assert h.seen.empty()


def test_platform_and_profile_allow_lists(ca: TestCA, a: Workload) -> None:
    tdx_dev = Workload(ca, M_B, platform="tdx", profile="development")
    with running(a, allowed_platforms={"sev-snp"}) as (srv, h):
        with pytest.raises(VerificationError):
            dial(srv, tdx_dev)
        assert h.refusal().code == "peer_platform_not_allowed"
    with running(a, allowed_platforms={"tdx"}, allowed_profiles={"production"}) as (srv, h):
        with pytest.raises(VerificationError):
            dial(srv, tdx_dev, allowed_platforms={"simulated"}, allowed_profiles={"production"})
        assert h.refusal().code == "peer_profile_not_allowed"
    with running(a, allowed_platforms={"tdx"}, allowed_profiles={"development"}) as (srv, h):
        with dial(
            srv, tdx_dev, allowed_platforms={"simulated"}, allowed_profiles={"production"}
        ) as conn:
            assert conn.recv().startswith(b"hello")


def test_certificate_from_another_ca_refused(ca: TestCA, a: Workload) -> None:
    rogue = Workload(TestCA("rogue CA"), M_B)
    with running(a) as (srv, h):
        # A client certified by another CA (trusting our CA, so only the server can object).
        with pytest.raises(VerificationError) as e:
            dial(srv, rogue, ca_cert=ca.cert)
        assert e.value.code == "refused_by_peer"
        refusal = h.refusal()
        assert refusal.code == "peer_certificate_invalid"
        assert "issuer" in str(refusal)
    with running(rogue, ca_cert=ca.cert) as (srv, h):
        # A server certified by another CA.
        with pytest.raises(VerificationError) as e:
            dial(srv, a)
        assert e.value.code == "peer_certificate_invalid"
        assert "issuer" in str(e.value)


def test_expired_certificate_refused(ca: TestCA, a: Workload) -> None:
    t = now()
    expired = Workload(
        ca, M_B, not_before=t - dt.timedelta(hours=2), not_after=t - dt.timedelta(hours=1)
    )
    with running(a) as (srv, h):
        with pytest.raises(VerificationError) as e:
            dial(srv, expired)
        assert e.value.code == "refused_by_peer"
        refusal = h.refusal()
        assert refusal.code == "peer_certificate_invalid" and "expired" in str(refusal)
    with running(expired) as (srv, h):
        with pytest.raises(VerificationError) as e:
            dial(srv, a)
        assert e.value.code == "peer_certificate_invalid" and "expired" in str(e.value)
        # The server says why its handshakes fail (it said only tls_handshake_failed, issue 18.5).
        refusal = h.refusal()
        assert refusal.code == "own_certificate_expired" and "renew" in str(refusal)


def test_peer_without_admission_claims_refused(ca: TestCA, a: Workload, tmp_path: Path) -> None:
    bare = Workload(ca, M_B, platform=None)  # chains to the CA, but has no platform claim
    with pytest.raises(UsageError) as e:  # our own API refuses to present it ...
        connect("127.0.0.1", 1, key=bare.key, cert=bare.cert, ca_cert=ca.cert)
    assert e.value.code == "not_an_admission_certificate"
    # ... so present it with plain TLS: the server refuses it after the handshake.
    ctx = _raw_client(ca)
    (tmp_path / "c.pem").write_bytes(bare.cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        bare.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    with running(a) as (srv, h):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as raw:
            with ctx.wrap_socket(raw) as tls:
                verdict = tls.recv(1000)
        assert verdict.endswith(b"refuse admission_claim_missing")
        assert h.refusal().code == "admission_claim_missing"
        assert h.seen.empty()


def _raw_client(ca: TestCA, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=ca.cert.public_bytes(serialization.Encoding.PEM).decode())
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def test_client_without_certificate_refused(ca: TestCA, a: Workload) -> None:
    with running(a) as (srv, h):
        ctx = _raw_client(ca)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as raw:
            with ctx.wrap_socket(raw) as tls:  # TLS 1.3: the server objects after its Finished
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    tls.sendall(b"\x00\x00\x00\x01x")
                    if not tls.recv(100):
                        raise ConnectionError("closed")
        assert h.refusal().code == "peer_certificate_missing"
        assert h.seen.empty()


def test_tls_12_refused(ca: TestCA, a: Workload) -> None:
    with running(a) as (srv, h):
        ctx = _raw_client(ca, max_version=ssl.TLSVersion.TLSv1_2)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as raw:
            with pytest.raises(ssl.SSLError):
                ctx.wrap_socket(raw)
        assert h.refusal().code == "tls_handshake_failed"


def test_server_name_checked_when_given(a: Workload, b: Workload) -> None:
    with running(a) as (srv, _h):
        with dial(srv, b, server_name="workload.veritee.internal") as conn:
            assert conn.recv().startswith(b"hello")
        with pytest.raises(VerificationError) as e:
            dial(srv, b, server_name="payments.example")
        assert e.value.code == "peer_certificate_invalid"
        assert "mismatch" in str(e.value).lower()


def test_oversized_frame_refused(a: Workload, b: Workload) -> None:
    errors: queue.Queue[BaseException | bytes] = queue.Queue()

    def handler(conn: AttestedConnection) -> None:
        try:
            errors.put(conn.recv())
            conn.recv()
        except Exception as exc:
            errors.put(exc)

    with running(a, handler=handler, max_message_size=1024) as (srv, _h), dial(srv, b) as conn:
        conn.send(b"x" * 1024)  # exactly the limit: fine
        assert errors.get(timeout=WAIT) == b"x" * 1024
        conn.send(b"x" * 1025)  # the client's own limit is larger; the server refuses
        err = errors.get(timeout=WAIT)
        assert isinstance(err, OversizedError) and "1025" in str(err)
        with pytest.raises(EOFError):  # the server closed the connection
            conn.recv()
    # The sender refuses to send beyond its own limit.
    with running(a) as (srv, _h), dial(srv, b, max_message_size=10) as conn:
        with pytest.raises(OversizedError):
            conn.send(b"y" * 11)


def test_truncated_frame(a: Workload, b: Workload) -> None:
    def handler(conn: AttestedConnection) -> None:
        conn._sock.sendall(b"\x00\x00\x00\x10abc")  # announces 16 bytes, sends 3
        conn.close()

    with running(a, handler=handler) as (srv, _h), dial(srv, b) as conn:
        with pytest.raises(VeriteeError) as e:
            conn.recv()
        assert e.value.code == "truncated_frame"


def test_stop_closes_open_connections(a: Workload, b: Workload) -> None:
    ended = threading.Event()

    def handler(conn: AttestedConnection) -> None:
        conn.settimeout(None)
        try:
            conn.recv()
        finally:
            ended.set()

    with running(a, handler=handler) as (srv, _h):
        conn = dial(srv, b)
        srv.stop()
        assert ended.wait(WAIT)
        with pytest.raises(EOFError):
            conn.recv()
        conn.close()
        with pytest.raises(UsageError):
            srv.start()


def test_update_credentials(ca: TestCA, a: Workload, b: Workload) -> None:
    with running(a) as (srv, _h):
        with dial(srv, b) as conn:
            assert conn.peer is not None and conn.peer.serial_number == a.cert.serial_number
        renewed = ca.issue(a.key.public_key(), measurement=M_A)
        srv.update_credentials(key=a.key, cert=renewed, ca_cert=ca.cert)
        with dial(srv, b) as conn:
            assert conn.peer is not None and conn.peer.serial_number == renewed.serial_number


def test_key_must_match_certificate(a: Workload, b: Workload) -> None:
    with pytest.raises(UsageError) as e:
        serve("127.0.0.1", 0, lambda c: None, key=b.key, cert=a.cert, ca_cert=a.ca.cert)
    assert e.value.code == "credentials_invalid"


def test_bad_allow_list_entries(a: Workload) -> None:
    with pytest.raises(UsageError):
        serve(
            "127.0.0.1",
            0,
            lambda c: None,
            key=a.key,
            cert=a.cert,
            ca_cert=a.ca.cert,
            allowed_measurements={"not-hex"},
        )
    with pytest.raises(UsageError):
        serve(
            "127.0.0.1",
            0,
            lambda c: None,
            key=a.key,
            cert=a.cert,
            ca_cert=a.ca.cert,
            allowed_measurements=M_A,
        )  # a bare string, not a collection


def test_private_key_never_written_in_plaintext(
    a: Workload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = a.key.private_numbers().private_value.to_bytes(32, "big")
    with channel._private_file(b"data") as path:
        if sys.platform == "linux":
            assert path.startswith("/proc/self/fd/")  # anonymous memory file, no name on disk
        assert Path(path).read_bytes() == b"data"
    # The fallback for systems without memfd: an encrypted PEM in a private folder, removed.
    monkeypatch.setattr(sys, "platform", "other")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[bytes] = []
    real_load = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, keyfile: str, password: Any) -> None:
        assert stat_mode(keyfile) == 0o600 and stat_mode(os.path.dirname(keyfile)) == 0o700
        seen.append(Path(keyfile).read_bytes())
        real_load(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    channel._context(True, key=a.key, cert=a.cert, chain=(), ca_cert=a.ca.cert)
    assert seen and b"ENCRYPTED PRIVATE KEY" in seen[0] and secret not in seen[0]
    assert list(tmp_path.iterdir()) == []


def stat_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


def test_with_domain_ca_certificates(tmp_path: Path) -> None:
    """Certificates from the service's domain CA (veritee.domain) work on the channel as is."""
    domain_mod = pytest.importorskip("veritee.domain")
    t = now()
    domain = domain_mod.Domain.create(tmp_path / "domain", now=t)

    def admitted(measurement: str) -> tuple[ec.EllipticCurvePrivateKey, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = domain_mod.issue_admission_certificate(
            domain,
            key.public_key(),
            claims={"measurement": measurement, "platform": "simulated", "profile": "production"},
            now=t,
            lifetime=dt.timedelta(hours=1),
        )
        return key, cert

    (server_key, server_cert), (client_key, client_cert) = admitted(M_A), admitted(M_B)
    h = Harness()
    with serve(
        "127.0.0.1",
        0,
        h.echo,
        key=server_key,
        cert=server_cert,
        ca_cert=domain.ca_certificate,
        allowed_measurements={M_B},
    ) as srv:
        with connect(
            "127.0.0.1",
            srv.port,
            key=client_key,
            cert=client_cert,
            ca_cert=domain.ca_certificate,
            allowed_measurements={M_A},
            timeout=WAIT,
        ) as conn:
            assert conn.recv().startswith(b"hello")
            conn.send(b"ping")
            assert conn.recv() == b"echo:ping"
        assert h.seen.get(timeout=WAIT).measurement == M_B


# --- issue 13.4: platform and profile are checked by default ---------------------------------


def test_simulated_development_peer_claiming_a_production_snp_measurement_is_refused(
    ca: TestCA,
) -> None:
    """A developer's simulated workload can sign any measurement: it claims the production
    SEV-SNP workload's. The default channel policy, given only that measurement, must refuse
    it on both sides, because neither its platform nor its profile is the same."""
    prod = Workload(ca, M_A, platform="sev-snp", profile="production")
    impostor = Workload(ca, M_A, platform="simulated", profile="development")
    with running(prod, allowed_measurements={M_A}) as (srv, h):
        with pytest.raises(VerificationError) as e:  # the impostor itself admits the server
            dial(srv, impostor, allowed_measurements={M_A}, allowed_platforms={"sev-snp"},
                 allowed_profiles={"production"})  # fmt: skip
        assert e.value.code == "refused_by_peer"
        assert h.refusal().code == "peer_platform_not_allowed"
        assert h.seen.empty()
    with running(impostor, allowed_measurements={M_A}) as (srv, h):
        with pytest.raises(VerificationError) as e:
            dial(srv, prod, allowed_measurements={M_A})
        assert e.value.code == "peer_platform_not_allowed"
    same_platform = Workload(ca, M_A, platform="sev-snp", profile="development")
    with running(prod, allowed_measurements={M_A}) as (srv, h):
        with pytest.raises(VerificationError):
            dial(srv, same_platform, allowed_measurements={M_A}, allowed_profiles={"production"})
        assert h.refusal().code == "peer_profile_not_allowed"


def test_a_channel_policy_object_names_what_else_is_allowed(ca: TestCA) -> None:
    snp = Workload(ca, M_A, platform="sev-snp", profile="production")
    tdx = Workload(ca, M_B, platform="tdx", profile="production")
    both = channel.ChannelPolicy.allow(measurements={M_A, M_B}, platforms={"sev-snp", "tdx"})
    with running(snp, allowed_measurements=None, policy=both) as (srv, h):
        with dial(srv, tdx, allowed_measurements=None, policy=both) as conn:
            assert conn.recv().startswith(b"hello")
            assert conn.peer is not None and conn.peer.platform == "sev-snp"
        staging = Workload(ca, M_B, platform="tdx", profile="staging")
        with pytest.raises(VerificationError):
            dial(srv, staging, allowed_measurements=None,
                 policy=channel.ChannelPolicy.allow(measurements={M_A}, platforms={"sev-snp"},
                                                    profiles={"production"}))  # fmt: skip
        assert h.refusal().code == "peer_profile_not_allowed"


def test_policy_and_keywords_do_not_mix(ca: TestCA, a: Workload) -> None:
    with pytest.raises(UsageError):
        serve("127.0.0.1", 0, lambda c: None, key=a.key, cert=a.cert, ca_cert=ca.cert,
              policy=channel.ChannelPolicy.allow(), allowed_measurements={M_A})  # fmt: skip
    with pytest.raises(UsageError):
        serve("127.0.0.1", 0, lambda c: None, key=a.key, cert=a.cert, ca_cert=ca.cert,
              policy={"allowed_measurements": [M_A]})  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize(
    "kw",
    [{"measurements": M_A}, {"platforms": "sev-snp"}, {"profiles": "production"},
     {"profiles": ["root"]}, {"measurements": ["zz"]}, {"measurements": [M_A[:-1]]}],
)  # fmt: skip
def test_malformed_channel_policies_are_usage_errors(kw: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        channel.ChannelPolicy.allow(**kw)


def test_resolve_fills_what_is_left_open(ca: TestCA) -> None:
    from veritee.admission import AdmissionInfo
    from veritee.profiles import Profile

    own = AdmissionInfo.from_certificate(Workload(ca, M_A, platform="tdx", profile="staging").cert)
    p = channel.ChannelPolicy.allow(measurements={M_B}).resolve(own)
    assert p.allowed_measurements == {M_B}
    assert p.allowed_platforms == {"tdx"} and p.allowed_profiles == {Profile.STAGING}
    legacy = AdmissionInfo.from_certificate(Workload(ca, M_A, profile=None).cert)
    assert channel.ChannelPolicy().resolve(legacy).allowed_profiles is None
    with pytest.raises(UsageError):
        channel.ChannelPolicy().check(own, now())


# --- issue 12.14: idle connections do not starve the server -----------------------------------


def _exchange(conn: AttestedConnection) -> None:
    with conn:
        assert conn.recv().startswith(b"hello")
        conn.send(b"ping")
        assert conn.recv() == b"echo:ping"


def test_200_idle_connections_do_not_keep_a_legitimate_peer_out(a: Workload, b: Workload) -> None:
    """200 TCP connections that never start TLS (from 127.0.0.1) once held all 64 slots for
    10 s each. A peer from another address gets in at once; one from the same address as soon
    as the idle handshakes' time (1 s here) has run out, while the 200 are still open."""
    import time

    with running(a, handshake_timeout=1.0) as (srv, h):
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) for _ in range(200)]
        try:
            start = time.monotonic()
            _exchange(dial(srv, b, source_address=("127.0.0.2", 0)))
            assert time.monotonic() - start < 1.0
            assert h.seen.get(timeout=WAIT).measurement == M_B
            # From the flooding address itself: refused while its 4 handshakes are pending,
            # admitted once they have been ended.
            deadline = time.monotonic() + 4.0
            while True:
                try:
                    _exchange(dial(srv, b))
                    break
                except VerificationError:
                    assert time.monotonic() < deadline, "the idle connections still hold the server"
                    time.sleep(0.1)
            assert h.seen.get(timeout=WAIT).measurement == M_B
        finally:
            for s in idle:
                s.close()


def test_a_slow_handshake_is_ended_at_its_deadline(a: Workload) -> None:
    """A client that sends its TLS hello byte by byte still ends within handshake_timeout."""
    import time

    with running(a, handshake_timeout=1.0) as (srv, h):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as raw:
            start = time.monotonic()
            closed = False
            raw.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello record of 512 bytes ...
            while time.monotonic() - start < 5.0:
                try:
                    raw.sendall(b"\x00")  # ... that arrives a byte every 0.3 s
                    raw.settimeout(0.3)
                    if raw.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                    break
            assert closed and time.monotonic() - start < 2.0
        assert h.refusal().code == "tls_handshake_failed"
