"""The service-held freshness counter of a workload's key store: the messages both sides sign.

A workload asks ``POST /v1/keystores/counter`` to read or increment the counter of its key
store. It proves it holds the store's current, certified key: its admission certificate plus an
ECDSA P-256/SHA-256 signature by that key over :func:`counter_request_message` (operation, store
id, key generation, a fresh nonce). The service answers with the value, signed by the key broker
(the key that signs release envelopes, certified by the domain CA for release signing) over
:func:`counter_answer_message`, so the answer is the service's even where TLS ends before it.
"""

from __future__ import annotations

import hashlib
from typing import Literal

__all__ = [
    "ANSWER_TAG",
    "OPERATIONS",
    "REQUEST_TAG",
    "CounterOperation",
    "counter_answer_message",
    "counter_request_message",
]

REQUEST_TAG = b"veritee-counter-request-v1"
ANSWER_TAG = b"veritee-counter-answer-v1"
CounterOperation = Literal["read", "increment"]
OPERATIONS: tuple[CounterOperation, ...] = ("read", "increment")


def counter_request_message(op: str, store_id: bytes, generation: int, nonce: bytes) -> bytes:
    """What the workload signs: ``REQUEST_TAG || SHA-256(op) || store id || u64(generation) ||
    SHA-256(nonce)``."""
    return (
        REQUEST_TAG
        + hashlib.sha256(op.encode("ascii")).digest()
        + store_id
        + generation.to_bytes(8, "big")
        + hashlib.sha256(nonce).digest()
    )


def counter_answer_message(op: str, store_id: bytes, value: int, nonce: bytes) -> bytes:
    """What the key broker signs: ``ANSWER_TAG || SHA-256(op) || store id || u64(value) ||
    SHA-256(nonce)``."""
    return (
        ANSWER_TAG
        + hashlib.sha256(op.encode("ascii")).digest()
        + store_id
        + value.to_bytes(8, "big")
        + hashlib.sha256(nonce).digest()
    )
