"""A CRL veritee reads as complete must be complete (RFC 5280 5.2, 6.3.3): a delta CRL, a CRL an
issuing distribution point scopes to some certificates or reasons, and a CRL with any other
critical extension veritee does not process are refused (``crl_invalid``), on every path that
loads a CRL (DER, PEM, an object from ``cryptography``) and in a DCAP verification whose PCK CRL is
one of them. Before, each was read as the full list: a delta CRL without the leaf's serial
passed a revoked PCK certificate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.fakes.intel import AT, KEYS, Spec, build

from veritee import certs
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import tdx

_KEY = ec.generate_private_key(ec.SECP256R1())
_ISSUER = "Fake SGX PCK Platform CA"


def _crl(
    *exts: tuple[x509.ExtensionType, bool],
    key: ec.EllipticCurvePrivateKey = _KEY,
    revoked: tuple[int, ...] = (),
    issuer: x509.Name | None = None,
) -> bytes:
    this = AT - timedelta(days=1)
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer or x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, _ISSUER)]))
        .last_update(this)
        .next_update(this + timedelta(days=30))
    )
    for value, critical in exts:
        b = b.add_extension(value, critical)
    for serial in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this).build()
        )
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _idp(**scope: object) -> x509.IssuingDistributionPoint:
    fields: dict[str, object] = {
        "full_name": None,
        "relative_name": None,
        "only_contains_user_certs": False,
        "only_contains_ca_certs": False,
        "only_some_reasons": None,
        "indirect_crl": False,
        "only_contains_attribute_certs": False,
    }
    return x509.IssuingDistributionPoint(**{**fields, **scope})  # type: ignore[arg-type]


_NUMBER = (x509.CRLNumber(7), False)
_UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")

REFUSED = {
    "delta, critical": (_NUMBER, (x509.DeltaCRLIndicator(6), True)),
    "delta, not critical": (_NUMBER, (x509.DeltaCRLIndicator(6), False)),
    "idp: only CA certificates": ((_idp(only_contains_ca_certs=True), True),),
    "idp: only user certificates": ((_idp(only_contains_user_certs=True), True),),
    "idp: only attribute certificates": ((_idp(only_contains_attribute_certs=True), True),),
    "idp: some reasons": (
        (_idp(only_some_reasons=frozenset({x509.ReasonFlags.key_compromise})), True),
    ),
    "idp: some reasons, not critical": (
        (_idp(only_some_reasons=frozenset({x509.ReasonFlags.key_compromise})), False),
    ),
    "idp: indirect": ((_idp(indirect_crl=True), True),),
    "idp: a distribution point, critical": (
        (_idp(full_name=[x509.UniformResourceIdentifier("https://pcs.example/crl")]), True),
    ),
    "unknown, critical": (_NUMBER, (_UNKNOWN, True)),
    # (A CRL of one distribution point lists only the certificates naming it: veritee does not
    # match distribution points, so it reads no such CRL as the issuer's whole list.)
    "idp: a distribution point, not critical": (
        (_idp(full_name=[x509.UniformResourceIdentifier("https://pcs.example/crl")]), False),
    ),
}

ACCEPTED = {
    "no extensions": (),
    "CRL number and authority key identifier (Intel's)": (
        _NUMBER,
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(_KEY.public_key()), False),
    ),
    "CRL number marked critical": ((x509.CRLNumber(7), True),),
    "unknown, not critical": (_NUMBER, (_UNKNOWN, False)),
    "freshest CRL pointer": (
        _NUMBER,
        (
            x509.FreshestCRL(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("https://pcs.example/delta")],
                        None,
                        None,
                        None,
                    )
                ]
            ),
            False,
        ),
    ),
}


def _loaders(der: bytes) -> list[object]:
    pem = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
    return [
        lambda: certs.read_der_crl(der, "crl"),
        lambda: certs.load_der_crl(der, "crl"),
        lambda: certs.load_pem_crl(pem, "crl"),
        lambda: certs.checked_crl(x509.load_der_x509_crl(der), "crl"),
    ]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_partial_crl_is_refused_on_every_loader(name: str) -> None:
    der = _crl(*REFUSED[name])
    for load in _loaders(der):
        with pytest.raises(MalformedError) as e:
            load()  # type: ignore[operator]
        assert e.value.code == "crl_invalid"
        assert "cannot decide revocation" in str(e.value)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_a_complete_crl_still_loads(name: str) -> None:
    der = _crl(*ACCEPTED[name], revoked=(5, 9))
    for load in _loaders(der):
        crl = load()  # type: ignore[operator]
        assert set(certs.revoked_serials(crl)) == {5, 9}


def test_a_delta_crl_does_not_clear_a_revoked_pck_certificate() -> None:
    """The attack: the PCK CA's full CRL revokes the leaf; a delta CRL signed by the same CA (no
    entries) stands in as the PCK CRL. veritee read it as the full list and accepted the leaf."""
    syn = build(Spec(pck_revoked=(3,)))  # the PCK certificate's serial is 3
    ca = x509.load_der_x509_crl(bytes.fromhex(syn.doc["pck_crl"])).issuer
    with pytest.raises(VerificationError) as e:
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
    assert e.value.code == "certificate_revoked"
    for exts in (REFUSED["delta, critical"], REFUSED["idp: only CA certificates"]):
        delta = syn.with_doc(pck_crl=_crl(*exts, key=KEYS["pck_ca"], issuer=ca).hex())
        with pytest.raises(MalformedError) as e2:
            tdx.verify(delta.quote, collateral=delta.collateral, at=AT, trust=delta.trust)
        assert e2.value.code == "crl_invalid"
        assert "cannot decide revocation" in str(e2.value)
    # The same CRL without the delta indicator is complete, and clears nothing it does not list.
    full = syn.with_doc(pck_crl=_crl(_NUMBER, key=KEYS["pck_ca"], revoked=(3,), issuer=ca).hex())
    with pytest.raises(VerificationError) as e3:
        tdx.verify(full.quote, collateral=full.collateral, at=AT, trust=full.trust)
    assert e3.value.code == "certificate_revoked"
