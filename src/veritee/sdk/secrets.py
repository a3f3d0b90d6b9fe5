"""Workload side of the key broker: ``Trust.get_secret(name)``.

1. ask the service for a nonce (``POST /v1/challenge``);
2. make a fresh ephemeral key (X25519 for HPKE, or P-256 for JWE) that never leaves memory;
3. ask the platform for evidence whose report data binds nonce, key and the profile it runs as
   (:func:`veritee.binding.report_data_for`);
4. ``POST /v1/secrets/{name}/release``, check the envelope is signed by the domain's key
   broker (certificate issued by ``ca_certificate``) for this key, secret, nonce and
   ciphertext, and decrypt it (:func:`veritee.keybroker.release.open_envelope`).

The domain-released sealing key (:func:`fetch_sealing_key`) comes the same way from
``POST /v1/sealing-key``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from veritee.binding import report_data_for, spki_der
from veritee.errors import MalformedError, VerificationError
from veritee.keybroker import sealing_keys
from veritee.keybroker.release import open_envelope, x25519_jwk
from veritee.keybroker.vault import SecretBytes
from veritee.keybroker.wrap import jwk_from_public_key
from veritee.platforms.base import Platform
from veritee.profiles import Profile
from veritee.sdk.http import post_json

__all__ = [
    "DomainSealingKey",
    "fetch_sealing_key",
    "fetch_sealing_key_certified",
    "fetch_secret",
    "fetch_secret_certified",
]

_FORMATS = ("sev-snp", "tdx", "sgx", "nitro", "tpm", "simulated")


def _post(client: httpx.Client, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
    return post_json(client, path, body, what="the key broker")


def fetch_secret(
    client: httpx.Client,
    platform: Platform,
    name: str,
    *,
    ca_certificate: x509.Certificate,
    envelope: Literal["hpke", "jwe"] = "hpke",
    version: int | None = None,
) -> bytes:
    """Prove fresh evidence and receive secret ``name`` encrypted to an ephemeral key.

    Raises the service's refusal as a veritee error: :class:`~veritee.errors.VerificationError`
    (``release_denied``, with ``.reasons``), :class:`~veritee.errors.NotFoundError`,
    :class:`~veritee.errors.NonceError`; and :class:`~veritee.errors.VerificationError` if the
    envelope is not the domain key broker's (``envelope_unsigned``, ...).
    """
    nonce = bytes.fromhex(str(_post(client, "/v1/challenge", None)["nonce"]))
    key: x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey
    if envelope == "hpke":
        key = x25519.X25519PrivateKey.generate()
        public_key: Any = x25519_jwk(key.public_key())
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        public_key = jwk_from_public_key(key.public_key(), alg="ECDH-ES+A256KW")
    rd = report_data_for(nonce, spki_der(key.public_key()), profile=platform.profile)
    evidence = platform.evidence(rd)
    body: dict[str, Any] = {
        "evidence": base64.b64encode(evidence).decode("ascii"),
        "nonce": nonce.hex(),
        "format": platform.name if platform.name in _FORMATS else "auto",
        "public_key": public_key,
    }
    if version is not None:
        body["version"] = version
    reply = _post(client, f"/v1/secrets/{name}/release", body)
    return open_envelope(reply, key, name=name, nonce=nonce, ca_certificate=ca_certificate,
                         at=datetime.now(UTC))  # fmt: skip


@dataclass(frozen=True)
class DomainSealingKey:
    """A domain-released sealing key (redacted in ``repr``), the workload name and profile the
    key broker released it for, and its sealing-root generation."""

    key: SecretBytes
    workload: str
    profile: Profile
    generation: int


def fetch_sealing_key(
    client: httpx.Client,
    platform: Platform,
    *,
    ca_certificate: x509.Certificate,
    policy: str | None = None,
) -> DomainSealingKey:
    """Prove fresh evidence and receive the domain-released sealing key of this workload
    (``POST /v1/sealing-key``): the key the key broker releases to every measurement the
    domain's policy admits under this workload's name, for the profile it runs as.

    The envelope must be the domain key broker's, for this nonce and ephemeral key, and name
    this platform's profile. ``policy``: the named appraisal policy that decides (and names the
    key), else the first in force that admits the evidence. Raises :class:`~veritee.errors.VerificationError`
    (``sealing_key_denied`` with ``.reasons``, ``envelope_*``), :class:`~veritee.errors.NonceError`
    or :class:`~veritee.errors.StorageError` (``service_unreachable``).
    """
    nonce = bytes.fromhex(str(_post(client, "/v1/challenge", None)["nonce"]))
    key = x25519.X25519PrivateKey.generate()
    rd = report_data_for(nonce, spki_der(key.public_key()), profile=platform.profile)
    body: dict[str, Any] = {
        "evidence": base64.b64encode(platform.evidence(rd)).decode("ascii"),
        "nonce": nonce.hex(),
        "format": platform.name if platform.name in _FORMATS else "auto",
        "public_key": x25519_jwk(key.public_key()),
    }
    if policy is not None:
        body["policy"] = policy
    return _open_sealing_key(
        _post(client, "/v1/sealing-key", body), key, nonce, platform.profile, ca_certificate
    )


def fetch_sealing_key_certified(
    client: httpx.Client,
    key: ec.EllipticCurvePrivateKey,
    certificate_pem: bytes,
    profile: Profile,
    *,
    ca_certificate: x509.Certificate,
    policy: str | None = None,
) -> DomainSealingKey:
    """The domain-released sealing key for a certified workload: its admission certificate and
    a fresh proof of possession of the certified ``key`` instead of new evidence
    (``POST /v1/sealing-key/certified``; the service re-appraises the certificate's claims
    under the policy in force). ``profile`` is the one the certificate attests."""
    from cryptography.hazmat.primitives import hashes

    from veritee.keybroker.release import possession_message

    nonce = bytes.fromhex(str(_post(client, "/v1/challenge", None)["nonce"]))
    eph = x25519.X25519PrivateKey.generate()
    message = possession_message(sealing_keys.POSSESSION_NAME, nonce, spki_der(eph.public_key()))
    body: dict[str, Any] = {
        "certificate": certificate_pem.decode("ascii"),
        "nonce": nonce.hex(),
        "public_key": x25519_jwk(eph.public_key()),
        "signature": base64.b64encode(key.sign(message, ec.ECDSA(hashes.SHA256()))).decode("ascii"),
    }
    if policy is not None:
        body["policy"] = policy
    return _open_sealing_key(
        _post(client, "/v1/sealing-key/certified", body), eph, nonce, profile, ca_certificate
    )


def _open_sealing_key(
    reply: dict[str, Any],
    key: x25519.X25519PrivateKey,
    nonce: bytes,
    profile: Profile,
    ca_certificate: x509.Certificate,
) -> DomainSealingKey:
    """Check and open a sealing-key envelope: the key broker's, for this nonce and key, and
    named for ``profile`` (the workload's own)."""
    workload = reply.get("workload")
    if not isinstance(workload, str) or not 0 < len(workload) <= 200:
        raise MalformedError("the sealing-key answer names no workload", field="workload")
    name = sealing_keys.envelope_name(profile, workload)
    value = open_envelope(reply, key, name=name, nonce=nonce, ca_certificate=ca_certificate,
                          at=datetime.now(UTC))  # fmt: skip
    if len(value) != sealing_keys.KEY_SIZE:
        raise VerificationError(
            "the released sealing key has a wrong size", code="envelope_invalid"
        )
    return DomainSealingKey(SecretBytes(value), workload, profile, int(reply["version"]))


def fetch_secret_certified(
    client: httpx.Client,
    key: ec.EllipticCurvePrivateKey,
    certificate_pem: bytes,
    name: str,
    *,
    ca_certificate: x509.Certificate,
    version: int | None = None,
) -> bytes:
    """Receive secret ``name`` as a certified workload: no new evidence, a fresh proof of
    possession of the admission-certified ``key`` instead (a nonce, the name and a fresh
    X25519 key, signed ECDSA/SHA-256). The release policy sees the certificate's claims."""
    from cryptography.hazmat.primitives import hashes

    from veritee.keybroker.release import possession_message

    nonce = bytes.fromhex(str(_post(client, "/v1/challenge", None)["nonce"]))
    eph = x25519.X25519PrivateKey.generate()
    signature = key.sign(
        possession_message(name, nonce, spki_der(eph.public_key())), ec.ECDSA(hashes.SHA256())
    )
    body: dict[str, Any] = {
        "certificate": certificate_pem.decode("ascii"),
        "nonce": nonce.hex(),
        "public_key": x25519_jwk(eph.public_key()),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    if version is not None:
        body["version"] = version
    reply = _post(client, f"/v1/secrets/{name}/release-certified", body)
    return open_envelope(reply, eph, name=name, nonce=nonce, ca_certificate=ca_certificate,
                         at=datetime.now(UTC))  # fmt: skip
