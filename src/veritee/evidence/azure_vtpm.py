"""Azure confidential VMs on SEV-SNP: the paravisor's vTPM quote, anchored in the SNP report.

An Azure CVM's paravisor (HCL) obtains an SEV-SNP report at boot whose report data is the hash
of a JSON document holding the vTPM's attestation key (``HCLAkPub``). The guest then quotes its
PCRs with that key over a fresh nonce. So: AMD's chain vouches for the report, the report for
the JSON, the JSON for the AK, and the AK for the quote and its nonce.

Evidence is Trustee's ``az-snp-vtpm`` document (JSON; ``deps/verifier/src/az_snp_vtpm/compat.rs``
names the versions), version 2, 1 or the unversioned earlier form:

* v2 and v1: ``{"version": 2 | 1, "tpm_quote": {"signature", "message", "pcrs"}, "hcl_report":
  base64url, "vcek": base64url DER}``, the quote's members as hex. The two differ only in what
  Trustee checks against its own session (v2's HCL ``user-data`` = the expected report data);
  veritee binds the quote's nonce (``report_data``) instead, for both;
* v0: ``{"quote": {...the same, as arrays of bytes...}, "report": [bytes of the HCL report],
  "vcek": PEM}``;

``message`` is the TPMS_ATTEST, ``signature`` the raw RSASSA-SHA256 signature and ``pcrs`` the
24 SHA-256 PCRs. The HCL report is a 32-byte header (``HCLA``, version,
size, request type, status), the 1184-byte SNP report, then the IGVM request data: data size,
version, report type (2: SNP), report-data hash type (1: SHA-256, 2: SHA-384, 3: SHA-512),
variable-data size (all u32 little-endian) and the variable data, the runtime JSON.

:func:`verify` checks: (1) the SNP report with :func:`veritee.evidence.sev_snp.verify` (VCEK
from the document and the collateral, chained to AMD's pinned roots), requested at VMPL 0 (the
paravisor's; a report from a less privileged VMPL could name any runtime data, as Trustee
refuses it too); (2) SNP report data
[0:hash size] == HASH(runtime JSON); (3) the quote's signature with ``HCLAkPub`` from that JSON;
(4) it is a TPM-generated quote selecting exactly the 24 SHA-256 PCRs given, whose pcrDigest is
SHA-256 over them. Claims are the SNP report's (platform ``sev-snp``; the paravisor's
measurement and TCB), with ``report_data`` the quote's nonce (extraData), the report's own
report data as ``hcl_report_data``, ``vtpm: true`` and the PCRs as ``pcr0`` ... ``pcr23``.
Azure TDX CVMs (a TD quote instead of the SNP report) are not handled here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from veritee.collateral import Collateral
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.evidence import sev_snp, tpm
from veritee.evidence._reader import Reader, base64_any, json_object
from veritee.evidence.claims import VerifiedEvidence

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "check_runtime_binding",
    "detect",
    "document_version",
    "hcl_report",
    "parse",
    "parse_claims",
    "verify",
    "verify_vtpm_quote",
    "vtpm_claims",
    "vtpm_quote",
]

MAX_DOCUMENT_BYTES = 128 * 1024
#: The versioned document forms (Trustee's EvidenceV1, EvidenceV2: the same structure).
VERSIONS = (1, 2)
#: The VMPL the paravisor requests its SNP report from.
HCL_VMPL = 0
HCL_HEADER_SIZE = 32
HCL_SIGNATURE = b"HCLA"
REPORT_TYPE_SNP, REPORT_TYPE_TDX = 2, 4
HW_REPORT_AREA = 1184  # the SNP report, or a TDREPORT (1024 bytes) and padding
RUNTIME_HASHES = {1: "sha256", 2: "sha384", 3: "sha512"}
MAX_RUNTIME_JSON = 64 * 1024
PCR_COUNT = 24
ALG_SHA256 = 0x000B


def detect(data: bytes) -> bool:
    return (
        data[:64].lstrip()[:1] == b"{"
        and (b'"hcl_report"' in data or b'"report"' in data)
        and (b'"tpm_quote"' in data or b'"quote"' in data)
        and b'"td_quote"' not in data  # the TDX variant (veritee.evidence.azure_tdx_vtpm)
    )


def _octets(value: Any, field: str) -> bytes:
    """Hex text (v2) or an array of byte values (v0)."""
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    if not isinstance(value, str):
        raise MalformedError("expected hex text or an array of bytes", field=field)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedError("not valid hex", field=field) from None


def _vcek(value: Any) -> bytes:
    """PEM (v0) or base64 DER (v2) of the VCEK."""
    if not isinstance(value, str):
        raise MalformedError("vcek must be PEM or base64 DER text", field="vcek")
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    return base64_any(value, "vcek")


def parse(data: bytes) -> tuple[bytes, dict[str, Any], bytes]:
    """(HCL report bytes, the quote object, VCEK PEM) of either document version."""
    doc = json_object(data, MAX_DOCUMENT_BYTES)
    if "version" in doc:
        document_version(doc)
        quote, vcek = doc.get("tpm_quote"), doc.get("vcek")
        report = base64_any(doc.get("hcl_report"), "hcl_report")
    else:
        quote, raw, vcek = doc.get("quote"), doc.get("report"), doc.get("vcek")
        if not isinstance(raw, list) or not all(isinstance(b, int) and 0 <= b < 256 for b in raw):
            raise MalformedError("report must be an array of bytes", field="report")
        report = bytes(raw)
    if not isinstance(quote, dict):
        raise MalformedError("the TPM quote must be an object", field="tpm_quote")
    return report, quote, _vcek(vcek)


def document_version(doc: dict[str, Any]) -> int:
    """The document's ``version``: an integer of :data:`VERSIONS` (as Trustee reads it, a u32;
    ``true`` or ``2.0`` are not versions), else MalformedError."""
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in VERSIONS:
        raise MalformedError(f"unsupported document version {str(version)[:16]!r}", field="version")
    return version


def hcl_report(report: bytes, report_type: int) -> tuple[bytes, str, bytes]:
    """(hardware report area, runtime-data hash name, runtime JSON bytes) of an HCL report whose
    IGVM report type must be ``report_type`` (2: SNP, 4: TDX)."""
    r = Reader(report)
    if r.bytes(4, "hcl.signature") != HCL_SIGNATURE:
        raise MalformedError("not an HCL report (signature)", field="hcl.signature")
    r.skip(HCL_HEADER_SIZE - 4, "hcl.header")
    hw = r.bytes(HW_REPORT_AREA, "hcl.hw_report")
    r.u32("igvm.data_size")
    r.u32("igvm.version")
    if (kind := r.u32("igvm.report_type")) != report_type:
        raise MalformedError(f"HCL report type {kind}, expected {report_type}",
                             field="igvm.report_type")  # fmt: skip
    hash_type = r.u32("igvm.report_data_hash_type")
    if hash_type not in RUNTIME_HASHES:
        raise MalformedError(f"unknown runtime-data hash {hash_type}", field="igvm.hash_type")
    size = r.u32("igvm.variable_data_size")
    if size > MAX_RUNTIME_JSON:
        raise MalformedError("runtime data is too large", field="igvm.variable_data_size")
    return hw, RUNTIME_HASHES[hash_type], r.bytes(size, "igvm.variable_data")


def check_runtime_binding(report_data_hex: str, hash_name: str, runtime: bytes, what: str) -> None:
    """The hardware report's report data starts with HASH(runtime JSON), else VerificationError."""
    digest = hashlib.new(hash_name, runtime).digest()
    if not hmac.compare_digest(bytes.fromhex(report_data_hex)[: len(digest)], digest):
        raise VerificationError(f"the {what} does not vouch for this runtime data (HCLAkPub)",
                                code="binding_mismatch")  # fmt: skip


def _ak(runtime: bytes) -> rsa.RSAPublicKey:
    try:
        doc = json.loads(runtime)
        jwk = next(k for k in doc["keys"] if isinstance(k, dict) and k.get("kid") == "HCLAkPub")
        n, e = (int.from_bytes(base64.urlsafe_b64decode(jwk[x] + "=" * (-len(jwk[x]) % 4)), "big")
                for x in ("n", "e"))  # fmt: skip
        if jwk.get("kty") != "RSA":
            raise ValueError("not RSA")
        return rsa.RSAPublicNumbers(e, n).public_key()
    except (
        ValueError,
        KeyError,
        TypeError,
        StopIteration,
        binascii.Error,
        UnicodeDecodeError,
        RecursionError,
    ):
        raise MalformedError(
            "runtime data has no usable RSA HCLAkPub", field="runtime.keys"
        ) from None


def vtpm_quote(quote: dict[str, Any]) -> tuple[bytes, bytes, list[bytes]]:
    """(TPMS_ATTEST, signature, the 24 SHA-256 PCRs) of the document's quote object."""
    message = _octets(quote.get("message"), "tpm_quote.message")
    signature = _octets(quote.get("signature"), "tpm_quote.signature")
    pcrs = quote.get("pcrs")
    if not isinstance(pcrs, list) or len(pcrs) != PCR_COUNT:
        raise MalformedError(f"pcrs must be {PCR_COUNT} values", field="tpm_quote.pcrs")
    values = [_octets(p, f"tpm_quote.pcrs[{i}]") for i, p in enumerate(pcrs)]
    if any(len(v) != 32 for v in values):
        raise MalformedError("a PCR is not 32 bytes (SHA-256)", field="tpm_quote.pcrs")
    return message, signature, values


def verify_vtpm_quote(runtime: bytes, quote: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    """Steps 3-4: the quote is signed by the runtime data's HCLAkPub and is a genuine quote of
    exactly the 24 SHA-256 PCRs given. Returns (the parsed TPMS_ATTEST, the PCRs)."""
    message, signature, pcrs = vtpm_quote(quote)
    try:
        _ak(runtime).verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise VerificationError("TPM quote signature does not verify with HCLAkPub",
                                code="signature_invalid") from None  # fmt: skip
    attest = tpm._attest(message, "tpm_quote.message")
    if [(a, i) for a, i in attest["selection"] if i] != [(ALG_SHA256, tuple(range(PCR_COUNT)))]:
        raise VerificationError("the quote selects other PCRs than the 24 SHA-256 PCRs given",
                                code="tpm_pcr_selection")  # fmt: skip
    if hashlib.sha256(b"".join(pcrs)).digest() != attest["pcr_digest"]:
        raise VerificationError("PCR values do not match the signed pcrDigest",
                                code="tpm_pcr_mismatch")  # fmt: skip
    return attest, pcrs


def vtpm_claims(
    hw_claims: dict[str, Any], attest: dict[str, Any], pcrs: list[bytes]
) -> dict[str, Any]:
    """The hardware report's claims, with the quote's nonce as ``report_data`` and the PCRs."""
    claims = dict(hw_claims)
    claims["hcl_report_data"] = claims.get("report_data")
    claims["report_data"] = attest["extra_data"].hex()
    claims["vtpm"] = True
    claims["pcrs"] = {"sha256": {str(i): v.hex() for i, v in enumerate(pcrs)}}
    for i, v in enumerate(pcrs):
        claims[f"pcr{i}"] = v.hex()
    return claims


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims, for display."""
    report, quote, _ = parse(data)
    snp, _, _ = hcl_report(report, REPORT_TYPE_SNP)
    message, _, pcrs = vtpm_quote(quote)
    return vtpm_claims(sev_snp.parse_claims(snp[: sev_snp.REPORT_SIZE]),
                       tpm._attest(message, "tpm_quote.message"), pcrs)  # fmt: skip


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Verify an ``az-snp-vtpm`` document at ``at`` (see the module docstring)."""
    if at.tzinfo is None:
        raise UsageError("verification time must be timezone-aware")
    report, quote, vcek_pem = parse(data)
    snp, hash_name, runtime = hcl_report(report, REPORT_TYPE_SNP)
    try:
        own = Collateral.from_blobs([("vcek", vcek_pem)])
    except MalformedError as e:
        raise MalformedError(f"vcek: {e.message}", field="vcek") from None
    # (1) The SNP report, chained to AMD's pinned roots; (2) it vouches for the runtime data.
    hw = sev_snp.verify(snp[: sev_snp.REPORT_SIZE], collateral=collateral.with_untrusted(own.certificates), at=at,
                        trust=trust)  # fmt: skip
    if hw.claims["vmpl"] != HCL_VMPL:
        raise VerificationError(f"the HCL's SNP report comes from VMPL {hw.claims['vmpl']}, not "
                                f"the paravisor's VMPL {HCL_VMPL}", code="vmpl_above_maximum")  # fmt: skip
    check_runtime_binding(hw.claims["report_data"], hash_name, runtime, "SNP report")
    # (3, 4) The runtime data's AK signed a genuine quote of these PCRs.
    attest, pcrs = verify_vtpm_quote(runtime, quote)
    return VerifiedEvidence(format="az-snp-vtpm", claims=vtpm_claims(hw.claims, attest, pcrs),
                            verified_at=at, findings=hw.findings)  # fmt: skip
