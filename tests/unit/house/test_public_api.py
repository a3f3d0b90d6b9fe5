"""The public Python API, pinned (docs/api.md; in the manner of httpx's test_exported_members).

``PUBLIC`` is the stable surface that semver covers: each public module and the exact names of
its ``__all__``. Adding or removing a public name is a deliberate edit of this literal *and* of
docs/api.md; everything else under ``veritee`` is internal, whatever its own ``__all__`` says.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

API_DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"

PUBLIC: dict[str, list[str]] = {
    "veritee": ["AdmissionContext", "ChannelPolicy", "Trust", "__version__"],
    "veritee.evidence": [
        "FORMATS",
        "MAX_EVIDENCE_BYTES",
        "PLATFORMS",
        "Reason",
        "TrustRoot",
        "VerifiedEvidence",
        "detect_format",
        "parse_claims",
        "verify",
    ],
    "veritee.collateral": ["MAX_COLLATERAL_FILE_BYTES", "Collateral"],
    "veritee.appraisal": [
        "Appraisal",
        "Decision",
        "Policy",
        "PolicySet",
        "SignedPolicy",
        "appraise",
        "appraise_admitted",
        "appraise_baseline",
        "appraise_evidence",
        "ear_status",
        "load_policy",
        "refused_for_error",
        "sign_policy",
    ],
    "veritee.sdk": [
        "AdmissionContext",
        "AdmissionRefused",
        "AttestedConnection",
        "AttestedServer",
        "ChannelPolicy",
        "Trust",
        "admit_peer",
        "contain",
        "fetch_sealing_key",
        "fetch_sealing_key_certified",
        "fetch_secret",
        "fetch_secret_certified",
        "peer_of",
    ],
    "veritee.logs": [
        "ConfidentialLogHandler",
        "ErrorState",
        "LogIntegrityError",
        "LogKey",
        "LogRecord",
        "LogReport",
        "SignedTreeHead",
        "WorkloadLog",
        "decrypt_log",
        "open_log_key",
        "open_workload_log",
        "problem_for",
        "public_message",
        "replay",
        "to_json",
        "to_logging_record",
        "verify_log",
    ],
    "veritee.platforms": [
        "AzureCvmPlatform",
        "CcaPlatform",
        "MonotonicCounter",
        "NitroPlatform",
        "NoSealingKey",
        "Platform",
        "SealingMode",
        "SevSnpPlatform",
        "SimulatedPlatform",
        "TdxPlatform",
        "TpmPlatform",
        "open_hardware",
    ],
    "veritee.errors": [
        "AuthenticationError",
        "CollateralError",
        "MalformedError",
        "NonceError",
        "NotFoundError",
        "OversizedError",
        "PlatformError",
        "PolicyError",
        "SealingError",
        "StorageError",
        "UsageError",
        "VerificationError",
        "VeriteeError",
        "http_status",
    ],
    "veritee.reasons": [
        "FAMILIES",
        "RENAMED",
        "Code",
        "Reason",
        "canonical",
        "is_known",
        "markdown_table",
    ],
    "veritee.tee": ["Tee"],
    "veritee.binding": [
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
    ],
    "veritee.tokens": [
        "EAR_PROFILE",
        "EAR_TYPE",
        "TOKEN_LIFETIME",
        "Submod",
        "decode_ear",
        "ear_payload",
        "issue_ear",
        "jwk_of",
        "jwk_thumbprint",
        "jwks_keys",
        "kbs_audience",
        "key_binding",
        "public_key_of_jwk",
        "sign_jwt",
        "token_key",
    ],
    "veritee.profiles": ["Profile"],
}

NAMES = [(module, name) for module, names in PUBLIC.items() for name in names]


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_exactly_the_pinned_list(module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert sorted(exported) == sorted(PUBLIC[module]), (
        f"{module}.__all__ changed: update PUBLIC here and docs/api.md together"
    )
    assert len(set(exported)) == len(exported), f"{module}.__all__ names a symbol twice"


@pytest.mark.parametrize(("module", "name"), NAMES)
def test_every_public_name_resolves(module: str, name: str) -> None:
    mod = importlib.import_module(module)
    assert getattr(mod, name) is not None, f"{module}.{name}"


def _own_doc(obj: object) -> str:
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__") or ""
        # a dataclass without a docstring gets "Name(field: type, ...)"; that is no documentation
        return "" if doc.startswith(f"{obj.__name__}(") else doc.strip()
    return (getattr(obj, "__doc__", None) or "").strip()


@pytest.mark.parametrize(("module", "name"), NAMES)
def test_every_public_function_and_class_has_a_docstring(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert _own_doc(obj), f"{module}.{name} has no docstring of its own"


def test_a_lazy_package_resolves_names_without_shadowing_its_modules() -> None:
    # veritee, veritee.sdk, veritee.platforms and veritee.evidence load some names on first use;
    # importing every implementation module first must not replace a public name by a module.
    for module in ("veritee.sdk", "veritee.platforms"):
        pkg = importlib.import_module(module)
        for path in sorted(Path(pkg.__file__ or "").parent.glob("*.py")):
            importlib.import_module(f"{module}.{path.stem}" if path.stem != "__init__" else module)
        for name in PUBLIC[module]:
            assert not inspect.ismodule(getattr(pkg, name)), f"{module}.{name} is a module"
    with pytest.raises(AttributeError):
        importlib.import_module("veritee.sdk").no_such_name


def test_the_api_page_names_every_public_module_and_name() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    for module, names in PUBLIC.items():
        assert re.search(rf"`{re.escape(module)}`", text), f"docs/api.md does not mention {module}"
        for name in names:
            assert name in text, f"docs/api.md does not list {module}.{name}"
