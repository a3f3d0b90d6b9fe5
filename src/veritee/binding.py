"""How evidence binds a nonce, a workload key, a profile and a key-store generation (DESIGN.md,
flow step 2 and "Profiles are attested"). The one place that defines these rules: the workload
computes its report data with :func:`report_data_for`, and every verifier path checks it with
:func:`check`.

Report data, version 2 (this build)::

    report_data = SHA-512( b"veritee-v2"
                           || u16(len(nonce)) || nonce
                           || SHA-256(SubjectPublicKeyInfo DER of the key, or b"")
                           || u8(len(profile)) || profile          # ASCII name it runs as
                           || u8(len(store_id)) || store_id         # 16 bytes, or none
                           || u64(key generation) )                 # 0 without a key store

(all integers big-endian). The 64-byte result is exactly the report-data field of SEV-SNP, TDX,
SGX and the simulated platform; for Nitro the same 64 bytes go into ``user_data``.

* The **profile** is the one the workload runs as (its sealing, its logs). The verifier
  recomputes the report data with the profile the evidence *attests* (:func:`attested_profile`),
  so a workload told to run as another profile than its launch attests is refused, and no
  workload can claim a profile: it can only agree with the evidence.
* The **key store** (:class:`KeyStoreProof`) names the workload's key store and the generation
  of its key (:meth:`veritee.sdk.keystore.KeyStore.rotate_key` increments it). The workload's
  measured code states them, and the hardware signs them with the report, so the host can neither
  change them in transit nor make them up with a stolen key: the service refuses a generation
  lower than the highest it has certified for that store (a rolled-back key store).

Version 1 (earlier builds): ``SHA-512(b"veritee-v1" || nonce || SHA-256(SPKI DER))``. It carries
no profile, so :func:`check` accepts it only where nothing rides on the profile: evidence that
attests ``development`` or ``testing`` (with the warning ``binding_v1_deprecated``). Evidence
attesting ``staging`` or ``production`` bound by version 1 is refused
(``binding_version_refused``): update the SDK of those workloads.

The Certifier Service's own evidence (:func:`service_report_data`, ``veritee serve
--attest-self``): its report data binds a *statement* of the public keys it uses, each named by
its RFC 7638 JWK SHA-256 thumbprint (base64url)::

    statement   = {"version": 1, "issuer": <the tokens' iss>,
                   "keys": {"admission": <domain CA key: admission, TLS and broker certificates>,
                            "broker": <key broker's signing key: release envelopes>,
                            "tokens": [<EAR token keys, the JWKS>, ... sorted],
                            "tls": <the TLS server key, or null over plain HTTP>}}
    report_data = SHA-512( b"veritee-service-v1" || 0x00 || canonical JSON of statement )

The canonical JSON is RFC 8785's for this subset (keys sorted, no whitespace, ASCII strings):
``json.dumps(statement, sort_keys=True, separators=(",", ":"))``.

The attested profile (:func:`attested_profile`): a profile is what the verifier establishes from
the evidence, never what a workload says.

1. The simulated platform signs the profile into its evidence.
2. On SEV-SNP, TDX and Arm CCA the host binds it at launch into data the hardware measures and
   reports: HOSTDATA (32 bytes), MRCONFIGID (48 bytes), the Realm Personalization Value
   (64 bytes), set to :func:`profile_launch_data` of the profile.
3. Anything else (no such launch data, other launch data, a platform with no such field)
   attests ``development``.
4. A debug launch never attests a profile that forbids a debugger (staging, production): it
   attests ``development``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from veritee.errors import MalformedError
from veritee.profiles import Profile
from veritee.reasons import Reason

__all__ = [
    "DOMAIN_TAG",
    "LAUNCH_DATA_CLAIMS",
    "LEGACY_DOMAIN_TAG",
    "PROFILE_LAUNCH_TAG",
    "SERVICE_TAG",
    "STORE_ID_SIZE",
    "BindingCheck",
    "ExpectedBinding",
    "KeyStoreProof",
    "attested_profile",
    "check",
    "check_named",
    "key_id",
    "profile_launch_data",
    "report_data_for",
    "report_data_v1",
    "service_report_data",
    "spki_der",
]

DOMAIN_TAG = b"veritee-v2"
LEGACY_DOMAIN_TAG = b"veritee-v1"
PROFILE_LAUNCH_TAG = b"veritee-profile-v1"
SERVICE_TAG = b"veritee-service-v1"
STORE_ID_SIZE = 16
MAX_GENERATION = 2**63 - 1

#: Platform -> (claim holding the launch data the host binds, its size in bytes).
LAUNCH_DATA_CLAIMS: dict[str, tuple[str, int]] = {
    "sev-snp": ("host_data", 32),
    "tdx": ("mr_config_id", 48),
    "cca": ("personalization", 64),
}


@dataclass(frozen=True)
class KeyStoreProof:
    """A key store's id (16 random bytes, made with the store) and its key's generation."""

    store_id: bytes
    generation: int

    def __post_init__(self) -> None:
        if not isinstance(self.store_id, bytes) or len(self.store_id) != STORE_ID_SIZE:
            raise MalformedError(f"a key store id is {STORE_ID_SIZE} bytes", field="key_store.id")
        if (
            not isinstance(self.generation, int)
            or isinstance(self.generation, bool)
            or not 1 <= self.generation <= MAX_GENERATION
        ):
            raise MalformedError(
                f"a key generation is an integer 1..{MAX_GENERATION}", field="key_store.generation"
            )

    @classmethod
    def from_json(cls, doc: Any) -> KeyStoreProof:
        """``{"id": <32 hex digits>, "generation": <int>}`` as a request carries it."""
        if not isinstance(doc, Mapping):
            raise MalformedError("key_store must be an object", field="key_store")
        raw = doc.get("id")
        try:
            store_id = bytes.fromhex(raw) if isinstance(raw, str) else b""
        except ValueError:
            store_id = b""
        if len(store_id) != STORE_ID_SIZE:
            raise MalformedError(
                f"key_store.id must be {2 * STORE_ID_SIZE} hex digits", field="key_store.id"
            )
        return cls(store_id, doc.get("generation"))  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.store_id.hex(), "generation": self.generation}


def spki_der(public_key: PublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of ``public_key`` (the bytes key ids and bindings hash)."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(public_key: PublicKeyTypes, *, length: int | None = None) -> str:
    """The id of a public key: SHA-256 of its SubjectPublicKeyInfo DER, hex. Policies name
    platform keys by the whole id; the domain's key ids (``kid`` of its tokens, ``ca_key_id``)
    are its first 32 hex digits (``length=32``)."""
    digest = hashlib.sha256(spki_der(public_key)).hexdigest()
    return digest if length is None else digest[:length]


def report_data_for(
    nonce: bytes,
    spki: bytes,
    *,
    profile: Profile,
    key_store: KeyStoreProof | None = None,
) -> bytes:
    """The 64 bytes a workload puts in its report (version 2, module docstring)."""
    if len(nonce) > 0xFFFF:
        raise MalformedError("nonce longer than 65535 bytes", field="nonce")
    name = profile.value.encode("ascii")
    store = b"" if key_store is None else key_store.store_id
    generation = 0 if key_store is None else key_store.generation
    return hashlib.sha512(
        DOMAIN_TAG
        + struct.pack(">H", len(nonce))
        + nonce
        + hashlib.sha256(spki).digest()
        + bytes([len(name)])
        + name
        + bytes([len(store)])
        + store
        + struct.pack(">Q", generation)
    ).digest()


def report_data_v1(nonce: bytes, spki: bytes) -> bytes:
    """The version-1 report data of earlier builds (no profile): for checking only."""
    return hashlib.sha512(LEGACY_DOMAIN_TAG + nonce + hashlib.sha256(spki).digest()).digest()


def service_report_data(statement: Mapping[str, Any]) -> bytes:
    """The 64 bytes the Certifier Service's own evidence carries (module docstring): SHA-512 over
    the tag, a zero byte and the canonical JSON of its key statement."""
    from veritee._codec import canonical_json

    try:
        canonical = canonical_json(statement)
    except (TypeError, ValueError):
        raise MalformedError(
            "the service's key statement is not plain JSON", field="statement"
        ) from None
    return hashlib.sha512(SERVICE_TAG + b"\x00" + canonical.encode("ascii")).digest()


@dataclass(frozen=True)
class BindingCheck:
    """The outcome of :func:`check`: bound or not, by which version, and what to report."""

    bound: bool
    #: 2 or 1 when bound by veritee's binding, None when not (or, from :func:`check_named`,
    #: when the nonce is the evidence's whole report data or nonce claim).
    version: int | None
    #: Why the binding is refused (``binding_mismatch``, ``binding_version_refused``).
    refusal: Reason | None = None
    #: A warning for an accepted binding (``binding_v1_deprecated``).
    warning: Reason | None = None


def check(
    claims: Mapping[str, Any],
    *,
    nonce: bytes,
    spki: bytes | None,
    key_store: KeyStoreProof | None = None,
) -> BindingCheck:
    """Does the evidence's report data bind ``nonce``, the key ``spki`` (or none), the profile
    the evidence attests and ``key_store``? The one rule (module docstring, with the version-1
    transition)."""
    actual = _report_data(claims)
    profile = attested_profile(claims)
    what = "this nonce" + (" and the presented public key" if spki else "")
    if key_store is not None:
        what += " and key store generation"
    expected = report_data_for(nonce, spki or b"", profile=profile, key_store=key_store)
    if actual is not None and hmac.compare_digest(actual, expected):
        return BindingCheck(True, 2)
    if (
        actual is not None
        and key_store is None
        and hmac.compare_digest(actual, report_data_v1(nonce, spki or b""))
    ):
        if profile.allows_debug:
            return BindingCheck(
                True,
                1,
                warning=Reason(
                    "binding_v1_deprecated",
                    "report data uses binding version 1 (no profile); accepted for a "
                    f"{profile.value} workload during the transition: update its SDK",
                ),
            )
        return BindingCheck(
            False,
            None,
            refusal=Reason(
                "binding_version_refused",
                f"report data uses binding version 1, which carries no profile; the evidence "
                f"attests {profile.value}, which needs version 2: update the workload's SDK",
            ),
        )
    runs_as = _profile_bound(actual, nonce, spki or b"", key_store)
    if runs_as is not None:
        return BindingCheck(
            False,
            None,
            refusal=Reason(
                "binding_mismatch",
                f"the workload runs as {runs_as.value} but its evidence attests {profile.value}",
            ),
        )
    return BindingCheck(
        False, None, refusal=Reason("binding_mismatch", f"report data does not bind {what}")
    )


def check_named(
    claims: Mapping[str, Any], *, nonce: bytes, spki: bytes | None = None
) -> BindingCheck:
    """Does the evidence carry the whole of what a relying party names (``veritee verify
    --nonce``, with ``--public-key`` when ``spki``)?

    With a key, only :func:`check` of nonce and key counts. Without one, ``nonce`` must be
    bound by :func:`check` with no key, or equal the evidence's *entire* report data (64 bytes
    on SEV-SNP, TDX, SGX; the TPM quote's extraData) or its entire ``nonce`` claim (Nitro).
    Never a prefix: a one-byte nonce would match one report in 256. An empty nonce binds
    nothing.
    """
    if not nonce:
        return BindingCheck(
            False, None, refusal=Reason("nonce_mismatch", "an empty nonce binds nothing")
        )
    bound = check(claims, nonce=nonce, spki=spki)
    if bound.bound or (
        bound.refusal is not None and bound.refusal.code == "binding_version_refused"
    ):
        return bound
    if spki:
        return BindingCheck(False, None, refusal=Reason(
            "nonce_mismatch", "the evidence does not bind this nonce and public key"))  # fmt: skip
    for name in ("report_data", "nonce"):
        value = claims.get(name)
        if isinstance(value, str) and hmac.compare_digest(
            value.lower().encode(), nonce.hex().encode()
        ):
            return BindingCheck(True, None)
    return BindingCheck(
        False, None, refusal=Reason("nonce_mismatch", "the evidence does not carry this nonce")
    )


@dataclass(frozen=True)
class ExpectedBinding:
    """What a caller expects the evidence to bind: a nonce, a key (or none), a key store.

    The one binding rule of every appraisal (:func:`veritee.appraisal.attest.appraise_evidence`):
    :func:`check`, veritee's report-data binding. ``whole_value`` (``veritee verify --nonce``
    only, for evidence no veritee SDK made) also accepts the nonce as the evidence's entire
    report data or ``nonce`` claim (:func:`check_named`); never a prefix. The service never
    sets it: it issued the nonce and needs the key and the attested profile bound with it.
    """

    nonce: bytes
    spki: bytes | None = None
    key_store: KeyStoreProof | None = None
    whole_value: bool = False

    def check(self, claims: Mapping[str, Any]) -> BindingCheck:
        if self.whole_value and self.key_store is None:
            return check_named(claims, nonce=self.nonce, spki=self.spki)
        return check(claims, nonce=self.nonce, spki=self.spki, key_store=self.key_store)


def _report_data(claims: Mapping[str, Any]) -> bytes | None:
    value = claims.get("report_data")
    if not isinstance(value, str):
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if len(raw) == 64 else None


def _profile_bound(
    actual: bytes | None, nonce: bytes, spki: bytes, key_store: KeyStoreProof | None
) -> Profile | None:
    """Which other profile the report data binds, for a helpful refusal (or None)."""
    if actual is None:
        return None
    for p in Profile:
        if hmac.compare_digest(
            actual, report_data_for(nonce, spki, profile=p, key_store=key_store)
        ):
            return p
    return None


def profile_launch_data(profile: Profile, size: int = 32) -> bytes:
    """Launch data that attests ``profile``: ``SHA-256("veritee-profile-v1" || 0x00 || name)``,
    zero-padded to ``size`` bytes (32 HOSTDATA, 48 MRCONFIGID, 64 CCA personalization)."""
    if size < 32:
        raise ValueError("launch data fields are at least 32 bytes")
    digest = hashlib.sha256(PROFILE_LAUNCH_TAG + b"\x00" + profile.value.encode()).digest()
    return digest + bytes(size - 32)


_BY_LAUNCH_DATA: dict[str, Profile] = {
    profile_launch_data(p, size).hex(): p
    for p in Profile
    for size in {s for _, s in LAUNCH_DATA_CLAIMS.values()}
}


_PROFILES = {p.value: p for p in Profile}


def attested_profile(claims: Mapping[str, Any]) -> Profile:
    """The profile the evidence behind ``claims`` attests (module docstring, rules 1-4)."""
    platform = claims.get("platform")
    profile = Profile.DEVELOPMENT
    if platform == "simulated":
        profile = _PROFILES.get(str(claims.get("profile")), Profile.DEVELOPMENT)
    elif isinstance(platform, str) and platform in LAUNCH_DATA_CLAIMS:
        name, size = LAUNCH_DATA_CLAIMS[platform]
        value = claims.get(name)
        if isinstance(value, str) and len(value) == 2 * size:
            profile = _BY_LAUNCH_DATA.get(value.lower(), Profile.DEVELOPMENT)
    if claims.get("debug") is not False and not profile.allows_debug:
        return Profile.DEVELOPMENT
    return profile
