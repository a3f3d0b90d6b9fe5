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

Forcing the lazy parts costs several times the load itself. CA certificates (an Intel PCK CA,
an AMD ASK, the roots) recur in every chain and collateral set of their platforms, so those that
passed are kept, keyed by their exact DER (bounded LRU, :func:`forget_checked` empties it): the
same bytes parse the same way, and a hit returns the object already checked. Leaf certificates
are per platform and are checked on every load (their chains are cached by the verifiers).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from veritee._lru import Lru
from veritee.errors import MalformedError

__all__ = [
    "PARSE_ERRORS",
    "checked_certificate",
    "checked_crl",
    "forget_checked",
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
            # Building the Name objects decodes and validates every attribute (formatting
            # them, as rfc4514_string() does, cannot fail after that).
            cert.subject  # noqa: B018
            cert.issuer  # noqa: B018
        cert.extensions  # noqa: B018 - parses every extension value
        cert.public_key()
        cert.signature_hash_algorithm  # noqa: B018
        cert.signature_algorithm_parameters  # noqa: B018
        cert.not_valid_before_utc  # noqa: B018
        cert.not_valid_after_utc  # noqa: B018
    except PARSE_ERRORS as e:
        raise MalformedError(
            f"certificate is malformed ({type(e).__name__})", field=field
        ) from None
    return cert


#: CA certificates that passed :func:`checked_certificate`, by their exact DER.
_CHECKED_CAS: Lru[bytes, x509.Certificate] = Lru(256)


def forget_checked() -> None:
    """Forget the checked CA certificates (collateral reload, tests, benchmarks)."""
    _CHECKED_CAS.clear()


def _checked_known(cert: x509.Certificate, field: str) -> x509.Certificate:
    """:func:`checked_certificate`, or the CA certificate of the same DER that passed it before."""
    der = cert.public_bytes(serialization.Encoding.DER)
    known = _CHECKED_CAS.get(der)
    if known is not None:
        return known
    checked_certificate(cert, field)
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        _CHECKED_CAS.put(der, cert)
    return cert


def checked_crl(crl: x509.CertificateRevocationList, field: str) -> x509.CertificateRevocationList:
    """``crl`` after touching every lazily parsed part (its entries too), or MalformedError."""
    try:
        crl.extensions  # noqa: B018
        crl.signature_hash_algorithm  # noqa: B018
        crl.issuer  # noqa: B018 - builds (so decodes and validates) every name attribute
        crl.last_update_utc  # noqa: B018
        crl.next_update_utc  # noqa: B018
        for entry in crl:
            entry.extensions  # noqa: B018
            entry.revocation_date_utc  # noqa: B018
    except PARSE_ERRORS as e:
        raise MalformedError(f"CRL is malformed ({type(e).__name__})", field=field) from None
    return crl


#: The key usage of the signing-only leaves the domain issues (the key broker's release-signing
#: certificate, TPM AK certificates): digital signatures, nothing else.
SIGNING_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def load_der_certificate(data: bytes, field: str) -> x509.Certificate:
    """One DER certificate, every part checked; MalformedError naming ``field`` otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(bytes(data))
    except PARSE_ERRORS as e:
        raise MalformedError(
            f"not a DER X.509 certificate ({type(e).__name__})", field=field
        ) from None
    return _checked_known(cert, field)


def load_pem_certificate(data: bytes, field: str) -> x509.Certificate:
    """The first PEM certificate in ``data``, every part checked; MalformedError otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_pem_x509_certificate(bytes(data))
    except PARSE_ERRORS as e:
        raise MalformedError(
            f"not a PEM X.509 certificate ({type(e).__name__})", field=field
        ) from None
    return _checked_known(cert, field)


def load_pem_certificates(data: bytes, field: str) -> list[x509.Certificate]:
    """Every PEM certificate in ``data`` (at least one), each checked; else MalformedError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certs: Sequence[x509.Certificate] = x509.load_pem_x509_certificates(bytes(data))
    except PARSE_ERRORS as e:
        raise MalformedError(
            f"not PEM X.509 certificates ({type(e).__name__})", field=field
        ) from None
    return [_checked_known(c, f"{field}[{i}]") for i, c in enumerate(certs)]


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
