"""Azure confidential VMs: the paravisor's vTPM, assembled into Trustee's ``az-snp-vtpm`` and
``az-tdx-vtpm`` evidence (what :mod:`veritee.evidence.azure_vtpm` and
:mod:`veritee.evidence.azure_tdx_vtpm` read).

On an Azure CVM the guest cannot reach ``/dev/sev-guest`` or ``/dev/tdx_guest``: the paravisor
(HCL) obtained the hardware report at boot and keeps it in the vTPM, with its attestation key:

* NV index ``0x01400001`` (owner-readable): the HCL report, a 32-byte header (``HCLA``), the
  hardware report (SNP ATTESTATION_REPORT, or a TDREPORT), the IGVM request data and the runtime
  JSON whose hash the hardware report's report data holds; that JSON carries ``HCLAkPub``;
* persistent handle ``0x81000003``: that AK (RSA 2048, RSASSA-SHA256), which quotes the 24
  SHA-256 PCRs with the nonce (veritee's report data) as extraData;
* the Azure Instance Metadata Service (``169.254.169.254``, header ``Metadata: true``): the VCEK
  and its chain (``/metadata/THIM/amd/certification``) for SNP; for TDX it turns the TDREPORT
  into a TD quote (``POST /acc/tdquote {"report": base64url}`` -> ``{"quote": base64url}``).

Evidence: ``az-snp-vtpm`` version 2 ``{"version": 2, "tpm_quote": {"signature", "message",
"pcrs"} (hex), "hcl_report": base64url, "vcek": base64url DER}``; ``az-tdx-vtpm`` version 1
``{"version": 1, "tpm_quote": ..., "hcl_report": base64url, "td_quote": base64url}``. The ASK/ARK
the IMDS returns are handed over as collateral (``veritee attest --collateral-out``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from veritee._codec import b64url
from veritee.errors import MalformedError, PlatformError, UsageError
from veritee.evidence import azure_vtpm, sev_snp
from veritee.platforms._profile import settle_profile
from veritee.platforms.tpm import DEFAULT_TCTI, PCR_COUNT, TpmPlatform
from veritee.profiles import Profile

__all__ = ["AK_HANDLE", "HCL_REPORT_INDEX", "IMDS_URL", "AzureCvmPlatform", "hcl_report_type"]

HCL_REPORT_INDEX = 0x01400001
AK_HANDLE = 0x81000003
IMDS_URL = "http://169.254.169.254"
THIM_PATH = "/metadata/THIM/amd/certification"
TDQUOTE_PATH = "/acc/tdquote"
TDREPORT_SIZE = 1024
MAX_IMDS_ANSWER = 64 * 1024


def hcl_report_type(report: bytes) -> str:
    """``az-snp-vtpm`` or ``az-tdx-vtpm`` for an HCL report (IGVM report type 2 or 4)."""
    for fmt, kind in (
        ("az-snp-vtpm", azure_vtpm.REPORT_TYPE_SNP),
        ("az-tdx-vtpm", azure_vtpm.REPORT_TYPE_TDX),
    ):
        try:
            azure_vtpm.hcl_report(report, kind)
        except MalformedError:
            continue
        return fmt
    raise PlatformError(
        "the vTPM's HCL report is neither an SNP nor a TDX report", code="platform_failed"
    )


class AzureCvmPlatform(TpmPlatform):
    """The Azure CVM attester (formats ``az-snp-vtpm``, ``az-tdx-vtpm``); sealing and the PCR
    reads are the vTPM's (:class:`TpmPlatform`)."""

    def __init__(
        self,
        *,
        tcti: str = DEFAULT_TCTI,
        state_dir: Path,
        profile: Profile | None = None,
        imds_url: str = IMDS_URL,
        imds_transport: httpx.BaseTransport | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(tcti=tcti, state_dir=state_dir, profile=profile, **kw)
        self.imds = httpx.Client(base_url=imds_url, transport=imds_transport, timeout=10,
                                 headers={"Metadata": "true"}, trust_env=False)  # fmt: skip
        self._collateral: dict[str, bytes] = {}
        self.name = hcl_report_type(self.hcl_report())

    @property
    def needs_enrollment(self) -> bool:
        return False  # the hardware report vouches for the paravisor's AK

    # --- the vTPM ----------------------------------------------------------------------------
    def hcl_report(self) -> bytes:
        """NV 0x01400001, read with owner authorization (empty owner auth on Azure)."""
        t = self._t
        with self._esapi("reading the HCL report") as e:
            nv = e.tr_from_tpmpublic(HCL_REPORT_INDEX)
            public, _ = e.nv_read_public(nv)
            size, out = public.nvPublic.dataSize, b""
            while len(out) < size:
                chunk = min(512, size - len(out))
                out += bytes(e.nv_read(nv, chunk, len(out), auth_handle=t.ESYS_TR.OWNER))
        return out

    def _vtpm_quote(self, report_data: bytes) -> dict[str, Any]:
        t = self._t
        with self._esapi("quoting with the paravisor's AK") as e:
            ak = e.tr_from_tpmpublic(AK_HANDLE)
            selection = t.TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, range(PCR_COUNT))))
            for _ in range(3):
                pcrs = self._read_pcrs(e, 0x000B, tuple(range(PCR_COUNT)))
                attest, signature = e.quote(ak, selection, report_data,
                                            t.TPMT_SIG_SCHEME(scheme=t.TPM2_ALG.NULL))  # fmt: skip
                message = bytes(attest)
                info, _ = t.TPMS_ATTEST.unmarshal(message)
                if (
                    bytes(info.attested.quote.pcrDigest)
                    == hashlib.sha256(b"".join(pcrs[i] for i in range(PCR_COUNT))).digest()
                ):
                    sig = bytes(signature.signature.rsassa.sig)
                    return {"signature": sig.hex(), "message": message.hex(),
                            "pcrs": [pcrs[i].hex() for i in range(PCR_COUNT)]}  # fmt: skip
        raise PlatformError("the PCRs kept changing while quoting", code="platform_busy")

    # --- the IMDS ----------------------------------------------------------------------------
    def _imds(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            r = self.imds.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise PlatformError(f"the Azure IMDS cannot be reached: {type(e).__name__}",
                                code="platform_absent") from None  # fmt: skip
        if r.status_code != 200 or len(r.content) > MAX_IMDS_ANSWER:
            raise PlatformError(f"the Azure IMDS answered {path} with HTTP {r.status_code}",
                                code="platform_refused")  # fmt: skip
        try:
            doc = r.json()
        except ValueError:
            raise PlatformError(
                f"the Azure IMDS answer to {path} is not JSON", code="platform_failed"
            ) from None
        if not isinstance(doc, dict):
            raise PlatformError(
                f"the Azure IMDS answer to {path} is not an object", code="platform_failed"
            )
        return doc

    def _vcek(self) -> bytes:
        """The VCEK (DER) from the IMDS; its chain (ASK, ARK) becomes :meth:`collateral`."""
        doc = self._imds("GET", THIM_PATH)
        try:
            vcek = x509.load_pem_x509_certificate(str(doc["vcekCert"]).encode())
            chain = x509.load_pem_x509_certificates(str(doc.get("certificateChain", "")).encode()) \
                if doc.get("certificateChain") else []  # fmt: skip
        except (KeyError, ValueError):
            raise PlatformError(
                "the Azure IMDS gave no usable VCEK", code="platform_failed"
            ) from None
        der = serialization.Encoding.DER
        self._collateral = {f"amd-chain-{i}.der": c.public_bytes(der) for i, c in enumerate(chain)}
        return vcek.public_bytes(der)

    def _td_quote(self, hcl: bytes) -> bytes:
        hw, _, _ = azure_vtpm.hcl_report(hcl, azure_vtpm.REPORT_TYPE_TDX)
        doc = self._imds("POST", TDQUOTE_PATH, {"report": b64url(hw[:TDREPORT_SIZE])})
        quote = doc.get("quote")
        if not isinstance(quote, str):
            raise PlatformError("the Azure IMDS gave no TD quote", code="platform_failed")
        try:
            return base64.urlsafe_b64decode(quote + "=" * (-len(quote) % 4))
        except ValueError:
            raise PlatformError(
                "the Azure IMDS TD quote is not base64url", code="platform_failed"
            ) from None

    # --- the Platform contract ------------------------------------------------------------------
    def evidence(self, report_data: bytes) -> bytes:
        if len(report_data) != 64:
            raise UsageError("report data is exactly 64 bytes")
        hcl = self.hcl_report()
        quote = self._vtpm_quote(report_data)
        if self.name == "az-snp-vtpm":
            doc: dict[str, Any] = {"version": 2, "tpm_quote": quote, "hcl_report": b64url(hcl),
                                   "vcek": b64url(self._vcek())}  # fmt: skip
        else:
            doc = {"version": 1, "tpm_quote": quote, "hcl_report": b64url(hcl),
                   "td_quote": b64url(self._td_quote(hcl))}  # fmt: skip
        return json.dumps(doc).encode()

    def collateral(self) -> dict[str, bytes]:
        """The AMD chain (ASK, ARK) the IMDS returned with the VCEK (SNP)."""
        return dict(self._collateral)

    @functools.cached_property
    def own_report(self) -> dict[str, Any]:
        """The hardware report's claims, read from the HCL report (unverified)."""
        hcl = self.hcl_report()
        if self.name == "az-snp-vtpm":
            hw, _, _ = azure_vtpm.hcl_report(hcl, azure_vtpm.REPORT_TYPE_SNP)
            claims: dict[str, Any] = sev_snp.parse_claims(hw[: sev_snp.REPORT_SIZE])
            return claims
        from veritee.platforms.tdx_guest import TdReport

        hw, _, _ = azure_vtpm.hcl_report(hcl, azure_vtpm.REPORT_TYPE_TDX)
        r = TdReport.from_bytes(hw[:TDREPORT_SIZE])
        return {"platform": "tdx", "mrtd": r.mrtd.hex(), "mr_config_id": r.mrconfigid.hex(),
                "debug": r.debug, "td_attributes": r.attributes.to_bytes(8, "little").hex()}  # fmt: skip

    @property
    def measurement(self) -> str:
        """The hardware report's (the paravisor's launch): what the verifier's claims say."""
        return str(self.own_report.get("measurement") or self.own_report["mrtd"])

    @property
    def debug(self) -> bool:
        return bool(self.own_report.get("debug"))

    @functools.cached_property
    def profile(self) -> Profile:
        """What the verifier computes from the same hardware report: the paravisor's launch data
        is Azure's, so development unless Azure ever binds a veritee profile there."""
        return settle_profile(self._requested, self.own_report)

    def describe(self) -> dict[str, Any]:
        out = {
            **self.own_report,
            "interface": f"{self.tcti} (Azure paravisor vTPM)",
            "format": self.name,
        }
        out["profile"] = self.profile.value
        return out
