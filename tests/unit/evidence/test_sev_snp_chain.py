"""SEV-SNP paths no public sample reaches, with a fake AMD-like chain made from test keys.

The fake ARK -> ASK/ASVK -> VCEK/VLEK chain is signed RSASSA-PSS/SHA-384 like AMD's, the VCEK
carries the AMD TCB/hwID extensions, and reports are signed ECDSA P-384 with the fake VCEK. The
fake ARK is trusted only where a test pins it explicitly (``AmdTrust.with_roots``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence import amd, sev_snp
from veritee.evidence.amd import AmdTrust, ChainCache, Product

AT = datetime(2026, 1, 15, tzinfo=UTC)
NB = datetime(2025, 1, 1, tzinfo=UTC)
NA = datetime(2030, 1, 1, tzinfo=UTC)
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
CHIP = bytes(range(1, 65))


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Micro Devices"),
    ])


def _der_int(v: int) -> bytes:
    body = v.to_bytes(1 if v < 0x80 else 2, "big")
    return b"\x02" + bytes([len(body)]) + body


_RSA: dict[str, rsa.RSAPrivateKey] = {}


def _rsa(label: str) -> rsa.RSAPrivateKey:
    if label not in _RSA:  # 2048-bit keeps the suite fast; AMD uses 4096 with the same scheme
        _RSA[label] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _RSA[label]


def _cert(
    subject: str, issuer: str, pub: object, signer: rsa.RSAPrivateKey, *, ca: bool,
    extensions: list[x509.ExtensionType] = (),  # type: ignore[assignment]
    nb: datetime = NB, na: datetime = NA, serial: int = 1, pss: bool = True,
) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(pub).serial_number(serial).not_valid_before(nb).not_valid_after(na))  # type: ignore[arg-type]
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

    def collateral(self, *extra: x509.Certificate, crls: tuple[x509.CertificateRevocationList, ...] = ()) -> Collateral:
        return Collateral(certificates=(self.leaf, self.ask, self.ark, *extra), crls=crls)


def make_chain(
    product: Product = Product.GENOA, kind: str = "vcek", *,
    tcb: dict[str, int] | None = None, hwid: bytes | None = None,
    leaf_nb: datetime = NB, leaf_na: datetime = NA, leaf_pss: bool = True, ask_ca: bool = True,
    issuer_kind: str | None = None,
) -> Chain:
    cap = product.value.capitalize()
    ark_key = _rsa(f"ark-{product}")
    ask_key = _rsa(f"ask-{product}-{kind}")
    ark = _cert(f"ARK-{cap}", f"ARK-{cap}", ark_key.public_key(), ark_key, ca=True)
    ik = issuer_kind or kind
    ask_cn = f"SEV-VLEK-{cap}" if ik == "vlek" else f"SEV-{cap}"
    ask = _cert(ask_cn, f"ARK-{cap}", ask_key.public_key(), ark_key, ca=ask_ca, serial=0x42)
    tcb = tcb or ({"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5}
                  if product is Product.TURIN else
                  {"bootloader": 9, "tee": 0, "snp": 23, "microcode": 72})
    oids = {"bootloader": amd.OID_BL_SPL, "tee": amd.OID_TEE_SPL, "snp": amd.OID_SNP_SPL,
            "microcode": amd.OID_UCODE_SPL, "fmc": amd.OID_FMC_SPL}
    exts: list[x509.ExtensionType] = [
        x509.UnrecognizedExtension(oids[k], _der_int(v)) for k, v in tcb.items()
    ]
    name = cap.encode()
    exts.append(x509.UnrecognizedExtension(amd.OID_PRODUCT_NAME, b"\x16" + bytes([len(name)]) + name))
    if kind == "vcek":
        hw = hwid if hwid is not None else (CHIP[:8] if product is Product.TURIN else CHIP)
        exts.append(x509.UnrecognizedExtension(amd.OID_HW_ID, hw))
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = _cert("SEV-VLEK" if kind == "vlek" else "SEV-VCEK", ask_cn, leaf_key.public_key(),
                 ask_key, ca=False, extensions=exts, nb=leaf_nb, na=leaf_na, pss=leaf_pss)
    return Chain(product, ark, ask, leaf, leaf_key, ark_key)


def tcb_raw(tcb: dict[str, int], product: Product) -> int:
    b = bytearray(8)
    if product is Product.TURIN:
        b[0], b[1], b[2], b[3] = tcb["fmc"], tcb["bootloader"], tcb["tee"], tcb["snp"]
    else:
        b[0], b[1], b[6] = tcb["bootloader"], tcb["tee"], tcb["snp"]
    b[7] = tcb["microcode"]
    return int.from_bytes(b, "little")


CPUID = {Product.MILAN: (0x19, 0x01, 1), Product.GENOA: (0x19, 0x11, 1), Product.TURIN: (0x1A, 0x02, 0)}


def make_report(
    chain: Chain, *, version: int = 5, tcb: dict[str, int] | None = None,
    chip_id: bytes | None = None, policy: int = 0x30000, cpuid: tuple[int, int, int] | None = None,
    vmpl: int = 0, report_data: bytes = b"\xaa" * 64,
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
    if version >= 3:
        b[sev_snp.OFF_CPUID_FAM_ID : sev_snp.OFF_CPUID_FAM_ID + 3] = bytes(cpuid or CPUID[chain.product])
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


def _crl(chain: Chain, revoked: list[int], *, key: rsa.RSAPrivateKey | None = None,
         last: datetime = AT - timedelta(days=1), nxt: datetime = AT + timedelta(days=7)
         ) -> x509.CertificateRevocationList:
    b = (x509.CertificateRevocationListBuilder().issuer_name(chain.ark.subject)
         .last_update(last).next_update(nxt))
    for serial in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build()
        )
    return b.sign(key or chain.ark_key, hashes.SHA384(), rsa_padding=PSS)


# -- products, versions, key kinds ---------------------------------------------------------------


@pytest.mark.parametrize("product", list(Product))
@pytest.mark.parametrize("version", [2, 3, 5])
@pytest.mark.parametrize("kind", ["vcek", "vlek"])
def test_fake_chain_verifies_when_its_root_is_pinned(product: Product, version: int, kind: str) -> None:
    chain = make_chain(product, kind)
    data = make_report(chain, version=version)
    r = sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust())
    c = r.claims
    assert c["product"] == product.value and c["signing_key"] == kind and c["version"] == version
    assert c["reported_tcb"] == c["vcek_tcb"] == amd.endorsement_key_info(chain.leaf).tcb
    assert ("fmc" in c["reported_tcb"]) is (product is Product.TURIN)
    assert c["measurement"] == "5b" * 48 and c["debug"] is False
    assert c["current_firmware"] == "1.58.4"
    assert (c["cpuid"] is None) is (version == 2)
    assert (c["launch_mit_vector"] == 3) is (version == 5)


def test_turin_tcb_layout() -> None:
    chain = make_chain(Product.TURIN)
    c = sev_snp.verify(make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust()).claims
    assert c["reported_tcb"] == {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5}
    assert c["chip_id"] == (CHIP[:8] + bytes(56)).hex()
    # Unverified parsing of a v5 Turin report finds the layout from CPUID too.
    assert sev_snp.parse_claims(make_report(chain))["reported_tcb"]["fmc"] == 1


def test_default_trust_refuses_the_fake_root() -> None:
    chain = make_chain()
    with pytest.raises(VerificationError, match="not a pinned AMD ARK") as e:
        sev_snp.verify(make_report(chain), collateral=chain.collateral(), at=AT)
    assert e.value.code == "root_not_pinned"


def test_cached_chain_is_not_reused_under_other_trust() -> None:
    chain = make_chain()
    cache = ChainCache()
    data = make_report(chain)
    sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust(cache))
    sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust(cache))
    assert cache.hits == 1
    with pytest.raises(VerificationError, match="not a pinned"):
        sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=AmdTrust(cache=cache))


def test_look_alike_root_with_pinned_name_is_refused() -> None:
    real = make_chain(Product.GENOA)
    # An ARK with the pinned ARK's name but another key (so another DER) is not trusted, and
    # the real ASK does not verify under it either.
    other_ark = _cert("ARK-Genoa", "ARK-Genoa", _rsa("other-ark").public_key(), _rsa("other-ark"), ca=True)
    assert other_ark.subject == real.ark.subject
    with pytest.raises(VerificationError, match="does not verify"):
        sev_snp.verify(make_report(real), collateral=Collateral(
            certificates=(real.leaf, real.ask, other_ark)), at=AT, trust=real.trust())
    ask2 = _cert("SEV-Genoa", "ARK-Genoa", real.ask.public_key(), _rsa("other-ark"), ca=True, serial=0x42)
    with pytest.raises(VerificationError, match="not a pinned AMD ARK"):
        sev_snp.verify(make_report(real), collateral=Collateral(
            certificates=(real.leaf, ask2, other_ark)), at=AT, trust=real.trust())


# -- checks against the certificate --------------------------------------------------------------


@pytest.mark.parametrize("field", ["bootloader", "tee", "snp", "microcode"])
def test_reported_tcb_must_equal_the_vcek_tcb(field: str) -> None:
    chain = make_chain(Product.MILAN)
    tcb = dict(amd.endorsement_key_info(chain.leaf).tcb)
    tcb[field] = (tcb[field] + 1) % 256  # a higher TCB than certified is refused too
    with pytest.raises(VerificationError, match="differs from REPORTED_TCB") as e:
        sev_snp.verify(make_report(chain, tcb=tcb), collateral=chain.collateral(), at=AT,
                       trust=chain.trust())
    assert e.value.code == "tcb_mismatch"


def test_turin_fmc_is_compared() -> None:
    chain = make_chain(Product.TURIN)
    tcb = dict(amd.endorsement_key_info(chain.leaf).tcb, fmc=0)
    with pytest.raises(VerificationError, match="REPORTED_TCB"):
        sev_snp.verify(make_report(chain, tcb=tcb), collateral=chain.collateral(), at=AT,
                       trust=chain.trust())


def test_chip_id_must_equal_hwid() -> None:
    chain = make_chain()
    data = make_report(chain, chip_id=bytes(reversed(CHIP)))
    with pytest.raises(VerificationError, match="hwID") as e:
        sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust())
    assert e.value.code == "chip_id_mismatch"


def test_masked_chip_id_is_accepted_with_a_finding() -> None:
    chain = make_chain()
    data = make_report(chain, chip_id=bytes(64))
    r = sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust())
    assert r.claims["chip_id_masked"] is True
    assert [f.code for f in r.findings] == ["chip_id_masked"]


def test_cpuid_must_name_the_chain_product() -> None:
    chain = make_chain(Product.GENOA)
    data = make_report(chain, cpuid=CPUID[Product.MILAN])
    with pytest.raises(VerificationError, match="CPUID names milan") as e:
        sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust())
    assert e.value.code == "product_mismatch"


def test_vcek_issued_by_an_asvk_is_refused() -> None:
    chain = make_chain(Product.GENOA, "vcek", issuer_kind="vlek")
    with pytest.raises(VerificationError, match="not by an ASK"):
        sev_snp.verify(make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust())


def test_non_pss_signature_is_refused() -> None:
    chain = make_chain(leaf_pss=False)
    with pytest.raises(VerificationError, match="RSASSA-PSS"):
        sev_snp.verify(make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust())


def test_ask_must_be_a_ca() -> None:
    chain = make_chain(ask_ca=False)
    with pytest.raises(VerificationError, match="not a CA"):
        sev_snp.verify(make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust())


def test_vcek_resigned_by_another_ask_is_refused() -> None:
    chain = make_chain()
    rogue = _rsa("rogue-ask")
    forged = _cert("SEV-VCEK", "SEV-Genoa", chain.leaf_key.public_key(), rogue, ca=False,
                   extensions=[e.value for e in chain.leaf.extensions if e.oid != x509.oid.ExtensionOID.BASIC_CONSTRAINTS])
    col = Collateral(certificates=(forged, chain.ask, chain.ark))
    with pytest.raises(VerificationError, match="does not verify"):
        sev_snp.verify(make_report(chain), collateral=col, at=AT, trust=chain.trust())


def test_expired_vcek_is_refused() -> None:
    chain = make_chain(leaf_nb=NB, leaf_na=AT - timedelta(seconds=1))
    with pytest.raises(CollateralError, match="VCEK certificate is not valid"):
        sev_snp.verify(make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust())


def test_vcek_without_tcb_extension_is_collateral_error() -> None:
    chain = make_chain(tcb={"bootloader": 1, "tee": 0, "snp": 1})
    with pytest.raises(CollateralError, match="microcode"):
        amd.endorsement_key_info(chain.leaf)


# -- CRLs -----------------------------------------------------------------------------------------


def test_revoked_ask_is_refused() -> None:
    chain = make_chain()
    crl = _crl(chain, [chain.ask.serial_number])
    with pytest.raises(VerificationError, match="revoked") as e:
        sev_snp.verify(make_report(chain), collateral=chain.collateral(crls=(crl,)), at=AT,
                       trust=chain.trust())
    assert e.value.code == "certificate_revoked"


def test_crl_not_listing_the_ask_passes_and_bounds_the_cache_window() -> None:
    chain = make_chain()
    cache = ChainCache()
    crl = _crl(chain, [0x99])
    col = chain.collateral(crls=(crl,))
    sev_snp.verify(make_report(chain), collateral=col, at=AT, trust=chain.trust(cache))
    with pytest.raises(CollateralError, match="not current"):
        sev_snp.verify(make_report(chain), collateral=col, at=AT + timedelta(days=8),
                       trust=chain.trust(cache))


def test_cached_result_without_crl_does_not_hide_a_revocation() -> None:
    chain = make_chain()
    cache = ChainCache()
    data = make_report(chain)
    sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust(cache))
    crl = _crl(chain, [chain.ask.serial_number])
    with pytest.raises(VerificationError, match="revoked"):
        sev_snp.verify(data, collateral=chain.collateral(crls=(crl,)), at=AT, trust=chain.trust(cache))


def test_crl_with_bad_signature_is_collateral_error() -> None:
    chain = make_chain()
    crl = _crl(chain, [], key=_rsa("not-the-ark"))
    with pytest.raises(CollateralError, match="CRL") as e:
        sev_snp.verify(make_report(chain), collateral=chain.collateral(crls=(crl,)), at=AT,
                       trust=chain.trust())
    assert e.value.code == "crl_invalid"


def test_crl_of_another_root_is_ignored() -> None:
    chain, other = make_chain(Product.GENOA), make_chain(Product.TURIN)
    crl = _crl(other, [chain.ask.serial_number])
    r = sev_snp.verify(make_report(chain), collateral=chain.collateral(crls=(crl,)), at=AT,
                       trust=chain.trust())
    assert r.claims["product"] == "genoa"


# -- mutations of a fake v5 report ----------------------------------------------------------------


def test_flipped_bytes_in_fake_v5_report_are_refused() -> None:
    import random

    chain = make_chain(Product.TURIN)
    data = make_report(chain)
    cache = ChainCache()
    trust = chain.trust(cache)
    col = chain.collateral()
    sev_snp.verify(data, collateral=col, at=AT, trust=trust)
    rng = random.Random(5)
    for pos in rng.sample(range(sev_snp.SIGNED_SIZE), 120):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        with pytest.raises((MalformedError, VerificationError)):
            sev_snp.verify(bytes(bad), collateral=col, at=AT, trust=trust)
