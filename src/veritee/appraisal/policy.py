"""The appraisal policy: its model (DESIGN.md shape, extended), parsing and signing.

A policy is YAML or JSON. Installed policies are signed by the domain's policy key in an
envelope (:class:`SignedPolicy`); an unsigned or wrongly signed policy is refused
(:class:`~veritee.errors.PolicyError`). Parsing is strict: unknown keys are errors, so a typo
never silently loosens a policy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Literal

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from veritee import _json
from veritee._codec import canonical_json
from veritee.binding import key_id
from veritee.errors import MalformedError, OversizedError, PolicyError
from veritee.evidence import eddsa
from veritee.evidence.dcap_quote import TCB_STATUSES
from veritee.profiles import Profile
from veritee.tee import Tee

__all__ = [
    "MAX_POLICY_BYTES",
    "CcaPolicy",
    "KeystonePolicy",
    "NitroPolicy",
    "NvidiaGpuPolicy",
    "Pins",
    "Policy",
    "PolicySet",
    "RefValuesRef",
    "SevSnpPolicy",
    "SgxPolicy",
    "SignedPolicy",
    "SimulatedPolicy",
    "SnpGuestPolicy",
    "SnpPlatformInfo",
    "TdxPolicy",
    "TpmPolicy",
    "load_policy",
    "sign_policy",
]

MAX_POLICY_BYTES = 1024 * 1024
ENVELOPE_FORMAT = "veritee-signed-policy-v1"

_HEX = re.compile(r"^[0-9a-fA-F]+$")


def _hex_list(values: list[str], size: int | None, what: str) -> list[str]:
    out = []
    for v in values:
        if not isinstance(v, str) or not _HEX.match(v):
            raise ValueError(f"{what}: {v!r} is not hex")
        if size is not None and len(v) != 2 * size:
            raise ValueError(f"{what}: {v[:16]}... must be {size} bytes")
        out.append(v.lower())
    return out


def _pcr_pins(pins: dict[str, list[str]], what: str) -> dict[str, list[str]]:
    """``{"<PCR index 0-23>": [SHA-256 hex, ...]}``, checked and lower-cased."""
    for k in pins:
        if not k.isdigit() or not 0 <= int(k) <= 23:
            raise ValueError(f"{what} key {k!r} is not a PCR index 0-23")
    return {k: _hex_list(values, 32, f"{what}.{k}") for k, values in pins.items()}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RefValuesRef(_Strict):
    """An allow-list that is a named set of the domain's reference-value store
    (``measurements: {refvalues: "payments-frontend"}``) instead of literal hex: the values of
    the CoRIMs registered into that set (:mod:`veritee.service.routes_refvalues`) that count
    at appraisal time."""

    refvalues: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")


#: An allow-list: literal hex values, or a reference-value set.
Pins = list[str] | RefValuesRef


def _pins(v: Pins | None, size: int | None, what: str) -> Pins | None:
    if v is None or isinstance(v, RefValuesRef):
        return v
    return _hex_list(v, size, what)


class MinTcb(_Strict):
    bootloader: int = Field(0, ge=0, le=255)
    tee: int = Field(0, ge=0, le=255)
    snp: int = Field(0, ge=0, le=255)
    microcode: int = Field(0, ge=0, le=255)
    fmc: int = Field(0, ge=0, le=255)


class SnpGuestPolicy(_Strict):
    """Controls over the SEV-SNP guest policy (ABI spec, table "Guest Policy Structure"), as
    go-sev-guest's ``validate.Options.GuestPolicy`` has them. ``allow_*``: refuse the report if
    its policy grants the capability and this is false; ``require_*``: refuse it if its policy
    does not set the restriction and this is true. The defaults allow every real guest policy
    (DEBUG and MIGRATE_MA are ``allow_debug`` / ``allow_migration_agent`` of the section)."""

    allow_smt: bool = True
    require_single_socket: bool = False
    allow_cxl: bool = True
    require_aes_256_xts: bool = False
    require_rapl_disabled: bool = False
    require_ciphertext_hiding: bool = False
    require_page_swap_disabled: bool = False


class SnpPlatformInfo(_Strict):
    """Controls over the report's PLATFORM_INFO (ABI spec, table "PLATFORM_INFO Field"), as
    go-sev-guest's ``validate.Options.PlatformInfo`` has them; the defaults check nothing."""

    allow_smt: bool = True
    allow_tsme: bool = True
    allow_tio: bool = True
    require_ecc: bool = False
    require_rapl_disabled: bool = False
    require_ciphertext_hiding: bool = False
    require_alias_check: bool = False


class SevSnpPolicy(_Strict):
    measurements: Pins | None = None
    min_tcb: MinTcb | None = None
    #: Against the report's LAUNCH_TCB: the lowest TCB the guest has run under since it launched
    #: (a host may have loaded newer firmware since, without committing it).
    min_launch_tcb: MinTcb | None = None
    #: False: refuse a report whose CURRENT TCB or firmware version differs from the COMMITTED
    #: one (the host can roll back to the committed level), as go-sev-guest does by default.
    permit_provisional_firmware: bool = True
    allow_debug: bool = False
    #: MIGRATE_MA (guest policy bit 18): a migration agent may read the guest's memory.
    #: Refused unless allowed, as go-sev-guest's validatePolicy does.
    allow_migration_agent: bool = False
    max_vmpl: int | None = Field(None, ge=0, le=3)
    guest_policy: SnpGuestPolicy = Field(default_factory=SnpGuestPolicy)
    platform_info: SnpPlatformInfo = Field(default_factory=SnpPlatformInfo)
    host_data: list[str] | None = None
    #: vTPM PCRs (SHA-256 bank) of an Azure CVM (evidence format ``az-snp-vtpm``); evidence
    #: without a vTPM quote has no PCRs and fails any pin.
    pcrs: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("measurements")
    @classmethod
    def _m(cls, v: Pins | None) -> Pins | None:
        return _pins(v, 48, "sev-snp.measurements")

    @field_validator("pcrs")
    @classmethod
    def _p(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return _pcr_pins(v, "sev-snp.pcrs")


class _IntelCommon(_Strict):
    tcb_status: list[str] = Field(default_factory=lambda: ["UpToDate"])
    allowed_advisories: list[str] = Field(default_factory=list)
    allow_debug: bool = False
    #: The lowest ``tcbEvaluationDataNumber`` of Intel collateral (TCB info) that may judge the
    #: evidence: after a TCB recovery, Intel's guidance is to stop accepting collateral from before
    #: it (an older TCB info can still call a platform UpToDate that the recovery made OutOfDate).
    min_tcb_evaluation_data_number: int | None = Field(None, ge=0)

    @field_validator("tcb_status")
    @classmethod
    def _s(cls, v: list[str]) -> list[str]:
        for s in v:
            if s not in TCB_STATUSES:
                raise ValueError(f"unknown Intel TCB status {s!r}")
            if s == "Revoked":  # terminal, as in Intel's QVL: no policy may accept it
                raise ValueError(
                    "Intel TCB status 'Revoked' cannot be allowed: Intel has revoked the platform's TCB, "
                    "which no policy may accept; remove it from tcb_status"
                )
        return v


class TdxPolicy(_IntelCommon):
    mrtd: Pins | None = None
    rtmr: dict[str, list[str]] = Field(default_factory=dict)
    mr_seam: list[str] | None = None
    #: vTPM PCRs (SHA-256 bank) of an Azure TDX CVM (evidence format ``az-tdx-vtpm``).
    pcrs: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("pcrs")
    @classmethod
    def _p(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return _pcr_pins(v, "tdx.pcrs")

    @field_validator("mrtd")
    @classmethod
    def _m(cls, v: Pins | None) -> Pins | None:
        return _pins(v, 48, "tdx measurement")

    @field_validator("mr_seam")
    @classmethod
    def _seam(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _hex_list(v, 48, "tdx measurement")

    @field_validator("rtmr")
    @classmethod
    def _r(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {}
        for k, vals in v.items():
            if str(k) not in ("0", "1", "2", "3"):
                raise ValueError(f"tdx.rtmr: index {k!r} must be 0..3")
            out[str(k)] = _hex_list(vals, 48, f"tdx.rtmr.{k}")
        return out


class SgxPolicy(_IntelCommon):
    mr_enclave: Pins | None = None
    mr_signer: list[str] | None = None
    isv_prod_id: int | None = None
    min_isv_svn: int | None = None

    @field_validator("mr_enclave")
    @classmethod
    def _m(cls, v: Pins | None) -> Pins | None:
        return _pins(v, 32, "sgx measurement")

    @field_validator("mr_signer")
    @classmethod
    def _signer(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _hex_list(v, 32, "sgx measurement")


class NitroPolicy(_Strict):
    pcr0: Pins | None = None
    pcr1: list[str] | None = None
    pcr2: list[str] | None = None
    pcr8: list[str] | None = None
    allow_debug: bool = False

    @field_validator("pcr0")
    @classmethod
    def _pcr0(cls, v: Pins | None) -> Pins | None:
        return _pins(v, None, "nitro pcr")

    @field_validator("pcr1", "pcr2", "pcr8")
    @classmethod
    def _m(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _hex_list(v, None, "nitro pcr")


class TpmPolicy(_Strict):
    """TPM quotes (:mod:`veritee.evidence.tpm`): ``measurements`` pins SHA-384 over the SHA-256
    bank's PCRs 0-9; ``pcrs`` pins single SHA-256-bank PCRs by index. ``ek_roots`` (SHA-256 of
    the root certificates' DER) are the TPM manufacturers whose EKs may enroll an AK
    (:mod:`veritee.enrollment`); none: enrollment is off."""

    measurements: Pins | None = None
    pcrs: dict[str, list[str]] = Field(default_factory=dict)
    ek_roots: list[str] = Field(default_factory=list)

    @field_validator("ek_roots")
    @classmethod
    def _r(cls, v: list[str]) -> list[str]:
        return _hex_list(v, 32, "tpm.ek_roots")

    @field_validator("measurements")
    @classmethod
    def _m(cls, v: Pins | None) -> Pins | None:
        return _pins(v, 48, "tpm.measurements")

    @field_validator("pcrs")
    @classmethod
    def _p(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return _pcr_pins(v, "tpm.pcrs")


class CcaPolicy(_Strict):
    """Arm CCA realms (:mod:`veritee.evidence.cca`): the platform attestation keys trusted (SHA-256
    of their SubjectPublicKeyInfo), the realm initial measurements and the REM values."""

    platform_keys: list[str] = Field(default_factory=list)
    measurements: Pins | None = None
    rem: dict[str, list[str]] = Field(default_factory=dict)
    allow_debug: bool = False

    @field_validator("platform_keys")
    @classmethod
    def _k(cls, v: list[str]) -> list[str]:
        return _hex_list(v, 32, "cca.platform_keys")

    @field_validator("measurements")
    @classmethod
    def _m(cls, v: Pins | None) -> Pins | None:
        return _pins(v, None, "cca.measurements")

    @field_validator("rem")
    @classmethod
    def _r(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for k in v:
            if k not in ("0", "1", "2", "3"):
                raise ValueError(f"cca.rem key {k!r} is not 0-3")
        return {k: _hex_list(values, None, f"cca.rem.{k}") for k, values in v.items()}


class KeystonePolicy(_Strict):
    """RISC-V Keystone enclaves (:mod:`veritee.evidence.keystone`): the device root keys
    trusted (raw 32-byte Ed25519 public keys in hex; the only way a device key is trusted), the
    enclave measurements (SHA3-512, 64 bytes) and the security-monitor measurements allowed."""

    device_keys: list[str] = Field(default_factory=list)
    measurements: Pins | None = None
    sm_measurements: list[str] | None = None

    @field_validator("device_keys")
    @classmethod
    def _k(cls, v: list[str]) -> list[str]:
        keys = _hex_list(v, 32, "keystone.device_keys")
        for k in keys:
            if not eddsa.public_key_valid(bytes.fromhex(k)):
                raise ValueError(f"keystone.device_keys: {k[:16]}... is not an Ed25519 public key "
                                 "(a canonical point of large order)")  # fmt: skip
        return keys

    @field_validator("measurements")
    @classmethod
    def _m(cls, v: Pins | None) -> Pins | None:
        return _pins(v, 64, "keystone measurement")

    @field_validator("sm_measurements")
    @classmethod
    def _sm(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _hex_list(v, 64, "keystone measurement")


class NvidiaGpuPolicy(_Strict):
    """NVIDIA GPUs (:mod:`veritee.evidence.nvidia`): ``measurements`` pins SHA-384 over all
    measurement blocks; ``blocks`` pins single blocks by index; ``driver_versions`` lists the
    allowed driver versions."""

    measurements: Pins | None = None
    blocks: dict[str, list[str]] = Field(default_factory=dict)
    driver_versions: list[str] | None = None

    @field_validator("measurements")
    @classmethod
    def _m(cls, v: Pins | None) -> Pins | None:
        return _pins(v, 48, "nvidia-gpu.measurements")

    @field_validator("blocks")
    @classmethod
    def _b(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for k in v:
            if not k.isdigit() or not 0 <= int(k) <= 255:
                raise ValueError(f"nvidia-gpu.blocks key {k!r} is not a block index 0-255")
        return {k: _hex_list(values, None, f"nvidia-gpu.blocks.{k}") for k, values in v.items()}


class SimulatedPolicy(_Strict):
    measurements: Pins | None = None
    platform_keys: list[str] = Field(default_factory=list)
    allow_debug: bool = False

    @field_validator("measurements")
    @classmethod
    def _m(cls, v: Pins | None) -> Pins | None:
        return _pins(v, 48, "simulated.measurements")

    @field_validator("platform_keys")
    @classmethod
    def _k(cls, v: list[str]) -> list[str]:
        return _hex_list(v, 32, "simulated.platform_keys")


class Platforms(_Strict):
    sev_snp: SevSnpPolicy | None = Field(None, alias="sev-snp")
    tdx: TdxPolicy | None = None
    sgx: SgxPolicy | None = None
    nitro: NitroPolicy | None = None
    tpm: TpmPolicy | None = None
    cca: CcaPolicy | None = None
    nvidia_gpu: NvidiaGpuPolicy | None = Field(None, alias="nvidia-gpu")
    keystone: KeystonePolicy | None = None
    simulated: SimulatedPolicy | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def for_platform(self, name: str) -> _Strict | None:
        """The section of platform ``name`` (a :class:`veritee.tee.Tee` value), None if absent."""
        section = _SECTIONS.get(name)
        return None if section is None else getattr(self, section)


#: Each platform's attribute of :class:`Platforms`, by its :class:`veritee.tee.Tee` value.
_SECTIONS = {t.value: t.policy_section for t in Tee}


class Policy(_Strict):
    """An appraisal policy. A platform absent from ``platforms`` is refused."""

    version: Literal[1]
    name: str = Field(min_length=1, max_length=200)
    platforms: Platforms
    #: Extension: the logging profiles a workload may attest (None: any).
    profiles: list[Profile] | None = None
    #: Extension: how long an admission certificate lives, in seconds.
    certificate_lifetime: int = Field(3600, ge=10, le=30 * 24 * 3600)

    _digest: str = PrivateAttr(default="")
    _refvalue_sets: frozenset[str] = PrivateAttr(default=frozenset())

    def model_post_init(self, context: Any, /) -> None:
        # Computed once: the model is frozen, and appraisals quote it on every decision.
        self._digest = hashlib.sha256(canonical_json(self.to_json()).encode()).hexdigest()
        names = set()
        for section in self.platforms.__dict__.values():
            for value in getattr(section, "__dict__", {}).values():
                if isinstance(value, RefValuesRef):
                    names.add(value.refvalues)
        self._refvalue_sets = frozenset(names)

    @property
    def digest(self) -> str:
        """SHA-256 of the policy's canonical JSON form."""
        # Read from the private attributes' dict: ``self._digest`` goes through pydantic's
        # ``__getattr__`` and an AttributeError raised and caught inside it (~2 us; read on
        # every appraisal).
        private = self.__pydantic_private__
        return private["_digest"] if private else self._digest

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def refvalue_sets(self) -> frozenset[str]:
        """The names of the reference-value sets this policy's allow-lists refer to."""
        private = self.__pydantic_private__  # as in digest
        return private["_refvalue_sets"] if private else self._refvalue_sets


class PolicySet(tuple[Policy, ...]):
    """The appraisal policies in force in a domain at once, one per name, ordered by name.

    Evidence is admitted by the first policy that admits it (see
    :func:`veritee.appraisal.evaluate.appraise`); installing one never replaces another.
    """

    def __new__(cls, policies: Any = ()) -> PolicySet:
        return super().__new__(cls, sorted(policies, key=lambda p: p.name))

    def named(self, name: str) -> Policy | None:
        return next((p for p in self if p.name == name), None)


def _parse_document(data: bytes | str, what: str) -> Any:
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_POLICY_BYTES:
        raise OversizedError(f"{what} is {len(data)} bytes; the limit is {MAX_POLICY_BYTES}")
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise MalformedError(
            f"{what} is not valid YAML/JSON: {e}", code="policy_malformed"
        ) from None
    except RecursionError:  # [[[[... : bounded like every JSON body (veritee._json)
        raise MalformedError(f"{what} is nested too deeply", code="json_too_deep") from None
    except ValueError as e:  # an integer of more digits than Python converts, a bad date, ...
        if "digits" in str(e):
            raise MalformedError(
                f"{what}: an integer is too long", code="integer_too_long"
            ) from None
        raise MalformedError(
            f"{what} has a value that does not convert", code="policy_malformed"
        ) from None
    _json.check_depth(doc, what=what)
    return doc


def parse_policy(doc: Any) -> Policy:
    """Validate a loaded document into a :class:`Policy` or raise PolicyError naming the path."""
    if not isinstance(doc, dict):
        raise PolicyError("policy must be a mapping", code="policy_malformed")
    try:
        return Policy.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise PolicyError(
            f"policy invalid at {loc or '<root>'}: {first['msg']} ({e.error_count()} error(s))",
            code="policy_malformed",
        ) from None


def load_policy(data: bytes | str) -> Policy:
    """Parse an UNSIGNED policy (a draft, for dry runs and for signing)."""
    doc = _parse_document(data, "policy")
    if isinstance(doc, dict) and doc.get("format") == ENVELOPE_FORMAT:
        raise PolicyError(
            "this is a signed envelope; use SignedPolicy.from_bytes", code="policy_envelope"
        )
    return parse_policy(doc)


class SignedPolicy:
    """A policy signed by the domain's policy key (ECDSA P-384 / SHA-384).

    Envelope (JSON): ``{"format", "policy": <canonical JSON text>, "alg": "ES384", "kid",
    "signature": <base64 DER>}``; the signature covers exactly the UTF-8 bytes of ``policy``.
    """

    def __init__(self, policy: Policy, envelope: bytes) -> None:
        self.policy = policy
        self.envelope = envelope

    @classmethod
    def from_bytes(cls, data: bytes, public_key: ec.EllipticCurvePublicKey) -> SignedPolicy:
        """Check the envelope's signature with ``public_key`` then parse the policy inside."""
        doc = _parse_document(data, "signed policy")
        if not isinstance(doc, dict) or doc.get("format") != ENVELOPE_FORMAT:
            raise PolicyError(
                "policy is not signed: expected a signed envelope "
                "(sign it with `veritee policy sign`)",
                code="policy_unsigned",
            )
        for k in ("policy", "alg", "kid", "signature"):
            if not isinstance(doc.get(k), str):
                raise PolicyError(
                    f"signed policy: field {k!r} missing or not a string", code="policy_malformed"
                )
        if doc["alg"] != "ES384":
            raise PolicyError(
                f"signed policy: unsupported alg {doc['alg']!r}", code="policy_signature_invalid"
            )
        if doc["kid"] != key_id(public_key):
            raise PolicyError(
                "signed policy was signed by another key than this domain's policy key",
                code="policy_wrong_key",
            )
        try:
            sig = base64.b64decode(doc["signature"], validate=True)
            public_key.verify(sig, doc["policy"].encode(), ec.ECDSA(hashes.SHA384()))
        except (InvalidSignature, ValueError):
            raise PolicyError(
                "signed policy: signature does not verify", code="policy_signature_invalid"
            ) from None
        try:
            inner = _json.loads(
                doc["policy"], what="signed policy's policy", limit=MAX_POLICY_BYTES
            )
        except MalformedError as e:
            if e.code != "malformed":
                raise
            raise PolicyError(
                "signed policy: inner policy is not JSON", code="policy_malformed"
            ) from None
        return cls(parse_policy(inner), bytes(data))


def sign_policy(policy: Policy, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Sign ``policy`` with the domain's policy key; return the envelope bytes."""
    text = canonical_json(policy.to_json())
    sig = private_key.sign(text.encode(), ec.ECDSA(hashes.SHA384()))
    env = {
        "format": ENVELOPE_FORMAT,
        "policy": text,
        "alg": "ES384",
        "kid": key_id(private_key.public_key()),
        "signature": base64.b64encode(sig).decode(),
    }
    return (json.dumps(env, indent=1) + "\n").encode()
