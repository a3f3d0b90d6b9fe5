"""TPM enrollment, the service's side (as Keylime and GCE do it): pure checks and certificates.

A TPM proves that an attestation key (AK) lives beside an endorsement key (EK) the manufacturer
certified, and the domain CA then certifies the AK, so later quotes verify offline
(``veritee verify EVIDENCE --format tpm --collateral domain_ca.pem``):

1. :func:`parse_request`: the EK certificate (and the chain the TPM keeps in NV), the EK's and the
   AK's TPMT_PUBLIC;
2. :func:`check_endorsement`: the EK certificate chains to an EK root the policy lists (SHA-256 of
   the root certificate's DER) and certifies exactly the EK public key given; the EK is a
   restricted decryption key with an AES-CFB symmetric definition (a TCG EK template);
3. :func:`check_attestation_key`: the AK is a restricted signing key created inside the TPM
   (fixedTPM, fixedParent, sensitiveDataOrigin; no decrypt): TPM2_Import and TPM2_LoadExternal
   refuse fixedTPM, so no software key can have these attributes and be loaded beside the EK;
4. the service runs :func:`veritee.tpm2.make_credential` to the EK with the AK's Name; only that
   TPM, holding the EK's private key and that AK, gets the secret back (TPM2_ActivateCredential);
5. :func:`issue_ak_certificate`: the domain CA certifies the AK with the TCG AIK extended key usage
   (``tcg-kp-AIKCertificate``, 2.23.133.8.3), which :mod:`veritee.evidence.tpm` requires of every
   AK certificate under a root other than the pinned cloud roots: an admission certificate (a
   software key) is never an AK certificate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from veritee import certs, tpm2
from veritee.errors import MalformedError, VerificationError
from veritee.evidence.nitro import verify_chain
from veritee.evidence.tpm import AIK_CERTIFICATE_EKU as AIK_CERTIFICATE_EKU

__all__ = [
    "AIK_CERTIFICATE_EKU",
    "AK_REQUIRED_ATTRIBUTES",
    "EnrollmentRequest",
    "check_attestation_key",
    "check_endorsement",
    "issue_ak_certificate",
    "parse_request",
]

AK_REQUIRED_ATTRIBUTES = (tpm2.ATTR_FIXED_TPM, tpm2.ATTR_FIXED_PARENT, tpm2.ATTR_SENSITIVE_DATA_ORIGIN,
                          tpm2.ATTR_RESTRICTED, tpm2.ATTR_SIGN)  # fmt: skip
MAX_CHAIN = 5
MAX_CERT_BYTES = 8192
_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


@dataclass(frozen=True)
class EnrollmentRequest:
    ek_certificate: x509.Certificate
    ek_certificate_sha256: str
    ek_chain: tuple[x509.Certificate, ...]
    ek_public: tpm2.TpmPublic
    ak_public: tpm2.TpmPublic


def _cert(der: bytes, field: str) -> x509.Certificate:
    if not isinstance(der, bytes) or not 0 < len(der) <= MAX_CERT_BYTES:
        raise MalformedError(f"a certificate is 1..{MAX_CERT_BYTES} bytes", field=field)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EK certificates often bend DER (long names, serials)
        return certs.load_der_certificate(der, field)


def parse_request(
    ek_certificate: bytes, ek_chain: Sequence[bytes], ek_public: bytes, ak_public: bytes
) -> EnrollmentRequest:
    """Parse an enrollment request; :class:`MalformedError` names the bad field."""
    if len(ek_chain) > MAX_CHAIN:
        raise MalformedError(f"at most {MAX_CHAIN} EK chain certificates", field="ek_chain")
    return EnrollmentRequest(
        ek_certificate=_cert(ek_certificate, "ek_certificate"),
        ek_certificate_sha256=hashlib.sha256(ek_certificate).hexdigest(),
        ek_chain=tuple(_cert(d, f"ek_chain[{i}]") for i, d in enumerate(ek_chain)),
        ek_public=tpm2.parse_public(ek_public, "ek_public"),
        ak_public=tpm2.parse_public(ak_public, "ak_public"),
    )


def _signed(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer`` is named as and signed ``cert`` (names alone are not unique across vendors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cert.issuer != issuer.subject:
            return False
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return False
    return True


def check_endorsement(
    req: EnrollmentRequest,
    *,
    roots: frozenset[str],
    pool: Sequence[x509.Certificate],
    at: dt.datetime,
) -> str:
    """The EK certificate chains to one of ``roots`` (SHA-256 of DER) through the request's chain
    and ``pool`` (the domain's collateral), is valid at ``at``, and certifies ``ek_public``; the
    EK is a restricted AES-CFB storage key. Returns the root's fingerprint."""
    if not roots:
        raise VerificationError("the policy lists no EK roots: TPM enrollment is off",
                                code="enrollment_disabled")  # fmt: skip
    ek = req.ek_public
    if ek.spki_der() != req.ek_certificate.public_key().public_bytes(_DER, _SPKI):
        raise VerificationError("the EK certificate certifies another key than the EK given",
                                code="ek_mismatch")  # fmt: skip
    if not ek.has(tpm2.ATTR_RESTRICTED, tpm2.ATTR_DECRYPT, tpm2.ATTR_FIXED_TPM) or ek.has(
        tpm2.ATTR_SIGN
    ):
        raise VerificationError(
            "the EK is not a restricted decryption key", code="ek_attributes_invalid"
        )
    if ek.symmetric is None or ek.symmetric[0] != tpm2.ALG_AES or ek.symmetric[2] != tpm2.ALG_CFB:
        raise VerificationError(
            "the EK has no AES-CFB symmetric definition", code="ek_attributes_invalid"
        )
    candidates = [*req.ek_chain, *pool]
    chain = [("ek_certificate", req.ek_certificate)]
    while True:
        top = chain[-1][1]
        fp = hashlib.sha256(top.public_bytes(_DER)).hexdigest()
        if fp in roots:
            break
        issuer = next((c for c in candidates if c != top and _signed(top, c)), None)
        if issuer is None or len(chain) > MAX_CHAIN:
            raise VerificationError(
                "the EK certificate does not chain to an EK root of the policy "
                f"(no trusted issuer for {chain[-1][0]})",
                code="root_not_pinned",
            )
        chain.append((f"issuer of {chain[-1][0]}", issuer))
    try:
        verify_chain(list(reversed(chain)), at)
    except VerificationError as e:
        raise VerificationError(
            f"EK certificate chain: {e.message}", code="chain_invalid"
        ) from None
    return fp


def check_attestation_key(ak: tpm2.TpmPublic) -> None:
    """The AK is a TPM-resident restricted signing key of a supported kind."""
    if not ak.has(*AK_REQUIRED_ATTRIBUTES) or ak.has(tpm2.ATTR_DECRYPT):
        raise VerificationError(
            "the AK must be a restricted signing key created in the TPM (fixedTPM, fixedParent, "
            "sensitiveDataOrigin, restricted, sign; no decrypt)",
            code="ak_attributes_invalid",
        )
    key = ak.key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise VerificationError("an RSA AK has at least 2048 bits", code="ak_attributes_invalid")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
        raise VerificationError("an ECC AK is at least P-256", code="ak_attributes_invalid")


def issue_ak_certificate(
    *,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_certificate: x509.Certificate,
    ak: tpm2.TpmPublic,
    ek_certificate_sha256: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    """An AK certificate from the domain CA: subject serialNumber is the EK certificate's SHA-256,
    key usage digitalSignature, extended key usage tcg-kp-AIKCertificate only."""
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veritee"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"TPM attestation key {ak.name.hex()[4:20]}"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, ek_certificate_sha256),
    ])  # fmt: skip
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_certificate.subject)
        .public_key(ak.key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=30))
        .not_valid_after(min(now + lifetime, ca_certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            certs.SIGNING_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([AIK_CERTIFICATE_EKU]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
