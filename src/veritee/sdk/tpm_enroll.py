"""The workload's side of TPM enrollment (see :mod:`veritee.enrollment` and
:mod:`veritee.service.routes_tpm`): send the EK certificate and the AK, activate the credential
in the TPM, keep the AK certificate the domain CA issued."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from veritee.errors import MalformedError, VerificationError
from veritee.platforms.tpm import TpmPlatform
from veritee.sdk.http import post_json

__all__ = ["enroll"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, field: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise MalformedError(
            f"{field} in the service's answer is not base64", field=field
        ) from None


def enroll(
    http: httpx.Client, platform: TpmPlatform, ca_certificate: x509.Certificate
) -> x509.Certificate:
    """Enroll ``platform``'s AK with the service; stores and returns the AK certificate, which
    must be issued by ``ca_certificate`` (the domain CA) for this TPM's AK."""
    req = platform.enrollment_request()
    challenge = post_json(http, "/v1/tpm/enroll", {
        "ek_certificate": _b64(req["ek_certificate"]), "ek_chain": [_b64(c) for c in req["ek_chain"]],
        "ek_public": _b64(req["ek_public"]), "ak_public": _b64(req["ak_public"]),
    })  # fmt: skip
    secret = platform.activate_credential(
        _unb64(challenge.get("credential_blob"), "credential_blob"),
        _unb64(challenge.get("encrypted_secret"), "encrypted_secret"),
    )
    done = post_json(http, "/v1/tpm/activate", {
        "nonce": str(challenge.get("nonce")), "ticket": str(challenge.get("ticket")),
        "secret": _b64(secret), "ak_public": _b64(req["ak_public"]),
        "ek_certificate": _b64(req["ek_certificate"]),
    })  # fmt: skip
    der = _unb64(done.get("ak_certificate"), "ak_certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise VerificationError("the AK certificate is not issued by the domain CA",
                                code="certificate_wrong_issuer") from None  # fmt: skip
    platform.store_ak_certificate(der)
    return cert
