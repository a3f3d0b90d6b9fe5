"""The freshness counter the service keeps for a workload's key store (issue 13, rollback).

:class:`ServiceCounter` is a :class:`veritee.platforms.base.MonotonicCounter` backed by
``POST /v1/keystores/counter`` (protocol in :mod:`veritee.keybroker.freshness`). Use it where the
platform has no counter of its own; ``Trust(freshness="service")`` ties the key store to it.
It works once the store's key is certified: before that (and right after ``rotate_key()``),
operations raise :class:`UsageError` ``counter_not_certified`` and the key store keeps its
writes to confirm at the next sync.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.binding import spki_der
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.keybroker.freshness import counter_answer_message, counter_request_message
from veritee.keybroker.release import verify_broker_certificate
from veritee.sdk.http import error_from_problem, unreachable
from veritee.sdk.keystore import KeyStore

__all__ = ["ServiceCounter"]


class ServiceCounter:
    """The service-held counter of ``keystore`` (module docstring)."""

    def __init__(
        self, client: httpx.Client, keystore: KeyStore, ca_certificate: x509.Certificate
    ) -> None:
        self._client = client
        self._keystore = keystore
        self._ca = ca_certificate

    def read(self) -> int:
        return self._call("read")

    def increment(self) -> int:
        return self._call("increment")

    def _call(self, op: str) -> int:
        key = self._keystore.private_key()
        cert = self._keystore.certificate()
        if key is None or cert is None or spki_der(cert.public_key()) != spki_der(key.public_key()):
            raise UsageError(
                "the service's freshness counter needs the key store's key to be certified",
                code="counter_not_certified",
            )
        proof = self._keystore.proof()
        try:
            r = self._client.post("/v1/challenge", json={})
            if r.status_code != 200:
                raise error_from_problem(r)
            nonce = bytes.fromhex(str(r.json()["nonce"]))
            signature = key.sign(
                counter_request_message(op, proof.store_id, proof.generation, nonce),
                ec.ECDSA(hashes.SHA256()),
            )
            r = self._client.post(
                "/v1/keystores/counter",
                json={
                    "certificate": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
                    "key_store": proof.to_json(),
                    "op": op,
                    "nonce": nonce.hex(),
                    "signature": base64.b64encode(signature).decode("ascii"),
                },
            )
        except httpx.HTTPError as e:
            raise unreachable(e) from None
        if r.status_code != 200:
            raise error_from_problem(r)
        return self._check_answer(r.json(), op, proof.store_id, nonce)

    def _check_answer(self, body: Any, op: str, store_id: bytes, nonce: bytes) -> int:
        if not isinstance(body, dict):
            raise MalformedError("counter answer is not a JSON object", field="counter")
        value = body.get("counter")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            raise MalformedError("counter answer has no counter value", field="counter")
        if body.get("key_store") != store_id.hex() or body.get("op") != op:
            raise VerificationError(
                "the counter answer is for another store", code="counter_answer_invalid"
            )
        broker = verify_broker_certificate(body.get("signer"), self._ca, at=datetime.now(UTC))
        signature = body.get("signature")
        try:
            sig = base64.b64decode(signature if isinstance(signature, str) else "", validate=True)
            broker.verify(
                sig, counter_answer_message(op, store_id, value, nonce), ec.ECDSA(hashes.SHA256())
            )
        except (binascii.Error, ValueError, InvalidSignature):
            raise VerificationError(
                "the counter answer is not signed by the domain's key broker for this request",
                code="counter_answer_invalid",
            ) from None
        return value
