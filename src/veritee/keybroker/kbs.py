"""Pure pieces of the Confidential Containers Trustee Key Broker Service (KBS) protocol.

Described in ``kbs/docs/kbs_attestation_protocol.md`` of confidential-containers/trustee
(Request-Challenge-Attestation-Response, "RCAR") and the ``kbs-types`` crate:

1. ``POST /kbs/v0/auth`` with a **Request** ``{"version", "tee", "extra-params"}``; the KBS answers
   a **Challenge** ``{"nonce", "extra-params"}`` and sets the cookie ``kbs-session-id``.
2. ``POST /kbs/v0/attest`` with an **Attestation**: ``{"runtime-data": {"nonce", "tee-pubkey"},
   "tee-evidence", "init-data"?}`` (protocol >= 0.2; the older form has ``tee-pubkey`` at the top
   and no ``runtime-data``; from 0.4 ``tee-evidence`` is a CompositeEvidence, see
   :class:`KbsAttestation`). The evidence's report data must be ``HASH(runtime-data)`` padded with
   zeros to 64 bytes, where the runtime data is serialized as serde_json does for a JSON value
   (keys sorted, no whitespace) and HASH is the challenge's ``selected-hash-algorithm``
   (default SHA-384). The KBS answers ``{"token": JWT}``.
3. ``GET /kbs/v0/resource/<repository>/<type>/<tag>`` with the cookie (or ``Authorization: Bearer``
   token) returns the resource as flattened JWE (RFC 7516 §7.2.2) to ``tee-pubkey``.

Errors are ``{"type": ".../kbs/errors/<problem>", "detail"}`` with 401 (not authenticated),
403 (policy denies) and 404 (no such resource).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.evidence._reader import base64_any
from veritee.evidence.sev_snp_serde import cert_chain_from_sev_json, evidence_from_sev_json
from veritee.keybroker.wrap import JWE_ALGS, RecipientPublicKey, public_key_from_jwk

__all__ = [
    "COOKIE_NAME",
    "DEFAULT_HASH",
    "ERROR_TYPE_PREFIX",
    "HASH_ALGORITHMS",
    "TEE_FORMATS",
    "KbsAttestation",
    "KbsChallenge",
    "KbsRequest",
    "TeeEvidence",
    "check_runtime_binding",
    "expected_report_data",
    "extract_evidence",
    "kbs_error",
    "resource_name",
    "runtime_data_bytes",
    "select_hash",
]

COOKIE_NAME = "kbs-session-id"
ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors/"
MAX_MESSAGE_BYTES = 1024 * 1024
_COMPOSITE_MEMBERS = {"primary_evidence", "additional_evidence"}
REPORT_DATA_SIZE = 64
HASH_ALGORITHMS = ("sha256", "sha384", "sha512")
DEFAULT_HASH = "sha384"
_VERSION = re.compile(r"^0\.(\d{1,3})\.(\d{1,3})$")
MIN_MINOR = 1
# KBS "tee" names (kbs-types ``Tee``) and the veritee evidence format each carries.
TEE_FORMATS: dict[str, str] = {
    "snp": "sev-snp",
    "az-snp-vtpm": "az-snp-vtpm",
    "az-tdx-vtpm": "az-tdx-vtpm",
    "tdx": "tdx",
    "sgx": "sgx",
    "tpm": "tpm",
    "cca": "cca",
    # veritee's signed simulated platform travels as "sample"; Trustee's own unsigned sample
    # evidence ({"svn", "report_data"}) is refused.
    "sample": "simulated",
}


def kbs_error(problem: str, detail: str) -> dict[str, str]:
    """The KBS ``ErrorInformation`` body."""
    return {"type": ERROR_TYPE_PREFIX + problem, "detail": detail}


def _load(body: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MalformedError(f"{what} is larger than {MAX_MESSAGE_BYTES} bytes", field=what)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedError(f"{what} is not JSON: {e}", field=what) from None
    if not isinstance(doc, dict):
        raise MalformedError(f"{what} must be a JSON object", field=what)
    return doc


def _extra(doc: Mapping[str, Any], what: str) -> dict[str, Any]:
    extra = doc.get("extra-params", {})
    if extra in ("", None):
        return {}
    if not isinstance(extra, dict):
        raise MalformedError(
            "extra-params must be an object or empty", field=f"{what}.extra-params"
        )
    return dict(extra)


@dataclass(frozen=True)
class KbsRequest:
    """The ``Request`` payload of ``/kbs/v0/auth``."""

    version: str
    tee: str
    extra_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: bytes | str | Mapping[str, Any]) -> KbsRequest:
        doc = _load(body, "request")
        version, tee = doc.get("version"), doc.get("tee")
        if not isinstance(version, str):
            raise MalformedError("version must be a string", field="request.version")
        m = _VERSION.match(version)
        if not m or int(m.group(1)) < MIN_MINOR:
            raise UsageError(
                f"KBS protocol version {version[:16]!r} is not supported (0.1.0 up to 0.x)",
                code="protocol_version",
            )
        if not isinstance(tee, str) or not tee:
            raise MalformedError("tee must be a string", field="request.tee")
        if tee not in TEE_FORMATS:
            raise UsageError(
                f"tee {tee[:24]!r} is not verified here; supported: {', '.join(TEE_FORMATS)}",
                code="tee_unsupported",
            )
        return cls(version=version, tee=tee, extra_params=_extra(doc, "request"))

    @property
    def supported_hashes(self) -> tuple[str, ...]:
        raw = self.extra_params.get("supported-hash-algorithms")
        if not isinstance(raw, list):
            return ()
        return tuple(str(a).lower() for a in raw if isinstance(a, str))


def select_hash(request: KbsRequest) -> str:
    """SHA-384 unless the client lists algorithms without it; then the strongest it lists."""
    offered = request.supported_hashes
    if not offered or DEFAULT_HASH in offered:
        return DEFAULT_HASH
    for name in ("sha512", "sha256"):
        if name in offered:
            return name
    raise UsageError(
        f"none of the client's hash algorithms is supported ({', '.join(HASH_ALGORITHMS)})",
        code="hash_unsupported",
    )


@dataclass(frozen=True)
class KbsChallenge:
    nonce: str
    hash_algorithm: str

    def to_json(self) -> dict[str, Any]:
        return {
            "nonce": self.nonce,
            "extra-params": {"selected-hash-algorithm": self.hash_algorithm},
        }

    @staticmethod
    def encode_nonce(raw: bytes) -> str:
        """Trustee sends the nonce as standard base64 of random bytes."""
        return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class KbsAttestation:
    """The ``Attestation`` payload of ``/kbs/v0/attest`` (both protocol generations).

    Since protocol 0.4 the guest components send ``tee-evidence`` as a *CompositeEvidence*
    ``{"primary_evidence": <the TEE's evidence>, "additional_evidence": <string>}``, where the
    string is the JSON of the evidence of further devices (e.g. a GPU), or ``""`` when there are
    none. The primary evidence then binds the runtime data *with* ``"additional-evidence"``
    set to that string, so the devices' evidence is bound too. veritee appraises the primary
    evidence only: ``additional_evidence`` is kept for the binding and the audit record.
    """

    tee_pubkey: dict[str, Any]
    runtime_data: dict[str, Any] | None
    tee_evidence: Any
    init_data: Any = None
    additional_evidence: str | None = None

    @classmethod
    def from_json(cls, body: bytes | str | Mapping[str, Any]) -> KbsAttestation:
        doc = _load(body, "attestation")
        if "tee-evidence" not in doc:
            raise MalformedError("tee-evidence is missing", field="attestation.tee-evidence")
        runtime = doc.get("runtime-data")
        if runtime is not None:
            if not isinstance(runtime, dict):
                raise MalformedError("runtime-data must be an object", field="runtime-data")
            pubkey = runtime.get("tee-pubkey")
            where = "runtime-data.tee-pubkey"
        else:
            pubkey = doc.get("tee-pubkey")
            where = "attestation.tee-pubkey"
        if not isinstance(pubkey, dict):
            raise MalformedError("tee-pubkey must be a JWK object", field=where)
        evidence, additional = doc["tee-evidence"], None
        if isinstance(evidence, dict) and set(evidence) == _COMPOSITE_MEMBERS:
            additional = evidence["additional_evidence"]
            if not isinstance(additional, str):
                raise MalformedError(
                    "additional_evidence must be a string",
                    field="tee-evidence.additional_evidence",
                )
            evidence = evidence["primary_evidence"]
        return cls(
            tee_pubkey=dict(pubkey),
            runtime_data=None if runtime is None else dict(runtime),
            tee_evidence=evidence,
            init_data=doc.get("init-data"),
            additional_evidence=additional,
        )

    def public_key(self) -> tuple[RecipientPublicKey, str]:
        """The TEE key and the JWE ``alg`` to use for it (its JWK ``alg`` or the default)."""
        key = public_key_from_jwk(self.tee_pubkey)
        alg = self.tee_pubkey.get("alg")
        if alg is None:
            alg = "RSA-OAEP" if self.tee_pubkey.get("kty") == "RSA" else "ECDH-ES+A256KW"
        if alg not in JWE_ALGS:
            raise MalformedError(
                f"unsupported tee-pubkey alg {str(alg)[:24]!r}", field="tee-pubkey.alg"
            )
        return key, str(alg)

    def runtime_for(self, nonce: str) -> dict[str, Any]:
        """The runtime data the evidence must bind (reconstructed for the older protocol)."""
        runtime = (
            self.runtime_data
            if self.runtime_data is not None
            else {"nonce": nonce, "tee-pubkey": self.tee_pubkey}
        )
        if self.additional_evidence is not None:
            runtime = {**runtime, "additional-evidence": self.additional_evidence}
        return runtime


def runtime_data_bytes(runtime_data: Mapping[str, Any]) -> bytes:
    """Serialize as serde_json does a ``Value``: keys sorted, no whitespace, UTF-8."""
    return json.dumps(
        runtime_data, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def expected_report_data(runtime_data: Mapping[str, Any], hash_algorithm: str) -> bytes:
    if hash_algorithm not in HASH_ALGORITHMS:
        raise UsageError(f"unsupported hash algorithm {hash_algorithm!r}")
    digest = hashlib.new(hash_algorithm, runtime_data_bytes(runtime_data)).digest()
    return digest.ljust(REPORT_DATA_SIZE, b"\0")


def check_runtime_binding(
    attestation: KbsAttestation, *, nonce: str, hash_algorithm: str, report_data_hex: str
) -> None:
    """Check that the runtime data names this session's nonce and that the evidence binds it.

    Raises :class:`VerificationError` ``nonce_mismatch`` or ``binding_mismatch``.
    """
    runtime = attestation.runtime_for(nonce)
    if runtime.get("nonce") != nonce:
        raise VerificationError(
            "runtime-data.nonce is not this session's challenge nonce", code="nonce_mismatch"
        )
    want = expected_report_data(runtime, hash_algorithm)
    try:
        got = bytes.fromhex(report_data_hex)
    except (TypeError, ValueError):
        raise VerificationError(
            "evidence has no usable report data", code="binding_mismatch"
        ) from None
    if not hmac.compare_digest(got.ljust(REPORT_DATA_SIZE, b"\0"), want):
        raise VerificationError(
            f"evidence report data is not {hash_algorithm.upper()}(runtime-data): the evidence "
            "was made for another nonce or another tee-pubkey",
            code="binding_mismatch",
        )


class TeeEvidence(NamedTuple):
    """What a KBS ``tee-evidence`` carries: the veritee format, the evidence bytes, and the
    certificates sent with it as ``(name, DER)`` collateral (SNP's ``cert_chain``)."""

    format: str
    data: bytes
    certificates: tuple[tuple[str, bytes], ...] = ()


# cert_chain entries that are collateral for the verifier (others, e.g. Empty, are skipped).
_SNP_CHAIN_TYPES = ("ARK", "ASK", "VCEK", "VLEK", "CRL")


def extract_evidence(tee: str, tee_evidence: Any) -> TeeEvidence:
    """The veritee evidence format and raw bytes inside a KBS ``tee-evidence``.

    * ``tdx`` / ``sgx``: ``{"quote": base64, ...}`` as the guest components' attesters send;
    * ``snp``: ``{"attestation_report": ..., "cert_chain": ...}`` where the report is either the
      raw 1184 bytes (base64 or a byte array) or, as Trustee's attestation-agent sends it, the
      Rust sev crate's field-by-field serialization, which
      :func:`veritee.evidence.sev_snp_serde.evidence_from_sev_json` turns back into the signed
      bytes (strictly: an unknown, missing or out-of-range member is refused, and a member that
      does not round-trip makes the signature check fail). ``cert_chain`` (the sev crate's
      ``CertTableEntry`` list) becomes collateral for this appraisal: its VCEK/VLEK, ASK and
      ARK are still checked up to AMD's pinned roots, as collateral from a file would be;
    * ``az-snp-vtpm`` / ``az-tdx-vtpm``: Trustee's Azure vTPM documents (HCL report, vTPM quote,
      VCEK or TD quote), verified whole by :mod:`veritee.evidence.azure_vtpm` /
      :mod:`veritee.evidence.azure_tdx_vtpm`;
    * any tee: ``{"evidence": base64}`` carrying veritee evidence of that platform.
    """
    if tee not in TEE_FORMATS:
        raise UsageError(f"tee {tee[:24]!r} is not supported", code="tee_unsupported")
    fmt = TEE_FORMATS[tee]
    doc = tee_evidence
    if isinstance(doc, str):  # protocol 0.1 carried the evidence as a JSON string
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError:
            raise MalformedError("tee-evidence is not JSON", field="tee-evidence") from None
    if not isinstance(doc, dict):
        raise MalformedError("tee-evidence must be an object", field="tee-evidence")
    if "evidence" in doc:
        return TeeEvidence(fmt, base64_any(doc["evidence"], "tee-evidence.evidence"))
    if tee in ("tdx", "sgx") and "quote" in doc:
        return TeeEvidence(fmt, base64_any(doc["quote"], "tee-evidence.quote"))
    if tee == "snp" and "attestation_report" in doc:
        report = doc["attestation_report"]
        if isinstance(report, dict):
            raw, entries = evidence_from_sev_json(doc, field="tee-evidence")
        else:
            if isinstance(report, str):
                raw = base64_any(report, "tee-evidence.attestation_report")
            elif isinstance(report, list) and all(
                isinstance(b, int) and 0 <= b < 256 for b in report
            ):
                raw = bytes(report)
            else:
                raise MalformedError(
                    "attestation_report must be the raw report (base64 or a byte list) or the "
                    "sev crate's AttestationReport object",
                    field="tee-evidence.attestation_report",
                )
            entries = cert_chain_from_sev_json(
                doc.get("cert_chain"), field="tee-evidence.cert_chain"
            )
        certs = tuple(
            (f"cert_chain[{i}] {e.cert_type}", e.data)
            for i, e in enumerate(entries)
            if e.cert_type in _SNP_CHAIN_TYPES
        )
        return TeeEvidence(fmt, raw, certs)
    if tee in ("az-snp-vtpm", "az-tdx-vtpm") and ("hcl_report" in doc or "report" in doc):
        # The whole document is the evidence (veritee.evidence.azure_vtpm): HCL report,
        # vTPM quote over the runtime data's hash, VCEK.
        return TeeEvidence(fmt, json.dumps(doc, separators=(",", ":")).encode())
    if tee == "sample":
        raise VerificationError(
            "unsigned sample evidence is never accepted; send signed veritee simulated evidence "
            'as {"evidence": base64}',
            code="evidence_unsigned",
        )
    raise MalformedError(f"no evidence found for tee {tee}", field="tee-evidence")


def resource_name(repository: str, rtype: str, tag: str) -> str:
    """The secret name a KBS resource path maps to."""
    return f"{repository}/{rtype}/{tag}"
