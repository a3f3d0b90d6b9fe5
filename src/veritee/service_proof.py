"""Verify the verifier: the Certifier Service's own evidence, and the check a relying party makes
of it before trusting any token, admission certificate or answer of that service.

A relying party trusts whoever judges the evidence. When the service runs on a TEE (``veritee
serve --attest-self PLATFORM``), it produces evidence of itself whose report data binds a
statement of the public keys it uses (:func:`veritee.binding.service_report_data`: the domain
CA key that signs admission certificates, the EAR token keys, the key broker's key, the TLS
key), and serves it at ``GET /v1/domain/evidence`` with the platform's collateral. This module
is the pure part, shared by the service, the SDK (``Trust(service_policy=...)``) and ``veritee
token verify --require-service-evidence``: bytes, a policy, the keys in use and the time go in.

:func:`verify_service_evidence`, in order (each refusal is a :class:`ServiceEvidenceError`, a
:class:`~veritee.errors.VerificationError` with a code of docs/reason-codes.md; it fails closed):

1. the document parses (``service_evidence_malformed``);
2. the evidence is authentic and the *service policy* (an appraisal policy of the relying party
   listing the service's own allowed measurements and, for the simulated platform, its platform
   keys) accepts it: ``service_measurement_not_allowed`` when only its measurement is refused,
   else ``service_evidence_refused`` with every reason. The collateral the document carries
   gives certificates only (path candidates up to pinned vendor roots), never a trusted key;
3. its report data is the binding of the document's statement (``service_binding_mismatch``);
4. the statement names the domain CA key the relying party trusts and the issuer it expects
   (``service_binding_mismatch``: evidence bound to other keys, another service's);
5. it names every key in use: each token key of the JWKS and the TLS key presented. Evidence of
   this domain (its CA key) that names other token or TLS keys is ``service_evidence_stale``: the
   keys rotated and the evidence was not refreshed.

:meth:`ServiceProof.covers` says whether a verified proof still names every key in use: callers
(the SDK's :class:`veritee.sdk.service_check.ServiceVerifier`) keep it until it does not (the keys
rotated), then fetch and verify the evidence again.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from veritee.binding import service_report_data
from veritee.errors import VerificationError

__all__ = [
    "KeysInUse",
    "ServiceEvidenceError",
    "ServiceProof",
    "key_statement",
    "thumbprint",
    "verify_service_evidence",
]

STATEMENT_VERSION = 1
#: Bounds of what a service evidence document may hold.
MAX_EVIDENCE_B64 = 512 * 1024
MAX_COLLATERAL_ITEMS = 16
MAX_TOKEN_KEYS = 16
#: The appraisal codes that mean the service's own measurement is not allowed.
_MEASUREMENT_CODES = frozenset({"measurement_not_allowed", "measurement_revoked"})


class ServiceEvidenceError(VerificationError):
    """The service's own evidence does not establish it (module docstring); ``reasons`` holds
    the appraisal's reasons when there was one."""

    def __init__(
        self, message: str, *, code: str, reasons: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.reasons = reasons or []


def thumbprint(key: PublicKeyTypes) -> str:
    """A key's RFC 7638 JWK SHA-256 thumbprint (EC or RSA), as the statement names it."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from veritee.tokens import jwk_thumbprint

    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise VerificationError(
            "only EC and RSA keys are named in the key statement", code="service_binding_mismatch"
        )
    return jwk_thumbprint(key)


def key_statement(
    *,
    issuer: str,
    admission: PublicKeyTypes,
    broker: PublicKeyTypes,
    tokens: Iterable[PublicKeyTypes],
    tls: PublicKeyTypes | None,
) -> dict[str, Any]:
    """The statement the service's evidence binds (:mod:`veritee.binding`)."""
    return {
        "version": STATEMENT_VERSION,
        "issuer": issuer,
        "keys": {
            "admission": thumbprint(admission),
            "broker": thumbprint(broker),
            "tokens": sorted({thumbprint(k) for k in tokens}),
            "tls": None if tls is None else thumbprint(tls),
        },
    }


@dataclass(frozen=True)
class KeysInUse:
    """What the relying party sees the service use: the domain CA key it trusts (admission
    certificates), the token keys of the JWKS, the TLS key presented (None over plain HTTP or
    in-process), by thumbprint; and the issuer it expects (None: not checked)."""

    admission: str
    tokens: frozenset[str]
    tls: str | None = None
    issuer: str | None = None

    @classmethod
    def of(cls, *, admission: PublicKeyTypes, tokens: Iterable[PublicKeyTypes],
           tls: PublicKeyTypes | None = None, issuer: str | None = None) -> KeysInUse:  # fmt: skip
        return cls(thumbprint(admission), frozenset(thumbprint(k) for k in tokens),
                   None if tls is None else thumbprint(tls), issuer)  # fmt: skip


@dataclass(frozen=True)
class ServiceProof:
    """A verified statement: the service runs ``measurement`` on ``platform`` and holds these keys."""

    platform: str
    measurement: str | None
    statement: Mapping[str, Any]
    claims: Mapping[str, Any]
    status: str
    verified_at: dt.datetime

    @property
    def tokens(self) -> frozenset[str]:
        return frozenset(self.statement["keys"]["tokens"])

    def covers(self, keys: KeysInUse) -> bool:
        """Whether every key in use is one this proof names (else the keys rotated)."""
        named = self.statement["keys"]
        return (
            named["admission"] == keys.admission
            and keys.tokens <= self.tokens
            and (keys.tls is None or named["tls"] == keys.tls)
            and (keys.issuer is None or self.statement["issuer"] == keys.issuer)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform, "measurement": self.measurement, "status": self.status,
            "statement": dict(self.statement), "verified_at": self.verified_at.isoformat().replace("+00:00", "Z"),
        }  # fmt: skip


def _malformed(message: str) -> ServiceEvidenceError:
    return ServiceEvidenceError(f"the service's evidence document is malformed: {message}",
                                code="service_evidence_malformed")  # fmt: skip


def _b64(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _malformed(f"{what} is not base64 of at most {limit} characters")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not base64") from None


def _thumb(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 43:  # base64url of 32 bytes
        raise _malformed(f"{what} is not a JWK SHA-256 thumbprint")
    return value


def _statement(doc: Mapping[str, Any]) -> dict[str, Any]:
    st = doc.get("statement")
    if not isinstance(st, dict) or st.get("version") != STATEMENT_VERSION:
        raise _malformed(f"statement is not a version-{STATEMENT_VERSION} key statement")
    if set(st) != {"version", "issuer", "keys"} or not isinstance(st["issuer"], str):
        raise _malformed("statement holds other members than version, issuer and keys")
    keys = st["keys"]
    if not isinstance(keys, dict) or set(keys) != {"admission", "broker", "tokens", "tls"}:
        raise _malformed("statement.keys is not {admission, broker, tokens, tls}")
    _thumb(keys["admission"], "statement.keys.admission")
    _thumb(keys["broker"], "statement.keys.broker")
    if keys["tls"] is not None:
        _thumb(keys["tls"], "statement.keys.tls")
    tokens = keys["tokens"]
    if not isinstance(tokens, list) or not tokens or len(tokens) > MAX_TOKEN_KEYS:
        raise _malformed(f"statement.keys.tokens is not a list of 1..{MAX_TOKEN_KEYS} thumbprints")
    for t in tokens:
        _thumb(t, "statement.keys.tokens")
    return st


def verify_service_evidence(
    doc: Any,
    *,
    policy: Any,
    keys: KeysInUse,
    at: dt.datetime,
    trust: Any = None,
) -> ServiceProof:
    """Steps 1-5 of the module docstring; the :class:`ServiceProof`, or
    :class:`ServiceEvidenceError` with its reason code. ``policy``: the service policy (a
    :class:`veritee.appraisal.Policy`); ``trust``: the pinned vendor roots (None: the genuine)."""
    import dataclasses

    from veritee.appraisal.attest import appraise_evidence
    from veritee.collateral import Collateral
    from veritee.errors import VeriteeError

    # 1. the document
    if not isinstance(doc, Mapping):
        raise _malformed("not a JSON object")
    fmt = doc.get("format")
    if not isinstance(fmt, str) or not 0 < len(fmt) <= 20:
        raise _malformed("format is not a platform name")
    evidence = _b64(doc.get("evidence"), "evidence", MAX_EVIDENCE_B64)
    statement = _statement(doc)
    blobs = doc.get("collateral", [])
    if not isinstance(blobs, list) or len(blobs) > MAX_COLLATERAL_ITEMS:
        raise _malformed(f"collateral is not a list of at most {MAX_COLLATERAL_ITEMS} items")
    items: list[tuple[str, bytes]] = []
    for b in blobs:
        if not isinstance(b, dict) or not isinstance(b.get("name"), str) or len(b["name"]) > 200:
            raise _malformed("a collateral item is not {name, data}")
        items.append(
            (b["name"], _b64(b.get("data"), f"collateral {b['name'][:40]}", MAX_EVIDENCE_B64))
        )
    try:
        collateral = Collateral.from_blobs(items) if items else Collateral.empty()
    except VeriteeError as e:
        raise _malformed(f"collateral: {e.message}") from None
    # Certificates only, as path candidates: a key the service hands over vouches for nothing.
    collateral = dataclasses.replace(collateral, public_keys=())

    # 2. authentic, and accepted by the service policy
    appraisal = appraise_evidence(
        evidence, collateral=collateral, at=at, format=fmt, trust=trust, policy=policy
    )
    reasons = [r.to_json() for r in appraisal.decision.reasons]
    if appraisal.evidence is None or not appraisal.decision.accepted:
        codes = {r["code"] for r in reasons}
        if appraisal.evidence is not None and codes and codes <= _MEASUREMENT_CODES:
            raise ServiceEvidenceError(
                "the service's own measurement is not one the service policy allows: "
                + "; ".join(r["message"] for r in reasons),
                code="service_measurement_not_allowed",
                reasons=reasons,
            )
        raise ServiceEvidenceError(
            "the service's own evidence is refused: "
            + "; ".join(f"[{r['code']}] {r['message']}" for r in reasons),
            code="service_evidence_refused",
            reasons=reasons,
        )
    claims = appraisal.evidence.claims

    # 3. its report data binds the statement
    expected = service_report_data(statement)
    try:
        actual = bytes.fromhex(str(claims.get("report_data") or ""))
    except ValueError:
        actual = b""
    if not hmac.compare_digest(actual, expected):
        raise ServiceEvidenceError(
            "the service's evidence does not bind the key statement it came with (report data differs)",
            code="service_binding_mismatch",
        )
    proof = ServiceProof(
        platform=str(claims.get("platform")), measurement=claims.get("measurement"), statement=statement,
        claims=claims, status=appraisal.decision.status, verified_at=at,
    )  # fmt: skip

    # 4. this domain's CA key, this issuer
    named = statement["keys"]
    if named["admission"] != keys.admission:
        raise ServiceEvidenceError(
            "the service's evidence binds another CA key than the domain CA trusted here: it is "
            "another service's evidence",
            code="service_binding_mismatch",
        )
    if keys.issuer is not None and statement["issuer"] != keys.issuer:
        raise ServiceEvidenceError(
            f"the service's evidence binds the issuer {statement['issuer'][:80]!r}, not {keys.issuer[:80]!r}",
            code="service_binding_mismatch",
        )
    # 5. every key in use
    unnamed = sorted(t[:12] for t in keys.tokens - proof.tokens)
    if unnamed:
        raise ServiceEvidenceError(
            "the service signs tokens with a key its evidence does not bind ("
            + ", ".join(unnamed)
            + "...): its keys rotated and the evidence is stale",
            code="service_evidence_stale",
        )
    if keys.tls is not None and named["tls"] != keys.tls:
        raise ServiceEvidenceError(
            "the service's TLS key is not the one its evidence binds: its keys rotated and the evidence is stale",
            code="service_evidence_stale",
        )
    return proof
