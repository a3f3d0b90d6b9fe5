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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.unit.evidence.test_dcap_synthetic import (
    _KEYS,
    AT,
    SIGNING_KEY_USAGE,
    Spec,
    Synthetic,
    _cert,
    build,
    raw_sign,
)

from veritee.collateral import Collateral
from veritee.errors import VerificationError
from veritee.evidence import dcap, tdx

#: A key that is not Intel's TCB signing key, for certificates the root issues in these tests.
_SIGNER = ec.derive_private_key(7777, ec.SECP256R1())
_NO_SIGN = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=False, crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip


def _pem(*certs: x509.Certificate) -> str:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs).decode()


def _root(syn: Synthetic) -> x509.Certificate:
    return x509.load_pem_x509_certificates(syn.doc["pck_crl_issuer_chain"].encode())[-1]


def _pck_chain(syn: Synthetic) -> list[x509.Certificate]:
    pem = dcap.parse_quote(syn.quote).signature_data.pck_chain_pem
    return x509.load_pem_x509_certificates(pem.rstrip(b"\0"))


def _resign(syn: Synthetic, key: ec.EllipticCurvePrivateKey, chain: str, tcb_info: str | None = None) -> Synthetic:
    """TCB info (optionally replaced) and QE identity signed by ``key``, both with ``chain``."""
    info = tcb_info if tcb_info is not None else syn.doc["tcb_info"]
    return syn.with_doc(
        tcb_info=info,
        tcb_info_signature=raw_sign(key, info.encode()).hex(),
        tcb_info_issuer_chain=chain,
        qe_identity_signature=raw_sign(key, syn.doc["qe_identity"].encode()).hex(),
        qe_identity_issuer_chain=chain,
    )


def _verify(syn: Synthetic, collateral: Collateral | None = None) -> dict[str, Any]:
    dcap.clear_caches()
    return tdx.verify(syn.quote, collateral=collateral or syn.collateral, at=AT, trust=syn.trust).claims


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
    forged = _resign(syn, _KEYS["pck"], _pem(*_pck_chain(syn)), json.dumps(info, separators=(",", ":")))
    _refused(forged, "collateral_signer_invalid")
    # Even with only the PCK certificate and the root (the chain does not link), it is refused.
    leaf = _pck_chain(syn)[0]
    _refused(_resign(syn, _KEYS["pck"], _pem(leaf, _root(syn))), "chain_invalid")


def _under_root(syn: Synthetic, cn: str, *, ca: bool = False, key_usage: x509.KeyUsage | None = SIGNING_KEY_USAGE,
                serial: int = 40) -> Synthetic:  # fmt: skip
    root = _root(syn)
    cert = _cert(cn, _SIGNER, "Fake SGX Root CA", _KEYS["root"], serial, ca, key_usage=key_usage)
    return _resign(syn, _SIGNER, _pem(cert, root))


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
def test_only_the_tcb_signing_certificate_signs(cn: str, ca: bool, key_usage: x509.KeyUsage | None) -> None:
    _refused(_under_root(build(), cn, ca=ca, key_usage=key_usage), "collateral_signer_invalid")


def test_a_proper_tcb_signing_certificate_is_accepted_unless_revoked() -> None:
    # Control: the same construction with every property right verifies.
    assert _verify(_under_root(build(), "Intel SGX TCB Signing"))["tcb_status"] == "UpToDate"
    _refused(_under_root(build(Spec(root_revoked=(40,))), "Intel SGX TCB Signing"), "certificate_revoked")


def test_chain_of_three_is_refused() -> None:
    """[TCB Signing, PCK CA, root]: the signer must be issued directly by the root."""
    syn = build()
    root, ca = _root(syn), _pck_chain(syn)[1]
    cert = _cert("Intel SGX TCB Signing", _SIGNER, "Fake SGX PCK Platform CA", _KEYS["pck_ca"], 41, False,
                 key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    _refused(_resign(syn, _SIGNER, _pem(cert, ca, root)), "collateral_signer_invalid")


def _bag(syn: Synthetic, signer: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Collateral:
    """The same collateral as PCS responses (``{"tcbInfo": …, "signature": …}``), certificates and CRLs."""
    doc = syn.doc
    info, qe = doc["tcb_info"], doc["qe_identity"]
    root = _root(syn)
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
    good = _cert("Intel SGX TCB Signing", _SIGNER, "Fake SGX Root CA", _KEYS["root"], 42, False,
                 key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    assert _verify(syn, _bag(syn, good, _SIGNER))["tcb_status"] == "UpToDate"
    as_ca = _cert("Intel SGX TCB Signing", _SIGNER, "Fake SGX Root CA", _KEYS["root"], 43, True,
                  key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    _refused(syn, "collateral_signer_invalid", _bag(syn, as_ca, _SIGNER))
    no_sign = _cert("Intel SGX TCB Signing", _SIGNER, "Fake SGX Root CA", _KEYS["root"], 44, False,
                    key_usage=_NO_SIGN)  # fmt: skip
    _refused(syn, "collateral_signer_invalid", _bag(syn, no_sign, _SIGNER))


def test_bag_picks_the_certificate_that_can_sign() -> None:
    """In a bag of certificates, one whose CN merely contains "TCB Signing", or that another
    certificate issued, is not taken for the signer (it could only fail the rule above)."""
    syn = build()
    good = _cert("Intel SGX TCB Signing", _SIGNER, "Fake SGX Root CA", _KEYS["root"], 45, False,
                 key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    decoy = _cert("Intel SGX TCB Signing Helper", _KEYS["other"], "Fake SGX Root CA", _KEYS["root"], 46, False,
                  key_usage=SIGNING_KEY_USAGE)  # fmt: skip
    bag = _bag(syn, good, _SIGNER)
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

