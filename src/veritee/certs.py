"""X.509 certificates and CRLs from untrusted bytes: the one place that parses them.

Certificates and CRLs reach veritee inside evidence (a Nitro ``cabundle``, a TPM ``ak_cert``, an
NVIDIA chain, an Azure document's VCEK, a DCAP quote's PCK chain) and in collateral files.
``cryptography`` parses a certificate's outer structure when it loads it, and the rest lazily:
the extensions on first access (``DuplicateExtension``, ``ValueError`` for a bad encoding), the
public key on ``public_key()`` (``ValueError``), the signature algorithm on
``signature_hash_algorithm`` (``UnsupportedAlgorithm``); the version at load
(``InvalidVersion``, not a ``ValueError``). So the loaders here touch every lazy part once, and
turn any error into :class:`~veritee.errors.MalformedError` naming the field: a certificate
that comes out of them can be used without further exceptions than the checks themselves
(signatures, validity). Nothing else in veritee calls ``x509.load_*`` on untrusted bytes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning

from veritee.errors import MalformedError

__all__ = [
    "PARSE_ERRORS",
    "checked_certificate",
    "checked_crl",
    "load_der_certificate",
    "load_der_crl",
    "load_pem_certificate",
    "load_pem_certificates",
    "load_pem_crl",
]

#: Everything ``cryptography`` raises for malformed X.509 input, at load or on a lazy access.
PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def checked_certificate(cert: x509.Certificate, field: str) -> x509.Certificate:
    """``cert`` after touching every lazily parsed part, or MalformedError naming ``field``."""
    try:
        with warnings.catch_warnings():
            # Google's TPM CA names have attributes longer than X.520's 64 characters.
            warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
        cert.extensions  # noqa: B018 - parses every extension value
        cert.public_key()
        cert.signature_hash_algorithm  # noqa: B018
        cert.signature_algorithm_parameters  # noqa: B018
        cert.not_valid_before_utc  # noqa: B018
        cert.not_valid_after_utc  # noqa: B018
    except PARSE_ERRORS as e:
        raise MalformedError(f"certificate is malformed ({type(e).__name__})", field=field) from None
    return cert


def checked_crl(crl: x509.CertificateRevocationList, field: str) -> x509.CertificateRevocationList:
    """``crl`` after touching every lazily parsed part (its entries too), or MalformedError."""
    try:
        crl.extensions  # noqa: B018
        crl.signature_hash_algorithm  # noqa: B018
        crl.issuer.rfc4514_string()
        crl.last_update_utc  # noqa: B018
        crl.next_update_utc  # noqa: B018
        for entry in crl:
            entry.extensions  # noqa: B018
            entry.revocation_date_utc  # noqa: B018
    except PARSE_ERRORS as e:
        raise MalformedError(f"CRL is malformed ({type(e).__name__})", field=field) from None
    return crl


def load_der_certificate(data: bytes, field: str) -> x509.Certificate:
    """One DER certificate, every part checked; MalformedError naming ``field`` otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(bytes(data))
    except PARSE_ERRORS as e:
        raise MalformedError(f"not a DER X.509 certificate ({type(e).__name__})", field=field) from None
    return checked_certificate(cert, field)


def load_pem_certificate(data: bytes, field: str) -> x509.Certificate:
    """The first PEM certificate in ``data``, every part checked; MalformedError otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_pem_x509_certificate(bytes(data))
    except PARSE_ERRORS as e:
        raise MalformedError(f"not a PEM X.509 certificate ({type(e).__name__})", field=field) from None
    return checked_certificate(cert, field)


def load_pem_certificates(data: bytes, field: str) -> list[x509.Certificate]:
    """Every PEM certificate in ``data`` (at least one), each checked; else MalformedError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certs: Sequence[x509.Certificate] = x509.load_pem_x509_certificates(bytes(data))
    except PARSE_ERRORS as e:
        raise MalformedError(f"not PEM X.509 certificates ({type(e).__name__})", field=field) from None
    return [checked_certificate(c, f"{field}[{i}]") for i, c in enumerate(certs)]


def load_der_crl(data: bytes, field: str) -> x509.CertificateRevocationList:
    """One DER CRL, every entry checked; MalformedError naming ``field`` otherwise."""
    try:
        crl = x509.load_der_x509_crl(bytes(data))
    except PARSE_ERRORS as e:
        raise MalformedError(f"not a DER X.509 CRL ({type(e).__name__})", field=field) from None
    return checked_crl(crl, field)


def load_pem_crl(data: bytes, field: str) -> x509.CertificateRevocationList:
    """One PEM CRL, every entry checked; MalformedError naming ``field`` otherwise."""
    try:
        crl = x509.load_pem_x509_crl(bytes(data))
    except PARSE_ERRORS as e:
        raise MalformedError(f"not a PEM X.509 CRL ({type(e).__name__})", field=field) from None
    return checked_crl(crl, field)
