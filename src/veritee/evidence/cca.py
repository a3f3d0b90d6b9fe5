"""Arm CCA attestation tokens: a realm token and the platform token that vouches for its key.

Layout (Arm CCA Realm Management Monitor specification, "Attestation token format"; the
veraison/ccatoken claim names): CBOR tag 399 around a map ``{44234: platform token, 44241:
realm token}``, each a bstr holding a COSE_Sign1 (RFC 9052): the realm token ES384 (the RAK is
a P-384 key), the platform token ES256, ES384 or ES512, the algorithm following the platform
key's curve (P-256, P-384, P-521), as veraison/ccatoken verifies whichever it is.

* Realm claims: 10 challenge (64 bytes), 44235 personalization value (64), 44236 hash algorithm
  of the measurements, 44237 realm public key (RAK, an uncompressed P-384 point), 44238 realm
  initial measurement (RIM), 44239 realm extensible measurements (REM, 4), 44240 hash algorithm
  of the RAK hash.
* Platform claims: 10 challenge (the RAK hash), 256 instance ID, 2396 implementation ID, 2395
  security lifecycle, 2399 software components ``{1 type, 2 measurement, 4 version, 5 signer
  ID, 6 hash algorithm}``, 2401 platform configuration, 2402 hash algorithm, 2400 verification
  service, 265 profile.

:func:`verify` checks: (1) the realm token's signature with the RAK it carries; (2) the
platform token's challenge is the RAK's hash (claim 44240's algorithm); (3) the platform
token's signature with a platform attestation key (CPAK) given as collateral (a PEM public key:
the platform's endorsement, looked up out of band) whose curve is the one the token's alg
names; (4) the platform is in a secured lifecycle
state (0x3000-0x30FF) or the claim ``debug`` says it is not. Claims: platform ``cca``,
``measurement`` the RIM, ``report_data`` the realm challenge, ``rem0``..``rem3``,
``platform_key`` (SHA-256 of the CPAK's SubjectPublicKeyInfo; policies pin it), the platform's
IDs, lifecycle and software components.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.collateral import Collateral
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.evidence._cheap import CheapChecks
from veritee.evidence.claims import VerifiedEvidence
from veritee.evidence.nitro import (
    COSE_ALG_ES256,
    COSE_ALG_ES384,
    COSE_ALG_ES512,
    CoseSign1,
    sig_structure,
)

__all__ = ["CCA_TOKEN_TAG", "detect", "parse", "parse_claims", "verify"]

CCA_TOKEN_TAG = 399
PLATFORM, REALM = 44234, 44241
MAX_TOKEN_BYTES = 64 * 1024
HASHES = {"sha-256": hashlib.sha256, "sha-384": hashlib.sha384, "sha-512": hashlib.sha512}
SECURED = range(0x3000, 0x3100)
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
#: COSE ECDSA algorithm -> (its curve, its hash): RFC 9053 §2.1.
ES_ALGS: dict[int, tuple[type[ec.EllipticCurve], type[hashes.HashAlgorithm]]] = {
    COSE_ALG_ES256: (ec.SECP256R1, hashes.SHA256),
    COSE_ALG_ES384: (ec.SECP384R1, hashes.SHA384),
    COSE_ALG_ES512: (ec.SECP521R1, hashes.SHA512),
}


def detect(data: bytes) -> bool:
    """CBOR tag 399 (``d9 01 8f``) around a map."""
    return data[:3] == b"\xd9\x01\x8f" and len(data) > 3 and 0xA0 <= data[3] <= 0xBB


def _claims_of(token: CoseSign1, what: str) -> Mapping[Any, Any]:
    try:
        claims = cbor2.loads(token.payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError):
        raise MalformedError("payload is not CBOR", field=f"{what}.payload") from None
    if not isinstance(claims, Mapping):
        raise MalformedError("payload is not a claims map", field=f"{what}.payload")
    return claims


def _bytes(claims: Mapping[Any, Any], key: int, what: str, sizes: tuple[int, ...] | range) -> bytes:
    value = claims.get(key)
    if not isinstance(value, bytes) or len(value) not in sizes:
        allowed = (f"{sizes.start}-{sizes.stop - 1}" if isinstance(sizes, range)
                   else " or ".join(map(str, sizes)))  # fmt: skip
        raise MalformedError(f"claim {key} must be {allowed} bytes", field=f"{what}.{key}")
    return value


def _text(claims: Mapping[Any, Any], key: int, what: str) -> str:
    value = claims.get(key)
    if not isinstance(value, str):
        raise MalformedError(f"claim {key} must be text", field=f"{what}.{key}")
    return value


def parse(data: bytes) -> tuple[CoseSign1, Mapping[Any, Any], CoseSign1, Mapping[Any, Any]]:
    """(platform token, its claims, realm token, its claims); nothing verified."""
    if len(data) > MAX_TOKEN_BYTES:
        raise MalformedError(f"token is larger than {MAX_TOKEN_BYTES} bytes", field="token")
    try:
        outer = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError):
        raise MalformedError("not CBOR", field="token") from None
    if not isinstance(outer, cbor2.CBORTag) or outer.tag != CCA_TOKEN_TAG:
        raise MalformedError(f"not a CCA token (CBOR tag {CCA_TOKEN_TAG})", field="token")
    if not isinstance(outer.value, Mapping) or set(outer.value) != {PLATFORM, REALM}:
        raise MalformedError("a CCA token maps exactly 44234 and 44241", field="token")
    tokens = []
    for key, what in ((PLATFORM, "platform"), (REALM, "realm")):
        raw = outer.value[key]
        if not isinstance(raw, bytes):
            raise MalformedError("token must be a bstr holding a COSE_Sign1", field=what)
        try:
            token = CoseSign1.from_bytes(raw)
        except MalformedError as e:
            raise MalformedError(f"{what} token: {e.message}", field=f"{what}.{e.field}") from None
        allowed = ES_ALGS if key == PLATFORM else (COSE_ALG_ES384,)
        if token.alg not in allowed:
            raise VerificationError(f"{what} token alg {token.alg} is not "
                                    + ("ES256, ES384 or ES512" if key == PLATFORM else "ES384"),
                                    code="algorithm_unsupported")  # fmt: skip
        try:
            token.check_signature_size()
        except MalformedError as e:
            raise MalformedError(f"{what} token: {e.message}", field=f"{what}.{e.field}") from None
        tokens.append((token, _claims_of(token, what)))
    (platform, pclaims), (realm, rclaims) = tokens
    return platform, pclaims, realm, rclaims


def _rak(rclaims: Mapping[Any, Any]) -> ec.EllipticCurvePublicKey:
    point = _bytes(rclaims, 44237, "realm", (97,))
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), point)
    except ValueError:
        raise MalformedError("realm public key is not a P-384 point", field="realm.44237") from None


def _signed_by(token: CoseSign1, key: Any) -> bool:
    """Whether ``key`` made the token's signature with the token's alg: the key's curve must be
    the one the alg names (a P-384 key never checks an ES256 token)."""
    curve, digest = ES_ALGS[token.alg]
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve):
        return False
    half = len(token.signature) // 2
    der = encode_dss_signature(int.from_bytes(token.signature[:half], "big"),
                               int.from_bytes(token.signature[half:], "big"))  # fmt: skip
    try:
        key.verify(der, sig_structure(token.protected, token.payload), ec.ECDSA(digest()))
    except InvalidSignature:
        return False
    return True


def _claims(pclaims: Mapping[Any, Any], rclaims: Mapping[Any, Any]) -> dict[str, Any]:
    rem = rclaims.get(44239)
    if not isinstance(rem, list) or len(rem) != 4 or not all(isinstance(x, bytes) for x in rem):
        raise MalformedError("REM must be 4 byte strings", field="realm.44239")
    components = []
    listed = pclaims.get(2399, [])
    if not isinstance(listed, list):
        raise MalformedError("software components must be an array", field="platform.2399")
    for i, c in enumerate(listed):
        if not isinstance(c, Mapping) or not isinstance(c.get(2), bytes):
            raise MalformedError("software component without a measurement",
                                 field=f"platform.2399[{i}]")  # fmt: skip
        components.append({
            "type": str(c.get(1, "")), "measurement": c[2].hex(), "version": str(c.get(4, "")),
            "signer_id": c[5].hex() if isinstance(c.get(5), bytes) else None,
        })  # fmt: skip
    lifecycle = pclaims.get(2395)
    if not isinstance(lifecycle, int) or isinstance(lifecycle, bool):
        raise MalformedError("security lifecycle must be an integer", field="platform.2395")
    out: dict[str, Any] = {
        "platform": "cca",
        "measurement": _bytes(rclaims, 44238, "realm", (32, 48, 64)).hex(),
        "report_data": _bytes(rclaims, 10, "realm", (64,)).hex(),
        "debug": lifecycle not in SECURED,
        "personalization": _bytes(rclaims, 44235, "realm", (64,)).hex(),
        "realm_hash_algorithm": _text(rclaims, 44236, "realm"),
        "platform_instance_id": _bytes(pclaims, 256, "platform", (33,)).hex(),
        "platform_implementation_id": _bytes(pclaims, 2396, "platform", (32,)).hex(),
        "platform_lifecycle": lifecycle,
        "platform_config": _bytes(pclaims, 2401, "platform", range(1, 4097)).hex(),
        "platform_hash_algorithm": _text(pclaims, 2402, "platform"),
        "platform_profile": _text(pclaims, 265, "platform"),
        "platform_components": components,
    }
    for i, value in enumerate(rem):
        out[f"rem{i}"] = value.hex()
    return out


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims, for display."""
    _platform, pclaims, _realm, rclaims = parse(data)
    return _claims(pclaims, rclaims)


def _no_platform_key() -> VerificationError:
    return VerificationError(
        "no platform attestation key in the collateral verifies the platform token "
        "(give the CPAK as a PEM public key)",
        code="platform_key_not_trusted",
    )


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Verify a CCA token (see the module docstring); ``at`` is recorded (no certificates)."""
    if at.tzinfo is None:
        raise UsageError("verification time must be timezone-aware")
    platform, pclaims, realm, rclaims = parse(data)
    claims = _claims(pclaims, rclaims)
    rak = _rak(rclaims)
    # Cheap first: without a platform key of the platform token's curve, nothing can vouch for
    # it; refuse before any signature (:mod:`veritee.evidence._cheap`).
    curve = ES_ALGS[platform.alg][0]
    keys = [
        k
        for k in collateral.public_keys
        if isinstance(k, ec.EllipticCurvePublicKey) and isinstance(k.curve, curve)
    ]
    if not keys:
        checks = CheapChecks()
        checks.add(_no_platform_key())
        checks.refuse(("realm_signature", "platform_signature"))
    if not _signed_by(realm, rak):
        raise VerificationError("realm token signature does not verify with its RAK",
                                code="signature_invalid")  # fmt: skip
    hash_name = _text(rclaims, 44240, "realm")
    if hash_name not in HASHES:
        raise MalformedError(f"unsupported RAK hash {hash_name[:16]!r}", field="realm.44240")
    challenge = pclaims.get(10)
    if (
        not isinstance(challenge, bytes)
        or challenge
        != HASHES[hash_name](
            rak.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        ).digest()
    ):
        raise VerificationError("the platform token does not vouch for this realm's key",
                                code="binding_mismatch")  # fmt: skip
    cpak = next((k for k in keys if _signed_by(platform, k)), None)
    if cpak is None:
        raise _no_platform_key()
    claims["platform_key"] = hashlib.sha256(cpak.public_bytes(*_SPKI)).hexdigest()
    return VerifiedEvidence(format="cca", claims=claims, verified_at=at)
