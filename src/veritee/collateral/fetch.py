"""Fetch the collateral a piece of evidence needs from AMD KDS or Intel PCS, into a cache.

This is the I/O edge of the collateral layer: the verifiers never fetch, they read the cache
through :meth:`Collateral.from_paths`. What to fetch is read from the evidence itself:

* SEV-SNP report (AMD SEV-SNP ABI spec 56860, Table 23 ATTESTATION_REPORT): VERSION (0x000),
  SIGNING_KEY (0x048 bits 4:2; 0 = VCEK, 1 = VLEK), REPORTED_TCB (0x180), CPUID_FAM_ID /
  CPUID_MOD_ID (0x188 / 0x189, version 3 and later), CHIP_ID (0x1A0, 64 bytes). URLs from the
  VCEK Certificate and KDS Interface Specification (57230)::

      {kds}/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..   (DER)
      {kds}/vcek/v1/{product}/cert_chain          ASK + ARK (PEM)
      {kds}/vcek/v1/{product}/crl                 CRL signed by the ARK (DER)
      {kds}/vlek/v1/{product}/cert_chain, /crl    for VLEK-signed reports

  Turin (family 1Ah) adds ``fmcSPL`` and its hwid is the first 8 bytes of CHIP_ID; its
  TCB_VERSION is ``FMC | BOOTLOADER | TEE | SNP | reserved[3] | MICROCODE`` where Milan/Genoa
  have ``BOOTLOADER | TEE | reserved[4] | SNP | MICROCODE`` (ABI spec, TCB_VERSION tables).

* Intel DCAP quote (v3 SGX, v4/v5 SGX or TDX): the FMSPC and the PCK issuing CA (Processor or
  Platform) come from the PCK certificate of the quote's certification data (SGX PCK
  Certificate and CRL Profile, extension 1.2.840.113741.1.13.1, member .4 FMSPC). Intel PCS v4::

      {pcs}/sgx/certification/v4/pckcrl?ca={processor|platform}&encoding=der
            (header SGX-PCK-CRL-Issuer-Chain)
      {pcs}/{tdx|sgx}/certification/v4/tcb?fmspc=..   (header TCB-Info-Issuer-Chain)
      {pcs}/{tdx|sgx}/certification/v4/qe/identity    (header SGX-Enclave-Identity-Issuer-Chain)
      root CA CRL: the CRL distribution point of the Intel SGX Root CA (or a configured URL)

  and are stored as one JSON document in the layout of the test vectors.

Every response is size-limited and checked (certificate, CRL, JSON) before anything is written;
then all files are written atomically, so a failed fetch leaves the cache as it was.

The cache never goes back (python-tuf's rule for trusted metadata): a part the cache already
holds in a newer version stays (:func:`never_older`), so a replayed old response, validly signed
by Intel or AMD, cannot replace TCB info of a higher ``tcbEvaluationDataNumber`` or a CRL with a
later ``thisUpdate``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import struct
import urllib.parse
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from veritee.collateral.cache import CollateralCache
from veritee.errors import CollateralError, MalformedError, UsageError

__all__ = [
    "DEFAULT_AMD_KDS",
    "DEFAULT_INTEL_PCS",
    "MAX_RESPONSE_BYTES",
    "DcapTarget",
    "FetchConfig",
    "Fetched",
    "SnpTarget",
    "fetch_collateral",
    "fetch_for_evidence",
    "fetch_item",
    "kds_vcek_url",
    "never_older",
    "raw_json_member",
    "refetchable",
    "target_for",
]

DEFAULT_AMD_KDS = "https://kdsintf.amd.com"
DEFAULT_INTEL_PCS = "https://api.trustedservices.intel.com"
#: The largest response accepted (an Intel PCK CRL is ~50 KiB, everything else a few KiB).
MAX_RESPONSE_BYTES = 1024 * 1024
DEFAULT_TIMEOUT = 15.0

# SEV-SNP ATTESTATION_REPORT offsets (ABI spec Table 23).
SNP_REPORT_SIZE = 0x4A0
SNP_VERSION = 0x000
SNP_FLAGS = 0x048
SNP_REPORTED_TCB = 0x180
SNP_CPUID_FAM_ID = 0x188
SNP_CPUID_MOD_ID = 0x189
SNP_CHIP_ID = 0x1A0
SNP_CHIP_ID_SIZE = 64
TURIN_HWID_SIZE = 8
SNP_PRODUCTS = ("Milan", "Genoa", "Turin")

# DCAP quote header (Intel DCAP Quote Library API, "Quote Header").
QUOTE_ATT_KEY_ECDSA_P256 = 2
QUOTE_TEE_SGX = 0x00000000
QUOTE_TEE_TDX = 0x00000081
PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
PEM_END = b"-----END CERTIFICATE-----"
#: DER of the OIDs 1.2.840.113741.1.13.1 (SGX extensions) and 1.2.840.113741.1.13.1.4 (FMSPC).
SGX_EXTENSIONS_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
FMSPC_OID_DER = bytes.fromhex("060a2a864886f84d010d0104")


@dataclass(frozen=True)
class FetchConfig:
    """Where and how to fetch. ``product`` forces the AMD product name (needed for some v2
    reports, which do not name their CPU family). ``intel_root_crl`` overrides the URL of the
    Intel SGX Root CA CRL (default: the root certificate's CRL distribution point)."""

    amd_kds: str = DEFAULT_AMD_KDS
    intel_pcs: str = DEFAULT_INTEL_PCS
    intel_root_crl: str | None = None
    product: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = MAX_RESPONSE_BYTES
    require_crl: bool = True


@dataclass(frozen=True)
class Fetched:
    """One item written to the cache (``path`` relative to the cache root)."""

    kind: str
    url: str
    path: str


@dataclass(frozen=True)
class SnpTarget:
    """What an SEV-SNP report needs from AMD KDS."""

    version: int
    signing_key: str  # "vcek" | "vlek"
    chip_id: bytes
    reported_tcb: bytes
    product: str | None  # None: the report does not say (version 2)

    @classmethod
    def from_report(cls, data: bytes) -> SnpTarget:
        if len(data) < SNP_REPORT_SIZE:
            raise MalformedError(
                f"SEV-SNP report is {len(data)} bytes, expected {SNP_REPORT_SIZE}",
                field="report",
                offset=len(data),
            )
        version = struct.unpack_from("<I", data, SNP_VERSION)[0]
        flags = struct.unpack_from("<I", data, SNP_FLAGS)[0]
        key_sel = (flags >> 2) & 0x7
        if key_sel not in (0, 1):
            raise CollateralError(
                "the report is not signed by a VCEK or VLEK; there is nothing to fetch",
                code="fetch_not_applicable",
            )
        chip_id = data[SNP_CHIP_ID : SNP_CHIP_ID + SNP_CHIP_ID_SIZE]
        product = None
        if version >= 3:
            product = _snp_product(data[SNP_CPUID_FAM_ID], data[SNP_CPUID_MOD_ID])
        return cls(
            version=version,
            signing_key="vcek" if key_sel == 0 else "vlek",
            chip_id=chip_id,
            reported_tcb=data[SNP_REPORTED_TCB : SNP_REPORTED_TCB + 8],
            product=product,
        )


def _snp_product(family: int, model: int) -> str | None:
    """Product name from CPUID family/model (AMD PPRs: 19h 00-0Fh Milan, 10-1Fh/A0-AFh Genoa)."""
    if family == 0x19:
        if model <= 0x0F:
            return "Milan"
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return "Genoa"
    if family == 0x1A and model <= 0x1F:
        return "Turin"
    return None


def kds_vcek_url(base: str, product: str, chip_id: bytes, reported_tcb: bytes) -> str:
    """The KDS URL of the VCEK of ``chip_id`` at ``reported_tcb`` (spec 57230, section 4.1)."""
    tcb = reported_tcb
    if product == "Turin":
        hwid = chip_id[:TURIN_HWID_SIZE].hex()
        query = f"fmcSPL={tcb[0]}&blSPL={tcb[1]}&teeSPL={tcb[2]}&snpSPL={tcb[3]}&ucodeSPL={tcb[7]}"
    else:
        hwid = chip_id.hex()
        query = f"blSPL={tcb[0]}&teeSPL={tcb[1]}&snpSPL={tcb[6]}&ucodeSPL={tcb[7]}"
    return f"{base.rstrip('/')}/vcek/v1/{product}/{hwid}?{query}"


@dataclass(frozen=True)
class DcapTarget:
    """What a DCAP quote needs from Intel PCS."""

    tee: str  # "tdx" | "sgx"
    fmspc: str  # upper-case hex, 12 digits
    pck_ca: str  # "processor" | "platform"

    @classmethod
    def from_quote(cls, data: bytes) -> DcapTarget:
        version, _key_type, tee_type = struct.unpack_from("<HHI", data, 0)
        if version == 3:
            tee = "sgx"
        elif tee_type == QUOTE_TEE_TDX:
            tee = "tdx"
        elif tee_type == QUOTE_TEE_SGX:
            tee = "sgx"
        else:
            raise MalformedError(
                f"unknown TEE type {tee_type:#x}", field="header.tee_type", offset=4
            )
        pck = _pck_leaf(data)
        issuer = " ".join(
            str(a.value) for a in pck.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        )
        if "Processor" in issuer:
            ca = "processor"
        elif "Platform" in issuer:
            ca = "platform"
        else:
            raise MalformedError(f"PCK certificate issuer {issuer!r} is not a PCK CA", field="pck")
        return cls(tee=tee, fmspc=_fmspc(pck).hex().upper(), pck_ca=ca)


def _pck_leaf(data: bytes) -> x509.Certificate:
    start = data.find(PEM_BEGIN)
    end = data.rfind(PEM_END)
    if start < 0 or end < start:
        raise MalformedError("quote carries no PEM certificate chain", field="certification_data")
    try:
        certs = x509.load_pem_x509_certificates(data[start : end + len(PEM_END)])
    except ValueError:
        raise MalformedError(
            "bad PEM certificate chain", field="certification_data", offset=start
        ) from None
    return certs[0]


def _der_items(der: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, whole TLV, value) of each DER item in ``der``; short/long definite lengths only."""
    out: list[tuple[int, bytes, bytes]] = []
    pos = 0
    while pos < len(der):
        if pos + 2 > len(der):
            raise ValueError("truncated DER")
        tag, first = der[pos], der[pos + 1]
        head = 2
        if first < 0x80:
            length = first
        else:
            n = first & 0x7F
            if n == 0 or n > 4 or pos + 2 + n > len(der):
                raise ValueError("bad DER length")
            length = int.from_bytes(der[pos + 2 : pos + 2 + n], "big")
            head += n
        stop = pos + head + length
        if stop > len(der):
            raise ValueError("truncated DER")
        out.append((tag, der[pos:stop], der[pos + head : stop]))
        pos = stop
    return out


def _fmspc(pck: x509.Certificate) -> bytes:
    try:
        ext = pck.extensions.get_extension_for_oid(SGX_EXTENSIONS_OID).value
    except x509.ExtensionNotFound:
        raise MalformedError(
            "PCK certificate has no SGX extension", field="pck.sgx_extensions"
        ) from None
    raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
    try:
        (outer,) = _der_items(raw)
        for _, _, member in _der_items(outer[2]):
            items = _der_items(member)
            if len(items) == 2 and items[0][1] == FMSPC_OID_DER and items[1][0] == 0x04:
                if len(items[1][2]) == 6:
                    return items[1][2]
    except ValueError:
        pass
    raise MalformedError("no 6-byte FMSPC in the PCK SGX extension", field="pck.fmspc")


def target_for(data: bytes) -> SnpTarget | DcapTarget:
    """What ``data`` needs fetched. Raises MalformedError or UsageError (e.g. for Nitro)."""
    if len(data) >= 8:
        version, key_type = struct.unpack_from("<HH", data, 0)
        if version in (3, 4, 5) and key_type == QUOTE_ATT_KEY_ECDSA_P256:
            return DcapTarget.from_quote(data)
        if struct.unpack_from("<I", data, 0)[0] in (2, 3, 4, 5) and len(data) == SNP_REPORT_SIZE:
            return SnpTarget.from_report(data)
    from veritee.evidence import nitro

    if nitro.detect(data):
        raise UsageError("Nitro documents carry their own certificate chain; nothing to fetch")
    raise MalformedError("neither an SEV-SNP report nor a DCAP quote", field="evidence")


# --- HTTP -------------------------------------------------------------------------------------


class _Http:
    def __init__(self, client: httpx.Client, max_bytes: int) -> None:
        self._client = client
        self._max = max_bytes

    def get(self, url: str, what: str) -> tuple[bytes, httpx.Headers]:
        host = urllib.parse.urlsplit(url).netloc
        try:
            with self._client.stream("GET", url) as r:
                if r.status_code != 200:
                    raise CollateralError(
                        f"{what}: HTTP {r.status_code} from {host}", code="fetch_http_status"
                    )
                declared = r.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self._max:
                    raise CollateralError(
                        f"{what}: response of {declared} bytes exceeds {self._max}",
                        code="fetch_oversized",
                    )
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > self._max:
                        raise CollateralError(
                            f"{what}: response exceeds {self._max} bytes", code="fetch_oversized"
                        )
                return bytes(body), r.headers
        except httpx.HTTPError as e:
            raise CollateralError(
                f"{what}: cannot fetch from {host} ({type(e).__name__})", code="fetch_unreachable"
            ) from None


def _check(what: str, parse: Callable[[], Any]) -> Any:
    try:
        with warnings.catch_warnings():
            # AMD VCEKs carry serial number 0, which cryptography warns about.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return parse()
    except (ValueError, TypeError, UnicodeDecodeError):
        raise CollateralError(f"{what}: response does not parse", code="fetch_malformed") from None


@dataclass
class _Plan:
    files: dict[str, bytes] = field(default_factory=dict)
    items: list[Fetched] = field(default_factory=list)

    def add(self, kind: str, url: str, path: str, data: bytes) -> None:
        self.files[path] = data
        self.items.append(Fetched(kind, url, path))


# --- AMD --------------------------------------------------------------------------------------


def _fetch_amd(target: SnpTarget, config: FetchConfig, http: _Http, plan: _Plan) -> None:
    base = config.amd_kds.rstrip("/")
    if config.product:
        products = [config.product]
    elif target.product:
        products = [target.product]
    elif target.signing_key == "vcek":
        products = ["Milan", "Genoa"]  # version-2 reports do not say; KDS answers 404 otherwise
    else:
        raise UsageError("this VLEK report does not name its AMD product; pass --product")
    for product in products:
        if product not in SNP_PRODUCTS:
            raise UsageError(f"unknown AMD product {product!r}; known: {', '.join(SNP_PRODUCTS)}")
    key = target.signing_key
    product = products[0]
    if key == "vcek":
        if not any(target.chip_id):
            raise CollateralError(
                "CHIP_ID is masked (MASK_CHIP_ID); the VCEK cannot be looked up",
                code="fetch_not_applicable",
            )
        for i, product in enumerate(products):
            url = kds_vcek_url(base, product, target.chip_id, target.reported_tcb)
            try:
                der, _ = http.get(url, f"VCEK ({product})")
            except CollateralError as e:
                if e.code == "fetch_http_status" and i + 1 < len(products):
                    continue  # a version-2 report: try the next product family
                raise
            _check("VCEK", functools.partial(x509.load_der_x509_certificate, der))
            hwid = target.chip_id[: TURIN_HWID_SIZE if product == "Turin" else None].hex()
            name = f"amd/{product}/vcek/{hwid}-{target.reported_tcb[::-1].hex()}.der"
            plan.add("vcek", url, name, der)
            break
    _fetch_amd_chain(f"{base}/{key}/v1/{product}", key, product, http, plan)
    url = f"{base}/{key}/v1/{product}/crl"
    try:
        crl, _ = http.get(url, "CRL")
    except CollateralError as e:
        if config.require_crl or e.code != "fetch_http_status":
            raise
        return
    _check("CRL", lambda: x509.load_der_x509_crl(crl))
    plan.add(f"{key}_crl", url, f"amd/{product}/{key}_crl.der", crl)


def _fetch_amd_chain(base: str, key: str, product: str, http: _Http, plan: _Plan) -> None:
    url = f"{base}/cert_chain"
    pem, _ = http.get(url, f"{key.upper()} cert chain")
    chain = _check("cert chain", lambda: x509.load_pem_x509_certificates(pem))
    if len(chain) != 2:
        raise CollateralError("cert chain must hold 2 certificates", code="fetch_malformed")
    plan.add(f"{key}_cert_chain", url, f"amd/{product}/{key}_cert_chain.pem", pem)


# --- Intel ------------------------------------------------------------------------------------


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def raw_json_member(text: str, key: str) -> str:
    """The exact source text of the value of top-level member ``key`` of the JSON object ``text``.

    Intel signs the bytes of ``tcbInfo`` / ``enclaveIdentity`` as served, so they are kept as is.
    Raises ValueError if ``text`` is not a JSON object or has no such member.
    """
    dec = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if text[pos : pos + 1] != "{":
        raise ValueError("not a JSON object")
    pos = _skip_ws(text, pos + 1)
    found: str | None = None
    if text[pos : pos + 1] == "}":
        pos += 1
    else:
        while True:
            name, pos = dec.raw_decode(text, pos)
            if not isinstance(name, str):
                raise ValueError("object key is not a string")
            pos = _skip_ws(text, pos)
            if text[pos : pos + 1] != ":":
                raise ValueError("expected ':'")
            start = _skip_ws(text, pos + 1)
            _, pos = dec.raw_decode(text, start)
            if name == key:
                if found is not None:
                    raise ValueError(f"duplicate member {key}")
                found = text[start:pos]
            pos = _skip_ws(text, pos)
            sep = text[pos : pos + 1]
            pos += 1
            if sep == "}":
                break
            if sep != ",":
                raise ValueError("expected ',' or '}'")
            pos = _skip_ws(text, pos)
    if _skip_ws(text, pos) != len(text):
        raise ValueError("trailing data after the JSON object")
    if found is None:
        raise ValueError(f"no member {key}")
    return found


def _issuer_chain(headers: httpx.Headers, names: tuple[str, ...], what: str) -> str:
    for name in names:
        value = headers.get(name)
        if value:
            pem = urllib.parse.unquote(value)
            certs = _check(what, functools.partial(x509.load_pem_x509_certificates, pem.encode()))
            if not certs:
                break
            return pem
    raise CollateralError(f"{what}: response has no {names[0]} header", code="fetch_malformed")


def _signed_json(body: bytes, member: str, what: str) -> tuple[str, str, dict[str, Any]]:
    def parse() -> tuple[str, str, dict[str, Any]]:
        text = body.decode("utf-8")
        raw = raw_json_member(text, member)
        signature = json.loads(raw_json_member(text, "signature"))
        inner = json.loads(raw)
        if not isinstance(signature, str) or not isinstance(inner, dict):
            raise ValueError("wrong types")
        bytes.fromhex(signature)
        return raw, signature, inner

    result: tuple[str, str, dict[str, Any]] = _check(what, parse)
    return result


def _der_crl(body: bytes, what: str) -> bytes:
    def parse() -> bytes:
        if body.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(body).public_bytes(Encoding.DER)
        text = body.strip()
        if text and len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text):
            body_der = bytes.fromhex(text.decode())  # a PCCS serves some CRLs hex-encoded
            return x509.load_der_x509_crl(body_der).public_bytes(Encoding.DER)
        return x509.load_der_x509_crl(body).public_bytes(Encoding.DER)

    der: bytes = _check(what, parse)
    return der


def _fetch_intel(target: DcapTarget, config: FetchConfig, http: _Http, plan: _Plan) -> None:
    base = config.intel_pcs.rstrip("/")
    doc: dict[str, str] = {}
    urls: list[str] = []

    url = f"{base}/sgx/certification/v4/pckcrl?ca={target.pck_ca}&encoding=der"
    body, headers = http.get(url, "PCK CRL")
    doc["pck_crl_issuer_chain"] = _issuer_chain(headers, ("SGX-PCK-CRL-Issuer-Chain",), "PCK CRL")
    pck_crl = _der_crl(body, "PCK CRL")
    urls.append(url)

    url = f"{base}/{target.tee}/certification/v4/tcb?fmspc={target.fmspc}"
    body, headers = http.get(url, "TCB info")
    tcb_chain = _issuer_chain(
        headers, ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"), "TCB info"
    )
    tcb_raw, tcb_sig, tcb = _signed_json(body, "tcbInfo", "TCB info")
    if str(tcb.get("fmspc", "")).upper() != target.fmspc:
        raise CollateralError(
            f"TCB info is for FMSPC {tcb.get('fmspc')!r}, not {target.fmspc}",
            code="fetch_malformed",
        )
    urls.append(url)

    url = f"{base}/{target.tee}/certification/v4/qe/identity"
    body, headers = http.get(url, "QE identity")
    qe_chain = _issuer_chain(headers, ("SGX-Enclave-Identity-Issuer-Chain",), "QE identity")
    qe_raw, qe_sig, _ = _signed_json(body, "enclaveIdentity", "QE identity")
    urls.append(url)

    url = config.intel_root_crl or _root_crl_url(qe_chain)
    body, _ = http.get(url, "Intel root CA CRL")
    root_crl = _der_crl(body, "Intel root CA CRL")
    urls.append(url)

    doc["root_ca_crl"] = root_crl.hex()
    doc["pck_crl"] = pck_crl.hex()
    doc["tcb_info_issuer_chain"] = tcb_chain
    doc["tcb_info"] = tcb_raw
    doc["tcb_info_signature"] = tcb_sig
    doc["qe_identity_issuer_chain"] = qe_chain
    doc["qe_identity"] = qe_raw
    doc["qe_identity_signature"] = qe_sig
    path = f"intel/{target.tee}/{target.fmspc}-{target.pck_ca}.json"
    plan.add(f"{target.tee}_collateral", " ".join(urls), path, json.dumps(doc, indent=1).encode())


def _root_crl_url(chain_pem: str) -> str:
    root = x509.load_pem_x509_certificates(chain_pem.encode())[-1]
    try:
        cdp = root.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        raise CollateralError(
            "Intel root CA has no CRL distribution point", code="fetch_malformed"
        ) from None
    for point in cdp:
        for name in point.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith(
                "https://"
            ):
                return name.value
    raise CollateralError(
        "Intel root CA has no https CRL distribution point", code="fetch_malformed"
    )


# --- entry point ------------------------------------------------------------------------------


def _client(cfg: FetchConfig, transport: httpx.BaseTransport | None) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(cfg.timeout),
        follow_redirects=False,
        transport=transport,
        headers={"User-Agent": "veritee-collateral-fetch"},
    )


def fetch_for_evidence(
    evidence: bytes,
    config: FetchConfig | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> list[tuple[Fetched, bytes]]:
    """Fetch what ``evidence`` needs; return each item with its bytes (nothing is written).
    Raises as :func:`fetch_collateral`."""
    cfg = config or FetchConfig()
    target = target_for(evidence)
    plan = _Plan()
    with _client(cfg, transport) as client:
        http = _Http(client, cfg.max_bytes)
        if isinstance(target, SnpTarget):
            _fetch_amd(target, cfg, http, plan)
        else:
            _fetch_intel(target, cfg, http, plan)
    return [(item, plan.files[item.path]) for item in plan.items]


def fetch_collateral(
    evidence: bytes,
    cache: CollateralCache,
    config: FetchConfig | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> list[Fetched]:
    """Fetch what ``evidence`` needs and store it in ``cache``; return what was written.

    Raises :class:`MalformedError` for evidence it cannot read, :class:`UsageError` for
    evidence that needs nothing fetched, and :class:`CollateralError` (codes
    ``fetch_unreachable``, ``fetch_http_status``, ``fetch_oversized``, ``fetch_malformed``,
    ``fetch_not_applicable``) when a fetch fails; nothing is written then.
    """
    fetched = fetch_for_evidence(evidence, config, transport=transport)
    cache.write_all({item.path: never_older(cache, item.path, data) for item, data in fetched})
    return [item for item, _ in fetched]


#: Cache paths an item can be fetched again by (:func:`fetch_item`).
_INTEL_PATH = re.compile(r"intel/(tdx|sgx)/([0-9A-F]{12})-(processor|platform)\.json")
_AMD_PATH = re.compile(r"amd/(Milan|Genoa|Turin)/(vcek|vlek)_(cert_chain\.pem|crl\.der)")


def refetchable(path: str) -> bool:
    """Can :func:`fetch_item` fetch ``path`` again (Intel sets, AMD chains and CRLs; a VCEK is
    fetched for the evidence that names it, never refreshed: it is valid for years)."""
    return bool(_INTEL_PATH.fullmatch(path) or _AMD_PATH.fullmatch(path))


def fetch_item(
    path: str, config: FetchConfig | None = None, *, transport: httpx.BaseTransport | None = None
) -> tuple[Fetched, bytes]:
    """Fetch the current version of the cache item ``path`` (see :func:`refetchable`).
    Raises :class:`UsageError` for a path it cannot fetch, else as :func:`fetch_collateral`."""
    cfg = config or FetchConfig()
    plan = _Plan()
    with _client(cfg, transport) as client:
        http = _Http(client, cfg.max_bytes)
        if m := _INTEL_PATH.fullmatch(path):
            _fetch_intel(DcapTarget(tee=m[1], fmspc=m[2], pck_ca=m[3]), cfg, http, plan)
        elif m := _AMD_PATH.fullmatch(path):
            product, key, what = m[1], m[2], m[3]
            base = f"{cfg.amd_kds.rstrip('/')}/{key}/v1/{product}"
            if what == "cert_chain.pem":
                _fetch_amd_chain(base, key, product, http, plan)
            else:
                url = f"{base}/crl"
                der, _ = http.get(url, f"{key.upper()} CRL")
                _check("CRL", lambda: x509.load_der_x509_crl(der))
                plan.add(f"{key}_crl", url, path, der)
        else:
            raise UsageError(f"collateral {path!r} cannot be fetched again")
    (item,) = plan.items
    return item, plan.files[item.path]


#: The parts of a cached Intel collateral document, each replaced only by a newer version:
#: (what orders it, the keys that travel together).
_INTEL_PARTS = (
    ("tcb_info", ("tcb_info", "tcb_info_signature", "tcb_info_issuer_chain")),
    ("qe_identity", ("qe_identity", "qe_identity_signature", "qe_identity_issuer_chain")),
    ("pck_crl", ("pck_crl", "pck_crl_issuer_chain")),
    ("root_ca_crl", ("root_ca_crl",)),
)


def never_older(cache: CollateralCache, path: str, data: bytes) -> bytes:
    """What to store at ``path`` in ``cache``: the fetched ``data``, but every part of it that
    the cache holds in a newer version is kept as it is (Intel TCB info and QE identity by
    ``tcbEvaluationDataNumber``, CRLs by ``thisUpdate``). A cached file that does not parse is
    replaced."""
    target = cache.path_for(path)
    if not target.is_file():
        return data
    old = target.read_bytes()
    try:
        if path.startswith("intel/") and path.endswith(".json"):
            old_doc, new_doc = json.loads(old), json.loads(data)
            merged = dict(new_doc)
            for part, keys in _INTEL_PARTS:
                if _version(old_doc, part) > _version(new_doc, part):
                    merged.update({k: old_doc[k] for k in keys})
            return data if merged == new_doc else json.dumps(merged, indent=1).encode()
        if path.endswith("_crl.der"):
            newer = (
                x509.load_der_x509_crl(old).last_update_utc
                > x509.load_der_x509_crl(data).last_update_utc
            )
            return old if newer else data
    except (ValueError, TypeError, KeyError, AttributeError):
        return data
    return data


def _version(doc: dict[str, Any], part: str) -> tuple[float, ...]:
    """The version of one part of a cached Intel document (higher is newer)."""
    value = doc[part]
    if part in ("pck_crl", "root_ca_crl"):
        return (x509.load_der_x509_crl(bytes.fromhex(value)).last_update_utc.timestamp(),)
    body = json.loads(value)
    number = body.get("tcbEvaluationDataNumber")
    issued = body.get("issueDate", "")
    if not isinstance(number, int) or not isinstance(issued, str):
        raise ValueError(part)
    return (number, _timestamp(issued))


def _timestamp(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
