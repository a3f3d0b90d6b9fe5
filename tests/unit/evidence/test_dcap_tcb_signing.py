"""Issue 11 item 2: only the Intel SGX TCB Signing certificate signs TCB info and QE identity.

Intel QVL's ``TCBSigningChain::verify``: the issuer chain is the TCB Signing certificate and the
root; the certificate has CN "Intel SGX TCB Signing", is issued and signed directly by the pinned
root, and is not revoked by the root CA CRL. veritee also requires it not to be a CA and to carry
the digitalSignature key usage, as Intel's does. Before, any certificate under the root signed
collateral, so the holder of one extracted PCK key could sign a TCB info that calls its own
out-of-date platform ``UpToDate``. Checked on both collateral paths: the layout ``veritee
collateral fetch`` writes (and the test vectors use) and a bag of PCS responses, certificates
and CRLs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from tests.fakes.intel import (
    AT,
    KEYS,
    NO_SIGN_KEY_USAGE,
    OTHER_SIGNER,
    SIGNING_KEY_USAGE,
    Spec,
    Synthetic,
    build,
    certificate,
    pck_chain,
    pem_chain,
    raw_sign,
    resign_collateral,
    root_certificate,
    signed_under_root,
)

from veritee.collateral import Collateral
from veritee.errors import VerificationError
from veritee.evidence import dcap, tdx

_NO_SIGN = NO_SIGN_KEY_USAGE


def _verify(syn: Synthetic, collateral: Collateral | None = None) -> dict[str, Any]:
    dcap.clear_caches()
    return tdx.verify(
        syn.quote, collateral=collateral or syn.collateral, at=AT, trust=syn.trust
    ).claims


def _refused(syn: Synthetic, code: str, collateral: Collateral | None = None) -> None:
    with pytest.raises(VerificationError) as e:
        _verify(syn, collateral)
    assert e.value.code == code, e.value


def test_pck_key_cannot_sign_its_own_tcb_info() -> None:
    """The attack: an OutOfDate platform's PCK key signs a TCB info whose levels say UpToDate."""
    syn = build(Spec(platform_svn=4))
    assert _verify(syn)["tcb_status"] == "OutOfDate"
    info = json.loads(syn.doc["tcb_info"])
    for level in info["tcbLevels"]:
        level["tcbStatus"], level["advisoryIDs"] = "UpToDate", []
    forged = resign_collateral(
        syn, KEYS["pck"], pem_chain(*pck_chain(syn)), json.dumps(info, separators=(",", ":"))
    )
    _refused(forged, "collateral_signer_invalid")
    # Even with only the PCK certificate and the root (the chain does not link), it is refused.
    leaf = pck_chain(syn)[0]
    _refused(
        resign_collateral(syn, KEYS["pck"], pem_chain(leaf, root_certificate(syn))), "chain_invalid"
    )


@pytest.mark.parametrize(
    ("cn", "ca", "key_usage"),
    [
        ("Intel SGX TCB Signing", True, SIGNING_KEY_USAGE),  # a CA
        ("Intel SGX PCK Processor CA", False, SIGNING_KEY_USAGE),  # another CN
        ("Intel SGX TCB Signing 2", False, SIGNING_KEY_USAGE),  # not exactly the CN
        ("Intel SGX TCB Signing", False, _NO_SIGN),  # may not sign
        ("Intel SGX TCB Signing", False, None),  # no key usage at all
    ],
    ids=["ca", "other-cn", "cn-suffix", "no-digital-signature", "no-key-usage"],
)
def test_only_the_tcb_signing_certificate_signs(
    cn: str, ca: bool, key_usage: x509.KeyUsage | None
) -> None:
    _refused(
        signed_under_root(build(), cn, ca=ca, key_usage=key_usage), "collateral_signer_invalid"
    )


def test_a_proper_tcb_signing_certificate_is_accepted_unless_revoked() -> None:
    # Control: the same construction with every property right verifies.
    assert _verify(signed_under_root(build(), "Intel SGX TCB Signing"))["tcb_status"] == "UpToDate"
    _refused(
        signed_under_root(build(Spec(root_revoked=(40,))), "Intel SGX TCB Signing"),
        "certificate_revoked",
    )


def test_chain_of_three_is_refused() -> None:
    """[TCB Signing, PCK CA, root]: the signer must be issued directly by the root."""
    syn = build()
    root, ca = root_certificate(syn), pck_chain(syn)[1]
    cert = certificate("Intel SGX TCB Signing", OTHER_SIGNER, "Fake SGX PCK Platform CA", KEYS["pck_ca"], 41, False,
                 key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    _refused(
        resign_collateral(syn, OTHER_SIGNER, pem_chain(cert, ca, root)), "collateral_signer_invalid"
    )


def _bag(syn: Synthetic, signer: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Collateral:
    """The same collateral as PCS responses (``{"tcbInfo": …, "signature": …}``), certificates and CRLs."""
    doc = syn.doc
    info, qe = doc["tcb_info"], doc["qe_identity"]
    root = root_certificate(syn)
    ca = x509.load_pem_x509_certificates(doc["pck_crl_issuer_chain"].encode())[0]
    return Collateral(
        certificates=(signer, ca, root),
        crls=(x509.load_der_x509_crl(bytes.fromhex(doc["root_ca_crl"])),
              x509.load_der_x509_crl(bytes.fromhex(doc["pck_crl"]))),
        documents=({"tcbInfo": json.loads(info), "signature": raw_sign(key, info.encode()).hex()},
                   {"enclaveIdentity": json.loads(qe), "signature": raw_sign(key, qe.encode()).hex()}),
    )  # fmt: skip


def test_pcs_response_bag_path() -> None:
    syn = build()
    good = certificate("Intel SGX TCB Signing", OTHER_SIGNER, "Fake SGX Root CA", KEYS["root"], 42, False,
                 key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    assert _verify(syn, _bag(syn, good, OTHER_SIGNER))["tcb_status"] == "UpToDate"
    as_ca = certificate("Intel SGX TCB Signing", OTHER_SIGNER, "Fake SGX Root CA", KEYS["root"], 43, True,
                  key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    _refused(syn, "collateral_signer_invalid", _bag(syn, as_ca, OTHER_SIGNER))
    no_sign = certificate("Intel SGX TCB Signing", OTHER_SIGNER, "Fake SGX Root CA", KEYS["root"], 44, False,
                    key_usage=_NO_SIGN)  # fmt: skip
    _refused(syn, "collateral_signer_invalid", _bag(syn, no_sign, OTHER_SIGNER))


def test_bag_picks_the_certificate_that_can_sign() -> None:
    """In a bag of certificates, one whose CN merely contains "TCB Signing", or that another
    certificate issued, is not taken for the signer (it could only fail the rule above)."""
    syn = build()
    good = certificate("Intel SGX TCB Signing", OTHER_SIGNER, "Fake SGX Root CA", KEYS["root"], 45, False,
                 key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    decoy = certificate("Intel SGX TCB Signing Helper", KEYS["other"], "Fake SGX Root CA", KEYS["root"], 46, False,
                  key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    bag = _bag(syn, good, OTHER_SIGNER)
    bag = replace(bag, certificates=(decoy, *bag.certificates))
    assert _verify(syn, bag)["tcb_status"] == "UpToDate"


def test_real_collateral_still_verifies() -> None:
    """Intel's own TCB Signing certificate meets every rule (the real TDX and SGX vectors)."""
    from tests.fakes.vectors import sample

    from veritee.evidence import verify

    for fmt in ("tdx", "sgx"):
        s = sample(fmt)
        dcap.clear_caches()
        assert verify(s.data, collateral=s.collateral, at=s.at).claims["tcb_status"] is not None
