"""Pure pieces of the Confidential Containers Trustee Key Broker Service (KBS) protocol.

Described in ``kbs/docs/kbs_attestation_protocol.md`` of confidential-containers/trustee
(Request-Challenge-Attestation-Response, "RCAR"), the ``kbs-types`` crate (0.18) and Trustee's
KBS (``kbs/src/attestation/backend.rs``), protocol version 0.4.0:

1. ``POST /kbs/v0/auth`` with a **Request** ``{"version", "tee", "extra-params"}``. The version
   must be ``0.4.0`` (Trustee's requirement ``=0.4.0``: build metadata is ignored, nothing else
   is accepted). The KBS answers a **Challenge** ``{"nonce", "extra-params"}`` and sets the
   cookie ``kbs-session-id``.
2. ``POST /kbs/v0/attest`` with an **Attestation** ``{"runtime-data": {"nonce", "tee-pubkey"},
   "tee-evidence": {"primary_evidence", "additional_evidence"}, "init-data"?}``:

   * the primary evidence's report data is ``HASH(runtime-data + {"additional-evidence"})``,
     zero-padded to 64 bytes, the runtime data serialized as the guest does (keys sorted, no
     whitespace) and HASH the challenge's ``selected-hash-algorithm`` (default SHA-384);
   * ``additional_evidence`` is ``""`` or the JSON text of ``{tee: evidence}`` for further
     devices (a GPU); each device's evidence binds ``HASH(runtime-data)`` (without
     ``additional-evidence``), cut to the device's nonce size (:func:`parse_additional_evidence`);
   * ``init-data`` is ``{"format": "toml", "body": <Initdata TOML>}`` (Trustee's
     ``kbs/docs/initdata.md``): its digest ``algorithm(body)`` must be what the evidence binds,
     as Trustee's verifiers check it (:func:`check_init_data`).

   The KBS answers ``{"token": <EAR JWT>}``; a second ``/attest`` on an attested session
   answers that session's token again.
3. ``GET /kbs/v0/resource/<repository>/<type>/<tag>`` with the cookie (or ``Authorization:
   Bearer <token>``) returns the resource as flattened JWE (RFC 7516 §7.2.2) to ``tee-pubkey``.

Errors are Trustee's ``ErrorInformation`` ``{"type": ".../kbs/errors/<name>", "detail"}`` with
Trustee's names, all 401 except a bad path or unknown plugin (404): see
:mod:`veritee.service.routes_kbs`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from veritee import _json
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.evidence._reader import base64_any
from veritee.evidence.sev_snp_serde import cert_chain_from_sev_json, evidence_from_sev_json
from veritee.keybroker.wrap import JWE_ALGS, RecipientPublicKey, public_key_from_jwk

__all__ = [
    "COOKIE_NAME",
    "DEFAULT_HASH",
    "ERROR_TYPE_PREFIX",
    "HASH_ALGORITHMS",
    "PROTOCOL_VERSION",
    "TEE_FORMATS",
    "DeviceEvidence",
    "InitData",
    "KbsAttestation",
    "KbsChallenge",
    "KbsRequest",
    "TeeEvidence",
    "check_device_binding",
    "check_init_data",
    "check_protocol_version",
    "check_runtime_binding",
    "expected_report_data",
    "extract_evidence",
    "kbs_error",
    "parse_additional_evidence",
    "resource_name",
    "runtime_data_bytes",
    "select_hash",
]

COOKIE_NAME = "kbs-session-id"
ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors/"
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_INIT_DATA_BYTES = 256 * 1024
MAX_DEVICES = 16
REPORT_DATA_SIZE = 64
HASH_ALGORITHMS = ("sha256", "sha384", "sha512")
DEFAULT_HASH = "sha384"
PROTOCOL_VERSION = "0.4.0"
# Semantic version 2.0.0: core, optional pre-release, optional build metadata.
_SEMVER = re.compile(
    r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
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
# Device tees of ``additional_evidence`` and the veritee format of one device's evidence.
DEVICE_FORMATS: dict[str, str] = {"nvidia": "nvidia-gpu"}
# Where each evidence format binds an init-data digest (Trustee's verifiers): the claim, the
# field's size, and how the digest is made to fit (``pad``: cut or zero-pad as
# ``regularize_data``; ``exact``: equal as is; ``pcr``: PCR8 = SHA-256(0^32 || digest)).
INIT_DATA_FIELDS: dict[str, tuple[str, int, str]] = {
    "sev-snp": ("host_data", 32, "pad"),
    "tdx": ("mr_config_id", 48, "pad"),
    "sgx": ("config_id", 64, "pad"),
    "cca": ("personalization", 64, "exact"),
    "tpm": ("pcr8", 32, "pcr"),
    "az-snp-vtpm": ("pcr8", 32, "pcr"),
    "az-tdx-vtpm": ("pcr8", 32, "pcr"),
}


def kbs_error(problem: str, detail: str) -> dict[str, str]:
    """The KBS ``ErrorInformation`` body."""
    return {"type": ERROR_TYPE_PREFIX + problem, "detail": detail}


def _load(body: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    return _json.loads_object(body, what=what, limit=MAX_MESSAGE_BYTES)


def check_protocol_version(version: Any) -> None:
    """Accept what Trustee's KBS accepts: semver ``=0.4.0`` (build metadata ignored)."""
    if not isinstance(version, str):
        raise MalformedError("version must be a string", field="request.version")
    m = _SEMVER.match(version)
    if m is None:
        raise MalformedError("version is not a semantic version", field="request.version")
    if m.group(1, 2, 3) != ("0", "4", "0") or m.group(4) is not None:
        raise UsageError(
            f"KBS protocol version mismatch: expected ={PROTOCOL_VERSION}, "
            f"the request has {version[:24]!r}",
            code="protocol_version",
        )


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
        check_protocol_version(version)
        if not isinstance(tee, str) or not tee:
            raise MalformedError("tee must be a string", field="request.tee")
        if tee not in TEE_FORMATS:
            raise UsageError(
                f"tee {tee[:24]!r} is not verified here; supported: {', '.join(TEE_FORMATS)}",
                code="tee_unsupported",
            )
        extra = doc.get("extra-params", {})
        return cls(
            version=str(version),
            tee=tee,
            extra_params=dict(extra) if isinstance(extra, dict) else {},
        )

    @property
    def supported_hashes(self) -> tuple[str, ...]:
        raw = self.extra_params.get("supported-hash-algorithms")
        if not isinstance(raw, list):
            return ()
        return tuple(str(a).lower() for a in raw[:16] if isinstance(a, str))


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
class InitData:
    """Initdata as Trustee's ``kbs/docs/initdata.md`` defines it, sent as TOML.

    ``digest`` is ``algorithm(body)`` over the body's exact bytes; ``claims`` is its ``data``
    table, where the ``aa.toml`` and ``cdh.toml`` members are parsed into tables and a
    ``policy.rego`` member gives way to ``agent_policy_claims`` (its ``policy_data``), as
    Trustee's attestation service presents them to policies.
    """

    algorithm: str
    digest: bytes
    claims: dict[str, Any]

    @classmethod
    def from_json(cls, value: Any) -> InitData:
        if not isinstance(value, dict) or set(value) != {"format", "body"}:
            raise MalformedError("init-data must be {format, body}", field="init-data")
        fmt, body = value["format"], value["body"]
        if fmt != "toml":
            raise UsageError(f"init-data format {str(fmt)[:16]!r} is not supported (toml)",
                             code="init_data_format_unsupported")  # fmt: skip
        if not isinstance(body, str) or len(body) > MAX_INIT_DATA_BYTES:
            raise MalformedError(f"init-data body must be text of at most {MAX_INIT_DATA_BYTES} "
                                 "bytes", field="init-data.body")  # fmt: skip
        try:
            doc = tomllib.loads(body)
        except (tomllib.TOMLDecodeError, RecursionError, ValueError):
            raise MalformedError("init-data body is not TOML", field="init-data.body") from None
        algorithm, version, data = doc.get("algorithm"), doc.get("version"), doc.get("data")
        if algorithm not in HASH_ALGORITHMS:
            raise MalformedError(f"init-data algorithm must be one of {', '.join(HASH_ALGORITHMS)}",
                                 field="init-data.body.algorithm")  # fmt: skip
        if not isinstance(version, str):
            raise MalformedError("init-data version must be text", field="init-data.body.version")
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise MalformedError(
                "init-data data must map names to text", field="init-data.body.data"
            )
        digest = hashlib.new(str(algorithm), body.encode("utf-8")).digest()
        return cls(algorithm=str(algorithm), digest=digest, claims=_init_data_claims(data))


def _init_data_claims(data: dict[str, str]) -> dict[str, Any]:
    claims: dict[str, Any] = dict(data)
    for key in ("cdh.toml", "aa.toml"):
        if key in claims:
            try:
                claims[key] = tomllib.loads(claims[key])
            except (tomllib.TOMLDecodeError, RecursionError, ValueError):
                pass  # kept as text, as Trustee does
    rego = claims.get("policy.rego")
    if isinstance(rego, str):
        start = rego.find("policy_data := {")
        if start >= 0:
            try:
                policy_data = _json.loads(rego[start + len("policy_data := ") :], what="policy_data",
                                          limit=MAX_INIT_DATA_BYTES)  # fmt: skip
            except MalformedError:
                policy_data = None
            if policy_data is not None:
                del claims["policy.rego"]
                claims["agent_policy_claims"] = policy_data
    return claims


@dataclass(frozen=True)
class KbsAttestation:
    """The ``Attestation`` payload of ``/kbs/v0/attest`` (protocol 0.4.0, kbs-types 0.18)."""

    nonce: str
    tee_pubkey: dict[str, Any]
    primary_evidence: Any
    additional_evidence: str
    init_data: InitData | None = None

    @classmethod
    def from_json(cls, body: bytes | str | Mapping[str, Any]) -> KbsAttestation:
        doc = _load(body, "attestation")
        runtime = doc.get("runtime-data")
        if not isinstance(runtime, dict):
            raise MalformedError("runtime-data must be an object", field="runtime-data")
        nonce, pubkey = runtime.get("nonce"), runtime.get("tee-pubkey")
        if not isinstance(nonce, str):
            raise MalformedError("runtime-data.nonce must be a string", field="runtime-data.nonce")
        if not isinstance(pubkey, dict):
            raise MalformedError("tee-pubkey must be a JWK object", field="runtime-data.tee-pubkey")
        evidence = doc.get("tee-evidence")
        if not isinstance(evidence, dict) or not {"primary_evidence", "additional_evidence"} <= set(
            evidence
        ):
            raise MalformedError(
                "tee-evidence must be a CompositeEvidence {primary_evidence, additional_evidence}",
                field="tee-evidence",
            )
        additional = evidence["additional_evidence"]
        if not isinstance(additional, str):
            raise MalformedError("additional_evidence must be a string",
                                 field="tee-evidence.additional_evidence")  # fmt: skip
        init = doc.get("init-data")
        return cls(
            nonce=nonce,
            tee_pubkey=dict(pubkey),
            primary_evidence=evidence["primary_evidence"],
            additional_evidence=additional,
            init_data=None if init is None else InitData.from_json(init),
        )

    def public_key(self) -> tuple[RecipientPublicKey, str]:
        """The TEE key and the JWE ``alg`` to use for it (its JWK ``alg`` or the default)."""
        key = public_key_from_jwk(self.tee_pubkey)
        alg = self.tee_pubkey.get("alg")
        if alg is None:
            alg = "RSA-OAEP-256" if self.tee_pubkey.get("kty") == "RSA" else "ECDH-ES+A256KW"
        if alg not in JWE_ALGS:
            raise MalformedError(
                f"unsupported tee-pubkey alg {str(alg)[:24]!r}", field="tee-pubkey.alg"
            )
        return key, str(alg)

    @property
    def runtime_data(self) -> dict[str, Any]:
        """What the devices' evidence binds (and what the token reports)."""
        return {"nonce": self.nonce, "tee-pubkey": self.tee_pubkey}

    @property
    def primary_runtime_data(self) -> dict[str, Any]:
        """What the primary evidence binds: the runtime data and the devices' evidence."""
        return {**self.runtime_data, "additional-evidence": self.additional_evidence}


def runtime_data_bytes(runtime_data: Mapping[str, Any]) -> bytes:
    """Serialize as the guest does (RFC 8785 for these documents): keys sorted, no whitespace."""
    return json.dumps(
        runtime_data, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def expected_report_data(runtime_data: Mapping[str, Any], hash_algorithm: str) -> bytes:
    if hash_algorithm not in HASH_ALGORITHMS:
        raise UsageError(f"unsupported hash algorithm {hash_algorithm!r}")
    digest = hashlib.new(hash_algorithm, runtime_data_bytes(runtime_data)).digest()
    return digest.ljust(REPORT_DATA_SIZE, b"\0")


def _hex(value: Any) -> bytes | None:
    try:
        return bytes.fromhex(str(value))
    except (TypeError, ValueError):
        return None


def check_runtime_binding(
    attestation: KbsAttestation, *, nonce: str, hash_algorithm: str, report_data_hex: str
) -> None:
    """Check that the runtime data names this session's nonce and that the evidence binds it.

    Raises :class:`VerificationError` ``nonce_mismatch`` or ``binding_mismatch``.
    """
    if not hmac.compare_digest(attestation.nonce.encode(), nonce.encode()):
        raise VerificationError(
            "runtime-data.nonce is not this session's challenge nonce", code="nonce_mismatch"
        )
    want = expected_report_data(attestation.primary_runtime_data, hash_algorithm)
    got = _hex(report_data_hex)
    if got is None:
        raise VerificationError("evidence has no usable report data", code="binding_mismatch")
    if not hmac.compare_digest(got.ljust(REPORT_DATA_SIZE, b"\0"), want):
        raise VerificationError(
            f"evidence report data is not {hash_algorithm.upper()}(runtime-data): the evidence "
            "was made for another nonce, another tee-pubkey or other device evidence",
            code="binding_mismatch",
        )


def check_device_binding(
    attestation: KbsAttestation, *, hash_algorithm: str, report_data_hex: str
) -> None:
    """A device's nonce must be ``HASH(runtime-data)`` cut (or zero-padded) to its size."""
    got = _hex(report_data_hex)
    digest = hashlib.new(hash_algorithm, runtime_data_bytes(attestation.runtime_data)).digest()
    if (
        got is None
        or not got
        or not hmac.compare_digest(got, digest[: len(got)].ljust(len(got), b"\0"))
    ):
        raise VerificationError(
            f"device evidence does not bind {hash_algorithm.upper()}(runtime-data)",
            code="device_binding_mismatch",
        )


def check_init_data(evidence_format: str, claims: Mapping[str, Any], init_data: InitData) -> str:
    """Check that the evidence binds ``init_data``'s digest; return the bound field (hex).

    As Trustee's verifiers: SNP HOSTDATA (32 bytes), TDX MRCONFIGID (48), SGX CONFIGID (64) hold
    the digest cut or zero-padded to their size; CCA's personalization value holds it exactly;
    on (v)TPM platforms PCR8 is ``SHA-256(0^32 || digest)`` for a SHA-256 digest. Raises
    :class:`VerificationError` ``init_data_unbound`` where the evidence binds no init-data
    (veritee's simulated platform) and ``init_data_mismatch`` where it binds another.
    """
    where = INIT_DATA_FIELDS.get(evidence_format)
    if where is None:
        raise VerificationError(
            f"{evidence_format} evidence binds no init-data: init-data cannot be accepted",
            code="init_data_unbound",
        )
    claim, size, rule = where
    got = _hex(claims.get(claim))
    digest = init_data.digest
    if rule == "pad":
        want = digest[:size].ljust(size, b"\0")
    elif rule == "exact":
        want = digest
    else:
        if len(digest) != 32:
            raise VerificationError(
                "a (v)TPM binds init-data in PCR8 by a SHA-256 digest; this one is "
                f"{init_data.algorithm}", code="init_data_mismatch",
            )  # fmt: skip
        want = hashlib.sha256(bytes(32) + digest).digest()
    if got is None or len(got) != size or not hmac.compare_digest(got, want):
        raise VerificationError(
            f"init-data is not what the evidence binds ({claim})", code="init_data_mismatch"
        )
    return got.hex()


class TeeEvidence(NamedTuple):
    """What a KBS ``tee-evidence`` carries: the veritee format, the evidence bytes, and the
    certificates sent with it as ``(name, DER)`` collateral (SNP's ``cert_chain``)."""

    format: str
    data: bytes
    certificates: tuple[tuple[str, bytes], ...] = ()


# cert_chain entries that are collateral for the verifier (others, e.g. Empty, are skipped).
_SNP_CHAIN_TYPES = ("ARK", "ASK", "VCEK", "VLEK", "CRL")


def extract_evidence(tee: str, tee_evidence: Any) -> TeeEvidence:
    """The veritee evidence format and raw bytes inside a KBS primary evidence.

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
    if not isinstance(doc, dict):
        raise MalformedError("primary_evidence must be an object", field="tee-evidence")
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


@dataclass(frozen=True)
class DeviceEvidence:
    """One device of ``additional_evidence``: its kbs tee, its place, veritee format, bytes."""

    tee: str
    index: int
    format: str
    data: bytes

    @property
    def label(self) -> str:
        return f"{self.tee}[{self.index}]"


def parse_additional_evidence(text: str) -> list[DeviceEvidence]:
    """The devices of a CompositeEvidence's ``additional_evidence`` (``""``: none).

    ``{"nvidia": {"device_evidence_list": [{"arch", "uuid"?, "evidence", "certificate"}]}}`` as
    guest-components' NVIDIA attester sends it: ``evidence`` is the SPDM GET_MEASUREMENTS
    exchange (hex or base64), ``certificate`` the base64 of the device's PEM chain. Each becomes
    a :mod:`veritee.evidence.nvidia` document. ``sampledevice`` (unsigned) and devices veritee
    cannot verify are refused, never skipped: a device the guest named is appraised or the
    attestation fails.
    """
    if text == "":
        return []
    doc = _json.loads_object(text, what="additional_evidence", limit=MAX_MESSAGE_BYTES)
    devices: list[DeviceEvidence] = []
    for tee, evidence in doc.items():
        if tee == "sampledevice":
            raise VerificationError("unsigned sample device evidence is never accepted",
                                    code="evidence_unsigned")  # fmt: skip
        fmt = DEVICE_FORMATS.get(tee)
        if fmt is None:
            raise VerificationError(f"device evidence of {str(tee)[:24]!r} cannot be verified here",
                                    code="device_unsupported")  # fmt: skip
        entries = evidence.get("device_evidence_list") if isinstance(evidence, dict) else None
        if not isinstance(entries, list) or not entries:
            raise MalformedError("device_evidence_list must be a non-empty list",
                                 field=f"additional_evidence.{tee}")  # fmt: skip
        for i, entry in enumerate(entries):
            where = f"additional_evidence.{tee}.device_evidence_list[{i}]"
            if not isinstance(entry, dict):
                raise MalformedError("a device's evidence must be an object", field=where)
            report, chain = entry.get("evidence"), entry.get("certificate")
            if not isinstance(report, str) or not isinstance(chain, str):
                raise MalformedError("evidence and certificate must be text", field=where)
            pem = base64_any(chain, f"{where}.certificate").decode("ascii", errors="replace")
            document = json.dumps({"report": report, "certificate_chain": pem}).encode()
            devices.append(DeviceEvidence(tee, len(devices), fmt, document))
            if len(devices) > MAX_DEVICES:
                raise MalformedError(
                    f"more than {MAX_DEVICES} devices", field="additional_evidence"
                )
    return devices


# Trustee's ResourceDesc grammar for each of repository, type and tag (length bounded here).
_PATH_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")


def resource_name(repository: str, rtype: str, tag: str) -> str:
    """The secret name a KBS resource path maps to (MalformedError for a bad segment)."""
    for part, what in ((repository, "repository"), (rtype, "type"), (tag, "tag")):
        if _PATH_PART.match(part) is None:
            raise MalformedError(f"resource {what} is not a valid path segment", field=what)
    return f"{repository}/{rtype}/{tag}"
