"""Attested channels: mutual TLS 1.3 between workloads of one domain, plus a measurement check.

How a connection is admitted, on both sides alike:

1. TLS 1.3 only (RFC 8446), both sides present their admission certificate and both require one
   from the peer (``CERT_REQUIRED``). The peer chain must lead to the domain CA (the only trust
   anchor loaded; ``VERIFY_X509_STRICT``), be valid now, and carry the right extended key usage
   (OpenSSL's default purpose: ``serverAuth`` for servers, ``clientAuth`` for clients).
2. Host names: all admission certificates carry the same SAN (``workload.veritee.internal`` by
   default), so a host name says nothing about *which* workload answers. The client therefore does
   not check host names unless ``server_name`` is given (then SNI is sent and the SAN must match);
   who the peer is, is decided by step 3.
3. Each side parses the peer's admission certificate (:class:`AdmissionInfo`, strict) and checks
   its measurement, platform and profile against its own :class:`ChannelPolicy`
   (:func:`verify_peer`), and, given ``revocations``, that the domain has not revoked it
   (:mod:`veritee.sdk.revocation`; :class:`veritee.sdk.trust.Trust` checks the service's CRL).
   What the policy leaves open means "the same as mine": by default a
   peer runs the same measurement on the same platform in the same profile.
4. Each side then sends a one-frame verdict (accept, or refuse with the reason code) and waits
   for the peer's. Only when both accepted does :func:`connect` return, or the server call its
   handler. A refusal raises :class:`VerificationError` on the refusing side (e.g.
   ``peer_measurement_not_allowed``) and ``refused_by_peer`` on the other.

Handshakes are bounded (issue 12 item 14): the server gives a connection ``handshake_timeout``
seconds in all (3 by default) for the TLS handshake and admission, and takes at most
``max_handshakes_per_address`` handshakes at a time from one peer address (4 by default; more are
closed at once). Idle TCP connections from one host then hold at most a few slots, for a few
seconds, and cannot keep other peers out of the ``max_connections`` slots.

Messages are frames: a 4-byte big-endian length, then the payload; frames larger than
``max_message_size`` are refused in both directions (:class:`OversizedError`), and an oversized
incoming frame closes the connection.

The private key never touches a disk in plaintext: Python's ``ssl`` loads keys only from files, so
the key is serialized as PKCS#8 encrypted under a random one-time password into an anonymous
in-memory file (Linux ``memfd_create``, opened through ``/proc/self/fd``), loaded with that
password, and the file is closed at once. Where ``memfd_create`` is missing, the encrypted PEM goes
to a 0600 file in a fresh 0700 temporary folder, removed right after loading.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.admission import AdmissionInfo, normalize_measurement, verify_peer
from veritee.errors import (
    MalformedError,
    OversizedError,
    UsageError,
    VerificationError,
    VeriteeError,
)
from veritee.profiles import Profile
from veritee.sdk.revocation import RevocationCheck

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_HANDSHAKES_PER_ADDRESS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "AttestedConnection",
    "AttestedServer",
    "ChannelPolicy",
    "admit_peer",
    "configure_context",
    "connect",
    "handshake_error",
    "resolve_policy",
    "serve",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: Seconds a server gives a connection for the TLS handshake and admission together.
DEFAULT_HANDSHAKE_TIMEOUT = 3.0
#: Handshakes a server takes at a time from one peer address.
DEFAULT_MAX_HANDSHAKES_PER_ADDRESS = 4
_DROP_LOG_SECONDS = 10.0
_LENGTH = struct.Struct(">I")
_ACCEPT = b"veritee-channel-v1 accept"
_REFUSE = b"veritee-channel-v1 refuse "
_MAX_VERDICT = 256

Handler = Callable[["AttestedConnection"], None]
RefusalCallback = Callable[[tuple[str, int], VeriteeError], None]


@dataclass(frozen=True)
class ChannelPolicy:
    """Who may be on the other end: the measurements, platforms and profiles allowed.

    A field left ``None`` means "the same as this workload": its own admission certificate's
    measurement, platform and profile. So by default a peer must run the same code on the same
    platform in the same profile, and a simulated development workload that claims a production
    SEV-SNP measurement is refused. Name what else you allow::

        ChannelPolicy.allow(measurements={m1, m2}, platforms={"sev-snp", "tdx"},
                            profiles={"production"})

    There is no "any platform" or "any profile": list them.
    """

    allowed_measurements: frozenset[str] | None = None
    allowed_platforms: frozenset[str] | None = None
    allowed_profiles: frozenset[Profile] | None = None

    @classmethod
    def allow(
        cls,
        *,
        measurements: Iterable[str] | None = None,
        platforms: Iterable[str] | None = None,
        profiles: Iterable[Profile | str] | None = None,
    ) -> ChannelPolicy:
        """A policy from collections of strings (normalized; ``None``: the same as mine)."""
        for what, value in (("measurements", measurements), ("platforms", platforms),
                            ("profiles", profiles)):  # fmt: skip
            if isinstance(value, str | bytes):
                raise UsageError(f"allowed {what} are a collection of strings, not a single string")
        return cls(
            allowed_measurements=None
            if measurements is None
            else frozenset(normalize_measurement(m) for m in measurements),
            allowed_platforms=None if platforms is None else frozenset(str(p) for p in platforms),
            allowed_profiles=None
            if profiles is None
            else frozenset(
                p if isinstance(p, Profile) else Profile.parse(str(p)) for p in profiles
            ),
        )

    @classmethod
    def build(
        cls,
        own: AdmissionInfo,
        allowed_measurements: Iterable[str] | None,
        allowed_platforms: Iterable[str] | None,
        allowed_profiles: Iterable[Profile | str] | None,
    ) -> ChannelPolicy:
        """:meth:`allow` then :meth:`resolve` for ``own`` (the keywords of connect/serve)."""
        return cls.allow(
            measurements=allowed_measurements,
            platforms=allowed_platforms,
            profiles=allowed_profiles,
        ).resolve(own)

    def resolve(self, own: AdmissionInfo) -> ChannelPolicy:
        """Fill every field left ``None`` from this workload's own admission claims.

        A certificate of an earlier build may carry no profile; then, and only then, the
        profile is not checked (with a warning) unless the policy names profiles.
        """
        profiles = self.allowed_profiles
        if profiles is None and own.profile is not None:
            profiles = frozenset({own.profile})
        elif profiles is None:
            log.warning("attested channel: own certificate carries no profile; peers' profiles "
                        "are not checked (certify again to get one)")  # fmt: skip
        return ChannelPolicy(
            allowed_measurements=self.allowed_measurements
            if self.allowed_measurements is not None
            else frozenset({own.measurement}),
            allowed_platforms=self.allowed_platforms
            if self.allowed_platforms is not None
            else frozenset({own.platform}),
            allowed_profiles=profiles,
        )

    def check(self, peer: AdmissionInfo, at: dt.datetime) -> None:
        """Raise :class:`VerificationError` unless ``peer`` is allowed (resolved policies only)."""
        if self.allowed_measurements is None or self.allowed_platforms is None:
            raise UsageError("resolve the channel policy against this workload's certificate first")
        verify_peer(
            peer,
            allowed_measurements=self.allowed_measurements,
            allowed_platforms=self.allowed_platforms,
            allowed_profiles=self.allowed_profiles,
            at=at,
        )


def _policy(
    own: AdmissionInfo,
    policy: ChannelPolicy | None,
    allowed_measurements: Iterable[str] | None,
    allowed_platforms: Iterable[str] | None,
    allowed_profiles: Iterable[Profile | str] | None,
) -> ChannelPolicy:
    """The resolved policy of connect/serve: ``policy``, or the ``allowed_*`` keywords."""
    if policy is None:
        return ChannelPolicy.build(own, allowed_measurements, allowed_platforms, allowed_profiles)
    if not isinstance(policy, ChannelPolicy):
        raise UsageError("policy must be a ChannelPolicy")
    if (allowed_measurements, allowed_platforms, allowed_profiles) != (None, None, None):
        raise UsageError("give either policy= or the allowed_* keywords, not both")
    return policy.resolve(own)


# --- TLS contexts -------------------------------------------------------------------------------


@contextlib.contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open holding ``data``, gone when the block ends (see module doc)."""
    if sys.platform == "linux" and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("veritee-tls", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    folder = tempfile.mkdtemp(prefix="veritee-tls-")  # 0700
    fd, path = tempfile.mkstemp(dir=folder)  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.rmdir(folder)


def _context(
    server_side: bool,
    *,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    ca_cert: x509.Certificate,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    return configure_context(ctx, server_side, key=key, cert=cert, chain=chain, ca_cert=ca_cert)


def configure_context(
    ctx: ssl.SSLContext,
    server_side: bool,
    *,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    ca_cert: x509.Certificate,
) -> ssl.SSLContext:
    """Set up ``ctx`` (made for ``server_side``) as module doc step 1 says: TLS 1.3, the peer's
    certificate required and chained to ``ca_cert`` only, ours loaded without a plaintext key
    on disk. Raises :class:`UsageError` ``credentials_invalid``."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.check_hostname = False  # see module doc, step 2; connect() turns it on with server_name
    if server_side:
        ctx.num_tickets = 0  # no resumption: every connection shows its certificate afresh
    ctx.load_verify_locations(cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode())
    password = secrets.token_bytes(32)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *chain))
    try:
        with _private_file(cert_pem) as cert_path, _private_file(key_pem) as key_path:
            ctx.load_cert_chain(cert_path, key_path, password=password)
    except ssl.SSLError as exc:
        raise UsageError(
            f"cannot use this key and certificate for TLS: {exc.reason or exc}",
            code="credentials_invalid",
        ) from None
    return ctx


def resolve_policy(
    cert: x509.Certificate, policy: ChannelPolicy | None
) -> tuple[AdmissionInfo, ChannelPolicy]:
    """This workload's admission claims (from its certificate ``cert``) and ``policy`` (None:
    the default) resolved against them (:meth:`ChannelPolicy.resolve`)."""
    own = _own_info(cert)
    return own, _policy(own, policy, None, None, None)


def _own_info(cert: x509.Certificate) -> AdmissionInfo:
    try:
        return AdmissionInfo.from_certificate(cert)
    except VerificationError as exc:
        raise UsageError(
            f"own certificate is not an admission certificate: {exc.message}",
            code="not_an_admission_certificate",
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def handshake_error(exc: OSError, who: str) -> VerificationError:
    """The refusal a failed TLS handshake with ``who`` means (``peer_certificate_invalid``,
    ``peer_certificate_missing`` or ``tls_handshake_failed``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return VerificationError(
            f"{who} certificate rejected: {_reason(exc)}", code="peer_certificate_invalid"
        )
    reason = _reason(exc)
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in reason.upper():
        return VerificationError(f"{who} presented no certificate", code="peer_certificate_missing")
    return VerificationError(
        f"TLS handshake with {who} failed: {reason}", code="tls_handshake_failed"
    )


# --- the connection -----------------------------------------------------------------------------


class AttestedConnection:
    """An admitted mutual-TLS connection carrying length-prefixed messages.

    ``peer`` holds the peer's admission claims. ``send``/``recv`` each take a lock so frames never
    interleave; one thread should not send while another receives (OpenSSL does not promise that).
    """

    def __init__(
        self,
        sock: ssl.SSLSocket,
        *,
        local: AdmissionInfo,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._sock = sock
        self.local = local
        self.peer: AdmissionInfo | None = None
        self.max_message_size = max_message_size
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._closed = False
        try:
            name = sock.getpeername()
            self.peer_address: tuple[str, int] = (str(name[0]), int(name[1]))
        except OSError:
            self.peer_address = ("", 0)

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def send(self, data: bytes) -> None:
        """Send one message; :class:`OversizedError` above ``max_message_size``."""
        if len(data) > self.max_message_size:
            raise OversizedError(
                f"message of {len(data)} bytes exceeds the channel limit {self.max_message_size}",
                field="message",
            )
        with self._send_lock:
            self._sock.sendall(_LENGTH.pack(len(data)) + bytes(data))

    def recv(self) -> bytes:
        """Receive one message.

        Raises :class:`EOFError` if the peer closed the connection between messages,
        :class:`MalformedError` (``truncated_frame``) if it closed inside one, and
        :class:`OversizedError` (closing the connection) if the peer announces a frame larger
        than ``max_message_size``. Timeouts raise :class:`TimeoutError`.
        """
        with self._recv_lock:
            header = self._read_exact(_LENGTH.size, at_boundary=True)
            (n,) = _LENGTH.unpack(header)
            if n > self.max_message_size:
                self.close()
                raise OversizedError(
                    f"peer sent a frame of {n} bytes, limit {self.max_message_size}; "
                    "connection closed",
                    field="frame length",
                    offset=0,
                )
            return self._read_exact(n, at_boundary=False)

    def __iter__(self) -> Iterator[bytes]:
        """Messages until the peer closes the connection."""
        while True:
            try:
                yield self.recv()
            except EOFError:
                return

    def _read_exact(self, n: int, *, at_boundary: bool) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._sock.recv_into(view[got:], n - got)
            if k == 0:
                if at_boundary and got == 0:
                    raise EOFError("the peer closed the attested channel")
                raise MalformedError(
                    f"connection closed inside a frame ({got} of {n} bytes)",
                    code="truncated_frame",
                    field="frame",
                )
            got += k
        return bytes(buf)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def __enter__(self) -> AttestedConnection:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def admit_peer(
    der: bytes | None,
    policy: ChannelPolicy,
    who: str,
    revocations: RevocationCheck | None = None,
) -> AdmissionInfo:
    """Step 3 of the module doc for the peer certificate ``der`` (DER, as
    ``getpeercert(binary_form=True)`` gives it; its chain was checked by the handshake): its
    admission claims, if ``policy`` (resolved) allows them now and ``revocations`` (if given)
    does not list it. Raises :class:`VerificationError` (``peer_certificate_missing``, the codes
    of :func:`veritee.admission.verify_peer`, ``certificate_revoked``, ...)."""
    if not der:
        raise VerificationError(f"{who} presented no certificate", code="peer_certificate_missing")
    peer = AdmissionInfo.from_der(der)
    now = dt.datetime.now(dt.UTC)
    policy.check(peer, now)
    if revocations is not None:
        revocations.check(peer.serial_number, now)
    return peer


def _admit(
    conn: AttestedConnection,
    policy: ChannelPolicy,
    who: str,
    revocations: RevocationCheck | None = None,
) -> AttestedConnection:
    """Steps 3 and 4 of the module doc; closes ``conn`` and raises if either side refuses."""
    refusal: VerificationError | None = None
    try:
        conn.peer = admit_peer(conn._sock.getpeercert(binary_form=True), policy, who, revocations)
    except VerificationError as exc:
        refusal = exc
    try:
        verdict = _ACCEPT if refusal is None else _REFUSE + refusal.code.encode()[:64]
        conn._sock.sendall(_LENGTH.pack(len(verdict)) + verdict)
        if refusal is not None:
            raise refusal
        saved, conn.max_message_size = conn.max_message_size, _MAX_VERDICT
        try:
            answer = conn.recv()
        finally:
            conn.max_message_size = saved
    except VerificationError:
        conn.close()
        raise
    except (OSError, EOFError, MalformedError) as exc:
        conn.close()
        if refusal is not None:
            raise refusal from None
        raise VerificationError(
            f"{who} ended the connection during admission: {_reason(exc)}", code="refused_by_peer"
        ) from None
    if answer.startswith(_REFUSE):
        conn.close()
        code = answer[len(_REFUSE) :].decode("ascii", "replace")
        raise VerificationError(f"{who} refused this workload: {code}", code="refused_by_peer")
    if answer != _ACCEPT:
        conn.close()
        raise VerificationError(f"{who} sent no admission verdict", code="refused_by_peer")
    return conn


def connect(
    host: str,
    port: int,
    *,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    policy: ChannelPolicy | None = None,
    allowed_measurements: Iterable[str] | None = None,
    allowed_platforms: Iterable[str] | None = None,
    allowed_profiles: Iterable[Profile | str] | None = None,
    chain: Sequence[x509.Certificate] = (),
    server_name: str | None = None,
    timeout: float | None = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    source_address: tuple[str, int] | None = None,
    revocations: RevocationCheck | None = None,
) -> AttestedConnection:
    """Open an attested connection to ``host:port`` (module doc, steps 1-4).

    ``revocations``: the domain's revoked certificates (:mod:`veritee.sdk.revocation`); a
    revoked server is refused (``certificate_revoked``). None: not checked.

    Who may answer: ``policy`` (a :class:`ChannelPolicy`), or the ``allowed_*`` keywords
    (kept for earlier callers); either way what is left open is "the same as mine".
    ``timeout`` covers connecting, the handshake and admission, and stays set on the connection.
    ``source_address``: the local ``(host, port)`` to connect from (as for
    :func:`socket.create_connection`).
    Raises :class:`VerificationError` if the server is not admitted here or refuses us,
    :class:`UsageError` for unusable own credentials, :class:`OSError` if it cannot connect.
    """
    own = _own_info(cert)
    policy = _policy(own, policy, allowed_measurements, allowed_platforms, allowed_profiles)
    ctx = _context(False, key=key, cert=cert, chain=chain, ca_cert=ca_cert)
    if server_name is not None:
        ctx.check_hostname = True
    who = f"server {host}:{port}"
    raw = socket.create_connection((host, port), timeout=timeout, source_address=source_address)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=server_name, do_handshake_on_connect=False)
    except BaseException:
        raw.close()
        raise
    conn = AttestedConnection(tls, local=own, max_message_size=max_message_size)
    try:
        tls.do_handshake()
    except OSError as exc:
        conn.close()
        error = handshake_error(exc, who)
        log.warning("attested channel to %s:%s refused: %s", host, port, error.code)
        raise error from None
    try:
        return _admit(conn, policy, who, revocations)
    except VerificationError as exc:
        log.warning("attested channel to %s:%s refused: %s", host, port, exc.code)
        raise


# --- the server ---------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A connection in its handshake or admission (see AttestedServer._end_overdue_handshakes)."""

    sock: socket.socket
    deadline: float
    ip: str
    ended: bool = False


class AttestedServer:
    """A threaded server admitting attested peers; ``handler(conn)`` runs in a thread per peer.

    The socket is bound on construction (``port=0`` picks a free port: read ``.port``);
    :meth:`start` begins accepting, :meth:`stop` closes the listener and every open connection.
    Refused peers are logged (address and reason code) and passed to ``on_refusal``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        context: ssl.SSLContext,
        own: AdmissionInfo,
        policy: ChannelPolicy,
        timeout: float | None = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_connections: int = 64,
        on_refusal: RefusalCallback | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_handshakes_per_address: int = DEFAULT_MAX_HANDSHAKES_PER_ADDRESS,
        revocations: RevocationCheck | None = None,
    ) -> None:
        if handshake_timeout <= 0 or max_handshakes_per_address < 1:
            raise UsageError(
                "handshake_timeout must be positive and max_handshakes_per_address at least 1"
            )
        self._handler = handler
        self._revocations = revocations
        self._context = context
        self._own = own
        self._policy = policy
        self._timeout = timeout
        self._max_message_size = max_message_size
        self._on_refusal = on_refusal
        self._slots = threading.BoundedSemaphore(max_connections)
        self._handshake_timeout = handshake_timeout
        self._per_address = max_handshakes_per_address
        # Connections in their handshake or admission, by the thread serving them; and how
        # many each peer address has. The accept loop closes those past their deadline.
        self._pending: dict[threading.Thread, _Pending] = {}
        self._handshaking: dict[str, int] = {}
        self._dropped = 0
        self._dropped_logged = 0.0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._accepter: threading.Thread | None = None
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        self.host = host

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def update_credentials(
        self,
        *,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
        ca_cert: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
    ) -> None:
        """Use a renewed admission certificate for the connections accepted from now on.

        The channel policy stays as it was resolved (what defaulted to our own measurement,
        platform and profile: a renewed certificate for the same workload keeps the same ones).
        """
        own = _own_info(cert)
        ctx = _context(True, key=key, cert=cert, chain=chain, ca_cert=ca_cert)
        with self._lock:
            self._context, self._own = ctx, own

    def start(self) -> AttestedServer:
        """Begin accepting connections (once; a started server ignores further calls)."""
        with self._lock:
            if self._stopping.is_set():
                raise UsageError("a stopped server cannot be started again")
            if self._accepter is None:
                self._accepter = threading.Thread(
                    target=self._accept_loop, name=f"veritee-channel-{self.port}", daemon=True
                )
                self._accepter.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections, and wait up to ``timeout`` for handlers."""
        self._stopping.set()
        accepter = self._accepter
        if accepter is not None:
            accepter.join(timeout)
        self._listener.close()
        with self._lock:
            socks, threads = list(self._open), list(self._threads)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(timeout)

    def __enter__(self) -> AttestedServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            self._end_overdue_handshakes()
            try:
                raw, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            ip = str(addr[0])
            with self._lock:
                busy = self._handshaking.get(ip, 0) >= self._per_address
            if busy or not self._slots.acquire(blocking=False):
                self._drop(raw, ip, "handshakes from this address" if busy else "connections")
                continue
            t = threading.Thread(target=self._serve_one, args=(raw, addr), daemon=True)
            with self._lock:
                self._threads.add(t)
                self._open.add(raw)
                self._pending[t] = _Pending(raw, time.monotonic() + self._handshake_timeout, ip)
                self._handshaking[ip] = self._handshaking.get(ip, 0) + 1
            t.start()

    def _drop(self, raw: socket.socket, ip: str, what: str) -> None:
        """Close a connection over a limit; log it at most every few seconds (a flood)."""
        raw.close()
        now = time.monotonic()
        with self._lock:
            self._dropped += 1
            if now - self._dropped_logged < _DROP_LOG_SECONDS:
                return
            dropped, self._dropped, self._dropped_logged = self._dropped, 0, now
        log.warning(
            "attested channel: too many %s, dropped %d connection(s), last from %s",
            what,
            dropped,
            ip,
        )

    def _end_overdue_handshakes(self) -> None:
        """Shut down connections still in their handshake or admission past their deadline
        (the blocked read in their thread then fails, and the thread frees the slot)."""
        now = time.monotonic()
        with self._lock:
            overdue = [p for p in self._pending.values() if p.deadline <= now and not p.ended]
            for p in overdue:
                p.ended = True
        for p in overdue:
            with contextlib.suppress(OSError):
                p.sock.shutdown(socket.SHUT_RDWR)

    def _handshake_done(self) -> bool:
        """This thread's connection is out of its handshake; True if its time had run out."""
        with self._lock:
            pending = self._pending.pop(threading.current_thread(), None)
            if pending is None:
                return False
            left = self._handshaking.get(pending.ip, 1) - 1
            if left:
                self._handshaking[pending.ip] = left
            else:
                self._handshaking.pop(pending.ip, None)
            return pending.ended

    def _refused(self, addr: tuple[str, int], error: VeriteeError) -> None:
        log.warning("attested channel: refused %s:%s: %s", addr[0], addr[1], error.code)
        if self._on_refusal is not None:
            try:
                self._on_refusal(addr, error)
            except Exception:
                log.exception("attested channel: on_refusal callback failed")

    def _serve_one(self, raw: socket.socket, addr: tuple[str, int]) -> None:
        addr = (str(addr[0]), int(addr[1]))
        conn: AttestedConnection | None = None
        try:
            step = (
                self._handshake_timeout
                if self._timeout is None
                else min(self._timeout, self._handshake_timeout)
            )
            raw.settimeout(step)
            with self._lock:
                ctx, own = self._context, self._own
            who = f"client {addr[0]}:{addr[1]}"
            try:
                tls = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
                with self._lock:
                    self._open.discard(raw)
                    self._open.add(tls)
                    pending = self._pending.get(threading.current_thread())
                    if pending is not None:
                        pending.sock = tls
                conn = AttestedConnection(tls, local=own, max_message_size=self._max_message_size)
                tls.do_handshake()
            except OSError as exc:
                error = handshake_error(exc, who)
                if own.not_after <= dt.datetime.now(dt.UTC):
                    # The client refused us: say why, not only that the handshake failed.
                    error = VerificationError(
                        f"TLS handshake with {who} failed: this server's admission certificate "
                        f"expired at {own.not_after.isoformat()} (renewal: Trust.renew_in_background)",
                        code="own_certificate_expired",
                    )
                self._refused(addr, error)
                return
            try:
                _admit(conn, self._policy, who, self._revocations)
            except VerificationError as exc:
                self._refused(addr, exc)
                return
            if self._handshake_done():  # admitted just as its time ran out: the socket is shut down
                return
            conn.settimeout(self._timeout)
            try:
                self._handler(conn)
            except EOFError:
                pass
            except Exception as exc:  # the handler's own failure: keep serving others
                log.error("attested channel handler failed for %s: %s", addr[0], type(exc).__name__)
        finally:
            self._handshake_done()
            if conn is not None:
                conn.close()
            else:
                raw.close()
            with self._lock:
                self._open.discard(raw)
                if conn is not None:
                    self._open.discard(conn._sock)
                self._threads.discard(threading.current_thread())
            self._slots.release()


def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    policy: ChannelPolicy | None = None,
    allowed_measurements: Iterable[str] | None = None,
    allowed_platforms: Iterable[str] | None = None,
    allowed_profiles: Iterable[Profile | str] | None = None,
    chain: Sequence[x509.Certificate] = (),
    timeout: float | None = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_connections: int = 64,
    on_refusal: RefusalCallback | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    max_handshakes_per_address: int = DEFAULT_MAX_HANDSHAKES_PER_ADDRESS,
    revocations: RevocationCheck | None = None,
) -> AttestedServer:
    """A bound, not yet started :class:`AttestedServer` (use ``with`` or ``.start()``).

    Whom it admits: ``policy`` or the ``allowed_*`` keywords, as for :func:`connect`; a client
    whose certificate ``revocations`` lists is refused (``certificate_revoked``).

    ``timeout`` is set on the connection given to ``handler`` (``conn.settimeout(None)`` to
    block without limit). ``handshake_timeout`` bounds each connection's handshake and admission
    together, and ``max_handshakes_per_address`` the handshakes in progress from one address
    (module doc).
    """
    own = _own_info(cert)
    policy = _policy(own, policy, allowed_measurements, allowed_platforms, allowed_profiles)
    ctx = _context(True, key=key, cert=cert, chain=chain, ca_cert=ca_cert)
    return AttestedServer(
        host,
        port,
        handler,
        context=ctx,
        own=own,
        policy=policy,
        timeout=timeout,
        max_message_size=max_message_size,
        max_connections=max_connections,
        on_refusal=on_refusal,
        handshake_timeout=handshake_timeout,
        max_handshakes_per_address=max_handshakes_per_address,
        revocations=revocations,
    )
