"""A fake AMD-like SEV-SNP PKI made from test keys, and SNP attestation reports signed under it.

The fake ARK -> ASK/ASVK -> VCEK/VLEK chain (:func:`make_chain`, a :class:`Chain`) is signed
RSASSA-PSS/SHA-384 like AMD's, the VCEK carries the AMD TCB/hwID extensions, and
:func:`make_report` signs reports ECDSA P-384 with the fake VCEK; :func:`make_crl` makes the ARK's
CRL. The fake ARK is trusted only where a test pins it explicitly (``AmdTrust.with_roots``).

Example::

    chain = make_chain()
    report = make_report(chain)
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veritee.collateral import Collateral
from veritee.evidence import amd, sev_snp
from veritee.evidence.amd import AmdTrust, ChainCache, Product

AT = datetime(2026, 1, 15, tzinfo=UTC)
NB = datetime(2025, 1, 1, tzinfo=UTC)
NA = datetime(2030, 1, 1, tzinfo=UTC)
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
CHIP = bytes(range(1, 65))


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Micro Devices"),
        ]
    )


def _der_int(v: int) -> bytes:
    body = v.to_bytes(1 if v < 0x80 else 2, "big")
    return b"\x02" + bytes([len(body)]) + body


_RSA: dict[str, rsa.RSAPrivateKey] = {}


def rsa_key(label: str) -> rsa.RSAPrivateKey:
    if label not in _RSA:  # 2048-bit keeps the suite fast; AMD uses 4096 with the same scheme
        _RSA[label] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _RSA[label]


def certificate(
    subject: str,
    issuer: str,
    pub: object,
    signer: rsa.RSAPrivateKey,
    *,
    ca: bool,
    extensions: list[x509.ExtensionType] = (),  # type: ignore[assignment]
    nb: datetime = NB,
    na: datetime = NA,
    serial: int = 1,
    pss: bool = True,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(pub)
        .serial_number(serial)
        .not_valid_before(nb)
        .not_valid_after(na)
    )  # type: ignore[arg-type]
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    for ext in extensions:
        b = b.add_extension(ext, critical=False)
    return b.sign(signer, hashes.SHA384(), rsa_padding=PSS if pss else padding.PKCS1v15())


@dataclass
class Chain:
    product: Product
    ark: x509.Certificate
    ask: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    ark_key: rsa.RSAPrivateKey

    @property
    def ark_sha256(self) -> str:
        return hashlib.sha256(self.ark.public_bytes(Encoding.DER)).hexdigest()

    def trust(self, cache: ChainCache | None = None) -> AmdTrust:
        return AmdTrust.with_roots({self.ark_sha256: self.product}, cache=cache)

    def collateral(
        self, *extra: x509.Certificate, crls: tuple[x509.CertificateRevocationList, ...] = ()
    ) -> Collateral:
        return Collateral(certificates=(self.leaf, self.ask, self.ark, *extra), crls=crls)


def make_chain(
    product: Product = Product.GENOA,
    kind: str = "vcek",
    *,
    tcb: dict[str, int] | None = None,
    hwid: bytes | None = None,
    leaf_nb: datetime = NB,
    leaf_na: datetime = NA,
    leaf_pss: bool = True,
    ask_ca: bool = True,
    issuer_kind: str | None = None,
) -> Chain:
    cap = product.value.capitalize()
    ark_key = rsa_key(f"ark-{product}")
    ask_key = rsa_key(f"ask-{product}-{kind}")
    ark = certificate(f"ARK-{cap}", f"ARK-{cap}", ark_key.public_key(), ark_key, ca=True)
    ik = issuer_kind or kind
    ask_cn = f"SEV-VLEK-{cap}" if ik == "vlek" else f"SEV-{cap}"
    ask = certificate(ask_cn, f"ARK-{cap}", ask_key.public_key(), ark_key, ca=ask_ca, serial=0x42)
    tcb = tcb or (
        {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5}
        if product is Product.TURIN
        else {"bootloader": 9, "tee": 0, "snp": 23, "microcode": 72}
    )
    oids = {
        "bootloader": amd.OID_BL_SPL,
        "tee": amd.OID_TEE_SPL,
        "snp": amd.OID_SNP_SPL,
        "microcode": amd.OID_UCODE_SPL,
        "fmc": amd.OID_FMC_SPL,
    }
    exts: list[x509.ExtensionType] = [
        x509.UnrecognizedExtension(oids[k], _der_int(v)) for k, v in tcb.items()
    ]
    name = cap.encode()
    exts.append(
        x509.UnrecognizedExtension(amd.OID_PRODUCT_NAME, b"\x16" + bytes([len(name)]) + name)
    )
    if kind == "vcek":
        hw = hwid if hwid is not None else (CHIP[:8] if product is Product.TURIN else CHIP)
        exts.append(x509.UnrecognizedExtension(amd.OID_HW_ID, hw))
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = certificate(
        "SEV-VLEK" if kind == "vlek" else "SEV-VCEK",
        ask_cn,
        leaf_key.public_key(),
        ask_key,
        ca=False,
        extensions=exts,
        nb=leaf_nb,
        na=leaf_na,
        pss=leaf_pss,
    )
    return Chain(product, ark, ask, leaf, leaf_key, ark_key)


def tcb_raw(tcb: dict[str, int], product: Product) -> int:
    b = bytearray(8)
    if product is Product.TURIN:
        b[0], b[1], b[2], b[3] = tcb["fmc"], tcb["bootloader"], tcb["tee"], tcb["snp"]
    else:
        b[0], b[1], b[6] = tcb["bootloader"], tcb["tee"], tcb["snp"]
    b[7] = tcb["microcode"]
    return int.from_bytes(b, "little")


CPUID = {
    Product.MILAN: (0x19, 0x01, 1),
    Product.GENOA: (0x19, 0x11, 1),
    Product.TURIN: (0x1A, 0x02, 0),
}


def make_report(
    chain: Chain,
    *,
    version: int = 5,
    tcb: dict[str, int] | None = None,
    chip_id: bytes | None = None,
    policy: int = 0x30000,
    cpuid: tuple[int, int, int] | None = None,
    vmpl: int = 0,
    report_data: bytes = b"\xaa" * 64,
    launch_tcb: dict[str, int] | None = None,
) -> bytes:
    info = amd.endorsement_key_info(chain.leaf)
    raw = tcb_raw(tcb or info.tcb, chain.product)
    b = bytearray(sev_snp.REPORT_SIZE)
    struct.pack_into("<IIQ", b, 0, version, 7, policy)
    struct.pack_into("<II", b, sev_snp.OFF_VMPL, vmpl, 1)
    struct.pack_into("<QQ", b, sev_snp.OFF_CURRENT_TCB, raw, 0x25)
    struct.pack_into("<I", b, sev_snp.OFF_SIGNER_INFO, (1 if info.kind == "vlek" else 0) << 2)
    b[sev_snp.OFF_REPORT_DATA : sev_snp.OFF_REPORT_DATA + 64] = report_data
    b[sev_snp.OFF_MEASUREMENT : sev_snp.OFF_MEASUREMENT + 48] = b"\x5b" * 48
    for off in (sev_snp.OFF_REPORTED_TCB, sev_snp.OFF_COMMITTED_TCB, sev_snp.OFF_LAUNCH_TCB):
        struct.pack_into("<Q", b, off, raw)
    if launch_tcb is not None:  # (a guest launched under an older TCB than it reports now)
        struct.pack_into("<Q", b, sev_snp.OFF_LAUNCH_TCB, tcb_raw(launch_tcb, chain.product))
    if version >= 3:
        b[sev_snp.OFF_CPUID_FAM_ID : sev_snp.OFF_CPUID_FAM_ID + 3] = bytes(
            cpuid or CPUID[chain.product]
        )
    if version >= 5:
        struct.pack_into("<QQ", b, sev_snp.OFF_LAUNCH_MIT_VECTOR, 3, 3)
    if chip_id is None:
        chip_id = b"" if info.kind == "vlek" else (info.hwid or b"")
    b[sev_snp.OFF_CHIP_ID : sev_snp.OFF_CHIP_ID + len(chip_id)] = chip_id
    struct.pack_into("<BBBxBBBx", b, sev_snp.OFF_CURRENT_BUILD, 4, 58, 1, 4, 58, 1)
    r, s = decode_dss_signature(
        chain.leaf_key.sign(bytes(b[: sev_snp.SIGNED_SIZE]), ec.ECDSA(hashes.SHA384()))
    )
    b[sev_snp.OFF_SIGNATURE_R : sev_snp.OFF_SIGNATURE_R + 72] = r.to_bytes(72, "little")
    b[sev_snp.OFF_SIGNATURE_S : sev_snp.OFF_SIGNATURE_S + 72] = s.to_bytes(72, "little")
    return bytes(b)


def make_crl(
    chain: Chain,
    revoked: list[int],
    *,
    key: rsa.RSAPrivateKey | None = None,
    last: datetime = AT - timedelta(days=1),
    nxt: datetime = AT + timedelta(days=7),
) -> x509.CertificateRevocationList:
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(chain.ark.subject)
        .last_update(last)
        .next_update(nxt)
    )
    for serial in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build()
        )
    return b.sign(key or chain.ark_key, hashes.SHA384(), rsa_padding=PSS)
