"""SEV-SNP paths no public sample reaches, with a fake AMD-like chain made from test keys
(:mod:`tests.fakes.amd`).

The fake ARK -> ASK/ASVK -> VCEK/VLEK chain is signed RSASSA-PSS/SHA-384 like AMD's, the VCEK
carries the AMD TCB/hwID extensions, and reports are signed ECDSA P-384 with the fake VCEK. The
fake ARK is trusted only where a test pins it explicitly (``AmdTrust.with_roots``).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from tests.fakes.amd import (
    AT,
    CHIP,
    CPUID,
    NB,
    certificate,
    make_chain,
    make_crl,
    make_report,
    rsa_key,
)

from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence import amd, sev_snp
from veritee.evidence.amd import AmdTrust, ChainCache, Product

# -- products, versions, key kinds ---------------------------------------------------------------


@pytest.mark.parametrize("product", list(Product))
@pytest.mark.parametrize("version", [2, 3, 5])
@pytest.mark.parametrize("kind", ["vcek", "vlek"])
def test_fake_chain_verifies_when_its_root_is_pinned(
    product: Product, version: int, kind: str
) -> None:
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
    c = sev_snp.verify(
        make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust()
    ).claims
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
    other_ark = certificate(
        "ARK-Genoa", "ARK-Genoa", rsa_key("other-ark").public_key(), rsa_key("other-ark"), ca=True
    )
    assert other_ark.subject == real.ark.subject
    with pytest.raises(VerificationError, match="does not verify"):
        sev_snp.verify(
            make_report(real),
            collateral=Collateral(certificates=(real.leaf, real.ask, other_ark)),
            at=AT,
            trust=real.trust(),
        )
    ask2 = certificate(
        "SEV-Genoa", "ARK-Genoa", real.ask.public_key(), rsa_key("other-ark"), ca=True, serial=0x42
    )
    with pytest.raises(VerificationError, match="not a pinned AMD ARK"):
        sev_snp.verify(
            make_report(real),
            collateral=Collateral(certificates=(real.leaf, ask2, other_ark)),
            at=AT,
            trust=real.trust(),
        )


def test_pinned_root_with_a_bad_self_signature_is_refused_every_time() -> None:
    # The ARK's self-signature is checked once per ARK object that passes it (amd._SELF_SIGNED):
    # one whose self-signature does not verify is refused on every call, also after a good
    # chain of the same name verified, and also when its own fingerprint is pinned.
    real = make_chain(Product.GENOA)
    data = make_report(real)
    sev_snp.verify(data, collateral=real.collateral(), at=AT, trust=real.trust())
    bad_ark = certificate(
        "ARK-Genoa", "ARK-Genoa", real.ark_key.public_key(), rsa_key("not-the-ark"), ca=True
    )
    assert bad_ark.public_key().public_numbers() == real.ark.public_key().public_numbers()
    pinned = AmdTrust.with_roots(
        {hashlib.sha256(bad_ark.public_bytes(Encoding.DER)).hexdigest(): Product.GENOA}, cache=None
    )
    col = Collateral(certificates=(real.leaf, real.ask, bad_ark))
    for _ in range(2):
        with pytest.raises(VerificationError, match=r"ARK \(self-signature\) does not verify"):
            sev_snp.verify(data, collateral=col, at=AT, trust=pinned)
    # The good chain still verifies without a cache, twice (the memo's hit path).
    for _ in range(2):
        sev_snp.verify(data, collateral=real.collateral(), at=AT, trust=real.trust(None))


def test_certificate_facts_follow_the_object_not_the_name() -> None:
    # Two VCEKs of the same name and issuer, with other TCB values: each is read from its own
    # bytes (amd._INFOS, amd._FACTS are keyed by the certificate object).
    a = make_chain(Product.GENOA)
    b = make_chain(Product.GENOA, tcb={"bootloader": 9, "tee": 9, "snp": 9, "microcode": 9})
    assert a.leaf.subject == b.leaf.subject and a.leaf.issuer == b.leaf.issuer
    assert amd.endorsement_key_info(a.leaf).tcb != amd.endorsement_key_info(b.leaf).tcb
    assert amd.endorsement_key_info(b.leaf).tcb["snp"] == 9
    assert amd.issued_by(a.leaf, a.ask) and amd.issued_by(b.leaf, a.ask)
    assert not amd.issued_by(a.ask, a.leaf)
    assert amd.subject_cn(a.ask) == "SEV-Genoa" and amd.issuer_cn(a.ask) == "ARK-Genoa"
    assert amd.subject_key(a.ark) == amd.issuer_key(a.ark) == amd.name_key(a.ark.subject)


# -- checks against the certificate --------------------------------------------------------------


@pytest.mark.parametrize("field", ["bootloader", "tee", "snp", "microcode"])
def test_reported_tcb_must_equal_the_vcek_tcb(field: str) -> None:
    chain = make_chain(Product.MILAN)
    tcb = dict(amd.endorsement_key_info(chain.leaf).tcb)
    tcb[field] = (tcb[field] + 1) % 256  # a higher TCB than certified is refused too
    with pytest.raises(VerificationError, match="differs from REPORTED_TCB") as e:
        sev_snp.verify(
            make_report(chain, tcb=tcb), collateral=chain.collateral(), at=AT, trust=chain.trust()
        )
    assert e.value.code == "tcb_mismatch"


def test_turin_fmc_is_compared() -> None:
    chain = make_chain(Product.TURIN)
    tcb = dict(amd.endorsement_key_info(chain.leaf).tcb, fmc=0)
    with pytest.raises(VerificationError, match="REPORTED_TCB"):
        sev_snp.verify(
            make_report(chain, tcb=tcb), collateral=chain.collateral(), at=AT, trust=chain.trust()
        )


def test_chip_id_must_equal_hwid() -> None:
    chain = make_chain()
    data = make_report(chain, chip_id=bytes(reversed(CHIP)))
    with pytest.raises(VerificationError, match="hwID") as e:
        sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust())
    assert e.value.code == "chip_id_mismatch"


@pytest.mark.parametrize("product", [Product.MILAN, Product.TURIN])
def test_a_bare_hwid_that_starts_like_an_octet_string_is_read_whole(product: Product) -> None:
    """A raw hwID whose first two bytes read as an OCTET STRING header of the rest (``04 3E``
    for 64 bytes, ``04 06`` for Turin's 8) was cut by two bytes and the genuine VCEK refused."""
    size = 8 if product is Product.TURIN else 64
    hw = bytes([0x04, size - 2]) + bytes(range(2, size))
    chain = make_chain(product, hwid=hw)
    data = make_report(chain, chip_id=hw.ljust(64, b"\0"))
    assert amd.endorsement_key_info(chain.leaf).hwid == hw
    r = sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust())
    assert r.claims["platform"] == "sev-snp"


def test_masked_chip_id_is_accepted_with_a_finding() -> None:
    chain = make_chain()
    data = make_report(chain, chip_id=bytes(64))
    col = chain.collateral(crls=(make_crl(chain, []),))
    r = sev_snp.verify(data, collateral=col, at=AT, trust=chain.trust())
    assert r.claims["chip_id_masked"] is True
    assert [f.code for f in r.findings] == ["chip_id_masked"]


def test_without_a_crl_of_the_ark_the_revocation_is_not_checked_and_said() -> None:
    """Without a CRL of the ARK a revoked ASK passes (no list to find it in): the verifier says
    so. With the CRL it is refused, with an empty one nothing is said."""
    chain = make_chain()
    data = make_report(chain)
    r = sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust())
    assert [f.code for f in r.findings] == ["revocation_not_checked"]
    assert "ASK" in r.findings[0].message
    ok = chain.collateral(crls=(make_crl(chain, []),))
    assert sev_snp.verify(data, collateral=ok, at=AT, trust=chain.trust()).findings == ()
    revoked = chain.collateral(crls=(make_crl(chain, [chain.ask.serial_number]),))
    with pytest.raises(VerificationError) as e:
        sev_snp.verify(data, collateral=revoked, at=AT, trust=chain.trust())
    assert e.value.code == "certificate_revoked"


def test_cpuid_must_name_the_chain_product() -> None:
    chain = make_chain(Product.GENOA)
    data = make_report(chain, cpuid=CPUID[Product.MILAN])
    with pytest.raises(VerificationError, match="CPUID names milan") as e:
        sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust())
    assert e.value.code == "product_mismatch"


def test_vcek_issued_by_an_asvk_is_refused() -> None:
    chain = make_chain(Product.GENOA, "vcek", issuer_kind="vlek")
    with pytest.raises(VerificationError, match="not by an ASK"):
        sev_snp.verify(
            make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust()
        )


def test_non_pss_signature_is_refused() -> None:
    chain = make_chain(leaf_pss=False)
    with pytest.raises(VerificationError, match="RSASSA-PSS"):
        sev_snp.verify(
            make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust()
        )


def test_ask_must_be_a_ca() -> None:
    chain = make_chain(ask_ca=False)
    with pytest.raises(VerificationError, match="not a CA"):
        sev_snp.verify(
            make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust()
        )


def test_vcek_resigned_by_another_ask_is_refused() -> None:
    chain = make_chain()
    rogue = rsa_key("rogue-ask")
    forged = certificate(
        "SEV-VCEK",
        "SEV-Genoa",
        chain.leaf_key.public_key(),
        rogue,
        ca=False,
        extensions=[
            e.value
            for e in chain.leaf.extensions
            if e.oid != x509.oid.ExtensionOID.BASIC_CONSTRAINTS
        ],
    )
    col = Collateral(certificates=(forged, chain.ask, chain.ark))
    with pytest.raises(VerificationError, match="does not verify"):
        sev_snp.verify(make_report(chain), collateral=col, at=AT, trust=chain.trust())


def test_expired_vcek_is_refused() -> None:
    chain = make_chain(leaf_nb=NB, leaf_na=AT - timedelta(seconds=1))
    with pytest.raises(CollateralError, match="VCEK certificate is not valid"):
        sev_snp.verify(
            make_report(chain), collateral=chain.collateral(), at=AT, trust=chain.trust()
        )


def test_vcek_without_tcb_extension_is_collateral_error() -> None:
    chain = make_chain(tcb={"bootloader": 1, "tee": 0, "snp": 1})
    with pytest.raises(CollateralError, match="microcode"):
        amd.endorsement_key_info(chain.leaf)


# -- CRLs -----------------------------------------------------------------------------------------


def test_revoked_ask_is_refused() -> None:
    chain = make_chain()
    crl = make_crl(chain, [chain.ask.serial_number])
    with pytest.raises(VerificationError, match="revoked") as e:
        sev_snp.verify(
            make_report(chain), collateral=chain.collateral(crls=(crl,)), at=AT, trust=chain.trust()
        )
    assert e.value.code == "certificate_revoked"


def test_crl_not_listing_the_ask_passes_and_bounds_the_cache_window() -> None:
    chain = make_chain()
    cache = ChainCache()
    crl = make_crl(chain, [0x99])
    col = chain.collateral(crls=(crl,))
    sev_snp.verify(make_report(chain), collateral=col, at=AT, trust=chain.trust(cache))
    with pytest.raises(CollateralError, match="not current"):
        sev_snp.verify(
            make_report(chain), collateral=col, at=AT + timedelta(days=8), trust=chain.trust(cache)
        )


def test_cached_result_without_crl_does_not_hide_a_revocation() -> None:
    chain = make_chain()
    cache = ChainCache()
    data = make_report(chain)
    sev_snp.verify(data, collateral=chain.collateral(), at=AT, trust=chain.trust(cache))
    crl = make_crl(chain, [chain.ask.serial_number])
    with pytest.raises(VerificationError, match="revoked"):
        sev_snp.verify(
            data, collateral=chain.collateral(crls=(crl,)), at=AT, trust=chain.trust(cache)
        )


def test_crl_with_bad_signature_is_collateral_error() -> None:
    chain = make_chain()
    crl = make_crl(chain, [], key=rsa_key("not-the-ark"))
    with pytest.raises(CollateralError, match="CRL") as e:
        sev_snp.verify(
            make_report(chain), collateral=chain.collateral(crls=(crl,)), at=AT, trust=chain.trust()
        )
    assert e.value.code == "crl_invalid"


def test_crl_of_another_root_is_ignored() -> None:
    chain, other = make_chain(Product.GENOA), make_chain(Product.TURIN)
    crl = make_crl(other, [chain.ask.serial_number])
    r = sev_snp.verify(
        make_report(chain), collateral=chain.collateral(crls=(crl,)), at=AT, trust=chain.trust()
    )
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
