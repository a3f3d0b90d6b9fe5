"""The SDK's check of its Certifier Service (``Trust(service_policy=...)``): before it trusts any
token, certificate or answer of the service, the service's own evidence must show that it runs
a measurement the service policy allows and holds the keys it uses (:mod:`veritee.service_proof`).

:class:`ServiceVerifier` fetches ``/v1/domain/evidence`` and ``/.well-known/jwks.json`` over the
SDK's client, takes the TLS key from the connection the evidence came over (https), and keeps the
verified proof until a key in use is not one it
names: a token signed by a key the proof does not name makes it fetch the JWKS and the evidence
again (the keys rotated); evidence that still names the old keys is ``service_evidence_stale``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from veritee.errors import MalformedError, UsageError
from veritee.sdk.http import error_from_problem, unreachable
from veritee.service_proof import (
    KeysInUse,
    ServiceEvidenceError,
    ServiceProof,
    verify_service_evidence,
)

__all__ = ["BoundTlsTransport", "ServiceVerifier", "load_service_policy", "peer_public_key"]

MAX_DOCUMENT_BYTES = 1024 * 1024
EVIDENCE_PATH = "/v1/domain/evidence"
JWKS_PATH = "/.well-known/jwks.json"


def load_service_policy(policy: Any) -> Any:
    """A service policy: a :class:`veritee.appraisal.Policy`, its YAML/JSON text (str or bytes)
    or a path to it (an unsigned policy: the relying party's own)."""
    from veritee.appraisal import Policy, load_policy

    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, Path):
        try:
            policy = policy.expanduser().read_bytes()
        except OSError as e:
            raise UsageError(
                f"cannot read the service policy {policy}: {e.strerror or e}"
            ) from None
    if isinstance(policy, str | bytes):
        return load_policy(policy)
    raise UsageError("service_policy is a Policy, its YAML text or a pathlib.Path to it")


def peer_public_key(response: httpx.Response) -> Any:
    """The public key of the TLS certificate the server presented on ``response``'s connection
    (None over plain HTTP or an in-process transport). Call it while the response is open."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(True)  # binary form (the C object takes no keywords)
    return x509.load_der_x509_certificate(der).public_key() if der else None


class BoundTlsTransport(httpx.BaseTransport):
    """An HTTPS transport that holds the TLS key of every connection to the one the service's
    verified evidence binds (:meth:`ServiceVerifier.check_tls`), so that a server the domain CA
    certified but whose key no allowed evidence binds is refused on each connection, not only on
    the one the evidence came over. The answer of a refused connection is closed unread."""

    def __init__(self, inner: httpx.BaseTransport, check_tls: Callable[[Any], None],
                 fetching: Callable[[], bool]) -> None:  # fmt: skip
        self.inner = inner
        self.check_tls = check_tls  # ServiceVerifier.check_tls
        self.fetching = fetching  # ServiceVerifier.fetching

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.fetching():
            return response  # the evidence or the JWKS, fetched to verify: the evidence binds them
        try:
            key = peer_public_key(response)
            if key is not None:
                self.check_tls(key)
        except BaseException:
            response.close()
            raise
        return response

    def close(self) -> None:
        self.inner.close()


class ServiceVerifier:
    """Verifies the service reached through ``http`` (module docstring)."""

    def __init__(self, http: httpx.Client, ca_certificate: x509.Certificate, policy: Any,
                 *, issuer: str | None = None, trust: Any = None) -> None:  # fmt: skip
        self._http = http
        self._ca = ca_certificate
        self.policy = load_service_policy(policy)
        self.issuer = issuer
        self.trust = trust
        #: The verified proof, kept while it names every key in use (None: none yet, or refused).
        self.proof: ServiceProof | None = None
        self._tls_key: Any = None
        self._jwks: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._local = threading.local()

    def fetching(self) -> bool:
        """Whether this thread is fetching the evidence or the JWKS (the requests that verify
        the service are not themselves held to its proof)."""
        return bool(getattr(self._local, "fetching", False))

    def _get(self, path: str, *, tls: bool = False) -> Any:
        import json

        self._local.fetching = True
        try:
            with self._http.stream("GET", path) as r:
                if tls:
                    self._tls_key = peer_public_key(r)
                body = b""
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        break
        except httpx.HTTPError as e:
            raise unreachable(e) from None
        finally:
            self._local.fetching = False
        if r.status_code != 200:
            err = error_from_problem(
                httpx.Response(r.status_code, content=body[:MAX_DOCUMENT_BYTES], request=r.request)
            )
            if path == EVIDENCE_PATH and r.status_code == 404:
                raise ServiceEvidenceError(
                    f"{err.message} ({self._http.base_url})", code="service_evidence_missing"
                )
            raise err
        if len(body) > MAX_DOCUMENT_BYTES:
            raise ServiceEvidenceError(f"{path} answered more than {MAX_DOCUMENT_BYTES} bytes",
                                       code="service_evidence_malformed")  # fmt: skip
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise ServiceEvidenceError(
                f"{path} did not answer JSON", code="service_evidence_malformed"
            ) from None

    def _fetch_jwks(self) -> dict[str, Any]:
        from veritee.tokens import jwks_keys

        try:
            self._jwks = jwks_keys(self._get(JWKS_PATH))
        except MalformedError as e:
            raise ServiceEvidenceError(f"the service's JWKS is malformed: {e.message}",
                                       code="service_evidence_malformed") from None  # fmt: skip
        return self._jwks

    def _keys(self, tokens: list[Any]) -> KeysInUse:
        return KeysInUse.of(
            admission=self._ca.public_key(), tokens=tokens, tls=self._tls_key, issuer=self.issuer
        )

    def _ensure(self, tokens: list[Any]) -> ServiceProof:
        """The proof naming ``tokens`` (and the CA and TLS keys): the kept one, else the evidence
        fetched and verified again. A refusal drops the kept proof (fail closed)."""
        if self.proof is not None and self.proof.covers(self._keys(tokens)):
            return self.proof
        self.proof = None
        doc = self._get(EVIDENCE_PATH, tls=True)
        self.proof = verify_service_evidence(doc, policy=self.policy, keys=self._keys(tokens),
                                             at=dt.datetime.now(dt.UTC), trust=self.trust)  # fmt: skip
        return self.proof

    def check(self) -> ServiceProof:
        """The proof of the service: on the first call its JWKS and evidence are fetched, and
        every key of the JWKS, its CA key and its TLS key must be bound by allowed evidence."""
        with self._lock:
            if self.proof is not None:
                return self.proof
            return self._ensure(list(self._fetch_jwks().values()))

    def check_tls(self, key: Any) -> None:
        """A connection's TLS key must be the one the proof binds; another one makes the evidence
        be fetched and verified again (the certificate was renewed), and is refused
        (``service_evidence_stale``) if that evidence does not bind it either."""
        from veritee.service_proof import thumbprint

        seen = thumbprint(key)
        with self._lock:
            proof = self.check()
            if proof.statement["keys"]["tls"] == seen:
                return
            self.proof = None
            proof = self._ensure(list(self._jwks.values()))
            if proof.statement["keys"]["tls"] != seen:
                self.proof = None
                raise ServiceEvidenceError(
                    "the service presented a TLS key its evidence does not bind: its keys rotated and "
                    "the evidence is stale", code="service_evidence_stale",
                )  # fmt: skip

    def token_key(self, token: str) -> tuple[str, Any]:
        """The (kid, key) of a token of this service, the key bound by its verified evidence: an
        unknown ``kid`` fetches the JWKS again, and a key the proof does not name the evidence
        again."""
        from veritee.errors import VerificationError
        from veritee.tokens import token_key

        with self._lock:
            self.check()
            try:
                kid, key = token_key(token, self._jwks)
            except VerificationError:
                kid, key = token_key(token, self._fetch_jwks())
            self._ensure([key])
        return kid, key

    def verify_token(self, token: str, *, audience: str | None = None, now: dt.datetime | None = None,
                     **kw: Any) -> dict[str, Any]:  # fmt: skip
        """:func:`veritee.tokens.decode_ear` with the key the service's evidence binds; ``iss`` is
        the issuer the evidence names, ``aud`` ``audience`` (default: that issuer)."""
        from veritee.tokens import decode_ear

        _, key = self.token_key(token)
        assert self.proof is not None
        issuer = str(self.proof.statement["issuer"])
        return decode_ear(token, key, issuer=issuer, audience=audience or issuer, now=now, **kw)
