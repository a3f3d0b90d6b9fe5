"""Synthetic DCAP quotes and collateral under a fake Intel-like chain (our own P-256 keys).

:func:`build` makes a complete, internally consistent quote (SGX v3, TDX v4, TDX v5 with a TD
report 1.5) plus collateral in the test-vector JSON layout, so tests reach the cases no public
sample covers: every TCB status, revocation, module identities, windows, a non-pinned root.
Other test modules import :func:`build` from here.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence import dcap, sgx, tdx

AT = datetime(2025, 6, 20, tzinfo=UTC)
SGX_EXT = "1.2.840.113741.1.13.1"
QE_MRSIGNER = bytes.fromhex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
FMSPC = bytes.fromhex("B0C06F000000")

# Deterministic keys so the synthetic chain is cached across tests (ECDSA signatures are still random).
_KEYS = {name: ec.derive_private_key(i + 1000, ec.SECP256R1()) for i, name in enumerate(
    ["root", "pck_ca", "pck", "tcb", "att", "other"])}  # fmt: skip


def _der(tag: int, content: bytes) -> bytes:
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
    return _der(0x06, bytes(out))


def _int(v: int) -> bytes:
    raw = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return _der(0x02, raw)


def _item(sub: str, value: bytes) -> bytes:
    return _der(0x30, _oid(f"{SGX_EXT}.{sub}") + value)


def sgx_extension(comps: list[int], pcesvn: int, fmspc: bytes = FMSPC, pceid: bytes = b"\0\0") -> bytes:
    tcb = b"".join(_item(f"2.{i + 1}", _int(c)) for i, c in enumerate(comps))
    tcb += _item("2.17", _int(pcesvn)) + _item("2.18", _der(0x04, bytes(comps)))
    return _der(0x30, b"".join([
        _item("1", _der(0x04, bytes(16))), _item("2", _der(0x30, tcb)), _item("3", _der(0x04, pceid)),
        _item("4", _der(0x04, fmspc)), _item("5", _der(0x0A, b"\0")),
    ]))  # fmt: skip


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fake Intel")])


def _cert(
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
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXT), ext), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


#: The key usage of Intel's TCB Signing certificate: digitalSignature and nonRepudiation.
SIGNING_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=True, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
)


def _crl(issuer_cn: str, key: ec.EllipticCurvePrivateKey, revoked: list[int], this: datetime, nxt: datetime) -> bytes:
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


def _xy(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)[1:]


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


def tdx_level(sgx: int, pcesvn: int, tdx_svn: list[int], status: str, adv: list[str] | None = None) -> dict[str, Any]:
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
    k = _KEYS
    root = _cert("Fake SGX Root CA", k["root"], "Fake SGX Root CA", k["root"], 1, True)
    ca = _cert("Fake SGX PCK Platform CA", k["pck_ca"], "Fake SGX Root CA", k["root"], 2, True)
    pck = _cert("Fake SGX PCK Certificate", k["pck"], "Fake SGX PCK Platform CA", k["pck_ca"], s.pck_serial, False,
                sgx_extension([s.platform_svn] * 16, s.pcesvn))  # fmt: skip
    tcb_signer = _cert("Intel SGX TCB Signing", k["tcb"], "Fake SGX Root CA", k["root"], 4, False,
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
        info["tdxModule"] = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}
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
        "root_ca_crl": _crl("Fake SGX Root CA", k["root"], list(s.root_revoked), s.issue, nxt).hex(),
        "pck_crl": _crl("Fake SGX PCK Platform CA", k["pck_ca"], list(s.pck_revoked), s.issue, nxt).hex(),
        "tcb_info_issuer_chain": pem(tcb_signer, root),
        "tcb_info": info_raw,
        "tcb_info_signature": raw_sign(k["tcb"], info_raw.encode()).hex(),
        "qe_identity_issuer_chain": pem(tcb_signer, root),
        "qe_identity": qe_raw,
        "qe_identity_signature": raw_sign(k["tcb"], qe_raw.encode()).hex(),
        **s.extra,
    }
    # QE report binding the attestation key
    att_xy = _xy(k["att"])
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
        sig_data = raw_sign(k["att"], signed) + att_xy + struct.pack("<HI", 6, len(qe_part)) + qe_part
    else:
        sig_data = raw_sign(k["att"], signed) + att_xy + qe_part
    quote = signed + struct.pack("<I", len(sig_data)) + sig_data
    root_der = root.public_bytes(serialization.Encoding.DER)
    return Synthetic(quote, doc, dcap.DcapTrust(frozenset({hashlib.sha256(root_der).digest()})), root_der)


def _verify(syn: Synthetic, at: datetime = AT, **kw: Any) -> Any:
    mod = tdx if syn.quote[4] == 0x81 else sgx
    return mod.verify(syn.quote, collateral=syn.collateral, at=at, trust=kw.get("trust", syn.trust))


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "version", "v15"), [("tdx", 4, False), ("tdx", 5, False), ("tdx", 5, True), ("sgx", 3, False)]
)
def test_synthetic_quote_verifies_up_to_date(kind: str, version: int, v15: bool) -> None:
    syn = build(Spec(kind=kind, version=version, v15=v15))
    v = _verify(syn)
    assert v.claims["tcb_status"] == "UpToDate"
    assert v.claims["advisory_ids"] == []
    assert v.claims["fmspc"] == "B0C06F000000"
    assert v.claims["version"] == version
    assert v.findings == ()
    if v15:
        assert v.claims["mr_service_td"] == "44" * 48
    if kind == "sgx":
        assert v.claims["mr_enclave"] == "aa" * 32 and v.claims["isv_prod_id"] == 7


def test_fake_root_not_pinned_by_default() -> None:
    syn = build()
    with pytest.raises(VerificationError) as e:
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT)
    assert e.value.code == "root_not_pinned"


def test_lower_platform_tcb_gives_out_of_date_finding() -> None:
    syn = build(Spec(platform_svn=4, pcesvn=11))
    v = _verify(syn)
    assert v.claims["tcb_status"] == "OutOfDate"
    assert v.claims["advisory_ids"] == ["INTEL-SA-00001"]
    assert {r.code for r in v.findings} == {"tcb_status", "intel_advisories"}


def test_no_matching_tcb_level_is_a_failure() -> None:
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(platform_svn=2)))
    assert e.value.code == "tcb_level_not_found"
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(tee_tcb_svn=bytes([1, 0, 0] + [0] * 13))))
    assert e.value.code == "tcb_level_not_found"


def test_qe_out_of_date_converges() -> None:
    v = _verify(build(Spec(qe_isvsvn=3)))
    assert v.claims["tcb_status"] == "OutOfDate"
    assert v.claims["qe_tcb_status"] == "OutOfDate"
    assert "INTEL-SA-00002" in v.claims["advisory_ids"]
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(qe_isvsvn=1)))
    assert e.value.code == "tcb_level_not_found"


def test_tdx_module_identity_and_mismatch() -> None:
    ident = {
        "id": "TDX_03", "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
        "tcbLevels": [{"tcb": {"isvsvn": 3}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"},
                      {"tcb": {"isvsvn": 1}, "tcbDate": "2023-03-13T00:00:00Z", "tcbStatus": "OutOfDate"}],
    }  # fmt: skip
    # TEE_TCB_SVN[1] = 3 selects TDX_03; components 0 and 1 are then not compared with the level.
    up = build(Spec(tee_tcb_svn=bytes([3, 3, 2] + [0] * 13), module_identities=(ident,)))
    assert _verify(up).claims["tdx_module_tcb_status"] == "UpToDate"
    old = _verify(build(Spec(tee_tcb_svn=bytes([2, 3, 2] + [0] * 13), module_identities=(ident,))))
    assert old.claims["tcb_status"] == "OutOfDate" and old.claims["tdx_module_tcb_status"] == "OutOfDate"
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(tee_tcb_svn=bytes([3, 4, 2] + [0] * 13), module_identities=(ident,))))
    assert e.value.code == "tdx_module_mismatch"
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(mr_signer_seam=b"\x01" * 48)))
    assert e.value.code == "tdx_module_mismatch"


def test_debug_bit_is_a_claim_and_finding() -> None:
    for kind, version in (("tdx", 4), ("sgx", 3)):
        v = _verify(build(Spec(kind=kind, version=version, debug=True)))
        assert v.claims["debug"] is True
        assert "debug" in {r.code for r in v.findings}


def test_a_revoked_platform_is_refused_after_another_of_the_same_tcb_was_accepted() -> None:
    """The TCB evaluation is shared by the platforms of one TCB; the leaf's revocation is not."""
    good = build(Spec(pck_revoked=(5,)))
    revoked = build(Spec(pck_revoked=(5,), pck_serial=5))  # same keys and names, new signatures
    trust = dcap.DcapTrust(good.trust.root_sha256 | revoked.trust.root_sha256)
    assert _verify(good, trust=trust).claims["tcb_status"] == "UpToDate"
    for _ in range(2):  # the first time and with the evaluation memoized
        with pytest.raises(VerificationError) as e:
            tdx.verify(revoked.quote, collateral=good.collateral, at=AT, trust=trust)
        assert e.value.code == "certificate_revoked"
    assert _verify(good, trust=trust).claims["tcb_status"] == "UpToDate"
    # Without the revocation the other platform shares the evaluation and is accepted.
    other = build(Spec(pck_serial=6))
    both = dcap.DcapTrust(trust.root_sha256 | other.trust.root_sha256)
    assert _verify(good, trust=both).claims["tcb_status"] == "UpToDate"
    assert tdx.verify(other.quote, collateral=good.collateral, at=AT, trust=both).claims["tcb_status"] == "UpToDate"


def test_revoked_pck_and_pck_ca() -> None:
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(pck_revoked=(3,))))
    assert e.value.code == "certificate_revoked"
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(root_revoked=(2,))))
    assert e.value.code == "certificate_revoked"


@pytest.mark.parametrize(
    ("at", "code"),
    [
        (datetime(2025, 6, 18, tzinfo=UTC), "collateral_not_yet_valid"),
        (datetime(2025, 7, 20, tzinfo=UTC), "collateral_expired"),
        (datetime(2041, 1, 1, tzinfo=UTC), "certificate_expired"),
    ],
)
def test_time_outside_windows(at: datetime, code: str) -> None:
    with pytest.raises(VerificationError) as e:
        _verify(build(), at=at)
    assert e.value.code == code


def test_collateral_expired_is_collateral_error() -> None:
    with pytest.raises(CollateralError):
        _verify(build(), at=datetime(2025, 7, 20, tzinfo=UTC))


def test_tampered_collateral_and_wrong_fmspc() -> None:
    syn = build()
    with pytest.raises(VerificationError) as e:
        _verify(syn.with_doc(tcb_info=syn.doc["tcb_info"].replace('"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18')))
    assert e.value.code == "collateral_signature_invalid"
    with pytest.raises(VerificationError) as e:
        _verify(syn.with_doc(qe_identity=syn.doc["qe_identity"].replace("UpToDate", "OutOfDate", 1)))
    assert e.value.code == "collateral_signature_invalid"
    with pytest.raises(CollateralError) as e:
        _verify(build(Spec(tcb_info_fmspc="00906ED50000")))
    assert e.value.code == "tcb_info_mismatch"
    with pytest.raises(CollateralError) as e:
        _verify(build(Spec(kind="sgx", version=3)).with_doc(tcb_info=syn.doc["tcb_info"],
                                                              tcb_info_signature=syn.doc["tcb_info_signature"]))  # fmt: skip
    assert e.value.code == "tcb_info_mismatch"


def test_missing_collateral() -> None:
    syn = build()
    with pytest.raises(CollateralError) as e:
        tdx.verify(syn.quote, collateral=Collateral.empty(), at=AT, trust=syn.trust)
    assert e.value.code == "collateral_missing"
    with pytest.raises(MalformedError):
        _verify(syn.with_doc(pck_crl="zz"))


def test_qe_report_data_must_bind_attestation_key() -> None:
    syn = build()
    q = bytearray(syn.quote)
    # The attestation key sits right after the 64-byte quote signature.
    key_off = 48 + 584 + 4 + 64
    other = _xy(_KEYS["other"])
    q[key_off : key_off + 64] = other
    with pytest.raises(VerificationError) as e:
        tdx.verify(bytes(q), collateral=syn.collateral, at=AT, trust=syn.trust)
    assert e.value.code == "qe_report_data_mismatch"


def test_cache_is_keyed_by_bytes_and_trust() -> None:
    syn = build()
    dcap.clear_caches()
    first = _verify(syn)
    second = _verify(syn)  # cached collateral and chain
    assert first.claims == second.claims
    with pytest.raises(VerificationError):
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT)  # same bytes, default trust: not pinned


def test_in_place_change_of_cached_collateral_is_seen() -> None:
    syn = build()
    doc = dict(syn.doc)
    coll = Collateral(documents=(doc,))
    assert tdx.verify(syn.quote, collateral=coll, at=AT, trust=syn.trust).claims["tcb_status"] == "UpToDate"
    doc["tcb_info"] = doc["tcb_info"].replace('"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":19')
    with pytest.raises(VerificationError) as e:
        tdx.verify(syn.quote, collateral=coll, at=AT, trust=syn.trust)
    assert e.value.code == "collateral_signature_invalid"


@pytest.mark.parametrize(
    ("mask", "accepted"),
    [
        ("FEFFFFFF", True),  # little-endian 0xFFFFFFFE: bit 0 is not compared
        ("FFFFFFFE", False),  # little-endian 0xFEFFFFFF: bit 0 is compared, and differs
        ("01000000", False),  # little-endian 0x00000001: only bit 0, which differs
    ],
)
def test_qe_miscselect_and_mask_are_little_endian(mask: str, accepted: bool) -> None:
    """Intel QVL and dcap-qvl read the QE identity's MISCSELECT and its mask little-endian, as the
    report's MISCSELECT is: a QE with MISCSELECT bit 0 set passes a mask that leaves bit 0 out
    and fails one that compares it (issue 11 item 10)."""
    syn = build(Spec(qe_misc_select=1, qe_identity={"miscselect": "00000000", "miscselectMask": mask}))
    if accepted:
        assert _verify(syn).claims["tcb_status"] == "UpToDate"
    else:
        with pytest.raises(VerificationError) as e:
            _verify(syn)
        assert e.value.code == "qe_identity_mismatch"
    # The expected value is little-endian too: bit 0 set in "01000000" matches the QE's bit 0.
    same = build(Spec(qe_misc_select=1, qe_identity={"miscselect": "01000000", "miscselectMask": "FFFFFFFF"}))
    assert _verify(same).claims["tcb_status"] == "UpToDate"


def _sgx_level(svn: int, pcesvn: int, status: str) -> dict[str, Any]:
    return {"tcb": {"sgxtcbcomponents": [{"svn": svn}] * 16, "pcesvn": pcesvn},
            "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status}  # fmt: skip


@pytest.mark.parametrize("kind", ["tdx", "sgx"])
@pytest.mark.parametrize(("platform_svn", "pcesvn", "qe_isvsvn"), [(5, 11, 4), (4, 11, 4), (5, 11, 3), (3, 5, 2)])
def test_tcb_levels_are_ordered_as_qvl_orders_them(kind: str, platform_svn: int, pcesvn: int, qe_isvsvn: int) -> None:
    """The same TCB info and QE identity with their levels listed in reverse give the same
    verdict: levels are ordered as Intel QVL orders them, not taken in JSON order (item 11)."""
    version = 4 if kind == "tdx" else 3
    base = Spec(kind=kind, version=version, platform_svn=platform_svn, pcesvn=pcesvn, qe_isvsvn=qe_isvsvn)
    listed = _verify(build(base)).claims
    flipped = replace(base, levels=tuple(reversed(base.levels)), qe_levels=tuple(reversed(base.qe_levels)))
    claims = _verify(build(flipped)).claims
    for k in ("tcb_status", "qe_tcb_status", "advisory_ids"):
        assert claims[k] == listed[k]


def test_sgx_components_outrank_pcesvn() -> None:
    """QVL orders by SGX components first: of two levels a platform meets, (5.., PCESVN 5)
    comes before (4.., PCESVN 11) whatever the JSON order, so the verdict is the former's."""
    levels = (_sgx_level(4, 11, "UpToDate"), _sgx_level(5, 5, "OutOfDate"))
    v = _verify(build(Spec(kind="sgx", version=3, platform_svn=5, pcesvn=11, levels=levels)))
    assert v.claims["tcb_status"] == "OutOfDate"


def test_tdx_components_break_ties() -> None:
    tdx_levels = (
        tdx_level(5, 11, [3, 0, 1] + [0] * 13, "OutOfDate"),
        tdx_level(5, 11, [5, 0, 2] + [0] * 13, "UpToDate"),
    )
    assert _verify(build(Spec(levels=tdx_levels))).claims["tcb_status"] == "UpToDate"


@pytest.mark.parametrize("where", ["tcb_info", "tdx_module", "qe_identity"])
def test_duplicated_tcb_levels_are_refused(where: str) -> None:
    """Intel QVL refuses TCB info and enclave identities with two equal levels
    ("Detected duplicated TCB levels"), whatever their statuses."""
    spec = Spec()
    if where == "tcb_info":
        spec = Spec(levels=(*spec.levels, tdx_level(5, 11, [5, 0, 2] + [0] * 13, "Revoked")))
    elif where == "qe_identity":
        spec = Spec(qe_levels=(*spec.qe_levels, {"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z",
                                                  "tcbStatus": "Revoked"}))  # fmt: skip
    else:
        lv = [{"tcb": {"isvsvn": n}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"} for n in (3, 3)]
        ident = {"id": "TDX_03", "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
                 "tcbLevels": lv}  # fmt: skip
        spec = Spec(tee_tcb_svn=bytes([3, 3, 2] + [0] * 13), module_identities=(ident,))
    with pytest.raises(CollateralError) as e:
        _verify(build(spec))
    assert e.value.code == "collateral_invalid"
    assert "duplicated" in e.value.message


def _qe_level(isvsvn: int, status: str, adv: list[str] | None = None) -> dict[str, Any]:
    lvl: dict[str, Any] = {"tcb": {"isvsvn": isvsvn}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status}
    if adv:
        lvl["advisoryIDs"] = adv
    return lvl


def test_revoked_is_refused_by_the_verifier() -> None:
    """Revoked (platform or QE) is Intel QVL's terminal result: refused, never a claim (item 5)."""
    revoked_platform = (tdx_level(5, 11, [5, 0, 2] + [0] * 13, "Revoked"),)
    for spec in (Spec(levels=revoked_platform), Spec(qe_levels=(_qe_level(4, "Revoked"),))):
        with pytest.raises(VerificationError) as e:
            _verify(build(spec))
        assert e.value.code == "tcb_revoked"


@pytest.mark.parametrize("status", ["SWHardeningNeeded", "ConfigurationNeeded", "OutOfDateConfigurationNeeded"])
def test_identity_levels_have_identity_statuses_only(status: str) -> None:
    """Intel QVL's IdentityTcbLevel allows UpToDate, OutOfDate and Revoked only."""
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(qe_levels=(_qe_level(4, status),))))
    assert e.value.code == "tcb_status_unrecognized"
    ident = {"id": "TDX_03", "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
             "tcbLevels": [_qe_level(3, status)]}  # fmt: skip
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(tee_tcb_svn=bytes([3, 3, 2] + [0] * 13), module_identities=(ident,))))
    assert e.value.code == "tcb_status_unrecognized"


def test_matched_qe_level_advisories_are_reported() -> None:
    """Every matched level's advisories, the QE's too when it is up to date (QVL, dcap-qvl)."""
    v = _verify(build(Spec(qe_levels=(_qe_level(4, "UpToDate", ["INTEL-SA-00077"]),))))
    assert v.claims["tcb_status"] == "UpToDate" and v.claims["advisory_ids"] == ["INTEL-SA-00077"]


def _resigned(syn: Synthetic, which: str, change: Any) -> Synthetic:
    doc = json.loads(syn.doc[which])
    change(doc)
    raw = json.dumps(doc, separators=(",", ":"))
    return syn.with_doc(**{which: raw, f"{which}_signature": raw_sign(_KEYS["tcb"], raw.encode()).hex()})


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(doc: Any) -> None:
        for k in path[:-1]:
            doc = doc[k]
        doc[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("which", "path", "value"),
    [
        ("tcb_info", ("tcbLevels", 1, "tcbDate"), "not a date"),  # a level the platform does not reach
        ("tcb_info", ("tcbLevels", 1, "tcbStatus"), "Fine"),
        ("tcb_info", ("tcbLevels", 1, "tcb", "sgxtcbcomponents"), []),
        ("tcb_info", ("tcbLevels", 0, "tcb", "sgxtcbcomponents", 3, "svn"), 256),
        ("tcb_info", ("tcbLevels", 0, "tcb", "pcesvn"), 65536),
        ("tcb_info", ("issueDate",), "2025-06-19900:00:00Z"),  # fromisoformat takes any separator
        ("tcb_info", ("version",), 2),  # TDX TCB info is version 3
        ("tcb_info", ("tdxModule", "attributesMask"), "FF"),
        ("qe_identity", ("version",), 3),
        ("qe_identity", ("tcbLevels", 1, "tcbDate"), "2023-03-13T00:00:00Z00"),
        ("qe_identity", ("isvprodid",), 65536),
    ],
)
def test_every_field_of_every_level_is_checked(which: str, path: tuple[Any, ...], value: Any) -> None:
    """As Intel QVL's parsers, every field of the TCB info and QE identity, in every level, not
    only in the level the platform matches (issue 11 item 12: found by the dcap-qvl comparison)."""
    syn = _resigned(build(), which, _set(path, value))
    with pytest.raises(VerificationError if path[-1] == "tcbStatus" else MalformedError):
        _verify(syn)


def test_the_cheap_checks_parse_is_reused_only_for_the_same_bytes() -> None:
    """The verification reuses what the cheap checks parsed only when it is the same set: a set
    changed in between (another, equally authentic one) is read again."""
    a = build(Spec())
    b = build(Spec(tcb_evaluation_data_number=18))
    trust = dcap.DcapTrust(a.trust.root_sha256 | b.trust.root_sha256)
    raw_a, raw_b = dcap._raw_from_layout(a.doc), dcap._raw_from_layout(b.doc)
    parsed_a = dcap._collateral_cheap(raw_a.digest(trust), lambda: raw_a)
    assert isinstance(parsed_a, dcap._CollateralCheap)
    vc = dcap._verify_collateral(raw_b, trust, b"test-" + raw_b.digest(trust), parsed_a)
    assert vc.tcb_info["tcbEvaluationDataNumber"] == 18
    vc = dcap._verify_collateral(raw_a, trust, b"test-" + raw_a.digest(trust), parsed_a)
    assert vc.tcb_info["tcbEvaluationDataNumber"] == 17
