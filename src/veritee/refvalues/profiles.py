"""Per-scheme CoRIM profile rules, as Veraison's provisioning plugins enforce them.

A CoRIM names its profile (corim-map key 3); when that profile is one a scheme registers, its
rules apply to every CoMID of the CoRIM (Veraison registers them as the ``ExtTriples``
extension of the profile, so a CoRIM without a profile, or with one no scheme registers, gets
the draft's base validation only). The rules (facts read from veraison/corim ``profiles/`` and
veraison/services ``scheme/*/corim.go``):

- Arm CCA platform (``tag:arm.com,2025:cca_platform#1.0.0``; Parsec CCA registers the same rules
  under ``tag:github.com/parallaxsecond,2023-03-03:cca``): reference values have a 32-byte
  bytes class id (implementation id), string mkeys ``cca.software-component`` (digests of 32, 48
  or 64 bytes, exactly one bytes signer-id of 32/48/64 bytes, no version scheme) and at most one
  ``cca.platform-config`` (raw value and mask), at least one software component; attestation
  keys: implementation id, a 33-byte UEID instance starting 0x01, exactly one PKIX key.
- Arm CCA realm (``tag:arm.com,2025:cca_realm#1.0.0``): class id = the RIM (bytes of 32/48/64);
  mkeys ``cca.rim`` (mandatory), ``cca.rem0``-``cca.rem3`` (exactly one digest of 32/48/64
  bytes), ``cca.rpv`` (raw value).
- PSA (``tag:arm.com,2025:psa#1.0.0``): implementation id as for CCA; every mkey is the string
  ``psa.software-component`` with exactly one bytes signer-id; attestation keys as for CCA.
- AMD SEV-SNP (``tag:amd.com,2024:snp-corim-profile``, ``https://amd.com/ark``): trust anchors
  have class vendor and model and certificate keys; reference values have an OID class id and a
  bytes instance; every mkey is an unsigned integer.
- TPM EnactTrust (``https://enacttrust.com/veraison/1.0.0``): UUID instance, no class, no group;
  exactly one measurement with exactly one digest; exactly one (PEM EC) key per trust anchor.
- Parsec TPM (``tag:github.com/parallaxsecond,2023-03-03:tpm``): UUID class id; trust anchors
  have a bytes instance, reference values none; no group; exactly one PKIX key; every mkey an
  unsigned integer (the PCR) with digests.
- RIoT (``tag:veraison-project.com,2026:riot``): vendor ``Veraison Project``, model ``RIOT``,
  certificate keys, no reference values.
- Earlier Veraison releases' profiles, still named by its end-to-end inputs:
  ``http://arm.com/cca/ssd/1`` and ``http://arm.com/psa/iot/1`` (a #6.600 implementation id,
  reference values without instance keyed by ``psa.refval-id`` with digests, or on CCA
  ``cca.platform-config-id`` with a raw value; trust anchors with a UEID and one PKIX key) and
  ``http://arm.com/cca/realm/1`` (bytes instance, raw value and integrity registers, no trust
  anchors). A profile written in an earlier draft's list form (``[+ profile]``, older cocli) is
  reported (``corim_profile_unchecked``) but its rules are not applied.

The services' common validator also requires a CoMID to hold reference values or trust anchors.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.refvalues.corim import (
    Comid,
    Environment,
    Inspection,
    Invalid,
    KeyTriple,
    Measurement,
    Typed,
)

__all__ = ["PROFILES", "SCHEMES", "check", "scheme_of_profile"]

CCA_PLATFORM = "tag:arm.com,2025:cca_platform#1.0.0"
CCA_REALM = "tag:arm.com,2025:cca_realm#1.0.0"
PARSEC_CCA = "tag:github.com/parallaxsecond,2023-03-03:cca"
PSA = "tag:arm.com,2025:psa#1.0.0"
SEVSNP = "tag:amd.com,2024:snp-corim-profile"
SEVSNP_ARK = "https://amd.com/ark"
ENACTTRUST = "https://enacttrust.com/veraison/1.0.0"
PARSEC_TPM = "tag:github.com/parallaxsecond,2023-03-03:tpm"
RIOT = "tag:veraison-project.com,2026:riot"
TDX = "oid:6086480186f84d011001"  # 2.16.840.1.113741.1.16.1 (mval extensions only)
# Profiles of earlier Veraison releases (the services' end-to-end inputs still use them)
LEGACY_CCA_PLATFORM = ("http://arm.com/cca/ssd/1", "tag:arm.com,2023:cca_platform#1.0.0")
LEGACY_CCA_REALM = ("http://arm.com/cca/realm/1", "tag:arm.com,2023:realm#1.0.0")
LEGACY_PSA = ("http://arm.com/psa/iot/1",)

# scheme -> the profiles it registers
SCHEMES: dict[str, tuple[str, ...]] = {
    "arm-cca": (CCA_PLATFORM, CCA_REALM, *LEGACY_CCA_PLATFORM, *LEGACY_CCA_REALM),
    "parsec-cca": (PARSEC_CCA,),
    "psa-iot": (PSA, *LEGACY_PSA),
    "sevsnp": (SEVSNP, SEVSNP_ARK),
    "tpm-enacttrust": (ENACTTRUST,),
    "parsec-tpm": (PARSEC_TPM,),
    "riot": (RIOT,),
    "tdx": (TDX,),
    "generic": (),
}
ALIASES = {
    "cca": "arm-cca",
    "psa": "psa-iot",
    "sev-snp": "sevsnp",
    "snp": "sevsnp",
    "enacttrust": "tpm-enacttrust",
    "comid-generic": "generic",
    "generic(psa-like)": "generic",
    "dice": "generic",
}
for _alias, _target in ALIASES.items():
    SCHEMES[_alias] = SCHEMES[_target]


def scheme_of_profile(profile: str | None) -> str | None:
    for name, profs in SCHEMES.items():
        if name not in ALIASES and profile in profs:
            return name
    return None


def _fail(message: str) -> Invalid:
    return Invalid("corim_profile_violation", message)


# --- PSA / CCA ---------------------------------------------------------------------------------


def _impl_id(env: Environment, prefix: str) -> None:
    if not env.has_class:
        raise _fail(f"{prefix}: environment.class is required")
    if env.class_id is None:
        raise _fail(f"{prefix}: environment.class.id (implementation-id) is required")
    ctype = "bytes" if env.class_id.type == "psa.impl-id" else env.class_id.type
    if ctype != "bytes":
        raise _fail(
            f"{prefix}: implementation-id must be of type 'bytes', got '{env.class_id.type}'"
        )
    raw = env.class_id.bytes_value() or b""
    if len(raw) != 32:
        raise _fail(f"{prefix}: implementation-id must be exactly 32 bytes (got {len(raw)})")


def _instance_ueid(env: Environment, prefix: str) -> None:
    if env.instance is None:
        raise _fail(f"{prefix}: environment.instance (instance-id) is required")
    if env.instance.type != "ueid":
        raise _fail(f"{prefix}: instance-id must be of type 'ueid', got '{env.instance.type}'")
    raw = env.instance.bytes_value() or b""
    if len(raw) != 33:
        raise _fail(f"{prefix}: instance-id must be exactly 33 bytes (got {len(raw)})")
    if raw[0] != 0x01:
        raise _fail(f"{prefix}: instance-id must have RAND type (0x01), got 0x{raw[0]:02x}")


def _one_pkix_key(kt: KeyTriple, prefix: str) -> None:
    if len(kt.keys) != 1:
        raise _fail(
            f"{prefix}: verification-keys must contain exactly one entry, got {len(kt.keys)}"
        )
    if kt.keys[0].type != "pkix-base64-key":
        raise _fail(
            f"{prefix}: verification-key must be of type 'pkix-base64-key', got '{kt.keys[0].type}'"
        )


def _signer_id(m: Measurement, prefix: str) -> None:
    keys = m.cryptokeys
    if keys is None:
        raise _fail(f"{prefix}: cryptokeys (signer-id) is mandatory but not set")
    if len(keys) != 1:
        raise _fail(f"{prefix}: cryptokeys must contain exactly one entry, got {len(keys)}")
    if keys[0].type != "bytes":
        raise _fail(
            f"{prefix}: cryptokeys (signer-id) must be of type 'bytes', got '{keys[0].type}'"
        )
    if len(keys[0].value) not in (32, 48, 64):
        raise _fail(f"{prefix}: signer-id must be 32, 48, or 64 bytes (got {len(keys[0].value)})")


def _string_mkey(m: Measurement, prefix: str) -> str:
    if m.key is None:
        raise _fail(f"{prefix}: mkey is mandatory but not set")
    if m.key.type != "string":
        raise _fail(f"{prefix}: mkey must be of type 'string', got '{m.key.type}'")
    return str(m.key.value)


def _hash_size(value: bytes) -> bool:
    return len(value) in (32, 48, 64)


def _psa(comid: Comid) -> None:
    for i, rv in enumerate(comid.reference_values):
        prefix = f"reference value at index {i}"
        _impl_id(rv.environment, prefix)
        if (
            rv.environment.instance is not None
        ):  # services' PSA store keys reference values on impl-id
            raise _fail(
                f"{prefix}: a reference value applies to an implementation, not an instance"
            )
        for j, m in enumerate(rv.measurements):
            mp = f"{prefix}, measurement at index {j}"
            mk = _string_mkey(m, mp)
            if mk != "psa.software-component":
                raise _fail(f'{mp}: mkey must be "psa.software-component", got {mk!r}')
            if not m.digests:
                raise _fail(f"{mp}: a software component needs its digests")
            _signer_id(m, mp)
    for i, kt in enumerate(comid.attest_keys):
        prefix = f"attester verification key at index {i}"
        _impl_id(kt.environment, prefix)
        _instance_ueid(kt.environment, prefix)
        _one_pkix_key(kt, prefix)


def _cca_platform(comid: Comid) -> None:
    for i, rv in enumerate(comid.reference_values):
        prefix = f"platform reference value at index {i}"
        _impl_id(rv.environment, f"{prefix}: environment")
        has_sw, configs = False, 0
        for j, m in enumerate(rv.measurements):
            mp = f"{prefix}: measurement at index {j}"
            mk = _string_mkey(m, mp)
            if mk == "cca.software-component":
                if m.digests is None:
                    raise _fail(f"{mp}: digests: digests field is mandatory but not set")
                for d in m.digests:
                    if not _hash_size(d.value):
                        raise _fail(
                            f"{mp}: digests: digest must be 32, 48, or 64 bytes (got {len(d.value)})"
                        )
                _signer_id(m, f"{mp}: cryptokeys")
                if m.version is not None and m.version[1] is not None:
                    raise _fail(
                        f"{mp}: version-scheme field MUST NOT be present in cca.software-component"
                    )
                has_sw = True
            elif mk == "cca.platform-config":
                if m.raw_value is None:
                    raise _fail(f"{mp}: raw-value is mandatory for cca.platform-config")
                if m.raw_value_mask is None:
                    raise _fail(f"{mp}: raw-value-mask is mandatory for cca.platform-config")
                configs += 1
                if configs > 1:
                    raise _fail(
                        f"{prefix}: only one platform-config measurement allowed per triple"
                    )
            else:
                raise _fail(
                    f'{mp}: invalid mkey "{mk}", expected "cca.software-component" or "cca.platform-config"'
                )
        if not has_sw:
            raise _fail(f"{prefix}: at least one software component measurement is required")
    for i, kt in enumerate(comid.attest_keys):
        prefix = f"platform attestation verification key at index {i}: environment"
        _impl_id(kt.environment, prefix)
        _instance_ueid(kt.environment, prefix)
        _one_pkix_key(kt, f"platform attestation verification key at index {i}")


_REMS = {"cca.rem0", "cca.rem1", "cca.rem2", "cca.rem3"}


def _cca_realm(comid: Comid) -> None:
    for i, rv in enumerate(comid.reference_values):
        prefix = f"realm reference value at index {i}"
        env = rv.environment
        if not env.has_class:
            raise _fail(f"{prefix}: environment.class is required for CCA Realm profile")
        if env.class_id is None:
            raise _fail(f"{prefix}: environment.class.id (RIM) is required for CCA Realm profile")
        if env.class_id.type != "bytes":
            raise _fail(f"{prefix}: RIM must be of type 'bytes', got '{env.class_id.type}'")
        if not _hash_size(env.class_id.value):
            raise _fail(f"{prefix}: RIM must be 32, 48, or 64 bytes")
        has_rim = False
        for j, m in enumerate(rv.measurements):
            mp = f"{prefix}: measurement at index {j}"
            mk = _string_mkey(m, mp)
            if mk == "cca.rim" or mk in _REMS:
                if m.digests is None:
                    raise _fail(f"{mp}: digests field is mandatory but not set")
                if len(m.digests) != 1:
                    raise _fail(
                        f"{mp}: digests must contain exactly one entry, got {len(m.digests)}"
                    )
                if not _hash_size(m.digests[0].value):
                    raise _fail(f"{mp}: hash value must be 32, 48, or 64 bytes")
                has_rim = has_rim or mk == "cca.rim"
            elif mk == "cca.rpv":
                if m.raw_value is None:
                    raise _fail(f"{mp}: raw-value is mandatory for cca.rpv")
            else:
                raise _fail(
                    f"{mp}: invalid mkey {mk!r}, expected 'cca.rim', 'cca.rem0'-'cca.rem3', or 'cca.rpv'"
                )
        if not has_rim:
            raise _fail(f"{prefix}: RIM (cca.rim) measurement is mandatory but not found")


# --- Veraison services' TriplesValidator schemes -----------------------------------------------

EnvCheck = Callable[[Environment], None]
KeysCheck = Callable[[list[Typed]], None]
MeasCheck = Callable[[list[Measurement]], None]


def _triples(
    comid: Comid,
    *,
    env: EnvCheck | None = None,
    ta_env: EnvCheck | None = None,
    rv_env: EnvCheck | None = None,
    keys: KeysCheck | None = None,
    meas: MeasCheck | None = None,
    disallow_refvals: bool = False,
) -> None:
    for i, kt in enumerate(comid.attest_keys):
        check = ta_env or env
        try:
            if check is not None:
                check(kt.environment)
        except Invalid as e:
            raise _fail(f"trust anchor {i} environment: {e.message}") from None
        try:
            if keys is not None:
                keys(kt.keys)
        except Invalid as e:
            raise _fail(f"trust anchor {i} verif. keys: {e.message}") from None
    for i, vt in enumerate(comid.reference_values):
        if disallow_refvals:
            raise _fail("found reference values (disallowed by scheme)")
        check = rv_env or env
        try:
            if check is not None:
                check(vt.environment)
        except Invalid as e:
            raise _fail(f"reference value {i} environment: {e.message}") from None
        try:
            if meas is not None:
                meas(vt.measurements)
        except Invalid as e:
            raise _fail(f"reference value {i} measurements: {e.message}") from None
    if not comid.attest_keys and not comid.reference_values:
        raise _fail("no reference values or trust anchors in CoMID triples")


def _cert_keys(keys: list[Typed]) -> None:
    for k in keys:
        if k.type not in ("pkix-base64-cert", "pkix-base64-cert-path"):
            raise _fail(f"key must be a cert or a cert path, found: {k.type}")


def _uint_mkeys(ms: list[Measurement], *, digests: bool = False, label: str = "mkey") -> None:
    for i, m in enumerate(ms):
        if m.key is None:
            raise _fail(
                f"measurement {i}: {label} not set"
                if label == "mkey"
                else f"measurement {i} has no key"
            )
        if m.key.type != "uint":
            raise _fail(
                f"measurement {i}: mkey type: expected uint, got {m.key.type}"
                if label == "mkey"
                else f"measurement {i} key: expected uint, found {m.key.type}"
            )
        if digests and m.digests is None:
            raise _fail(f"measurement {i} does not contain digests")


def _sevsnp(comid: Comid) -> None:
    def ta_env(e: Environment) -> None:
        if not e.has_class:
            raise _fail("missing class")
        if e.vendor is None:
            raise _fail("missing vendor")
        if e.model is None:
            raise _fail("missing model")

    def rv_env(e: Environment) -> None:
        if not e.has_class:
            raise _fail("missing class")
        if e.class_id is None:
            raise _fail("missing class ID")
        if e.class_id.type != "oid":
            raise _fail(f"class ID: expected OID, got {e.class_id.type}")
        if e.instance is None:
            raise _fail("missing instance")
        if e.instance.type != "bytes":
            raise _fail(f"instance: expected bytes, got {e.instance.type}")

    _triples(comid, ta_env=ta_env, rv_env=rv_env, keys=_cert_keys, meas=_uint_mkeys)


def _enacttrust(comid: Comid) -> None:
    def env(e: Environment) -> None:
        if e.instance is None:
            raise _fail("instance not set in environment")
        if e.instance.type != "uuid":
            raise _fail(f"instance: expected uuid, found {e.instance.type}")
        if e.has_class:
            raise _fail("class set in environment")
        if e.group is not None:
            raise _fail("group set in environment")

    def meas(ms: list[Measurement]) -> None:
        if len(ms) != 1:
            raise _fail(f"expected exactly one measurement, found {len(ms)}")
        if ms[0].digests is None:
            raise _fail("no digests in measurement")
        if len(ms[0].digests) != 1:
            raise _fail(f"expected exactly one digest in measurement, found {len(ms[0].digests)}")

    def keys(ks: list[Typed]) -> None:
        if len(ks) != 1:
            raise _fail(f"expected trust anchor to contain exactly one key; found {len(ks)}")
        k = ks[0]
        if k.type != "pkix-base64-key":
            raise _fail(f"could not parse ak-pub: expected a PEM public key, got {k.type}")
        try:
            pub = serialization.load_pem_public_key(str(k.value).encode())
        except ValueError as e:
            raise _fail(f"could not parse ak-pub: {e}") from None
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            raise _fail(f"could not extract EC public key; got {type(pub).__name__}")

    _triples(comid, env=env, meas=meas, keys=keys)


def _single_pkix_key(ks: list[Typed]) -> None:
    """A trust anchor of exactly one PKIX base64 key (Veraison's Parsec TPM and legacy PSA/CCA)."""
    if len(ks) != 1:
        raise _fail(f"expected exactly one key but got {len(ks)}")
    if ks[0].type != "pkix-base64-key":
        raise _fail(f"trust anchor must be a PKIX base64 key, found: {ks[0].type}")


def _parsec_tpm(comid: Comid) -> None:
    def make_env(trust_anchor: bool) -> EnvCheck:
        def check(e: Environment) -> None:
            if not e.has_class:
                raise _fail("class not set in environment")
            if e.class_id is None:
                raise _fail("class ID not set in environment")
            if e.class_id.type != "uuid":
                raise _fail(f"class ID: expected uuid, found {e.class_id.type}")
            if trust_anchor:
                if e.instance is None:
                    raise _fail("instance not set in trust anchor environment")
                if e.instance.type != "bytes":
                    raise _fail(f"instance: expected bytes, found {e.instance.type}")
            elif e.instance is not None:
                raise _fail("instance set in reference value environment")
            if e.group is not None:
                raise _fail("group set in environment")

        return check

    def meas(ms: list[Measurement]) -> None:
        _uint_mkeys(ms, digests=True, label="key")

    _triples(comid, ta_env=make_env(True), rv_env=make_env(False), keys=_single_pkix_key, meas=meas)


def _riot(comid: Comid) -> None:
    def env(e: Environment) -> None:
        if e.vendor is None:
            raise _fail("missing vendor")
        if e.vendor != "Veraison Project":
            raise _fail('vendor must be "Veraison Project"')
        if e.model is None:
            raise _fail("missing model")
        if e.model != "RIOT":
            raise _fail('model must be "RIOT"')

    _triples(comid, env=env, keys=_cert_keys, disallow_refvals=True)


def _legacy_platform(comid: Comid, *, cca: bool) -> None:
    """Earlier Veraison releases' Arm CCA platform and PSA rules (``http://arm.com/cca/ssd/1``,
    ``http://arm.com/psa/iot/1``): a PSA implementation id (#6.600) as class id; trust anchors
    with a UEID instance and exactly one PKIX key; reference values without instance, keyed by
    ``psa.refval-id`` with digests (or, on CCA, ``cca.platform-config-id`` with a raw value)."""

    def make_env(trust_anchor: bool) -> EnvCheck:
        def check(e: Environment) -> None:
            if not e.has_class:
                raise _fail("class not set")
            if e.class_id is None:
                raise _fail("class ID not set")
            if e.class_id.type != "psa.impl-id":
                raise _fail(f"class ID: expected psa.impl-id, got {e.class_id.type}")
            if trust_anchor:
                if e.instance is None:
                    raise _fail("instance not set for trust anchor")
                if e.instance.type != "ueid":
                    raise _fail(f"instance: expected UEID, got {e.instance.type}")
            elif e.instance is not None:
                raise _fail("instance set for reference value")

        return check

    def meas(ms: list[Measurement]) -> None:
        for i, m in enumerate(ms):
            if m.key is None:
                raise _fail(f"measurement {i} key not set")
            if m.key.type == "psa.refval-id":
                if m.digests is None:
                    raise _fail(f"measurement {i} value: no digests")
            elif cca and m.key.type == "cca.platform-config-id":
                if m.raw_value is None:
                    raise _fail(f"measurement {i} value: no raw value")
            else:
                raise _fail(f"measurement {i} key: unexpected type {m.key.type}")

    _triples(comid, ta_env=make_env(True), rv_env=make_env(False), keys=_single_pkix_key, meas=meas)


def _legacy_realm(comid: Comid) -> None:
    """Earlier Veraison releases' CCA realm rules (``http://arm.com/cca/realm/1``): a bytes
    instance (the RIM), each measurement with its personalization (raw value) and integrity
    registers, no trust anchors."""
    if comid.attest_keys:
        raise _fail("found trust anchors (disallowed by scheme)")

    def env(e: Environment) -> None:
        if e.instance is None:
            raise _fail("instance not set")
        if e.instance.type != "bytes":
            raise _fail(f"instance: expected bytes, got {e.instance.type}")

    def meas(ms: list[Measurement]) -> None:
        for i, m in enumerate(ms):
            if m.raw_value is None:
                raise _fail(f"measurement {i}: personalization (raw value) not set")
            if m.integrity_registers is None:
                raise _fail(f"measurement {i} integrity registers not set")

    _triples(comid, env=env, meas=meas)


def _tdx(comid: Comid) -> None:
    """Intel's TDX profile adds mval extensions (negative keys) and no triple rules."""


PROFILES: dict[str, Callable[[Comid], None]] = {
    CCA_PLATFORM: _cca_platform,
    PARSEC_CCA: _cca_platform,
    CCA_REALM: _cca_realm,
    PSA: _psa,
    SEVSNP: _sevsnp,
    SEVSNP_ARK: _sevsnp,
    ENACTTRUST: _enacttrust,
    PARSEC_TPM: _parsec_tpm,
    RIOT: _riot,
    TDX: _tdx,
    **{p: (lambda c: _legacy_platform(c, cca=True)) for p in LEGACY_CCA_PLATFORM},
    **{p: _legacy_realm for p in LEGACY_CCA_REALM},
    **{p: (lambda c: _legacy_platform(c, cca=False)) for p in LEGACY_PSA},
}


def check(result: Inspection, scheme: str | None) -> None:
    """Apply the rules of the CoRIM's profile; refuse a profile of another scheme than ``scheme``."""
    profile = result.profile
    owner = scheme_of_profile(profile)
    if scheme is not None and owner is not None and profile not in SCHEMES[scheme]:
        raise Invalid(
            "corim_profile_mismatch",
            f"the CoRIM's profile {profile} belongs to scheme {owner}, not {scheme}",
        )
    if result.scheme is None and owner is not None:
        result.scheme = owner
    rules = PROFILES.get(profile) if profile is not None and result.profile_rules else None
    if rules is None:
        return
    for i, comid in enumerate(result.comids):
        try:
            rules(comid)
        except Invalid as e:
            raise Invalid(e.code, f"CoMID tag at index {i}: {e.message}") from None
