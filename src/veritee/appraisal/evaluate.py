"""Hold verified claims against a policy (or the baseline) and explain the decision. Pure.

The baseline (no policy) accepts authentic evidence that is not debug, whose SEV-SNP guest
policy passes go-sev-guest's default checks (no migration agent), whose simulated platform key
is trusted by the caller, and, where Intel collateral decides a TCB status, whose status is
``UpToDate``. Collateral currency is checked by the verifiers themselves (they refuse
out-of-window collateral). What the baseline cannot establish is said as a warning that lowers
the EAR status to ``warning`` (AR4SI): the measured boot of a TPM or vTPM is not compared with
reference values, nor are a GPU's measurements with NVIDIA's RIMs, nor is a GPU's revocation
status checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from veritee.appraisal.decision import UNRECOGNIZED_RUNTIME, Decision, RefValueMatch
from veritee.appraisal.policy import (
    CcaPolicy,
    KeystonePolicy,
    MinTcb,
    NitroPolicy,
    NvidiaGpuPolicy,
    Policy,
    PolicySet,
    RefValuesRef,
    SevSnpPolicy,
    SgxPolicy,
    SimulatedPolicy,
    SnpGuestPolicy,
    SnpPlatformInfo,
    TdxPolicy,
    TpmPolicy,
)
from veritee.errors import VerificationError, VeriteeError
from veritee.evidence.claims import VerifiedEvidence
from veritee.reasons import Code
from veritee.refvalues.sets import RefValueSet
from veritee.tee import Tee

__all__ = [
    "MEASUREMENT_PINS",
    "RefValues",
    "appraise",
    "appraise_admitted",
    "appraise_baseline",
    "refused_for_error",
]

#: How appraisal finds a policy's reference-value sets: name -> the set (None: no such set).
#: The service passes its cache (:meth:`veritee.service.context.ServiceContext.refvalue_set`).
RefValues = Callable[[str], RefValueSet | None]

#: Platforms whose evidence is signed by a hardware root, and those whose evidence also says the
#: workload's memory is kept from the host (:class:`veritee.tee.Tee`).
HARDWARE = tuple(t.value for t in Tee if t.hardware)
ISOLATED = tuple(t.value for t in Tee if t.isolates_memory)


def refused_for_error(error: VeriteeError) -> Decision:
    """The decision for evidence that could not be verified at all: every reason the verifier
    found, and (warning ``checks_not_reached``) the costly checks it skipped because a cheap one
    already refused (:mod:`veritee.evidence._cheap`)."""
    d = Decision()
    if isinstance(error, VerificationError):
        for code, message in error.refusals:
            d.refuse(code, message, claim="instance-identity")
        if error.not_reached:
            d.warn(
                Code.CHECKS_NOT_REACHED,
                "refused before these checks ran: " + ", ".join(error.not_reached),
            )
    else:
        d.refuse(error.code, error.message, claim="instance-identity")
    return d


def _short(v: Any) -> str:
    """A claim's value for a reason's message: whole (a measurement is what one copies into a
    policy), only cut past :data:`_SHOWN` characters."""
    s = str(v)
    return s if len(s) <= _SHOWN else s[:_SHOWN] + "..."


#: The longest claim value a reason shows whole (a SHA-512 digest in hex is 128).
_SHOWN = 256


def _authentic(d: Decision, ev: VerifiedEvidence) -> None:
    d.affirm("authentic", claim="instance-identity")
    platform = ev.claims.get("platform")
    if platform in HARDWARE:
        d.affirm("hardware_genuine", claim="hardware")
    if platform in ISOLATED:
        d.affirm("memory_encrypted", claim="runtime-opaque")


def _debug(d: Decision, claims: dict[str, Any], allow: bool) -> None:
    if not claims.get("debug"):
        d.affirm("not_debug", claim="configuration")
    elif allow:
        d.warn(
            "insecure_allow_debug",
            "debug evidence accepted because the policy says allow_debug (insecure)",
            claim="configuration",
        )
    else:
        d.refuse("debug", "the workload runs in debug mode", claim="configuration")


def _intel_tcb(
    d: Decision, claims: dict[str, Any], statuses: list[str], advisories: list[str]
) -> None:
    status = claims.get("tcb_status")
    if status == "Revoked":  # terminal: whatever a policy lists (policies listing it do not load)
        d.refuse("tcb_status_not_allowed", "TCB status Revoked is never accepted", claim="hardware")
    elif status in statuses:
        if status == "UpToDate":
            d.affirm("tcb_up_to_date", claim="hardware")
        else:
            d.warn("tcb_status_allowed", f"TCB status {status} allowed by policy", claim="hardware")
    else:
        d.refuse(
            "tcb_status_not_allowed",
            (
                f"TCB status {status} is not among the allowed {', '.join(statuses)}"
                if status is not None
                else f"the evidence reports no TCB status (the allowed: {', '.join(statuses)})"
            ),
            claim="hardware",
        )
    bad = [a for a in claims.get("advisory_ids") or [] if a not in advisories]
    if bad:
        d.refuse(
            "advisories_not_allowed",
            f"advisories not allowed by policy: {', '.join(bad)}",
            claim="hardware",
        )


def _tcb_evaluation_data_number(d: Decision, claims: dict[str, Any], minimum: int | None) -> None:
    """Intel's TCB-recovery guidance: collateral older than the minimum never judges."""
    if minimum is None:
        return
    number = claims.get("tcb_evaluation_data_number")
    if not isinstance(number, int) or isinstance(number, bool) or number < minimum:
        d.refuse(
            "tcb_evaluation_data_number_below_minimum",
            f"the Intel collateral's tcbEvaluationDataNumber {number} is below the policy's "
            f"minimum {minimum}",
            claim="hardware",
        )
    else:
        d.affirm("tcb_evaluation_data_number", claim="hardware")


def appraise_baseline(ev: VerifiedEvidence) -> Decision:
    """The baseline: authentic, not debug, SEV-SNP guest policy with go-sev-guest's defaults,
    simulated platform key trusted by the caller, Intel TCB status UpToDate; and a warning for
    each thing it did not establish (see the module docstring)."""
    d = Decision(policy_name="baseline")
    _authentic(d, ev)
    claims = ev.claims
    platform = claims.get("platform")
    if platform == "sev-snp":
        _sev_snp(d, claims, _BASELINE_SNP)
    else:
        _debug(d, claims, allow=False)
    if platform == "simulated":
        _simulated_key(d, claims, trusted=claims.get("platform_key_trusted") is True)
    if platform == "keystone":  # device keys are trusted only through a policy
        _keystone_device_key(d, claims, ())
    if claims.get("tcb_status") is not None:
        _intel_tcb(d, claims, ["UpToDate"], [])
    if platform == "tpm" or claims.get("vtpm"):
        _measured_boot_not_appraised(d)
    _add_findings(d, ev)
    return d


#: go-sev-guest's defaults: debug and migration agent refused, every other control allows.
_BASELINE_SNP = SevSnpPolicy.model_validate({})

#: Findings that say what a verifier could not establish -> the trust claim left unaffirmed.
_NOT_ESTABLISHED = {
    "revocation_not_checked": "hardware",
    "reference_values_not_compared": "executables",
}


def _add_findings(d: Decision, ev: VerifiedEvidence, resolved: tuple[str, ...] = ()) -> None:
    """The verifier's findings as warnings; those in :data:`_NOT_ESTABLISHED` lower their claim
    to ``warning`` unless the policy ``resolved`` them (e.g. pinned the reference values)."""
    for f in ev.findings:
        if f.code in resolved or f in d.warnings:
            continue
        claim = _NOT_ESTABLISHED.get(f.code)
        if claim is None:
            d.warnings.append(f)
        else:
            d.warn(f.code, f.message, claim=claim)


def _measured_boot_not_appraised(d: Decision) -> None:
    d.warn(
        "measured_boot_not_appraised",
        "the (v)TPM's PCRs, and so the measured boot its event log records, were not compared "
        "with reference values (pin them with a policy's pcrs or measurements)",
        claim="executables",
    )


def _allow_list(
    d: Decision,
    what: str,
    value: Any,
    allowed: list[str] | RefValuesRef | None,
    *,
    claim: str = "executables",
    refvalues: RefValues | None = None,
) -> None:
    if allowed is None:
        return
    if isinstance(allowed, RefValuesRef):
        _in_refvalue_set(d, what, value, allowed.refvalues, claim=claim, refvalues=refvalues)
        return
    if isinstance(value, str) and value.lower() in allowed:
        d.affirm(f"{what}_allowed", claim=claim)
    else:
        d.refuse(
            f"{what}_not_allowed",
            f"{what} {_short(value)} is not in the policy's allow-list",
            claim=claim,
            value=UNRECOGNIZED_RUNTIME,
        )


def _in_refvalue_set(
    d: Decision, what: str, value: Any, name: str, *, claim: str, refvalues: RefValues | None
) -> None:
    """The allow-list is reference-value set ``name``: one dict lookup; a match names the set
    and the CoRIM it came from (a ``refvalue_matched`` note)."""
    found = refvalues(name) if refvalues is not None else None
    if found is None:
        d.refuse(
            Code.REFVALUES_UNAVAILABLE,
            f"the policy's {what} allow-list is reference-value set {name!r}, which "
            + (
                "is not known here (no reference-value store)"
                if refvalues is None
                else "has no values"
            ),
            claim=claim,
            value=UNRECOGNIZED_RUNTIME,
        )
        return
    source = found.values.get(value.lower()) if isinstance(value, str) else None
    if source is None:
        d.refuse(
            f"{what}_not_allowed",
            f"{what} {_short(value)} is not in reference-value set {name!r} ({len(found)} values)",
            claim=claim,
            value=UNRECOGNIZED_RUNTIME,
        )
        return
    d.affirm(f"{what}_allowed", claim=claim)
    d.matches.append(RefValueMatch(what, value, name, source))


def _profile(d: Decision, claims: Mapping[str, Any], policy: Policy) -> None:
    if policy.profiles is None:
        return
    prof = claims.get("profile")
    if prof in [x.value for x in policy.profiles]:
        d.affirm("profile_allowed", claim="configuration")
    else:
        d.refuse(
            "profile_not_allowed",
            (
                f"profile {prof} is not among {', '.join(x.value for x in policy.profiles)}"
                if prof is not None
                else f"the evidence attests no profile (the allowed: {', '.join(x.value for x in policy.profiles)})"
            ),
            claim="configuration",
        )


#: Platform -> (the policy field that allow-lists its ``measurement`` claim, the check's name).
MEASUREMENT_PINS: dict[str, tuple[str, str]] = {
    "sev-snp": ("measurements", "measurement"),
    "tdx": ("mrtd", "mrtd"),
    "sgx": ("mr_enclave", "mr_enclave"),
    "nitro": ("pcr0", "pcr0"),
    "tpm": ("measurements", "measurement"),
    "cca": ("measurements", "measurement"),
    "nvidia-gpu": ("measurements", "measurement"),
    "keystone": ("measurements", "measurement"),
    "simulated": ("measurements", "measurement"),
}


def _first_admitting(decisions: list[Decision]) -> Decision:
    """Of one workload's decisions under each policy in force: the first that admits it, else
    the refusal of the policy that comes closest (it has a section for the platform, then the
    fewest reasons; then the first by name)."""
    if not decisions:
        none = Decision(policy_name=None)
        none.refuse("no_policy", "no appraisal policy is installed in this domain")
        return none
    for d in decisions:
        if d.accepted:
            return d

    def distance(d: Decision) -> tuple[bool, int]:
        return any(r.code == "platform_not_allowed" for r in d.reasons), len(d.reasons)

    best = min(decisions, key=distance)
    best.closest = tuple(d.policy_name or "" for d in decisions if distance(d) == distance(best))
    return best


def appraise_admitted(
    claims: Mapping[str, Any], policy: Policy | PolicySet, refvalues: RefValues | None = None
) -> Decision:
    """Re-appraise what an admission certificate certifies under ``policy`` (the one in force).

    An admission certificate carries the ``platform``, ``measurement`` and ``profile`` the
    evidence attested when it was issued. This checks that ``policy`` still admits them: the
    platform has a section, the measurement is in that section's allow-list
    (:data:`MEASUREMENT_PINS`; none: any) and the profile is allowed. Whatever else the evidence
    showed (TCB, debug state, launch data, other registers) is not in the certificate: it was
    appraised at issue, under the policy then in force, and stands for the certificate's
    lifetime. Pure; every failing check is a reason. Under a :class:`PolicySet`, the first
    policy that admits them decides.
    """
    if isinstance(policy, PolicySet):
        return _first_admitting([appraise_admitted(claims, p, refvalues) for p in policy])
    d = Decision(policy_name=policy.name, policy_digest=policy.digest)
    platform = str(claims.get("platform"))
    p = policy.platforms.for_platform(platform)
    if p is None:
        d.refuse(
            "platform_not_allowed", f"platform {platform} is not in the policy", claim="hardware"
        )
        return d
    _profile(d, claims, policy)
    field, what = MEASUREMENT_PINS.get(platform, ("measurements", "measurement"))
    _allow_list(d, what, claims.get("measurement"), getattr(p, field, None), refvalues=refvalues)
    return d


def appraise(
    ev: VerifiedEvidence, policy: Policy | PolicySet, refvalues: RefValues | None = None
) -> Decision:
    """Appraise verified evidence against ``policy``; every failing check is a reason. Under a
    :class:`PolicySet` (the domain's policies in force), the first policy that admits the
    evidence decides; if none does, the refusal of the one that comes closest."""
    if isinstance(policy, PolicySet):
        return _first_admitting([appraise(ev, p, refvalues) for p in policy])
    d = Decision(policy_name=policy.name, policy_digest=policy.digest)
    claims = ev.claims
    platform = str(claims.get("platform"))
    p = policy.platforms.for_platform(platform)
    _authentic(d, ev)
    if p is None:
        d.refuse(
            "platform_not_allowed", f"platform {platform} is not in the policy", claim="hardware"
        )
        return d
    _profile(d, claims, policy)
    profiles = policy.profiles or []
    if len(profiles) == 1 and profiles[0].value == "production" and claims.get("debug"):
        d.refuse(
            "debug_in_production",
            "a debuggable build cannot pass a production-only policy",
            claim="configuration",
        )
    resolved = _CHECKS[type(p)](d, claims, p, refvalues) or ()
    if claims.get("vtpm") and isinstance(p, SevSnpPolicy | TdxPolicy) and not p.pcrs:
        _measured_boot_not_appraised(d)
    _add_findings(d, ev, resolved)
    return d


def _tdx(d: Decision, claims: dict[str, Any], p: TdxPolicy, refvalues: RefValues | None) -> None:
    _debug(d, claims, p.allow_debug)
    _allow_list(
        d, "mrtd", claims.get("mrtd", claims.get("measurement")), p.mrtd, refvalues=refvalues
    )
    _allow_list(d, "mr_seam", claims.get("mr_seam"), p.mr_seam, claim="hardware")
    for idx, allowed in p.rtmr.items():
        _allow_list(d, f"rtmr{idx}", claims.get(f"rtmr{idx}"), allowed)
    _pcr_pins(d, claims, p.pcrs)
    _intel_tcb(d, claims, p.tcb_status, p.allowed_advisories)
    _tcb_evaluation_data_number(d, claims, p.min_tcb_evaluation_data_number)


def _sgx(d: Decision, claims: dict[str, Any], p: SgxPolicy, refvalues: RefValues | None) -> None:
    _debug(d, claims, p.allow_debug)
    _allow_list(d, "mr_enclave", claims.get("mr_enclave", claims.get("measurement")), p.mr_enclave,
                refvalues=refvalues)  # fmt: skip
    _allow_list(d, "mr_signer", claims.get("mr_signer"), p.mr_signer)
    if p.isv_prod_id is not None and claims.get("isv_prod_id") != p.isv_prod_id:
        d.refuse(
            "isv_prod_id_mismatch", f"ISV product ID {claims.get('isv_prod_id')} != {p.isv_prod_id}"
        )
    if p.min_isv_svn is not None and int(claims.get("isv_svn") or 0) < p.min_isv_svn:
        d.refuse("isv_svn_below_minimum", f"ISV SVN {claims.get('isv_svn')} < {p.min_isv_svn}")
    _intel_tcb(d, claims, p.tcb_status, p.allowed_advisories)
    _tcb_evaluation_data_number(d, claims, p.min_tcb_evaluation_data_number)


def _nitro(
    d: Decision, claims: dict[str, Any], p: NitroPolicy, refvalues: RefValues | None
) -> None:
    _debug(d, claims, p.allow_debug)
    pcrs: tuple[tuple[str, list[str] | RefValuesRef | None], ...] = (
        ("0", p.pcr0),
        ("1", p.pcr1),
        ("2", p.pcr2),
        ("8", p.pcr8),
    )
    for i, allowed_pcr in pcrs:
        _allow_list(d, f"pcr{i}", claims.get(f"pcr{i}"), allowed_pcr, refvalues=refvalues)


def _tpm(d: Decision, claims: dict[str, Any], p: TpmPolicy, refvalues: RefValues | None) -> None:
    _allow_list(d, "measurement", claims.get("measurement"), p.measurements, refvalues=refvalues)
    _pcr_pins(d, claims, p.pcrs)
    if p.measurements is None and not p.pcrs:
        _measured_boot_not_appraised(d)


def _keystone(
    d: Decision, claims: dict[str, Any], p: KeystonePolicy, refvalues: RefValues | None
) -> None:
    _keystone_device_key(d, claims, p.device_keys)
    _debug(d, claims, allow=False)
    _allow_list(d, "measurement", claims.get("measurement"), p.measurements, refvalues=refvalues)
    _allow_list(
        d, "sm_measurement", claims.get("sm_measurement"), p.sm_measurements, claim="hardware"
    )


def _nvidia_gpu(
    d: Decision, claims: dict[str, Any], p: NvidiaGpuPolicy, refvalues: RefValues | None
) -> tuple[str, ...]:
    """Returns the findings the policy resolves (the reference values it compared)."""
    _allow_list(d, "measurement", claims.get("measurement"), p.measurements, refvalues=refvalues)
    blocks = claims.get("measurements") or {}
    for i, allowed in sorted(p.blocks.items(), key=lambda kv: int(kv[0])):
        _allow_list(d, f"block{int(i)}", blocks.get(str(int(i))), allowed)
    if p.driver_versions is not None:
        _allow_list(d, "driver_version", claims.get("driver_version"), p.driver_versions,
                    claim="configuration")  # fmt: skip
    return ("reference_values_not_compared",) if p.measurements is not None or p.blocks else ()


def _cca(
    d: Decision, claims: dict[str, Any], p: CcaPolicy, refvalues: RefValues | None = None
) -> None:
    if claims.get("platform_key") in p.platform_keys:
        d.affirm("platform_key_trusted", claim="hardware")
    else:
        d.refuse("platform_key_not_trusted",
                 "the CCA platform attestation key is not listed in the policy's platform_keys",
                 claim="hardware")  # fmt: skip
    _debug(d, claims, p.allow_debug)
    _allow_list(d, "measurement", claims.get("measurement"), p.measurements, refvalues=refvalues)
    for i, allowed in sorted(p.rem.items()):
        _allow_list(d, f"rem{i}", claims.get(f"rem{i}"), allowed)


def _keystone_device_key(
    d: Decision, claims: dict[str, Any], trusted: tuple[str, ...] | list[str]
) -> None:
    """A Keystone report names its device root key itself: it counts only where a policy lists
    it (``platforms.keystone.device_keys``); no key is trusted by default, not even the
    baseline's."""
    key = claims.get("device_key")
    if isinstance(key, str) and key.lower() in trusted:
        d.affirm("platform_key_trusted", claim="hardware")
    else:
        d.refuse(
            "platform_key_not_trusted",
            f"the Keystone device key {_short(key)} is not trusted: device keys are trusted only "
            "through a policy's platforms.keystone.device_keys",
            claim="hardware",
        )


def _pcr_pins(d: Decision, claims: dict[str, Any], pins: dict[str, list[str]]) -> None:
    for i, allowed in sorted(pins.items(), key=lambda kv: int(kv[0])):
        _allow_list(d, f"pcr{int(i)}", claims.get(f"pcr{int(i)}"), allowed)


def _simulated_key(d: Decision, claims: dict[str, Any], *, trusted: bool) -> None:
    """The simulated platform's key vouches for itself: it counts only where trusted (the
    caller's ``--platform-key``, or the policy's ``platform_keys``)."""
    if trusted:
        d.affirm("platform_key_trusted", claim="instance-identity")
    else:
        d.refuse(
            "platform_key_not_trusted",
            f"the simulated platform key {_short(claims.get('platform_key'))} is not trusted: a "
            "key that signs its own evidence is no root of trust (give it with --platform-key, or "
            "list it in platforms.simulated.platform_keys)",
            claim="instance-identity",
        )
    d.warn("simulated_platform", "simulated platform: no hardware protection", claim="hardware")


def _simulated(
    d: Decision, claims: dict[str, Any], p: SimulatedPolicy, refvalues: RefValues | None = None
) -> None:
    _simulated_key(d, claims, trusted=claims.get("platform_key") in p.platform_keys)
    _debug(d, claims, p.allow_debug)
    _allow_list(d, "measurement", claims.get("measurement"), p.measurements, refvalues=refvalues)


#: (guest-policy bit claim, control, True if the control allows the bit, else requires it).
_GUEST_CONTROLS: tuple[tuple[str, str, bool], ...] = (
    ("smt", "allow_smt", True),
    ("single_socket", "require_single_socket", False),
    ("cxl_allow", "allow_cxl", True),
    ("mem_aes_256_xts", "require_aes_256_xts", False),
    ("rapl_dis", "require_rapl_disabled", False),
    ("ciphertext_hiding", "require_ciphertext_hiding", False),
    ("page_swap_disable", "require_page_swap_disabled", False),
)
_PLATFORM_CONTROLS: tuple[tuple[str, str, bool], ...] = (
    ("smt_enabled", "allow_smt", True),
    ("tsme_enabled", "allow_tsme", True),
    ("tio_enabled", "allow_tio", True),
    ("ecc_enabled", "require_ecc", False),
    ("rapl_disabled", "require_rapl_disabled", False),
    ("ciphertext_hiding_enabled", "require_ciphertext_hiding", False),
    ("alias_check_complete", "require_alias_check", False),
)


def _bits_against(
    bits: dict[str, Any],
    controls: tuple[tuple[str, str, bool], ...],
    policy: SnpGuestPolicy | SnpPlatformInfo,
) -> list[str]:
    """The controls ``bits`` fail, as go-sev-guest's validatePolicy / validatePlatformInfo."""
    failed = []
    for bit, control, is_allow in controls:
        wanted = bool(getattr(policy, control))
        value = bool(bits.get(bit))
        if (is_allow and value and not wanted) or (not is_allow and wanted and not value):
            failed.append(f"{bit} ({control}: {str(wanted).lower()})")
    return failed


def _sev_snp(
    d: Decision, claims: dict[str, Any], p: SevSnpPolicy, refvalues: RefValues | None = None
) -> None:
    _debug(d, claims, p.allow_debug)
    _allow_list(d, "measurement", claims.get("measurement"), p.measurements, refvalues=refvalues)
    _allow_list(d, "host_data", claims.get("host_data"), p.host_data, claim="configuration")
    _pcr_pins(d, claims, p.pcrs)
    if p.max_vmpl is not None and int(claims.get("vmpl", 0)) > p.max_vmpl:
        d.refuse(
            "vmpl_above_maximum", f"VMPL {claims.get('vmpl')} > {p.max_vmpl}", claim="configuration"
        )
    bits = claims.get("policy_bits") or {}
    if bits.get("migrate_ma"):
        if p.allow_migration_agent:
            d.warn("insecure_allow_migration_agent",
                   "the guest policy allows a migration agent (MIGRATE_MA), accepted because the "
                   "policy says allow_migration_agent", claim="configuration")  # fmt: skip
        else:
            d.refuse("migration_agent_not_allowed",
                     "the guest policy allows a migration agent (MIGRATE_MA)",
                     claim="configuration")  # fmt: skip
    failed = _bits_against(bits, _GUEST_CONTROLS, p.guest_policy)
    if failed:
        d.refuse("guest_policy_not_allowed", "the guest policy fails: " + ", ".join(failed),
                 claim="configuration")  # fmt: skip
    failed = _bits_against(
        claims.get("platform_info_bits") or {}, _PLATFORM_CONTROLS, p.platform_info
    )
    if failed:
        d.refuse("platform_info_not_allowed", "PLATFORM_INFO fails: " + ", ".join(failed),
                 claim="hardware")  # fmt: skip
    if p.min_tcb is not None:
        # Against the TCB the VCEK was issued for (certified by AMD), not the report's own fields.
        _snp_min_tcb(d, claims.get("vcek_tcb") or {}, p.min_tcb, "certified TCB", "tcb_minimum")
    if p.min_launch_tcb is not None:
        _snp_min_tcb(d, claims.get("launch_tcb") or {}, p.min_launch_tcb, "LAUNCH_TCB",
                     "launch_tcb_minimum")  # fmt: skip
    if not p.permit_provisional_firmware:
        current = (claims.get("current_tcb"), claims.get("current_firmware"))
        committed = (claims.get("committed_tcb"), claims.get("committed_firmware"))
        if None in current or current != committed:
            d.refuse(
                "firmware_provisional",
                f"the firmware is not committed: current TCB {current[0]} firmware {current[1]}, "
                f"committed TCB {committed[0]} firmware {committed[1]}",
                claim="hardware",
            )


def _snp_min_tcb(d: Decision, tcb: dict[str, Any], minimum: MinTcb, what: str, passed: str) -> None:
    """Refuse (``tcb_below_minimum``) when a component of ``tcb`` is below the policy's, else
    affirm the check ``passed``."""
    low = [
        f"{k} {tcb.get(k)} < {v}"
        for k, v in minimum.model_dump().items()
        if v and int(tcb.get(k) or 0) < v
    ]
    if low:
        d.refuse(
            "tcb_below_minimum", f"{what} below policy minimum: " + ", ".join(low), claim="hardware"
        )
    else:
        d.affirm(passed, claim="hardware")


#: The checks of each platform's policy section: one entry per platform (veritee.tee.Tee), no
#: isinstance ladder. A check records its reasons on the decision and may return the findings
#: the policy resolves.
_CHECKS: dict[
    type[Any], Callable[[Decision, dict[str, Any], Any, RefValues | None], tuple[str, ...] | None]
] = {
    SimulatedPolicy: _simulated,
    SevSnpPolicy: _sev_snp,
    TdxPolicy: _tdx,
    SgxPolicy: _sgx,
    NitroPolicy: _nitro,
    TpmPolicy: _tpm,
    CcaPolicy: _cca,
    KeystonePolicy: _keystone,
    NvidiaGpuPolicy: _nvidia_gpu,
}
