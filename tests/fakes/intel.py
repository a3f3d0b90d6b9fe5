"""A fake Intel-like DCAP PKI (our own P-256 keys) and a builder of synthetic SGX / TDX quotes
with their collateral.

:func:`build` makes a complete, internally consistent quote (SGX v3, TDX v4, TDX v5 with a TD
report 1.5) plus collateral in the test-vector JSON layout (TCB info, QE identity, CRLs, signed
under the fake root), so tests reach the cases no public sample covers: every TCB status,
revocation, module identities, windows, a non-pinned root. :class:`Spec` says what to build;
:class:`Synthetic` holds the quote, the collateral, the trust that pins the fake root and the
root's DER. :data:`KEYS` are the fixed keys of the fake chain (root, PCK CA, PCK, TCB signer,
attestation key, ...), :func:`certificate` and :func:`raw_sign` make more under them.

Example::

    syn = build(Spec(kind="tdx", version=4))
    claims = tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust).claims
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from veritee.collateral import Collateral
from veritee.evidence import dcap

AT = datetime(2025, 6, 20, tzinfo=UTC)
SGX_EXT = "1.2.840.113741.1.13.1"
QE_MRSIGNER = bytes.fromhex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
FMSPC = bytes.fromhex("B0C06F000000")

# Deterministic keys so the synthetic chain is cached across tests (ECDSA signatures are still random).
KEYS = {name: ec.derive_private_key(i + 1000, ec.SECP256R1()) for i, name in enumerate(
    ["root", "pck_ca", "pck", "tcb", "att", "other"])}  # fmt: skip


def der_tlv(tag: int, content: bytes) -> bytes:
    """One DER element: ``tag``, its definite length, ``content``."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(body)]) + body + content


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        enc = [p & 0x7F]
        p >>= 7
        while p:
            enc.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(enc))
    return der_tlv(0x06, bytes(out))


def _int(v: int) -> bytes:
    raw = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return der_tlv(0x02, raw)


def _item(sub: str, value: bytes) -> bytes:
    return der_tlv(0x30, _oid(f"{SGX_EXT}.{sub}") + value)


def sgx_extension(
    comps: list[int], pcesvn: int, fmspc: bytes = FMSPC, pceid: bytes = b"\0\0"
) -> bytes:
    tcb = b"".join(_item(f"2.{i + 1}", _int(c)) for i, c in enumerate(comps))
    tcb += _item("2.17", _int(pcesvn)) + _item("2.18", der_tlv(0x04, bytes(comps)))
    return der_tlv(0x30, b"".join([
        _item("1", der_tlv(0x04, bytes(16))), _item("2", der_tlv(0x30, tcb)), _item("3", der_tlv(0x04, pceid)),
        _item("4", der_tlv(0x04, fmspc)), _item("5", der_tlv(0x0A, b"\0")),
    ]))  # fmt: skip


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fake Intel"),
        ]
    )


def certificate(
    cn: str, key: ec.EllipticCurvePrivateKey, issuer_cn: str, issuer_key: ec.EllipticCurvePrivateKey,
    serial: int, ca: bool, ext: bytes | None = None, not_after: datetime | None = None,
    key_usage: x509.KeyUsage | None = None,
) -> x509.Certificate:  # fmt: skip
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(issuer_cn)).public_key(key.public_key())
        .serial_number(serial).not_valid_before(datetime(2018, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after or datetime(2040, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )  # fmt: skip
    if key_usage is not None:
        b = b.add_extension(key_usage, critical=True)
    if ext is not None:
        b = b.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXT), ext), critical=False
        )
    return b.sign(issuer_key, hashes.SHA256())


#: A key usage that may not sign data (CRLs only): a TCB signer that must be refused.
NO_SIGN_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)

#: The key usage of Intel's TCB Signing certificate: digitalSignature and nonRepudiation.
SIGNING_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _crl(
    issuer_cn: str,
    key: ec.EllipticCurvePrivateKey,
    revoked: list[int],
    this: datetime,
    nxt: datetime,
) -> bytes:
    b = (
        x509.CertificateRevocationListBuilder().issuer_name(_name(issuer_cn)).last_update(this).next_update(nxt)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    )  # fmt: skip
    for s in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(this).build()
        )
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def raw_sign(key: ec.EllipticCurvePrivateKey, msg: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def public_xy(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]


def enclave_report(
    *, attributes: bytes = bytes(16), mr_enclave: bytes = bytes(32), mr_signer: bytes = bytes(32),
    isv_prod_id: int = 0, isv_svn: int = 0, report_data: bytes = bytes(64), misc: int = 0,
) -> bytes:  # fmt: skip
    return (
        bytes(16) + struct.pack("<I", misc) + bytes(12) + bytes(16) + attributes + mr_enclave + bytes(32)
        + mr_signer + bytes(32) + bytes(64) + struct.pack("<HHH", isv_prod_id, isv_svn, 0) + bytes(42)
        + bytes(16) + report_data
    )  # fmt: skip


def td_report(
    *, tee_tcb_svn: bytes, td_attributes: bytes = bytes(8), rtmrs: tuple[bytes, ...] = (bytes(48),) * 4,
    mrtd: bytes = b"\x11" * 48, report_data: bytes = b"\x22" * 64, v15: bool = False,
    mr_signer_seam: bytes = bytes(48), mr_service_td: bytes = b"\x44" * 48,
) -> bytes:  # fmt: skip
    body = (
        tee_tcb_svn + b"\x33" * 48 + mr_signer_seam + bytes(8) + td_attributes + b"\xe7\x02" + bytes(6)
        + mrtd + bytes(48 * 3) + b"".join(rtmrs) + report_data
    )  # fmt: skip
    if v15:
        body += tee_tcb_svn + mr_service_td
    return body


def tdx_level(
    sgx: int, pcesvn: int, tdx_svn: list[int], status: str, adv: list[str] | None = None
) -> dict[str, Any]:
    lvl: dict[str, Any] = {
        "tcb": {"sgxtcbcomponents": [{"svn": sgx}] * 16, "pcesvn": pcesvn,
                "tdxtcbcomponents": [{"svn": s} for s in tdx_svn]},
        "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status,
    }  # fmt: skip
    if adv:
        lvl["advisoryIDs"] = adv
    return lvl


@dataclass(frozen=True)
class Spec:
    """Knobs of a synthetic quote; defaults give an UpToDate TDX v4 quote."""

    kind: str = "tdx"  # "tdx" or "sgx"
    version: int = 4
    v15: bool = False
    platform_svn: int = 5
    pcesvn: int = 11
    tee_tcb_svn: bytes = bytes([5, 0, 2] + [0] * 13)
    levels: tuple[dict[str, Any], ...] = (
        tdx_level(5, 11, [5, 0, 2] + [0] * 13, "UpToDate"),
        tdx_level(3, 5, [3, 0, 1] + [0] * 13, "OutOfDate", ["INTEL-SA-00001"]),
    )
    module_identities: tuple[dict[str, Any], ...] = ()
    qe_isvsvn: int = 4
    qe_levels: tuple[dict[str, Any], ...] = (
        {"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"},
        {"tcb": {"isvsvn": 2}, "tcbDate": "2023-03-13T00:00:00Z", "tcbStatus": "OutOfDate", "advisoryIDs": ["INTEL-SA-00002"]},
    )  # fmt: skip
    debug: bool = False
    rtmrs: tuple[bytes, ...] = (bytes(48),) * 4
    pck_revoked: tuple[int, ...] = ()
    root_revoked: tuple[int, ...] = ()
    #: Serial number of the PCK certificate (another platform of the same TCB: another serial).
    pck_serial: int = 3
    issue: datetime = datetime(2025, 6, 19, tzinfo=UTC)
    tcb_info_fmspc: str = "B0C06F000000"
    tcb_evaluation_data_number: int = 17
    mr_signer_seam: bytes = bytes(48)
    #: MRSERVICETD of a TD report 1.5 (v15).
    mr_service_td: bytes = b"\x44" * 48
    #: MISCSELECT of the QE report, and fields of the QE identity JSON to override.
    qe_misc_select: int = 0
    qe_identity: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Synthetic:
    quote: bytes
    doc: dict[str, Any]
    trust: dcap.DcapTrust
    root_der: bytes

    @property
    def collateral(self) -> Collateral:
        return Collateral(documents=(self.doc,))

    def with_doc(self, **changes: Any) -> Synthetic:
        return replace(self, doc={**self.doc, **changes})


def build(spec: Spec | None = None) -> Synthetic:
    s = spec or Spec()
    k = KEYS
    root = certificate("Fake SGX Root CA", k["root"], "Fake SGX Root CA", k["root"], 1, True)
    ca = certificate(
        "Fake SGX PCK Platform CA", k["pck_ca"], "Fake SGX Root CA", k["root"], 2, True
    )
    pck = certificate("Fake SGX PCK Certificate", k["pck"], "Fake SGX PCK Platform CA", k["pck_ca"], s.pck_serial, False,
                sgx_extension([s.platform_svn] * 16, s.pcesvn))  # fmt: skip
    tcb_signer = certificate("Intel SGX TCB Signing", k["tcb"], "Fake SGX Root CA", k["root"], 4, False,
                       key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    pem = lambda *cs: b"".join(c.public_bytes(serialization.Encoding.PEM) for c in cs).decode()  # noqa: E731
    nxt = s.issue + timedelta(days=30)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    tdx_kind = s.kind == "tdx"
    info: dict[str, Any] = {
        "id": "TDX" if tdx_kind else "SGX", "version": 3, "issueDate": iso(s.issue), "nextUpdate": iso(nxt),
        "fmspc": s.tcb_info_fmspc, "pceId": "0000", "tcbType": 0,
        "tcbEvaluationDataNumber": s.tcb_evaluation_data_number,
    }  # fmt: skip
    if tdx_kind:
        info["tdxModule"] = {
            "mrsigner": "00" * 48,
            "attributes": "00" * 8,
            "attributesMask": "FF" * 8,
        }
        if s.module_identities:
            info["tdxModuleIdentities"] = list(s.module_identities)
    levels = [dict(lv) for lv in s.levels]
    if not tdx_kind:
        for lv in levels:
            lv["tcb"] = {k2: v for k2, v in lv["tcb"].items() if k2 != "tdxtcbcomponents"}
    info["tcbLevels"] = levels
    qe = {
        "id": "TD_QE" if tdx_kind else "QE", "version": 2, "issueDate": iso(s.issue), "nextUpdate": iso(nxt),
        "tcbEvaluationDataNumber": 17, "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000", "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": QE_MRSIGNER.hex().upper(), "isvprodid": 2 if tdx_kind else 1, "tcbLevels": list(s.qe_levels),
        **s.qe_identity,
    }  # fmt: skip
    info_raw = json.dumps(info, separators=(",", ":"))
    qe_raw = json.dumps(qe, separators=(",", ":"))
    doc: dict[str, Any] = {
        "pck_crl_issuer_chain": pem(ca, root),
        "root_ca_crl": _crl(
            "Fake SGX Root CA", k["root"], list(s.root_revoked), s.issue, nxt
        ).hex(),
        "pck_crl": _crl(
            "Fake SGX PCK Platform CA", k["pck_ca"], list(s.pck_revoked), s.issue, nxt
        ).hex(),
        "tcb_info_issuer_chain": pem(tcb_signer, root),
        "tcb_info": info_raw,
        "tcb_info_signature": raw_sign(k["tcb"], info_raw.encode()).hex(),
        "qe_identity_issuer_chain": pem(tcb_signer, root),
        "qe_identity": qe_raw,
        "qe_identity_signature": raw_sign(k["tcb"], qe_raw.encode()).hex(),
        **s.extra,
    }
    # QE report binding the attestation key
    att_xy = public_xy(k["att"])
    auth = bytes(range(32))
    qe_report = enclave_report(
        attributes=bytes.fromhex("11000000000000000000000000000000"), mr_signer=QE_MRSIGNER,
        isv_prod_id=2 if tdx_kind else 1, isv_svn=s.qe_isvsvn, misc=s.qe_misc_select,
        report_data=hashlib.sha256(att_xy + auth).digest() + bytes(32),
    )  # fmt: skip
    chain_pem = pem(pck, ca, root).encode()
    qe_part = qe_report + raw_sign(k["pck"], qe_report) + struct.pack("<H", len(auth)) + auth
    qe_part += struct.pack("<HI", 5, len(chain_pem)) + chain_pem
    # header || body
    tee = 0x81 if tdx_kind else 0
    header = struct.pack("<HHIHH", s.version, 2, tee, 0, 0) + dcap.INTEL_QE_VENDOR_ID + bytes(20)
    if tdx_kind:
        body = td_report(
            tee_tcb_svn=s.tee_tcb_svn, td_attributes=(b"\x01" if s.debug else b"\0") + b"\0\0\x10" + bytes(4),
            rtmrs=s.rtmrs, v15=s.v15, mr_signer_seam=s.mr_signer_seam, mr_service_td=s.mr_service_td,
        )  # fmt: skip
    else:
        body = enclave_report(
            attributes=(b"\x07" if s.debug else b"\x05") + bytes(15), mr_enclave=b"\xaa" * 32,
            mr_signer=b"\xbb" * 32, isv_prod_id=7, isv_svn=3, report_data=b"\x5a" * 64,
        )  # fmt: skip
    if s.version == 5:
        btype = (3 if s.v15 else 2) if tdx_kind else 1
        body = struct.pack("<HI", btype, len(body)) + body
    signed = header + body
    if s.version >= 4:
        sig_data = (
            raw_sign(k["att"], signed) + att_xy + struct.pack("<HI", 6, len(qe_part)) + qe_part
        )
    else:
        sig_data = raw_sign(k["att"], signed) + att_xy + qe_part
    quote = signed + struct.pack("<I", len(sig_data)) + sig_data
    root_der = root.public_bytes(serialization.Encoding.DER)
    return Synthetic(
        quote, doc, dcap.DcapTrust(frozenset({hashlib.sha256(root_der).digest()})), root_der
    )


#: After a TCB recovery (tcbEvaluationDataNumber 18) the default platform's level (TDX SVN
#: 5.0.2, PCESVN 11) is OutOfDate with advisory INTEL-SA-09999; a newer level 6.0.2 is UpToDate.
RECOVERED = Spec(
    tcb_evaluation_data_number=18,
    levels=(
        tdx_level(6, 11, [6, 0, 2] + [0] * 13, "UpToDate"),
        tdx_level(5, 11, [5, 0, 2] + [0] * 13, "OutOfDate", ["INTEL-SA-09999"]),
    ),
)


def pin_roots(*syns: Synthetic) -> dcap.DcapTrust:
    """Each build signs its own fake root certificate (same key): a trust pinning all of them."""
    return dcap.DcapTrust(frozenset().union(*(s.trust.root_sha256 for s in syns)))


# --- TCB info and QE identity signed by other keys ----------------------------------------------

#: A key that is not Intel's TCB signing key, for certificates the root issues in these tests.
OTHER_SIGNER = ec.derive_private_key(7777, ec.SECP256R1())


def pem_chain(*certs: x509.Certificate) -> str:
    """``certs`` as one PEM string (a collateral issuer chain)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs).decode()


def root_certificate(syn: Synthetic) -> x509.Certificate:
    """The fake root certificate of ``syn`` (the last of its PCK CRL issuer chain)."""
    return x509.load_pem_x509_certificates(syn.doc["pck_crl_issuer_chain"].encode())[-1]


def pck_chain(syn: Synthetic) -> list[x509.Certificate]:
    """The PCK certificate chain carried in ``syn``'s quote."""
    pem = dcap.parse_quote(syn.quote).signature_data.pck_chain_pem
    return x509.load_pem_x509_certificates(pem.rstrip(b"\0"))


def resign_collateral(
    syn: Synthetic, key: ec.EllipticCurvePrivateKey, chain: str, tcb_info: str | None = None
) -> Synthetic:
    """TCB info (optionally replaced) and QE identity signed by ``key``, both with ``chain``."""
    info = tcb_info if tcb_info is not None else syn.doc["tcb_info"]
    return syn.with_doc(
        tcb_info=info,
        tcb_info_signature=raw_sign(key, info.encode()).hex(),
        tcb_info_issuer_chain=chain,
        qe_identity_signature=raw_sign(key, syn.doc["qe_identity"].encode()).hex(),
        qe_identity_issuer_chain=chain,
    )


def signed_under_root(syn: Synthetic, cn: str, *, ca: bool = False, key_usage: x509.KeyUsage | None = SIGNING_KEY_USAGE,
                serial: int = 40) -> Synthetic:  # fmt: skip
    """``syn`` with its TCB info and QE identity signed by :data:`OTHER_SIGNER` under a certificate
    ``cn`` that the fake root issues (``ca``, ``key_usage``, ``serial`` as given)."""
    root = root_certificate(syn)
    cert = certificate(
        cn, OTHER_SIGNER, "Fake SGX Root CA", KEYS["root"], serial, ca, key_usage=key_usage
    )
    return resign_collateral(syn, OTHER_SIGNER, pem_chain(cert, root))
