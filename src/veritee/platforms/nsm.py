"""AWS Nitro Enclaves: the Nitro Secure Module at ``/dev/nsm``.

The device takes one ioctl, ``_IOWR(0x0A, 0, struct nsm_message)`` where ``nsm_message`` is two
``struct iovec`` (request, response; 32 bytes on 64-bit Linux). The request and response are
CBOR as aws-nitro-enclaves-nsm-api serializes its ``Request``/``Response`` enums (serde's
external tagging):

* ``{"Attestation": {"user_data": bstr|null, "nonce": bstr|null, "public_key": bstr|null}}``
  -> ``{"Attestation": {"document": bstr}}`` (a COSE_Sign1 attestation document);
* ``"GetRandom"`` (a unit variant: a text string) -> ``{"GetRandom": {"random": bstr}}``;
* any failure -> ``{"Error": "<ErrorCode>"}`` (``InvalidArgument``, ``InputTooLarge``, ...).

Requests are at most 0x1000 bytes and responses at most 0x3000. ``user_data`` and ``nonce``
hold at most 512 bytes and ``public_key`` at most 1024 (the NSM's limits). veritee puts its
64-byte report data (:mod:`veritee.binding`) in ``user_data``. Nitro has no sealing key.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Any

import cbor2

from veritee.errors import PlatformError, UsageError
from veritee.evidence import nitro
from veritee.platforms._ioctl import Device, iowr
from veritee.platforms._profile import settle_profile
from veritee.platforms.base import NoSealingKey
from veritee.profiles import Profile

__all__ = [
    "DEFAULT_DEVICE",
    "NSM_IOCTL",
    "NitroPlatform",
    "NsmDevice",
    "attestation_request",
    "get_random_request",
    "parse_response",
]

DEFAULT_DEVICE = Path("/dev/nsm")
REQUEST_MAX = 0x1000
RESPONSE_MAX = 0x3000
USER_DATA_MAX = NONCE_MAX = 512
PUBLIC_KEY_MAX = 1024


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class NsmMessage(ctypes.Structure):
    _fields_ = [("request", Iovec), ("response", Iovec)]


NSM_IOCTL = iowr(chr(0x0A), 0, ctypes.sizeof(NsmMessage))


def _optional(value: bytes | None, limit: int, name: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) > limit:
        raise UsageError(f"{name} must be bytes of at most {limit}")
    return value


def attestation_request(
    *, user_data: bytes | None = None, nonce: bytes | None = None, public_key: bytes | None = None
) -> bytes:
    """The CBOR of ``Request::Attestation``."""
    body = {
        "user_data": _optional(user_data, USER_DATA_MAX, "user_data"),
        "nonce": _optional(nonce, NONCE_MAX, "nonce"),
        "public_key": _optional(public_key, PUBLIC_KEY_MAX, "public_key"),
    }
    return cbor2.dumps({"Attestation": body})


def get_random_request() -> bytes:
    """The CBOR of ``Request::GetRandom`` (a unit variant)."""
    return cbor2.dumps("GetRandom")


def parse_response(data: bytes, expected: str) -> dict[str, Any]:
    """The body of an ``expected`` response; :class:`PlatformError` for ``Error`` or junk."""
    try:
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError):
        raise PlatformError(
            "the NSM answered with something that is not CBOR", code="platform_failed"
        ) from None
    if not isinstance(value, dict) or len(value) != 1:
        raise PlatformError("the NSM answer is not a response", code="platform_failed")
    ((kind, body),) = value.items()
    if kind == "Error":
        raise PlatformError(f"the NSM refused the request: {body}", code="platform_refused")
    if kind != expected or not isinstance(body, dict):
        raise PlatformError(
            f"the NSM answered {kind!r} to a {expected} request", code="platform_failed"
        )
    return body


class NsmDevice:
    """``/dev/nsm``: send one CBOR request, get the CBOR response."""

    def __init__(self, path: Path = DEFAULT_DEVICE) -> None:
        self.path = path

    def request(self, payload: bytes) -> bytes:
        if len(payload) > REQUEST_MAX:
            raise UsageError(f"an NSM request is at most {REQUEST_MAX} bytes")
        req = ctypes.create_string_buffer(payload, len(payload))
        resp = ctypes.create_string_buffer(RESPONSE_MAX)
        msg = NsmMessage(Iovec(ctypes.addressof(req), len(payload)),
                         Iovec(ctypes.addressof(resp), RESPONSE_MAX))  # fmt: skip
        with Device(self.path) as dev:
            dev.ioctl(NSM_IOCTL, msg, "NSM request")
        size = int(msg.response.iov_len)
        return resp.raw[: min(size, RESPONSE_MAX)]

    def attestation(
        self,
        *,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        public_key: bytes | None = None,
    ) -> bytes:
        body = parse_response(
            self.request(
                attestation_request(user_data=user_data, nonce=nonce, public_key=public_key)
            ),
            "Attestation",
        )
        doc = body.get("document")
        if not isinstance(doc, bytes) or not doc:
            raise PlatformError("the NSM returned no attestation document", code="platform_failed")
        return doc

    def get_random(self) -> bytes:
        random = parse_response(self.request(get_random_request()), "GetRandom").get("random")
        if not isinstance(random, bytes) or not random:
            raise PlatformError("the NSM returned no random bytes", code="platform_failed")
        return random


class NitroPlatform(NoSealingKey):
    """The Nitro Enclaves attester: evidence is the attestation document (format ``nitro``)."""

    platform_title = "Nitro"

    name = "nitro"

    def __init__(self, *, profile: Profile | None = None, device: Path = DEFAULT_DEVICE) -> None:
        if not device.exists():
            raise PlatformError(
                f"{device} is not present (not in a Nitro enclave)", code="platform_absent"
            )
        self.nsm = NsmDevice(device)
        self._requested = profile
        self.public_key: bytes | None = None

    def evidence(self, report_data: bytes) -> bytes:
        """A document with ``report_data`` as ``user_data`` (and :attr:`public_key`, DER SPKI,
        when set)."""
        return self.nsm.attestation(user_data=report_data, public_key=self.public_key)

    def collateral(self) -> dict[str, bytes]:
        return {}  # the document carries its cabundle; the AWS root is pinned

    @functools.cached_property
    def own_report(self) -> dict[str, Any]:
        claims: dict[str, Any] = nitro.parse_claims(self.nsm.attestation())
        return claims

    @property
    def measurement(self) -> str:
        return str(self.own_report["measurement"])

    @property
    def debug(self) -> bool:
        return bool(self.own_report.get("debug"))

    @functools.cached_property
    def profile(self) -> Profile:
        """Development: a Nitro document has no launch data to bind a profile (and debug mode
        zeroes the PCRs)."""
        return settle_profile(self._requested, self.own_report)

    def describe(self) -> dict[str, Any]:
        return {"interface": str(self.nsm.path), **self.own_report, "profile": self.profile.value}
