"""Adapters: run an HTTP app and its clients over admitted mutual TLS, unchanged.

The attested channel (:mod:`veritee.sdk.channel`) carries frames; an HTTP app wants a TLS
context for its server and an HTTP client for its calls. :class:`AdmissionContext` is an
:class:`ssl.SSLContext` that any server or client taking one can use (uvicorn's
``ssl_context_factory``, aiohttp, werkzeug, gunicorn's ``ssl_context`` hook; httpx's
``verify=``), admitting peers exactly as the channel does:

1. TLS 1.3, this workload's admission certificate presented, the peer's required and chained
   only to the domain CA (:func:`veritee.sdk.channel.configure_context`).
2. Right after each handshake, before the server reads a request or the client sends one, the
   peer's admission claims are checked against the :class:`~veritee.sdk.channel.ChannelPolicy`
   and the domain's revocations by the channel's own check
   (:func:`veritee.sdk.channel.admit_peer`). Python's ``ssl`` has no verify callback, so the
   check sits in the context's ``do_handshake`` (of the :class:`ssl.SSLObject` asyncio, uvloop
   and anyio use, and of the :class:`ssl.SSLSocket` blocking servers use): no framework
   middleware is needed, and none can be forgotten. (An ASGI middleware could not do it under
   uvicorn, which shows the app neither the transport nor the client certificate.)
3. A refused client is disconnected at once: the server logs ``https: refused client: <code>``
   and calls ``on_refusal(error)``; the client sees the connection end (as TLS clients see an
   alert), without the reason. A refused server raises
   :class:`~veritee.errors.VerificationError` in the client (httpx passes it through
   unchanged), and no request is sent: ``peer_certificate_invalid`` (not from the domain CA,
   expired), the codes of :func:`~veritee.admission.verify_peer`, ``certificate_revoked``,
   ``tls_handshake_failed`` (e.g. the server refused this client), or
   ``own_certificate_expired`` when this workload's own certificate had expired.

Renewal: :meth:`AdmissionContext.update_credentials` builds a context for the renewed
certificate and swaps it in; each new connection uses the credentials current when it starts
(open ones keep theirs). :class:`veritee.Trust` does this on every renewal for the contexts it
made. Settings changed on the returned context after it is made (ALPN, ciphers) are not
carried into those per-credentials contexts.

Revocations (:class:`~veritee.sdk.revocation.ServiceRevocations`) are fetched from the service
at most every 30 seconds, inside a handshake: in an event loop that fetch holds the loop for as
long as it takes (bounded by the service client's timeout).
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.admission import AdmissionInfo
from veritee.errors import VerificationError
from veritee.sdk.channel import (
    ChannelPolicy,
    admit_peer,
    configure_context,
    handshake_error,
    resolve_policy,
)
from veritee.sdk.revocation import RevocationCheck

__all__ = ["AdmissionContext", "AdmissionRefused", "RefusalCallback", "peer_of"]

log = logging.getLogger(__name__)

#: Called with each refusal of a peer by a server context.
RefusalCallback = Callable[[VerificationError], None]


class AdmissionRefused(ssl.SSLError):
    """A server refused a client after the TLS handshake; ``error`` says why.

    An :class:`ssl.SSLError`, so that asyncio, uvloop and blocking servers treat it as the
    failed handshake it is (closing the connection quietly)."""

    def __init__(self, error: VerificationError) -> None:
        super().__init__(error.message)
        self.error = error


class _Admission:
    """What every connection of one :class:`AdmissionContext` is checked against."""

    def __init__(
        self,
        server_side: bool,
        policy: ChannelPolicy,
        revocations: RevocationCheck | None,
        on_refusal: RefusalCallback | None,
    ) -> None:
        self.server_side = server_side
        self.policy = policy
        self.revocations = revocations
        self.on_refusal = on_refusal
        self.current: ssl.SSLContext | None = None
        self.own: AdmissionInfo | None = None

    def after_handshake(self, tls: ssl.SSLObject | ssl.SSLSocket) -> AdmissionInfo:
        who = "client" if self.server_side else "server"
        try:
            return admit_peer(tls.getpeercert(binary_form=True), self.policy, who, self.revocations)
        except VerificationError as exc:
            raise self.refused(exc) from None
        except Exception as exc:  # fail closed, and as a failed handshake (module doc, 3)
            error = VerificationError(f"admission check of the {who} failed: {type(exc).__name__}",
                                      code="tls_handshake_failed")  # fmt: skip
            raise self.refused(error) from None

    def failed_handshake(self, exc: ssl.SSLError) -> Exception:
        """What a handshake OpenSSL failed (no, expired or foreign certificate) raises: a
        server reports the refusal and raises ``exc``; a client raises the refusal (a
        :class:`VerificationError`). Non-blocking I/O's want-read/write passes through."""
        if isinstance(exc, ssl.SSLWantReadError | ssl.SSLWantWriteError):
            return exc
        who = "client" if self.server_side else "server"
        error = handshake_error(exc, who)
        if self.own is not None and self.own.not_after <= dt.datetime.now(dt.UTC):
            error = VerificationError(
                f"TLS handshake with the {who} failed: this workload's admission certificate "
                f"expired at {self.own.not_after.isoformat()} (renewal: Trust.renew_in_background)",
                code="own_certificate_expired",
            )
        refusal = self.refused(error)
        return exc if self.server_side else refusal

    def refused(self, error: VerificationError) -> Exception:
        if not self.server_side:
            log.warning("https: refused server: %s", error.code)
            return error
        log.warning("https: refused client: %s", error.code)
        if self.on_refusal is not None:
            try:
                self.on_refusal(error)
            except Exception:
                log.exception("https: on_refusal callback failed")
        return AdmissionRefused(error)


def _admission_of(tls: ssl.SSLObject | ssl.SSLSocket) -> _Admission:
    admission = getattr(tls.context, "_veritee_admission", None)
    if not isinstance(admission, _Admission):  # pragma: no cover - only our contexts make these
        raise VerificationError(
            "connection without an admission policy", code="tls_handshake_failed"
        )
    return admission


class _AdmittingObject(ssl.SSLObject):
    """The TLS object of asyncio, uvloop and anyio: admits the peer once the handshake is done."""

    peer: AdmissionInfo | None = None

    def do_handshake(self) -> None:
        admission = _admission_of(self)
        try:
            super().do_handshake()
        except ssl.SSLError as exc:
            raised = admission.failed_handshake(exc)
            if raised is exc:
                raise
            raise raised from None
        self.peer = admission.after_handshake(self)


class _AdmittingSocket(ssl.SSLSocket):
    """The TLS socket of blocking servers and clients: the same, plus ``accept`` on a wrapped
    listening socket (werkzeug) takes the credentials current at that moment."""

    peer: AdmissionInfo | None = None

    def do_handshake(self, block: bool = False) -> None:
        admission = _admission_of(self)
        try:
            super().do_handshake(block)
        except ssl.SSLError as exc:
            raised = admission.failed_handshake(exc)
            if raised is exc:
                raise
            self.close()  # ssl closes the socket on OSError only; a VerificationError is not one
            raise raised from None
        try:
            self.peer = admission.after_handshake(self)
        except BaseException:
            self.close()
            raise

    def accept(self) -> tuple[ssl.SSLSocket, Any]:
        raw, addr = socket.socket.accept(self)
        current = _admission_of(self).current
        assert current is not None
        # As ssl.SSLSocket.accept, with the current credentials instead of self.context's.
        tls = current.wrap_socket(
            raw,
            server_side=True,
            do_handshake_on_connect=getattr(self, "do_handshake_on_connect", True),
            suppress_ragged_eofs=getattr(self, "suppress_ragged_eofs", True),
        )
        return tls, addr


#: WSGI environ keys under which servers pass the connection's socket.
_WSGI_SOCKETS = ("werkzeug.socket", "gunicorn.socket")


def peer_of(connection: Any) -> AdmissionInfo:
    """The admitted peer's claims on a connection an :class:`AdmissionContext` made: its TLS
    socket or object (aiohttp: ``request.transport.get_extra_info("ssl_object")``), or a WSGI
    ``environ`` whose server passes the socket (werkzeug / Flask, gunicorn)::

        measurement = peer_of(request.environ).measurement   # Flask

    Raises :class:`VerificationError` ``peer_certificate_missing`` for anything else (a
    connection no :class:`AdmissionContext` admitted). uvicorn shows an ASGI app no
    connection, so there the app knows only that the client passed the policy."""
    if isinstance(connection, dict):
        connection = next((connection[k] for k in _WSGI_SOCKETS if k in connection), None)
    peer = (
        getattr(connection, "peer", None)
        if isinstance(connection, _AdmittingSocket | _AdmittingObject)
        else None
    )
    if not isinstance(peer, AdmissionInfo):
        raise VerificationError("this connection was not admitted by an AdmissionContext",
                                code="peer_certificate_missing")  # fmt: skip
    return peer


class AdmissionContext(ssl.SSLContext):
    """An :class:`ssl.SSLContext` admitting peers as the attested channel does (module doc).

    Made by :meth:`veritee.Trust.server_ssl_context` / :meth:`~veritee.Trust.client_ssl_context`
    or :meth:`create`. ``policy`` is the resolved :class:`~veritee.sdk.channel.ChannelPolicy`.
    """

    _veritee_admission: _Admission
    _veritee_lock: threading.Lock

    @classmethod
    def create(
        cls,
        server_side: bool,
        *,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
        ca_cert: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        policy: ChannelPolicy | None = None,
        revocations: RevocationCheck | None = None,
        on_refusal: RefusalCallback | None = None,
    ) -> AdmissionContext:
        """A context presenting ``cert`` (with ``key``), admitting peers that chain to
        ``ca_cert`` and that ``policy`` allows (None: this workload's own measurement, platform
        and profile, as for the channel) and ``revocations`` does not list.

        Raises :class:`~veritee.errors.UsageError` for unusable own credentials."""
        _own, resolved = resolve_policy(cert, policy)
        ctx = cls(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        configure_context(ctx, server_side, key=key, cert=cert, chain=chain, ca_cert=ca_cert)
        ctx._veritee_admission = _Admission(server_side, resolved, revocations, on_refusal)
        ctx._veritee_lock = threading.Lock()
        ctx.update_credentials(key=key, cert=cert, ca_cert=ca_cert, chain=chain)
        return ctx

    @property
    def policy(self) -> ChannelPolicy:
        """The resolved policy peers are checked against."""
        return self._veritee_admission.policy

    def update_credentials(
        self,
        *,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
        ca_cert: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
    ) -> None:
        """Present a renewed admission certificate on the connections started from now on.

        The policy stays as it was resolved (as for
        :meth:`veritee.sdk.channel.AttestedServer.update_credentials`)."""
        admission = self._veritee_admission
        own, _ = resolve_policy(cert, admission.policy)  # an admission certificate, or UsageError
        inner = ssl.SSLContext(self.protocol)
        configure_context(
            inner, admission.server_side, key=key, cert=cert, chain=chain, ca_cert=ca_cert
        )
        inner.sslobject_class = _AdmittingObject
        inner.sslsocket_class = _AdmittingSocket
        inner._veritee_admission = admission  # type: ignore[attr-defined]
        with self._veritee_lock:
            admission.current, admission.own = inner, own

    def _current(self) -> ssl.SSLContext:
        with self._veritee_lock:
            current = self._veritee_admission.current
        assert current is not None
        return current

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self._current().wrap_socket(sock, *args, **kwargs)

    def wrap_bio(
        self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *args: Any, **kwargs: Any
    ) -> ssl.SSLObject:
        return self._current().wrap_bio(incoming, outgoing, *args, **kwargs)
