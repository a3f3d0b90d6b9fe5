"""Intel DCAP ECDSA quotes: the structures SGX (v3) and TDX (v4, v5) quotes share, parsed.

See :mod:`veritee.evidence.dcap` for the spec references and the verification steps.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from veritee._frozen import maker
from veritee.errors import MalformedError
from veritee.evidence._reader import Reader
from veritee.evidence.claims import Reason

__all__ = [
    "ATT_KEY_TYPE_ECDSA_P256",
    "BODY_SGX",
    "BODY_SIZES",
    "BODY_TD10",
    "BODY_TD15",
    "CERT_TYPE_PCK_CHAIN",
    "CERT_TYPE_QE_REPORT",
    "ECDSA_KEY_SIZE",
    "ECDSA_SIG_SIZE",
    "ENCLAVE_REPORT_SIZE",
    "ER_ATTRIBUTES",
    "ER_CONFIG_ID",
    "ER_CONFIG_SVN",
    "ER_CPU_SVN",
    "ER_ISV_EXT_PROD_ID",
    "ER_ISV_FAMILY_ID",
    "ER_ISV_PROD_ID",
    "ER_ISV_SVN",
    "ER_MISC_SELECT",
    "ER_MR_ENCLAVE",
    "ER_MR_SIGNER",
    "ER_REPORT_DATA",
    "HEADER_SIZE",
    "INTEL_QE_VENDOR_ID",
    "INTEL_SGX_ROOT_CA_SHA256",
    "MAX_CERT_DATA",
    "SGX_EXTENSIONS_OID",
    "TCB_STATUSES",
    "TEE_TYPE_SGX",
    "TEE_TYPE_TDX",
    "EnclaveReport",
    "Quote",
    "QuoteHeader",
    "QuoteSignatureData",
    "looks_like_quote",
    "parse_quote",
    "trailing_findings",
]

# --- constants ------------------------------------------------------------------------------

#: SHA-256 of the DER of the Intel SGX Root CA (CN=Intel SGX Root CA, valid 2018-05-21..2049-12-31).
INTEL_SGX_ROOT_CA_SHA256 = bytes.fromhex(
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
)
#: QE vendor ID of Intel's quoting enclaves (header offset 12).
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

HEADER_SIZE = 48
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081

BODY_SGX = 1
BODY_TD10 = 2
BODY_TD15 = 3
BODY_SIZES = {BODY_SGX: 384, BODY_TD10: 584, BODY_TD15: 648}

ENCLAVE_REPORT_SIZE = 384
ECDSA_SIG_SIZE = 64
ECDSA_KEY_SIZE = 64
CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6
MAX_CERT_DATA = 64 * 1024

# Enclave report (SGX REPORT body, Table A.4) offsets.
ER_CPU_SVN = 0
ER_MISC_SELECT = 16
ER_ISV_EXT_PROD_ID = 32
ER_ATTRIBUTES = 48
ER_MR_ENCLAVE = 64
ER_MR_SIGNER = 128
ER_CONFIG_ID = 192
ER_ISV_PROD_ID = 256
ER_ISV_SVN = 258
ER_CONFIG_SVN = 260
ER_ISV_FAMILY_ID = 304
ER_REPORT_DATA = 320

#: Intel TCB status names (PCS API v4 ``tcbStatus``).
TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)

SGX_EXTENSIONS_OID = "1.2.840.113741.1.13.1"

_HEADER = struct.Struct("<HHIHH16s20s")
#: cpusvn, miscselect, (12 reserved), isvextprodid, attributes, mrenclave, (32), mrsigner, (32),
#: configid, isvprodid, isvsvn, configsvn, (42), isvfamilyid, reportdata.
_ENCLAVE_REPORT = struct.Struct("<16sI12x16s16s32s32x32s32x64sHHH42x16s64s")
assert _ENCLAVE_REPORT.size == ENCLAVE_REPORT_SIZE and _HEADER.size == HEADER_SIZE

# --- quote structures -----------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteHeader:
    """Quote header (Table A.2 / A.3), 48 bytes."""

    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> QuoteHeader:
        if len(data) >= HEADER_SIZE:
            if cls is QuoteHeader:
                return _make_header(*_HEADER.unpack_from(data))
            return cls(*_HEADER.unpack_from(data))
        r = Reader(data)
        version = r.u16("header.version")
        att_key_type = r.u16("header.att_key_type")
        tee_type = r.u32("header.tee_type")
        qe_svn = r.u16("header.qe_svn")
        pce_svn = r.u16("header.pce_svn")
        return cls(
            version,
            att_key_type,
            tee_type,
            qe_svn,
            pce_svn,
            r.bytes(16, "header.qe_vendor_id"),
            r.bytes(20, "header.user_data"),
        )


@dataclass(frozen=True)
class EnclaveReport:
    """SGX enclave report body (Table A.4, 384 bytes): the SGX quote body and the QE report."""

    cpu_svn: bytes
    misc_select: int
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes
    raw: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "report") -> EnclaveReport:
        if len(data) != ENCLAVE_REPORT_SIZE:
            raise MalformedError(
                f"{name} is {len(data)} bytes, expected {ENCLAVE_REPORT_SIZE}", field=name
            )
        # Fixed layout (offsets ER_* above): one struct unpack.
        if cls is EnclaveReport:
            return _make_report(*_ENCLAVE_REPORT.unpack(data), bytes(data))
        f = _ENCLAVE_REPORT.unpack(data)
        return cls(
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], bytes(data)
        )

    @property
    def debug(self) -> bool:
        """ATTRIBUTES.DEBUG (bit 1 of the first flags byte)."""
        return bool(self.attributes[0] & 0x02)


@dataclass(frozen=True)
class QuoteSignatureData:
    """ECDSA 256-bit quote signature data (Table A.5; v4/v5 wrap the QE part in cert type 6)."""

    signature: bytes
    attestation_key: bytes
    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes


@dataclass(frozen=True)
class Quote:
    """An ECDSA DCAP quote, framed but with its body left to the SGX / TDX module."""

    header: QuoteHeader
    body_type: int
    body: bytes = field(repr=False)
    signed: bytes = field(repr=False)
    signature_data: QuoteSignatureData
    end: int
    trailing: bytes = field(repr=False)


_make_header = maker(QuoteHeader)
_make_report = maker(EnclaveReport)
_make_signature_data = maker(QuoteSignatureData)
_make_quote = maker(Quote)


def parse_quote(data: bytes) -> Quote:
    """Frame a v3 / v4 / v5 quote; raises :class:`MalformedError` naming the field and offset."""
    fast = _quote_v4_tdx(data)
    if fast is not None:
        return fast
    header = QuoteHeader.from_bytes(data)
    r = Reader(data, HEADER_SIZE)
    if header.version == 3 or header.version == 4:
        if header.tee_type == TEE_TYPE_SGX:
            body_type = BODY_SGX
        elif header.tee_type == TEE_TYPE_TDX and header.version == 4:
            body_type = BODY_TD10
        else:
            raise MalformedError(
                f"TEE type {header.tee_type:#x} not valid in a v{header.version} quote",
                field="header.tee_type",
                offset=4,
            )
        body = r.bytes(BODY_SIZES[body_type], "body")
    elif header.version == 5:
        desc_off = r.offset
        body_type = r.u16("body_descriptor.type")
        body_size = r.u32("body_descriptor.size")
        if BODY_SIZES.get(body_type) != body_size:
            raise MalformedError(
                f"body type {body_type} with size {body_size} is not a known v5 body",
                field="body_descriptor",
                offset=desc_off,
            )
        body = r.bytes(body_size, "body")
    else:
        raise MalformedError(
            f"unsupported quote version {header.version}", field="header.version", offset=0
        )
    expected_tee = TEE_TYPE_SGX if body_type == BODY_SGX else TEE_TYPE_TDX
    if header.tee_type != expected_tee:
        raise MalformedError(
            f"TEE type {header.tee_type:#x} does not match body type {body_type}",
            field="header.tee_type",
            offset=4,
        )
    signed_end = r.offset
    sig_len_off = r.offset
    sig_len = r.u32("signature_data_len")
    if sig_len > r.remaining:
        raise MalformedError(
            f"signature data length {sig_len} exceeds the {r.remaining} bytes left",
            field="signature_data_len",
            offset=sig_len_off,
        )
    end = r.offset + sig_len
    sig = None
    if header.version >= 4 and type(data) is bytes:
        sig = _signature_data_v4(data, r.offset, end)
    if sig is None:  # v3, or anything irregular: read field by field (naming what is wrong)
        sig = _parse_signature_data(data, r.offset, end, header.version)
    return _make_quote(
        header, body_type, body, bytes(data[:signed_end]), sig, end, bytes(data[end:])
    )


_TD10_SIGNED = HEADER_SIZE + 584  # header and TD report 1.0: what the quote signature covers
_U32 = struct.Struct("<I")


def _quote_v4_tdx(data: bytes) -> Quote | None:
    """A v4 TDX quote of the regular layout, framed in a few unpacks; None for anything else
    (:func:`parse_quote` then reads it step by step and names the fault)."""
    if type(data) is not bytes or len(data) < _TD10_SIGNED + 4:
        return None
    fields = _HEADER.unpack_from(data)
    if fields[0] != 4 or fields[2] != TEE_TYPE_TDX:
        return None
    start = _TD10_SIGNED + 4
    end = start + _U32.unpack_from(data, _TD10_SIGNED)[0]
    sig = _signature_data_v4(data, start, end) if end <= len(data) else None
    if sig is None:
        return None
    return _make_quote(
        _make_header(*fields), BODY_TD10, data[HEADER_SIZE:_TD10_SIGNED],
        data[:_TD10_SIGNED], sig, end, data[end:],
    )  # fmt: skip


#: v4/v5 signature data up to the QE authentication data: quote signature, attestation key,
#: certification data type (6) and size, QE report, its signature, QE auth data length.
_SIG_V4 = struct.Struct("<64s64sHI384s64sH")
_CERT_HEAD = struct.Struct("<HI")


def _signature_data_v4(data: bytes, start: int, end: int) -> QuoteSignatureData | None:
    """A v4/v5 signature data of the regular layout in three unpacks; None for anything else
    (:func:`_parse_signature_data` then reads it field by field and names the fault)."""
    if end - start < _SIG_V4.size + _CERT_HEAD.size:
        return None
    signature, att_key, ctype, csize, qe_raw, qe_sig, auth_len = _SIG_V4.unpack_from(data, start)
    pos = start + _SIG_V4.size
    cert_data = start + 2 * ECDSA_SIG_SIZE + _CERT_HEAD.size  # where the size counts from
    if ctype != CERT_TYPE_QE_REPORT or csize != end - cert_data or pos + auth_len + 6 > end:
        return None
    auth = data[pos : pos + auth_len]
    pos += auth_len
    ptype, psize = _CERT_HEAD.unpack_from(data, pos)
    pos += 6
    if ptype != CERT_TYPE_PCK_CHAIN or psize > MAX_CERT_DATA or psize != end - pos:
        return None
    report = _make_report(*_ENCLAVE_REPORT.unpack(qe_raw), qe_raw)
    return _make_signature_data(signature, att_key, report, qe_sig, auth, data[pos:end])


def _parse_signature_data(data: bytes, start: int, end: int, version: int) -> QuoteSignatureData:
    r = Reader(data, start, end)
    signature = r.bytes(ECDSA_SIG_SIZE, "signature_data.signature")
    att_key = r.bytes(ECDSA_KEY_SIZE, "signature_data.attestation_key")
    if version >= 4:
        type_off = r.offset
        ctype = r.u16("signature_data.cert_type")
        csize = r.u32("signature_data.cert_size")
        if ctype != CERT_TYPE_QE_REPORT:
            raise MalformedError(
                f"certification data type {ctype}, expected {CERT_TYPE_QE_REPORT}",
                field="signature_data.cert_type",
                offset=type_off,
            )
        if csize != r.remaining:
            raise MalformedError(
                f"certification data size {csize} != {r.remaining} bytes left",
                field="signature_data.cert_size",
                offset=type_off + 2,
            )
    qe_report = EnclaveReport.from_bytes(r.bytes(ENCLAVE_REPORT_SIZE, "qe_report"), "qe_report")
    qe_sig = r.bytes(ECDSA_SIG_SIZE, "qe_report_signature")
    auth_len = r.u16("qe_auth_data_len")
    auth = r.bytes(auth_len, "qe_auth_data")
    type_off = r.offset
    ctype = r.u16("pck_cert_type")
    csize = r.u32("pck_cert_size")
    if ctype != CERT_TYPE_PCK_CHAIN:
        raise MalformedError(
            f"certification data type {ctype} is not a PEM PCK chain (5)",
            field="pck_cert_type",
            offset=type_off,
        )
    if csize > MAX_CERT_DATA or csize != r.remaining:
        raise MalformedError(
            f"PCK chain size {csize} != {r.remaining} bytes left",
            field="pck_cert_size",
            offset=type_off + 2,
        )
    pem = r.bytes(csize, "pck_chain")
    return _make_signature_data(signature, att_key, qe_report, qe_sig, auth, pem)


def looks_like_quote(data: bytes, versions: tuple[int, ...], tee_type: int) -> bool:
    """Cheap sniff: header version, ECDSA-256 key type, TEE type and Intel's QE vendor ID."""
    if len(data) < HEADER_SIZE:
        return False
    version, key_type, tee = struct.unpack_from("<HHI", data)
    return (
        version in versions
        and key_type == ATT_KEY_TYPE_ECDSA_P256
        and tee == tee_type
        and data[12:28] == INTEL_QE_VENDOR_ID
    )


def trailing_findings(quote: Quote) -> tuple[Reason, ...]:
    """Trailing bytes after the signature data: zero padding is a finding, anything else refused.

    Real quotes are often zero-padded to a fixed buffer size (e.g. 8000 bytes); those bytes are
    outside every signature, so they are ignored and recorded. Non-zero trailing bytes are
    refused (:class:`MalformedError` code ``trailing_bytes``): nothing legitimate puts them there.
    """
    if not quote.trailing:
        return ()
    if quote.trailing.count(0) != len(quote.trailing):
        raise MalformedError(
            f"{len(quote.trailing)} non-zero trailing bytes after the quote",
            code="trailing_bytes",
            field="trailing",
            offset=quote.end,
        )
    return (
        Reason(
            "quote_trailing_padding",
            f"{len(quote.trailing)} zero bytes of padding after the quote were ignored",
        ),
    )
