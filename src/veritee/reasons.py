"""The one catalogue of reason codes: every machine code veritee gives for a refusal, a warning,
a finding or an error.

A reason code is API: policies, relying parties and audit records name it, so each condition has
exactly one code, in every format (an untrusted root is ``root_not_pinned`` for AMD, Intel, AWS,
NVIDIA and TPM vendors alike). Codes read ``noun_state`` (``signature_invalid``,
``collateral_missing``, ``crl_expired``), in snake_case.

- :class:`Code` lists them, each with what it means; ``docs/reason-codes.md`` is the same table
  (:func:`markdown_table`, ``python -m veritee.reasons``; a unit test keeps the two equal, and checks that every code written in
  ``src/`` is here).
- :data:`FAMILIES` lists the few codes built from a claim name (``pcr7_not_allowed``).
- :data:`RENAMED` maps codes of earlier releases to today's, for readers of stored audit records
  (:func:`canonical`).

To add a code: add a member here with its meaning, add the row to ``docs/reason-codes.md``, and
use the literal (or the member) at the raise site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["FAMILIES", "RENAMED", "Code", "Reason", "canonical", "is_known", "markdown_table"]


@dataclass(frozen=True)
class Reason:
    """One finding: a stable machine ``code`` (see :class:`Code`) and a human ``message``."""

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class Code(StrEnum):
    """Every fixed reason code, with its meaning (``Code.X.meaning``)."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> Code:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.meaning = meaning
        return obj

    # --- generic codes: the default of each error class (veritee.errors) ---
    ERROR = "error", "an error without a more specific code"
    MALFORMED = "malformed", "input does not parse (the message names the field and offset)"
    OVERSIZED = "oversized", "input is larger than the limit for its kind"
    VERIFICATION_FAILED = "verification_failed", "a check on well-formed input failed"
    COLLATERAL = "collateral", "collateral needed for a check is unusable"
    POLICY_INVALID = "policy_invalid", "a policy is malformed, unsigned or signed by the wrong key"
    NONCE_INVALID = "nonce_invalid", "a nonce is unknown, expired or already used"
    UNAUTHENTICATED = "unauthenticated", "a credential is missing or wrong"
    NOT_FOUND = "not_found", "a named object does not exist"
    STORAGE_UNAVAILABLE = "storage_unavailable", "the database failed or went away"
    STORAGE_CONFLICT = "storage_conflict", "the database refused a change (a uniqueness conflict)"
    UNSEAL_FAILED = "unseal_failed", "a sealed blob does not unseal"
    USAGE = "usage", "the API or command line was used wrongly"

    # --- reference values: CoRIM / CoMID (veritee.refvalues) ---
    CORIM_MALFORMED = (
        "corim_malformed",
        "a CoRIM or CoMID breaks the draft's CDDL (the message names the field)",
    )
    CORIM_TOO_DEEP = "corim_too_deep", "a CoRIM's CBOR nests deeper than the reader allows"
    CORIM_TAG_UNKNOWN = (
        "corim_tag_unknown",
        "not a CoRIM (#6.501), signed CoRIM (COSE_Sign1 #6.18) or CoMID (#6.506)",
    )
    CORIM_PROFILE_UNCHECKED = (
        "corim_profile_unchecked",
        "warning: a CoRIM names its profile in an earlier draft's list form, so its rules were not applied",
    )
    CORIM_UNTAGGED = (
        "corim_untagged",
        "an unsigned CoRIM map lacks its tag 501 (a warning inside a signed CoRIM)",
    )
    CORIM_CONTENT_TYPE = (
        "corim_content_type",
        "a signed CoRIM's content type is missing or not application/rim+cbor",
    )
    CORIM_META_INVALID = (
        "corim_meta_invalid",
        "a signed CoRIM's corim-meta header is missing or malformed",
    )
    CORIM_SIGNER_UNTRUSTED = (
        "corim_signer_untrusted",
        "a signed CoRIM's key is not given, or does not fit its algorithm",
    )
    CORIM_SIGNATURE_INVALID = (
        "corim_signature_invalid",
        "a signed CoRIM's COSE_Sign1 signature does not verify",
    )
    CORIM_PROFILE_VIOLATION = (
        "corim_profile_violation",
        "a CoMID breaks the rules of its CoRIM's profile (scheme)",
    )
    CORIM_PROFILE_MISMATCH = (
        "corim_profile_mismatch",
        "a CoRIM's profile belongs to another scheme than the one asked for",
    )
    CORIM_EXPIRED = "corim_expired", "a CoRIM's or its signature's validity has ended"
    CORIM_NOT_YET_VALID = (
        "corim_not_yet_valid",
        "a CoRIM's or its signature's validity has not begun",
    )
    REFVALUES_EMPTY = (
        "refvalues_empty",
        "a CoRIM registered as reference values holds none (no digest or raw value)",
    )
    REFVALUES_UNAVAILABLE = (
        "refvalues_unavailable",
        "a policy's allow-list is a reference-value set that is unknown or has no values here",
    )
    REFVALUE_MATCHED = (
        "refvalue_matched",
        "note: a measurement matched a reference-value set (names the set and the CoRIM)",
    )

    # --- evidence: parsing ---
    EMPTY = "empty", "the evidence is empty"
    FORMAT_UNKNOWN = "format_unknown", "the evidence format is not recognised or not known"
    TRUNCATED = "truncated", "the evidence ends before its fixed-size structure does"
    TRAILING_BYTES = "trailing_bytes", "bytes follow the end of a structure that must end there"
    QUOTE_TRAILING_PADDING = (
        "quote_trailing_padding",
        "finding: a DCAP quote is followed by zero padding (accepted, as Intel's QVL does)",
    )
    REPORT_DATA_OVERSIZED = (
        "report_data_oversized",
        "the report's data length exceeds the format's maximum (Keystone: 1,024 bytes)",
    )
    PADDING_NOT_ZERO = (
        "padding_not_zero",
        "bytes no signature covers are not zero (the tail of a Keystone report's data field)",
    )
    VERSION_UNSUPPORTED = (
        "version_unsupported",
        "the structure's version is not one this build reads",
    )
    ALGORITHM_UNSUPPORTED = (
        "algorithm_unsupported",
        "the signature algorithm is not one the format allows",
    )
    KEY_TYPE_UNSUPPORTED = (
        "key_type_unsupported",
        "the attestation key type is not one the format allows",
    )
    SIGNING_KEY_UNSUPPORTED = (
        "signing_key_unsupported",
        "the report names a signing key this build cannot check",
    )
    SIGNATURE_MALFORMED = (
        "signature_malformed",
        "a signature's encoding is out of range or malformed",
    )
    QE_VENDOR_UNKNOWN = "qe_vendor_unknown", "the quoting enclave's vendor ID is not Intel's"
    EVIDENCE_UNSIGNED = "evidence_unsigned", "unsigned sample evidence is never accepted"

    # --- evidence: signatures, chains, revocation ---
    SIGNATURE_INVALID = "signature_invalid", "a signature over the evidence does not verify"
    FWID_MISMATCH = (
        "fwid_mismatch",
        "the GPU's reported firmware ID differs from the one its device certificate certifies",
    )
    QE_REPORT_SIGNATURE_INVALID = (
        "qe_report_signature_invalid",
        "the QE report is not signed by the PCK key",
    )
    QUOTE_SIGNATURE_INVALID = (
        "quote_signature_invalid",
        "the quote is not signed by the attestation key",
    )
    CHAIN_INVALID = "chain_invalid", "a certificate chain is malformed or does not link"
    ROOT_NOT_PINNED = "root_not_pinned", "a chain does not end at a pinned vendor root"
    PLATFORM_KEY_NOT_TRUSTED = (
        "platform_key_not_trusted",
        "the platform key (simulated platform, Arm CCA CPAK, Keystone device root key) is not one "
        "the verifier trusts",
    )
    KEY_INVALID = "key_invalid", "a key is not of the type or curve the format requires"
    TRUST_ROOT_INVALID = (
        "trust_root_invalid",
        "the trust root given to a verifier is of the wrong kind",
    )
    CERTIFICATE_EXPIRED = (
        "certificate_expired",
        "a certificate has expired at the verification time",
    )
    CERTIFICATE_NOT_YET_VALID = (
        "certificate_not_yet_valid",
        "a certificate is not yet valid at the verification time",
    )
    CERTIFICATE_REVOKED = (
        "certificate_revoked",
        "a certificate is listed on its issuer's CRL, or the domain revoked an admission certificate (by serial or measurement)",
    )
    MEASUREMENT_REVOKED = (
        "measurement_revoked",
        "the domain revoked this measurement: no admission certificate is issued for it",
    )
    CRL_UNAVAILABLE = (
        "crl_unavailable",
        "no current revocation list of the domain could be fetched (an attested channel then refuses the peer)",
    )
    CERTIFICATE_INVALID = "certificate_invalid", "a certificate does not parse or is not X.509"
    AK_NOT_CERTIFIED = "ak_not_certified", "the TPM attestation key has no certificate"
    AK_MISMATCH = "ak_mismatch", "the AK certificate certifies another key than the quote's"
    PRODUCT_MISMATCH = "product_mismatch", "the VCEK/VLEK is for another AMD product"
    TCB_MISMATCH = "tcb_mismatch", "the VCEK's TCB differs from the report's REPORTED_TCB"
    CHIP_ID_MISMATCH = "chip_id_mismatch", "the VCEK's hwID differs from the report's CHIP_ID"
    CHIP_ID_MASKED = (
        "chip_id_masked",
        "finding: CHIP_ID is masked, so the VCEK's hwID is not compared",
    )

    # --- evidence: collateral ---
    COLLATERAL_MISSING = "collateral_missing", "collateral needed for a check was not given"
    COLLATERAL_INVALID = "collateral_invalid", "collateral does not parse or lacks a required field"
    COLLATERAL_EXPIRED = (
        "collateral_expired",
        "collateral (TCB info, QE identity, CRL) is past its next update",
    )
    COLLATERAL_NOT_YET_VALID = (
        "collateral_not_yet_valid",
        "collateral was issued after the verification time",
    )
    COLLATERAL_SIGNATURE_INVALID = (
        "collateral_signature_invalid",
        "signed collateral does not verify",
    )
    COLLATERAL_SIGNER_INVALID = (
        "collateral_signer_invalid",
        "TCB info or QE identity is not signed by the Intel SGX TCB Signing certificate issued "
        "directly by the pinned root (not a CA, digital-signature use)",
    )
    COLLATERAL_ROLLED_BACK = (
        "collateral_rolled_back",
        "the collateral (TCB info, QE identity or CRL) is older than the newest the relying party accepted before for the same FMSPC, QE or CRL issuer",
    )
    CRL_INVALID = "crl_invalid", "a CRL does not parse or is not signed by its issuer"
    CRL_EXPIRED = "crl_expired", "a CRL is not current at the verification time"
    CRL_ISSUER_MISMATCH = "crl_issuer_mismatch", "a CRL is not issued by the CA it must revoke for"
    TCB_INFO_MISMATCH = (
        "tcb_info_mismatch",
        "the TCB info is for another FMSPC, platform or TEE type",
    )
    TCB_LEVEL_NOT_FOUND = (
        "tcb_level_not_found",
        "no TCB level of the collateral matches the platform",
    )
    TCB_REVOKED = (
        "tcb_revoked",
        "Intel's TCB status for the platform, its TDX module or its QE is Revoked (terminal: no policy accepts it)",
    )
    TCB_STATUS_UNRECOGNIZED = (
        "tcb_status_unrecognized",
        "the collateral names a TCB status Intel does not define for that level (QE and TDX module "
        "levels: UpToDate, OutOfDate, Revoked)",
    )
    TDX_MODULE_MISMATCH = (
        "tdx_module_mismatch",
        "the TDX module does not match the TCB info's module identities",
    )
    QE_IDENTITY_MISMATCH = (
        "qe_identity_mismatch",
        "the quoting enclave does not match the QE identity",
    )
    QE_REPORT_DATA_MISMATCH = (
        "qe_report_data_mismatch",
        "the QE report does not bind the attestation key",
    )

    # --- evidence: bindings inside the evidence ---
    BINDING_MISMATCH = (
        "binding_mismatch",
        "the evidence does not bind the key, nonce or document it must, or the workload runs as another profile than its evidence attests",
    )
    BINDING_V1_DEPRECATED = (
        "binding_v1_deprecated",
        "warning: report data uses binding version 1 (no profile), accepted for development and testing during the transition",
    )
    BINDING_VERSION_REFUSED = (
        "binding_version_refused",
        "report data uses binding version 1, which carries no profile, for evidence attesting staging or production",
    )
    KEY_SUPERSEDED = (
        "key_superseded",
        "the key store's key generation is lower than one certified before: the store was rolled back",
    )
    EVENT_LOG_MISMATCH = (
        "event_log_mismatch",
        "replaying the event log does not give the quoted PCRs/RTMRs",
    )
    EVENT_DATA_MISMATCH = (
        "event_data_mismatch",
        "an event whose digest the TCG PC Client PFP defines over its data does not hash to it",
    )
    TPM_NONCE_MISMATCH = "tpm_nonce_mismatch", "the TPM quotes carry different nonces (extraData)"
    TPM_NOT_GENERATED = (
        "tpm_not_generated",
        "the TPM structure is not TPM_GENERATED_VALUE (not made by a TPM)",
    )
    TPM_NOT_QUOTE = "tpm_not_quote", "the TPM structure is not a quote"
    TPM_PCR_MISMATCH = (
        "tpm_pcr_mismatch",
        "the PCR values do not match the quote's signed PCR digest",
    )
    TPM_PCR_SELECTION = "tpm_pcr_selection", "the quote selects other PCRs than the ones given"

    CHECKS_NOT_REACHED = (
        "checks_not_reached",
        "warning: a cheap check (a validity window, an identity) already refused the evidence, so "
        "the costly checks it names (signatures, chains) did not run; every reason found is listed",
    )

    # --- evidence: findings passed to the appraisal ---
    DEBUG = "debug", "the workload runs in debug mode (refused unless a policy allows it)"
    TCB_STATUS = "tcb_status", "finding: Intel's TCB status for the platform (other than UpToDate)"
    INTEL_ADVISORIES = (
        "intel_advisories",
        "finding: Intel security advisories apply to the platform",
    )
    REVOCATION_NOT_CHECKED = (
        "revocation_not_checked",
        "warning: the certificates' revocation status was not checked (NVIDIA GPUs: OCSP only; "
        "SEV-SNP: no CRL of the ARK given)",
    )
    REFERENCE_VALUES_NOT_COMPARED = (
        "reference_values_not_compared",
        "warning: measurements were not compared with the vendor's reference values (NVIDIA RIMs) "
        "and no policy pins them",
    )

    ATTESTER_COLLATERAL_IGNORED = (
        "attester_collateral_ignored",
        "warning: collateral sent with the evidence (TCB info, QE identity, CRLs, keys) was not used: the relying party's own decides",
    )
    # --- appraisal ---
    PLATFORM_NOT_ALLOWED = (
        "platform_not_allowed",
        "the policy has no section for the evidence's platform",
    )
    PROFILE_NOT_ALLOWED = (
        "profile_not_allowed",
        "the attested profile is not among the policy's profiles",
    )
    DEBUG_IN_PRODUCTION = (
        "debug_in_production",
        "a debuggable build cannot pass a production-only policy",
    )
    INSECURE_ALLOW_DEBUG = (
        "insecure_allow_debug",
        "warning: debug evidence accepted because the policy allows it",
    )
    SIMULATED_PLATFORM = "simulated_platform", "warning: simulated platform, no hardware protection"
    TCB_STATUS_ALLOWED = (
        "tcb_status_allowed",
        "warning: an Intel TCB status other than UpToDate allowed by policy",
    )
    TCB_STATUS_NOT_ALLOWED = (
        "tcb_status_not_allowed",
        "the Intel TCB status is not among the allowed ones (Revoked never is)",
    )
    ADVISORIES_NOT_ALLOWED = (
        "advisories_not_allowed",
        "Intel advisories apply that the policy does not allow",
    )
    TCB_BELOW_MINIMUM = "tcb_below_minimum", "the certified TCB is below the policy's minimum"
    FIRMWARE_PROVISIONAL = (
        "firmware_provisional",
        "the SEV-SNP firmware is not committed (CURRENT differs from COMMITTED) and the policy "
        "does not permit it",
    )
    TCB_EVALUATION_DATA_NUMBER_BELOW_MINIMUM = (
        "tcb_evaluation_data_number_below_minimum",
        "the Intel collateral's tcbEvaluationDataNumber is below the policy's minimum (collateral from before a TCB recovery)",
    )
    ISV_PROD_ID_MISMATCH = (
        "isv_prod_id_mismatch",
        "the enclave's ISV product ID is not the policy's",
    )
    ISV_SVN_BELOW_MINIMUM = (
        "isv_svn_below_minimum",
        "the enclave's ISV SVN is below the policy's minimum",
    )
    VMPL_ABOVE_MAXIMUM = (
        "vmpl_above_maximum",
        "the SEV-SNP report comes from a VMPL above the policy's maximum",
    )
    MIGRATION_AGENT_NOT_ALLOWED = (
        "migration_agent_not_allowed",
        "the SEV-SNP guest policy allows a migration agent (MIGRATE_MA) and the policy does not",
    )
    INSECURE_ALLOW_MIGRATION_AGENT = (
        "insecure_allow_migration_agent",
        "warning: a migration agent (MIGRATE_MA) accepted because the policy allows it",
    )
    GUEST_POLICY_NOT_ALLOWED = (
        "guest_policy_not_allowed",
        "the SEV-SNP guest policy fails a policy control (SMT, single socket, CXL, AES-256-XTS, "
        "RAPL, ciphertext hiding, page swap)",
    )
    PLATFORM_INFO_NOT_ALLOWED = (
        "platform_info_not_allowed",
        "the SEV-SNP PLATFORM_INFO fails a policy control (SMT, TSME, TIO, ECC, RAPL, "
        "ciphertext hiding, alias check)",
    )
    MEASURED_BOOT_NOT_APPRAISED = (
        "measured_boot_not_appraised",
        "warning: a (v)TPM's PCRs and event log were not compared with reference values",
    )
    NO_POLICY = "no_policy", "no appraisal policy is installed in the domain"
    ATTESTATION_REFUSED = (
        "attestation_refused",
        "the appraisal refused the evidence (reasons attached)",
    )
    NONCE_MISMATCH = "nonce_mismatch", "the evidence does not carry the nonce the caller names"
    NONCE_UNKNOWN = "nonce_unknown", "the nonce was not issued by this service"
    NONCE_EXPIRED = "nonce_expired", "the nonce's lifetime has passed"
    NONCE_REUSED = "nonce_reused", "the nonce was already used"

    # --- policies ---
    POLICY_MALFORMED = (
        "policy_malformed",
        "the appraisal policy does not parse or breaks the schema",
    )
    POLICY_ENVELOPE = "policy_envelope", "the signed policy envelope does not parse"
    POLICY_UNSIGNED = "policy_unsigned", "the policy is not signed"
    POLICY_SIGNATURE_INVALID = "policy_signature_invalid", "the policy's signature does not verify"
    POLICY_WRONG_KEY = (
        "policy_wrong_key",
        "the policy is signed by another key than the domain's policy key",
    )

    # --- key release ---
    RELEASE_POLICY_INVALID = "release_policy_invalid", "the release policy does not parse"
    RELEASE_CLAIM_UNKNOWN = (
        "release_claim_unknown",
        "a release policy names a claim no verifier emits (refused when stored)",
    )
    RELEASE_POLICY_FAULT = "release_policy_fault", "the release policy failed to evaluate"
    RELEASE_CLAIM_MISSING = "release_claim_missing", "a claim the release policy tests is absent"
    RELEASE_CLAIM_MISMATCH = (
        "release_claim_mismatch",
        "a claim does not have the value the release policy needs",
    )
    RELEASE_CLAIM_TYPE = (
        "release_claim_type",
        "a claim has another type than the release policy compares",
    )
    RELEASE_NO_ALTERNATIVE = (
        "release_no_alternative",
        "none of the release policy's alternatives held",
    )
    RELEASE_DENIED = "release_denied", "the release policy refused the release"
    APPRAISAL_NOT_ACCEPTED = (
        "appraisal_not_accepted",
        "the domain's appraisal did not accept the evidence",
    )
    POSSESSION_NOT_PROVEN = (
        "possession_not_proven",
        "the request's signature does not prove the certified key",
    )
    SECRET_UNKNOWN = "secret_unknown", "no secret has this name"
    SECRET_TAMPERED = "secret_tampered", "a stored secret does not decrypt (tampered or other key)"
    SEALING_KEY_DENIED = (
        "sealing_key_denied",
        "the key broker refused the domain-released sealing key: the policy in force does not admit the evidence",
    )
    SEALING_ROOT_UNAVAILABLE = (
        "sealing_root_unavailable",
        "the key broker's sealing root does not unwrap (another KEK, moved or tampered)",
    )
    KEK_MISMATCH = (
        "kek_mismatch",
        "a secret was sealed under another key-encryption key, or this replica's KEK is not the one the database records for the domain",
    )
    KEK_MISSING = (
        "kek_missing",
        "this replica has no key-encryption key while the database records one for the domain (a new one is not made)",
    )
    ENVELOPE_INVALID = "envelope_invalid", "an HPKE envelope does not decrypt"
    ENVELOPE_UNSIGNED = "envelope_unsigned", "a release envelope carries no key-broker signature"
    ENVELOPE_SIGNER_UNTRUSTED = (
        "envelope_signer_untrusted",
        "a release envelope's signer is not a key broker certified by this domain's CA for release signing, or its certificate is not valid now",
    )
    ENVELOPE_SIGNATURE_INVALID = (
        "envelope_signature_invalid",
        "a release envelope's signature does not cover this key, secret, version, nonce and ciphertext",
    )
    CONFLICT = "conflict", "concurrent writes of the same object; retry"
    CERTIFICATE_UNTRUSTED = (
        "certificate_untrusted",
        "a certificate is not an admission certificate of this domain",
    )

    # --- Trustee KBS protocol ---
    PROTOCOL_VERSION = "protocol_version", "the KBS protocol version is not supported"
    TEE_UNSUPPORTED = "tee_unsupported", "the KBS request names a TEE this build does not verify"
    HASH_UNSUPPORTED = "hash_unsupported", "the KBS request names an unsupported hash algorithm"
    KBS_UNAUTHENTICATED = "kbs_unauthenticated", "no KBS session or token"
    KBS_TOKEN = "kbs_token", "the KBS token is refused"
    INIT_DATA_FORMAT_UNSUPPORTED = "init_data_format_unsupported", "the KBS init-data is not TOML"
    INIT_DATA_UNBOUND = (
        "init_data_unbound",
        "the evidence binds no init-data (the platform has no field for it)",
    )
    INIT_DATA_MISMATCH = (
        "init_data_mismatch",
        "the init-data's digest is not what the evidence binds",
    )
    DEVICE_UNSUPPORTED = (
        "device_unsupported",
        "a device's evidence (KBS additional evidence) cannot be verified here",
    )
    DEVICE_BINDING_MISMATCH = (
        "device_binding_mismatch",
        "a device's evidence does not bind the KBS runtime data",
    )

    # --- JWE and EAR tokens ---
    JWE_ALG_REFUSED = "jwe_alg_refused", "the JWE's alg is refused (RSA1_5, RFC 8725)"
    JWE_CRIT_UNSUPPORTED = (
        "jwe_crit_unsupported",
        "the JWE names critical header parameters not understood here",
    )
    EAR_SIGNATURE_INVALID = "ear_signature_invalid", "the EAR token's signature does not verify"
    EAR_TYPE_INVALID = "ear_type_invalid", "the token's typ is not eat+jwt"
    EAR_ISSUER_MISMATCH = "ear_issuer_mismatch", "the EAR token was issued by someone else"
    EAR_AUDIENCE_MISMATCH = "ear_audience_mismatch", "the EAR token is for another audience"
    EAR_EXPIRED = "ear_expired", "the EAR token has expired"
    EAR_NOT_YET_VALID = "ear_not_yet_valid", "the EAR token is not valid yet"
    EAR_PROFILE_INVALID = "ear_profile_invalid", "the token is not an EAR of the expected profile"
    EAR_CONTRAINDICATED = "ear_contraindicated", "an appraisal in the EAR token is contraindicated"
    EAR_KEY_MISMATCH = "ear_key_mismatch", "the EAR token is bound (cnf) to another key"
    EAR_KEY_UNKNOWN = "ear_key_unknown", "the key the token names (kid) is not in the domain's JWKS"

    # --- the Certifier Service's own evidence (verify the verifier, docs/tokens.md) ---
    SERVICE_EVIDENCE_MISSING = (
        "service_evidence_missing",
        "the Certifier Service publishes no evidence of itself (it does not run with --attest-self)",
    )
    SERVICE_EVIDENCE_MALFORMED = (
        "service_evidence_malformed",
        "the service's evidence document does not parse (fields, encodings, its binding statement)",
    )
    SERVICE_EVIDENCE_REFUSED = (
        "service_evidence_refused",
        "the service's own evidence is not authentic, or the service policy refuses it (reasons attached)",
    )
    SERVICE_BINDING_MISMATCH = (
        "service_binding_mismatch",
        "the service's evidence does not bind the keys this service signs and serves TLS with",
    )
    SERVICE_MEASUREMENT_NOT_ALLOWED = (
        "service_measurement_not_allowed",
        "the service's own measurement is not one the service policy allows",
    )
    SERVICE_EVIDENCE_STALE = (
        "service_evidence_stale",
        "the service's keys rotated and its evidence still binds the earlier ones",
    )

    # --- clean room ---
    DATASET_KEY_INVALID = "dataset_key_invalid", "a clean-room dataset or its key is not valid"
    DATASET_TAMPERED = "dataset_tampered", "a clean-room dataset does not decrypt"
    REGISTER_FAILED = "register_failed", "registering a clean-room dataset failed"
    RESULT_CERT_UNTRUSTED = (
        "result_cert_untrusted",
        "the clean-room result is not signed by an admitted workload",
    )
    RESULT_INPUT_MISSING = (
        "result_input_missing",
        "the clean-room result does not list this party's dataset",
    )
    RESULT_MEASUREMENT_MISMATCH = (
        "result_measurement_mismatch",
        "the clean-room result comes from another measurement than agreed",
    )
    RESULT_SIGNATURE_INVALID = (
        "result_signature_invalid",
        "the clean-room result's signature does not verify",
    )

    # --- service ---
    ADMIN_REQUIRED = "admin_required", "an admin credential is required and none was given"
    ADMIN_INVALID = "admin_invalid", "the admin credential is wrong"
    MALFORMED_REQUEST = "malformed_request", "the request body does not parse"
    JSON_TOO_DEEP = (
        "json_too_deep",
        "a JSON or YAML document nests lists and objects deeper than the limit",
    )
    INTEGER_TOO_LONG = (
        "integer_too_long",
        "a JSON or YAML document has an integer literal longer than the limit",
    )
    INTERNAL = "internal", "an internal error (the message never carries input)"
    STORAGE_SCHEMA_OUTDATED = (
        "storage_schema_outdated",
        "the database schema is older than this build",
    )
    STORAGE_TIMEOUT = (
        "storage_timeout",
        "the database did not take the readiness probe's write in time (stalled, locked or paused)",
    )
    ANCHOR_SIGNATURE = "anchor_signature", "a signed audit head does not verify with the token key"
    AUDIT_REWRITTEN = "audit_rewritten", "the audit log differs from a signed audit head"
    AUDIT_TRUNCATED = "audit_truncated", "the audit log is shorter than a signed audit head"

    # --- collateral fetching ---
    FETCH_HTTP_STATUS = "fetch_http_status", "a vendor service answered with an error status"
    FETCH_MALFORMED = (
        "fetch_malformed",
        "a vendor service answered with something that does not parse",
    )
    FETCH_NOT_APPLICABLE = "fetch_not_applicable", "the evidence needs no fetched collateral"
    FETCH_OVERSIZED = "fetch_oversized", "a vendor service's answer is larger than the limit"
    FETCH_UNREACHABLE = "fetch_unreachable", "a vendor service cannot be reached"
    COLLATERAL_FETCH_FAILED = (
        "collateral_fetch_failed",
        "the service could not fetch collateral the evidence needs, or what was served did not pass the checks "
        "installed collateral passes (retried with backoff; the collateral held before stays)",
    )
    COLLATERAL_EXPIRING = (
        "collateral_expiring",
        "readiness: collateral is within the warning time of its nextUpdate (degraded; failing once past it)",
    )

    # --- SDK: admission, channel, key store, sealing ---
    ADMISSION_CERT_MALFORMED = (
        "admission_cert_malformed",
        "an admission certificate is not DER X.509",
    )
    ADMISSION_CLAIM_MALFORMED = (
        "admission_claim_malformed",
        "an admission certificate's claim extension does not parse",
    )
    ADMISSION_CLAIM_MISSING = (
        "admission_claim_missing",
        "an admission certificate lacks its claim extension",
    )
    ADMISSION_NOT_END_ENTITY = (
        "admission_not_end_entity",
        "an admission certificate is a CA certificate",
    )
    NOT_AN_ADMISSION_CERTIFICATE = (
        "not_an_admission_certificate",
        "a certificate is not an admission certificate",
    )
    CERTIFICATE_WRONG_ISSUER = (
        "certificate_wrong_issuer",
        "an admission certificate is not issued by the domain CA",
    )
    CERTIFICATE_KEY_MISMATCH = (
        "certificate_key_mismatch",
        "an admission certificate is for another key",
    )
    MEASUREMENT_MALFORMED = "measurement_malformed", "a measurement is not hex of the right length"
    NAIVE_DATETIME = "naive_datetime", "a time was given without a timezone"
    PEER_CERTIFICATE_EXPIRED = (
        "peer_certificate_expired",
        "the peer's admission certificate has expired",
    )
    PEER_CERTIFICATE_NOT_YET_VALID = (
        "peer_certificate_not_yet_valid",
        "the peer's admission certificate is not yet valid",
    )
    PEER_CERTIFICATE_INVALID = "peer_certificate_invalid", "the peer's certificate is rejected"
    PEER_CERTIFICATE_MISSING = "peer_certificate_missing", "the peer presented no certificate"
    PEER_MEASUREMENT_NOT_ALLOWED = (
        "peer_measurement_not_allowed",
        "the peer's measurement is not allowed by the channel policy",
    )
    PEER_PLATFORM_NOT_ALLOWED = (
        "peer_platform_not_allowed",
        "the peer's platform is not allowed by the channel policy",
    )
    PEER_PROFILE_NOT_ALLOWED = (
        "peer_profile_not_allowed",
        "the peer's profile is not allowed by the channel policy",
    )
    REFUSED_BY_PEER = "refused_by_peer", "the peer ended the connection during admission"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed", "the attested TLS handshake failed"
    TRUNCATED_FRAME = "truncated_frame", "a channel frame ends early"
    CREDENTIALS_INVALID = "credentials_invalid", "the channel's own credentials are unusable"
    SERVICE_UNREACHABLE = (
        "service_unreachable",
        "the Certifier Service or key broker cannot be reached",
    )
    TLS_UNTRUSTED = (
        "tls_untrusted",
        "the service's TLS certificate did not verify against the CA the client trusts",
    )
    TLS_MISMATCH = (
        "tls_mismatch",
        "client and service disagree on TLS: https:// to a plain-HTTP service or http:// to an HTTPS one",
    )
    NO_DOMAIN = "no_domain", "the folder or database named holds no veritee domain"
    SERVICE_URL_INSECURE = (
        "service_url_insecure",
        "a workload above the development profile was given a plain-HTTP (or other non-HTTPS) service URL",
    )
    PLATFORM_UNKNOWN = "platform_unknown", "the SDK was asked for a platform it does not know"
    PLATFORM_UNSUPPORTED = (
        "platform_unsupported",
        "a hardware TEE (or configfs-tsm provider) is present but not one this driver or build supports",
    )
    PROFILE_UNKNOWN = (
        "profile_unknown",
        "a profile name is not one of development, testing, staging, production",
    )
    # --- attester drivers (veritee.platforms) ---
    PLATFORM_FAILED = (
        "platform_failed",
        "the TEE device, configfs-tsm or TPM failed in an unexpected way",
    )
    PLATFORM_ABSENT = (
        "platform_absent",
        "the TEE interface (device, configfs-tsm, TPM) is not present",
    )
    PLATFORM_PERMISSION_DENIED = (
        "platform_permission_denied",
        "the process may not open the TEE interface (group, udev rule)",
    )
    PLATFORM_BUSY = (
        "platform_busy",
        "the TEE interface is busy or another writer changed the request; try again",
    )
    PLATFORM_REFUSED = "platform_refused", "the driver, firmware, host or TPM refused the request"
    PLATFORM_DRIVER_MISSING = (
        "platform_driver_missing",
        "a library the driver needs (tpm2-pytss) is not installed",
    )
    SEALING_KEY_UNAVAILABLE = (
        "sealing_key_unavailable",
        "the platform has no sealing key (TDX, CCA, Nitro) and the domain-released key is not available",
    )
    PROFILE_MISMATCH = (
        "profile_mismatch",
        "the profile asked for differs from the one the hardware establishes",
    )
    # --- TPM enrollment (veritee.enrollment) ---
    ENROLLMENT_DISABLED = (
        "enrollment_disabled",
        "the policy lists no TPM EK roots: enrollment is off",
    )
    EK_MISMATCH = "ek_mismatch", "the EK certificate certifies another key than the EK presented"
    EK_ATTRIBUTES_INVALID = (
        "ek_attributes_invalid",
        "the EK is not a restricted AES-CFB decryption key",
    )
    AK_ATTRIBUTES_INVALID = (
        "ak_attributes_invalid",
        "the AK is not a restricted signing key created in the TPM",
    )
    ENROLLMENT_TICKET_INVALID = (
        "enrollment_ticket_invalid",
        "the enrollment ticket is not this service's, or not for this nonce, AK or EK",
    )
    ACTIVATION_FAILED = (
        "activation_failed",
        "the TPM did not activate the credential: the AK is not beside that EK",
    )
    KEYSTORE_CORRUPT = "keystore_corrupt", "the key store does not parse or does not decrypt"
    KEYSTORE_IO = "keystore_io", "the key store cannot be read or written"
    KEYSTORE_ROLLED_BACK = (
        "keystore_rolled_back",
        "the key store is older than its freshness counter says: the host put back an older copy",
    )
    KEYSTORE_COUNTER_MISMATCH = (
        "keystore_counter_mismatch",
        "the key store is ahead of its freshness counter: the counter was reset, or is another store's",
    )
    KEY_STORE_UNKNOWN = (
        "key_store_unknown",
        "no key of this key store was certified with its id, so the service keeps no counter for it",
    )
    COUNTER_NOT_CERTIFIED = (
        "counter_not_certified",
        "the service's freshness counter needs the key store's key to be certified first",
    )
    COUNTER_ANSWER_INVALID = (
        "counter_answer_invalid",
        "a freshness-counter answer is not the key broker's signed answer to this request",
    )
    COUNTER_UNAVAILABLE = (
        "counter_unavailable",
        "freshness='platform' was asked of a platform without a monotonic counter",
    )
    ITEM_NAME_INVALID = "item_name_invalid", "a key-store item name is empty or too long"
    SEALED_BLOB_INVALID = "sealed_blob_invalid", "a sealed blob does not parse or does not unseal"
    SEALED_BLOB_TRUNCATED = "sealed_blob_truncated", "a sealed blob is shorter than its header"
    SEALED_BLOB_VERSION = (
        "sealed_blob_version",
        "a sealed blob has a version this build does not read",
    )
    SEALED_OTHER_PLATFORM = "sealed_other_platform", "a blob was sealed on another platform"
    SEALED_OTHER_MODE = (
        "sealed_other_mode",
        "a blob was sealed with a platform key and opened with a domain-released key, or the reverse",
    )
    SEALED_OTHER_PROFILE = (
        "sealed_other_profile",
        "a blob was sealed by an instance in another profile or debug state",
    )
    SEALED_PURPOSE_MISMATCH = (
        "sealed_purpose_mismatch",
        "a blob was sealed for another purpose than the one it is opened for",
    )
    SEALING_PURPOSE_INVALID = "sealing_purpose_invalid", "a sealing purpose name is malformed"
    SEALING_PURPOSE_RESERVED = (
        "sealing_purpose_reserved",
        "an application used a sealing purpose reserved for veritee's own keys",
    )
    SEALING_CONTEXT_INVALID = "sealing_context_invalid", "a sealing context is not bytes"
    SEALING_MODE_INVALID = (
        "sealing_mode_invalid",
        "Trust(sealing=...) is not 'auto', 'platform' or 'domain'",
    )
    MEASURE_TARGET_MISSING = (
        "measure_target_missing",
        "a measure= target (file, folder, module, pyproject.toml) does not exist or cannot be measured",
    )
    MEASURE_PATH_CONFLICT = (
        "measure_path_conflict",
        "two different measured files have the same relative path",
    )
    NOTHING_MEASURED = "nothing_measured", "measure= names no file (or only bytecode and caches)"
    OWN_CERTIFICATE_EXPIRED = (
        "own_certificate_expired",
        "an attested server's handshake failed while its own admission certificate had expired "
        "(peers refuse it until it is renewed)",
    )
    CERTIFICATE_RENEWAL_FAILED = (
        "certificate_renewal_failed",
        "the background renewal of the admission certificate failed (logged with the error's code "
        "and the service URL); it is retried with backoff",
    )
    MEASURED_FILE_IS_LAUNCHER = (
        "measured_file_is_launcher",
        "warning: the simulated platform measured the main program's file, which is a launcher "
        "(flask, gunicorn, uvicorn, pytest, a console script, python -m) that measures every app "
        "the same: pass Trust(measure=...)",
    )

    # --- confidential logs ---
    LOG_ATTACHED = "log_attached", "the log already has its signing key"
    LOG_CLOSED = "log_closed", "the log is closed"
    LOG_CONFIG = "log_config", "a log setting is out of range"
    LOG_FOLDER_IN_USE = "log_folder_in_use", "the log folder already holds segments"
    LOG_FORKED = "log_forked", "a forked child used its parent's log writer (it starts its own run)"
    LOG_ID = "log_id", "not a veritee log key"
    LOG_INTEGRITY = "log_integrity", "a log fails its integrity check"
    LOG_KEY = "log_key", "the log key does not open with this tenant key"
    LOG_KEY_MISMATCH = "log_key_mismatch", "the log key is not the one the log was written with"
    LOG_KEY_TYPE = "log_key_type", "the log signing key type is not supported"
    LOG_NO_KEY = "log_no_key", "no encrypted log key yet"
    LOG_NO_TENANT = "log_no_tenant", "no tenant key was given"
    LOG_SIGNER_NOT_CERTIFIED = (
        "log_signer_not_certified",
        "a log signer was given without what ties it to an attested workload (its admission certificate, the domain CA, the expected measurement)",
    )
    LOG_SIGNER_MEASUREMENT_NOT_ALLOWED = (
        "log_signer_measurement_not_allowed",
        "the log signer's admission certificate attests a measurement the tenant does not expect",
    )
    LOG_SIGNER_PLATFORM_NOT_ALLOWED = (
        "log_signer_platform_not_allowed",
        "the log signer's admission certificate attests a platform the tenant does not expect",
    )
    LOG_SIGNER_PROFILE_NOT_ALLOWED = (
        "log_signer_profile_not_allowed",
        "the log signer's admission certificate attests a profile the tenant does not expect",
    )
    NO_SEAL = "no_seal", "a persisted pending buffer needs a seal function"
    PENDING_TAMPERED = "pending_tampered", "a pending log record does not decrypt"
    PENDING_UNSEAL = "pending_unseal", "the pending buffer key does not unseal"
    TENANT_KEY_TYPE = "tenant_key_type", "the tenant key type is not supported"


#: Codes built from a claim or register name: pattern -> meaning.
FAMILIES: dict[str, str] = {
    "{claim}_not_allowed": (
        "the claim's value is not in the policy's allow-list (measurement_not_allowed, "
        "mrtd_not_allowed, rtmr2_not_allowed, pcr7_not_allowed, host_data_not_allowed, ...)"
    ),
}

#: Codes of earlier releases -> today's code (audit records keep the code they were written with).
RENAMED: dict[str, Code] = {
    "missing_collateral": Code.COLLATERAL_MISSING,
    "revoked": Code.CERTIFICATE_REVOKED,
    "bad_crl": Code.CRL_INVALID,
    "trailing_data": Code.TRAILING_BYTES,
    "bad_signature": Code.SIGNATURE_INVALID,
    "bad_signature_encoding": Code.SIGNATURE_MALFORMED,
    "bad_key": Code.KEY_INVALID,
    "bad_trust": Code.TRUST_ROOT_INVALID,
    "untrusted_root": Code.ROOT_NOT_PINNED,
    "untrusted_platform_key": Code.PLATFORM_KEY_NOT_TRUSTED,
    "unsupported_algorithm": Code.ALGORITHM_UNSUPPORTED,
    "unsupported_key_type": Code.KEY_TYPE_UNSUPPORTED,
    "unsupported_signing_key": Code.SIGNING_KEY_UNSUPPORTED,
    "unsupported_version": Code.VERSION_UNSUPPORTED,
    "unknown_qe_vendor": Code.QE_VENDOR_UNKNOWN,
    "unknown_format": Code.FORMAT_UNKNOWN,
    "unknown_platform": Code.PLATFORM_UNKNOWN,
    "unknown_profile": Code.PROFILE_UNKNOWN,
    "bad_certificate": Code.CERTIFICATE_INVALID,
    "bad_measurement": Code.MEASUREMENT_MALFORMED,
    "bad_credentials": Code.CREDENTIALS_INVALID,
    "bad_item_name": Code.ITEM_NAME_INVALID,
    "unreachable": Code.SERVICE_UNREACHABLE,
    "sealed_blob_bad": Code.SEALED_BLOB_INVALID,
    "rtmr_mismatch": Code.EVENT_LOG_MISMATCH,
    "policy_bad_signature": Code.POLICY_SIGNATURE_INVALID,
    "advisories": Code.ADVISORIES_NOT_ALLOWED,
    "isv_prod_id": Code.ISV_PROD_ID_MISMATCH,
    "isv_svn": Code.ISV_SVN_BELOW_MINIMUM,
    "vmpl": Code.VMPL_ABOVE_MAXIMUM,
    "migration_agent": Code.MIGRATION_AGENT_NOT_ALLOWED,
}

_FAMILY_RE = tuple(
    re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", "[a-z0-9_]+", re.escape(p)) + "$") for p in FAMILIES
)


def is_known(code: str) -> bool:
    """Whether ``code`` is in the catalogue (a :class:`Code` or a member of a family)."""
    return code in Code._value2member_map_ or any(r.match(code) for r in _FAMILY_RE)


def canonical(code: str) -> str:
    """Today's code for ``code``, which may be a code of an earlier release (:data:`RENAMED`).

    ``tcb_status`` was also the refusal code for a TCB status a policy does not allow; it is now
    ``tcb_status_not_allowed`` (refusal) and stays ``tcb_status`` as a finding, so it is not
    mapped here.
    """
    renamed = RENAMED.get(code)
    return str(renamed) if renamed is not None else code


def markdown_table() -> str:
    """The catalogue as Markdown: the table of ``docs/reason-codes.md`` (between its markers)."""
    rows = [(f"`{c.value}`", c.meaning) for c in Code]
    rows += [(f"`{p}`", m) for p, m in FAMILIES.items()]
    lines = ["| code | meaning |", "|---|---|"]
    lines += [f"| {code} | {meaning} |" for code, meaning in sorted(rows)]
    lines += [
        "",
        "## Renamed codes",
        "",
        "Audit records written before a rename keep the code they were written with;",
        "`veritee.reasons.canonical(code)` gives today's code for an earlier one.",
        "",
        "| earlier code | today's code |",
        "|---|---|",
    ]
    lines += [f"| `{old}` | `{new.value}` |" for old, new in sorted(RENAMED.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m veritee.reasons > the table of docs/reason-codes.md
    print(markdown_table(), end="")
