"""The claim catalogue: every top-level claim a verifier or the service puts before a release
policy, by platform. A release policy naming a claim outside it is refused when it is stored
(``release_claim_unknown``), since such a leaf could never hold (or, with ``exists: false``,
always would): usually a typo such as ``mesurement``.

Nested claims are named by their top-level key (``reported_tcb.snp`` is ``reported_tcb``).
``tests/unit/evidence/test_claim_catalogue.py`` checks that every claim the verifiers emit on
the test vectors is listed here.
"""

from __future__ import annotations

__all__ = ["BY_PLATFORM", "COMMON", "SERVICE", "claim_root", "known_claims", "unknown_claims"]

#: Every verifier fills these (DESIGN.md, "Normalized claims"); ``profile`` comes from
#: :func:`veritee.evidence.verify`.
COMMON: tuple[str, ...] = (
    "platform",
    "measurement",
    "report_data",
    "debug",
    "tcb_status",
    "profile",
)

_PCRS_24 = tuple(f"pcr{i}" for i in range(24))
_SNP = (
    "version", "policy", "policy_bits", "family_id", "image_id", "vmpl", "signing_key",
    "author_key_en", "mask_chip_key", "current_tcb", "platform_info", "platform_info_bits",
    "author_key_digest", "id_key_digest", "host_data", "report_id", "report_id_ma",
    "reported_tcb", "chip_id", "chip_id_masked", "committed_tcb", "current_firmware",
    "committed_firmware", "launch_tcb", "launch_mit_vector", "current_mit_vector", "cpuid",
    "guest_svn", "product", "vcek_sha256", "vcek_tcb",
)  # fmt: skip
#: What Intel collateral adds to SGX and TDX claims (veritee.evidence.dcap).
_DCAP = ("fmspc", "qe_tcb_status", "tcb_date", "tcb_evaluation_data_number", "advisory_ids")
_TDX = (*_DCAP, "tdx_module_tcb_status",
    "version", "mrtd", "mr_seam", "mr_signer_seam", "seam_attributes", "td_attributes", "xfam",
    "mr_config_id", "mr_owner", "mr_owner_config", "rtmr0", "rtmr1", "rtmr2", "rtmr3",
    "tee_tcb_svn", "tee_tcb_svn2", "mr_service_td", "advisory_ids", "trailing_bytes",
    "event_log", "rtmr_replay_ok",
)  # fmt: skip
_TPM = ("ak_pub_sha256", "ak_root", "clock_safe", "event_log", "firmware_version", "pcrs",
        "reset_count", "restart_count", *_PCRS_24)  # fmt: skip

#: The platform's own claims, by platform (``platform`` claim value).
BY_PLATFORM: dict[str, tuple[str, ...]] = {
    "sev-snp": _SNP,
    "tdx": _TDX,
    "sgx": (
        "version",
        "attributes",
        "config_id",
        "config_svn",
        "cpu_svn",
        "isv_ext_prod_id",
        "isv_family_id",
        "isv_prod_id",
        "isv_svn",
        "misc_select",
        "mr_enclave",
        "mr_signer",
        "trailing_bytes",
        *_DCAP,
    ),
    "nitro": (
        "digest",
        "module_id",
        "nonce",
        "public_key",
        "timestamp_ms",
        "user_data",
        *(f"pcr{i}" for i in range(16)),
    ),
    "tpm": _TPM,
    "az-snp-vtpm": (*_SNP, "hcl_report_data", "vtpm", "pcrs", *_PCRS_24),
    "az-tdx-vtpm": (*_TDX, "hcl_report_data", "vtpm", "pcrs", *_PCRS_24),
    "cca": (
        "personalization",
        "platform_components",
        "platform_config",
        "platform_hash_algorithm",
        "platform_implementation_id",
        "platform_instance_id",
        "platform_lifecycle",
        "platform_profile",
        "realm_hash_algorithm",
        "rem0",
        "rem1",
        "rem2",
        "rem3",
        "platform_key",
    ),
    "nvidia-gpu": (
        "measurements",
        "responder_nonce",
        "driver_version",
        "opaque",
        "device_certificate",
    ),
    "simulated": ("version", "platform_key", "platform_key_trusted"),
    "keystone": ("sm_measurement", "device_key", "sm_public_key"),
}

#: Claims the service adds: the admission certificate's serial (releases to certified
#: workloads) and the Trustee KBS token's (runtime data, init-data, attached devices).
SERVICE: tuple[str, ...] = (
    "admission_serial",
    "runtime_data_claims",
    "init_data",
    "init_data_claims",
    "devices",
)


def claim_root(dotted: str) -> str:
    """The top-level claim a dotted claim path starts at."""
    return dotted.split(".", 1)[0]


def known_claims() -> frozenset[str]:
    """Every top-level claim name of the catalogue."""
    names = set(COMMON) | set(SERVICE)
    for own in BY_PLATFORM.values():
        names.update(own)
    return frozenset(names)


def unknown_claims(claims: list[str] | tuple[str, ...]) -> list[str]:
    """Those of ``claims`` (dotted paths) no verifier emits, in order, without repeats."""
    known = known_claims()
    out: list[str] = []
    for c in claims:
        if c not in known and claim_root(c) not in known and c not in out:
            out.append(c)
    return out
