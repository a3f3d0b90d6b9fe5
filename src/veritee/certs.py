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

Issue 15 item 2 (a new DCAP platform, a cold verification): a PEM text of plain CERTIFICATE
blocks is decoded here (strict base64; anything else goes to ``cryptography``'s reader), so a
CA block seen before is not even decoded again and every certificate keeps the exact DER it
came from; names that built once are not built again (by their exact DER); certificate and CRL
signatures (ECDSA-SHA256 by a P-256 key) are checked over the signed bytes as loaded, with
``cryptography``'s own checks first (inner and outer algorithm equal, issuer name), instead of
re-encoding them on every check; a CRL's revoked serial numbers are read once, when it is
checked.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import warnings
from collections.abc import Container, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeGuard

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from veritee._lru import Lru
from veritee.errors import MalformedError

__all__ = [
    "PARSE_ERRORS",
    "AnyCrl",
    "IntelExtensions",
    "ReadCrl",
    "checked_certificate",
    "checked_crl",
    "crl_issuer_der",
    "crl_signature_valid",
    "der_of",
    "forget_anchors",
    "forget_checked",
    "forget_keys",
    "intel_extensions",
    "is_ca",
    "is_ec_public_key",
    "issuer_name",
    "keep_anchor",
    "load_der_certificate",
    "load_der_crl",
    "load_pem_certificate",
    "load_pem_certificates",
    "load_pem_crl",
    "plain_names",
    "public_key_der",
    "read_der_crl",
    "revoked",
    "revoked_serials",
    "same_name",
    "sha256_of",
    "subject_der",
    "subject_name",
    "subject_text",
    "validity",
    "verify_issued_by",
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
    return _check(cert, field, _loaded(cert))


def _check(cert: x509.Certificate, field: str, hit: _Loaded | None) -> x509.Certificate:
    """:func:`checked_certificate`, with ``cert``'s entry here (None: loaded elsewhere)."""
    try:
        raw = hit.parts() if hit is not None else None
        _check_names(cert, raw)
        ext = _read_extensions(raw.exts) if raw is not None and raw.exts else None
        if ext is None:
            cert.extensions  # noqa: B018 - parses every extension value
        elif hit is not None:  # (Intel's layout, read: what cryptography would parse the same)
            hit.ext, hit.ca = ext, ext.ca
        _key_of(cert, hit)
        if raw is None or raw.outer_alg != _ECDSA_SHA256_ALG:
            # (The exact DER of ecdsa-with-SHA256, as loaded, reads as ECDSA(SHA256()) in
            # cryptography: nothing to force.)
            cert.signature_hash_algorithm  # noqa: B018
            cert.signature_algorithm_parameters  # noqa: B018
        window = cert.not_valid_before_utc, cert.not_valid_after_utc
        if hit is not None:
            hit.validity = window  # (kept for the verifiers' windows)
    except PARSE_ERRORS as e:
        raise MalformedError(
            f"certificate is malformed ({type(e).__name__})", field=field
        ) from None
    return cert


#: Names (their exact DER) that decode: the Name built, or for a name of the plain layout
#: :func:`_name_decodes` reads, its attributes as read (:func:`_plain_attributes`; the Name is
#: built only when a caller needs the object). A name decodes the
#: same way in every certificate it appears in (Intel's PCK leaves share their subject, every
#: chain its issuers), so a name is checked, and built, once per exact DER.
_CHECKED_NAMES: Lru[bytes, x509.Name | tuple[tuple[bytes, str], ...]] = Lru(256)

#: The value tags :func:`_name_decodes` takes: UTF8String and PrintableString, whose content
#: ``cryptography`` decodes as UTF-8 (and nothing else) when it builds the attribute.
_TEXT_TAGS = (0x0C, 0x13)

#: cryptography's length limits of attribute values (UTF-8 bytes), by the OID's DER: commonName,
#: countryName, jurisdictionCountryName. A name outside them warns when built.
_LENGTH_LIMITS = {
    bytes.fromhex("0603550403"): (1, 64),
    bytes.fromhex("0603550406"): (2, 2),
    bytes.fromhex("060b2b0601040182373c020103"): (2, 2),
}


def _name_decodes(der: bytes) -> bool:
    """True when building the Name of ``der`` (a name ``cryptography`` parsed at load) cannot fail:
    every RDN holds exactly one attribute (no duplicate can arise), every value is a UTF8String
    or PrintableString of valid UTF-8. False for any other layout: the Name is then built, and
    ``cryptography`` decides, as before."""
    return _plain_attributes(der) is not None


def _plain_attributes(der: bytes) -> tuple[tuple[bytes, str], ...] | None:
    """(the OID's DER, the value) of every attribute of a name of the plain layout
    (:func:`_name_decodes`), in order; None for any other name. Two such names are equal as
    ``x509.Name`` objects exactly when these are (a Name compares OIDs and decoded values, one
    attribute per RDN here), whatever string tags they use.

    A name whose elements all have short lengths (every name of Intel's and most others) is read
    here with the four headers of each attribute inline; any other by :func:`_plain_attributes_tlv`
    (a test holds them equal on every one-byte change of real names)."""
    n = len(der)
    if n < 2 or der[0] != 0x30 or der[1] & 0x80 or der[1] != n - 2:  # (a short outer length)
        return _plain_attributes_tlv(der)
    out: list[tuple[bytes, str]] = []
    pos = 2
    try:
        while pos < n:
            # SET { SEQUENCE { OID, value } }, four short lengths: the SET fills up to ``send``,
            # the SEQUENCE the SET, the value the SEQUENCE after the OID.
            sl, al, ol = der[pos + 1], der[pos + 3], der[pos + 5]
            if (sl | al | ol) & 0x80:
                return _plain_attributes_tlv(der)
            send, oend = pos + 2 + sl, pos + 6 + ol
            vtag, vl = der[oend], der[oend + 1]
            if vl & 0x80:
                return _plain_attributes_tlv(der)
            vpos = oend + 2
            if (der[pos] != 0x31 or der[pos + 2] != 0x30 or der[pos + 4] != 0x06 or send > n
                    or al != sl - 2 or vpos + vl != send or vtag not in _TEXT_TAGS):  # fmt: skip
                return None
            oid = der[pos + 4 : oend]
            limits = _LENGTH_LIMITS.get(oid)
            if limits is not None and not limits[0] <= vl <= limits[1]:
                return None  # built, it warns (as X.520 limits): built where it is used, as before
            out.append((oid, der[vpos:send].decode("utf-8")))
            pos = send
    except (IndexError, ValueError):  # (UnicodeDecodeError too)
        return None
    return tuple(out)


def _plain_attributes_tlv(der: bytes) -> tuple[tuple[bytes, str], ...] | None:
    """:func:`_plain_attributes`, each element read by :func:`_tlv` (any length form)."""
    out: list[tuple[bytes, str]] = []
    try:
        tag, _, pos, end = _tlv(der, 0, len(der))
        if tag != 0x30 or end != len(der):
            return None
        while pos < end:
            stag, _, spos, send = _tlv(der, pos, end)
            atag, _, apos, aend = _tlv(der, spos, send)
            if stag != 0x31 or atag != 0x30 or aend != send:
                return None
            otag, _, _, oend = _tlv(der, apos, aend)
            vtag, _, vpos, vend = _tlv(der, oend, aend)
            if otag != 0x06 or vtag not in _TEXT_TAGS or vend != aend:
                return None
            value = der[vpos:vend].decode("utf-8")  # strict: what cryptography's from_utf8 accepts
            oid = der[apos:oend]
            limits = _LENGTH_LIMITS.get(oid)
            if limits is not None and not limits[0] <= vend - vpos <= limits[1]:
                return None  # built, it warns (as X.520 limits): built where it is used, as before
            out.append((oid, value))
            pos = send
    except ValueError:  # (UnicodeDecodeError too)
        return None
    return tuple(out)


#: commonName's OID, DER.
_CN_OID = bytes.fromhex("0603550403")


def plain_names(cert: x509.Certificate) -> tuple[list[str], bool] | None:
    """For a certificate loaded here whose subject and issuer are of the plain layout: the
    subject's commonName values (``[a.value for a in subject.get_attributes_for_oid(CN)]``) and
    whether ``subject == issuer`` as Names, read from the DER without building either; else None
    (build the Names)."""
    raw = _raw_parts(cert)
    if raw is None:
        return None
    subject = _attributes(raw.subject)
    issuer = subject if raw.issuer == raw.subject else _attributes(raw.issuer)
    if subject is None or issuer is None:
        return None
    return [v for o, v in subject if o == _CN_OID], subject == issuer


def _attributes(der: bytes) -> tuple[tuple[bytes, str], ...] | None:
    """:func:`_plain_attributes` of ``der``, as kept when the name was checked (read once)."""
    known = _CHECKED_NAMES.get(der)
    return known if type(known) is tuple else _plain_attributes(der)


def _check_names(cert: x509.Certificate, raw: _Raw | None) -> None:
    """Check (decode and validate) the subject and issuer, unless the same DER was before: a name
    of the plain layout by reading it (:func:`_name_decodes`), any other by building it."""
    subject = raw is None or _CHECKED_NAMES.get(raw.subject) is None
    # A self-issued certificate's issuer is its subject, byte for byte: checked once.
    issuer = raw is None or (raw.issuer != raw.subject and _CHECKED_NAMES.get(raw.issuer) is None)
    if raw is not None:
        if subject and (attrs := _plain_attributes(raw.subject)) is not None:
            _CHECKED_NAMES.put(raw.subject, attrs)
            subject = False
        if issuer and (attrs := _plain_attributes(raw.issuer)) is not None:
            _CHECKED_NAMES.put(raw.issuer, attrs)
            issuer = False
    if not (subject or issuer):
        return
    with warnings.catch_warnings():
        # Google's TPM CA names have attributes longer than X.520's 64 characters.
        warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
        # Building the Name objects decodes and validates every attribute (formatting
        # them, as rfc4514_string() does, cannot fail after that).
        if subject:
            cert.subject  # noqa: B018
        if issuer:
            cert.issuer  # noqa: B018
    if raw is not None:
        if subject:
            _CHECKED_NAMES.put(raw.subject, cert.subject)
        if issuer:
            _CHECKED_NAMES.put(raw.issuer, cert.issuer)


def subject_name(cert: x509.Certificate) -> x509.Name:
    """``cert.subject``: the Name already built from the same DER when one was (no new build)."""
    raw = _raw_parts(cert)
    return _name_of(raw.subject if raw is not None else None, cert, "subject")


def issuer_name(cert: x509.Certificate) -> x509.Name:
    """``cert.issuer``: the Name already built from the same DER when one was (no new build)."""
    raw = _raw_parts(cert)
    return _name_of(raw.issuer if raw is not None else None, cert, "issuer")


def _name_of(der: bytes | None, cert: x509.Certificate, which: str) -> x509.Name:
    known = _CHECKED_NAMES.get(der) if der is not None else None
    if isinstance(known, x509.Name):
        return known
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
        name = cert.subject if which == "subject" else cert.issuer
    if der is not None and known is not None:  # checked by reading it: keep the object built
        _CHECKED_NAMES.put(der, name)
    return name


# --- the exact bytes of a certificate's signed parts --------------------------------------------
#
# ``cryptography`` re-encodes a certificate (``public_bytes``, ``tbs_certificate_bytes``, and inside
# ``verify_directly_issued_by``) and a CRL's signed part (``tbs_certlist_bytes``, inside
# ``is_signature_valid``) on every call: for a CRL of 44 entries that costs almost a signature
# check. Certificates loaded here keep the DER they came from; a minimal walk finds the signed
# part, the names and the signature in it. Anything unexpected: the walk gives up (None) and
# ``cryptography`` does the work as before.


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
    """(tag, start of element, start of value, end) of the DER element at ``pos`` (ValueError)."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, ln = data[pos], data[pos + 1]
    vs = pos + 2
    if ln & 0x80:
        n = ln & 0x7F
        if n == 0 or n > 3 or vs + n > end:
            raise ValueError("bad length")
        ln = int.from_bytes(data[vs : vs + n], "big")
        vs += n
    if vs + ln > end:
        raise ValueError("overrun")
    return tag, pos, vs, vs + ln


class _Raw(NamedTuple):
    """Slices of one certificate's or CRL's DER."""

    der: bytes
    tbs: bytes  #: the signed part, as signed
    inner_alg: bytes  #: the signature AlgorithmIdentifier inside the signed part
    issuer: bytes
    subject: bytes  #: b"" for a CRL
    outer_alg: bytes
    signature: bytes  #: the signature BIT STRING's content after the unused-bits octet
    serial: bytes = b""  #: a certificate's serialNumber INTEGER content (b"" for a CRL)
    spki: bytes = b""  #: a certificate's subjectPublicKeyInfo element (b"" for a CRL)
    #: a certificate's extensions' SEQUENCE content, when ``[3] extensions`` ends its signed part
    exts: bytes = b""


def _walk(der: bytes, crl: bool) -> _Raw | None:
    try:
        tag, _, s, e = _tlv(der, 0, len(der))
        if tag != 0x30 or e != len(der):
            return None
        ttag, ts, tvs, te = _tlv(der, s, e)
        atag, as_, _, ae = _tlv(der, te, e)
        stag, _, svs, se = _tlv(der, ae, e)
        if ttag != 0x30 or atag != 0x30 or stag != 0x03 or se != e or svs >= se or der[svs]:
            return None
        # TBSCertificate: [0] version, serial, signature, issuer, validity, subject, ...
        # TBSCertList: version OPTIONAL, signature, issuer, thisUpdate, ...
        parts: list[tuple[int, int, int, int]] = []  # tag, start, end, start of the value
        pos = tvs
        while pos < te and len(parts) < 8:  # (_tlv inline: one turn per element)
            if pos + 2 > te:
                raise ValueError("truncated")
            vs, ln = pos + 2, der[pos + 1]
            if ln & 0x80:
                n = ln & 0x7F
                if n == 0 or n > 3 or vs + n > te:
                    raise ValueError("bad length")
                ln = int.from_bytes(der[vs : vs + n], "big")
                vs += n
            if vs + ln > te:
                raise ValueError("overrun")
            parts.append((der[pos], pos, vs + ln, vs))
            pos = vs + ln
        if crl:
            if parts and parts[0][0] == 0x02:
                parts = parts[1:]
            alg, issuer, subject = parts[0], parts[1], None
        else:
            if len(parts) < 6 or parts[0][0] != 0xA0 or parts[1][0] != 0x02:
                return None
            alg, issuer, subject = parts[2], parts[3], parts[5]
        if alg[0] != 0x30 or issuer[0] != 0x30 or (subject is not None and subject[0] != 0x30):
            return None
        return _Raw(
            der,  # (the fields in order, positional: der, tbs, inner_alg, issuer, subject,
            der[ts:te],  # outer_alg, signature, serial, spki, exts)
            der[alg[1] : alg[2]],
            der[issuer[1] : issuer[2]],
            der[subject[1] : subject[2]] if subject else b"",
            der[as_:ae],
            der[svs + 1 : se],
            b"" if crl else der[parts[1][3] : parts[1][2]],
            der[parts[6][1] : parts[6][2]] if not crl and len(parts) > 6 else b"",
            b"" if crl else _exts_content(der, parts, te),
        )
    except (ValueError, IndexError):
        return None


def _exts_content(der: bytes, parts: list[tuple[int, int, int, int]], te: int) -> bytes:
    """The content of the extensions SEQUENCE when ``[3] extensions`` is a certificate's eighth
    and last TBS element (no unique identifiers), else b"" (ValueError: not DER)."""
    if len(parts) != 8 or parts[7][0] != 0xA3 or parts[7][2] != te:
        return b""
    tag, _, vs, ve = _tlv(der, parts[7][3], te)
    return der[vs:ve] if tag == 0x30 and ve == te else b""


class _Loaded:
    """One certificate or CRL loaded here: its exact DER, walked on first need."""

    __slots__ = ("ca", "crl", "der", "ext", "obj", "raw", "sha256", "validity", "walked")

    def __init__(self, obj: object, der: bytes, crl: bool) -> None:
        self.obj, self.der, self.crl = obj, der, crl
        self.raw: _Raw | None = None
        self.walked = False
        self.ca: bool | None = None  #: a certificate's basic constraints' cA, once read
        self.validity: tuple[datetime, datetime] | None = None  #: once read
        self.sha256: bytes | None = None  #: of ``der``, once computed
        #: a certificate's extensions as :func:`_read_extensions` read them (None: not read)
        self.ext: IntelExtensions | None = None

    def parts(self) -> _Raw | None:
        if not self.walked:
            self.raw, self.walked = _walk(self.der, self.crl), True
        return self.raw


#: The certificates and CRLs loaded here, by object identity (the object is held, so its id is
#: not reused while the entry lives).
_RAWS: Lru[int, _Loaded] = Lru(512)


def _remember(obj: object, der: bytes, crl: bool = False) -> _Loaded:
    loaded = _Loaded(obj, der, crl)
    _RAWS.put(id(obj), loaded)
    return loaded


def _loaded(obj: object) -> _Loaded | None:
    hit = _RAWS.get(id(obj))
    return hit if hit is not None and hit.obj is obj else None


def _raw_parts(obj: object) -> _Raw | None:
    hit = _loaded(obj)
    return hit.parts() if hit is not None else None


def der_of(cert: x509.Certificate) -> bytes:
    """The exact DER ``cert`` was loaded from (re-encoded only for certificates loaded elsewhere)."""
    hit = _loaded(cert)
    if hit is not None:
        return hit.der
    der = cert.public_bytes(serialization.Encoding.DER)
    _remember(cert, der)
    return der


#: ``subject.public_bytes()`` and ``subject.rfc4514_string()`` of certificates, by object
#: identity (the object is held): a CA certificate's name is encoded and formatted once.
_SUBJECTS: Lru[int, tuple[x509.Certificate, bytes, str | None]] = Lru(256)


def subject_der(cert: x509.Certificate) -> bytes:
    """``cert.subject.public_bytes()``, once per certificate object; for a certificate loaded here
    whose subject built, the subject's DER as loaded (what ``public_bytes()`` gives for a name
    that decodes: the same tags, strings and order), without building or encoding it."""
    hit = _SUBJECTS.get(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1]
    raw = _raw_parts(cert)
    if raw is not None and _CHECKED_NAMES.get(raw.subject) is not None:
        der = raw.subject
    else:
        der = cert.subject.public_bytes()
    _SUBJECTS.put(id(cert), (cert, der, None))
    return der


#: The subjectPublicKeyInfo of a P-256 key before its point (id-ecPublicKey, prime256v1, a BIT
#: STRING of 66 octets, an uncompressed point).
_P256_SPKI = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004")

#: SubjectPublicKeyInfo DER of certificates, by object identity (the object is held).
_SPKIS: Lru[int, tuple[x509.Certificate, bytes]] = Lru(256)


def public_key_der(cert: x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo of ``cert``'s key, once per certificate object."""
    hit = _SPKIS.get(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1]
    loaded = _loaded(cert)
    raw = loaded.parts() if loaded is not None and _KEYS.get(loaded.der) is not None else None
    if raw is not None and len(raw.spki) == 91 and raw.spki.startswith(_P256_SPKI):
        # A P-256 key in its one encoding (named curve, uncompressed point) is what public_bytes()
        # writes for it: the element as loaded, for a key that parsed (kept by the DER).
        der = raw.spki
    else:
        der = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    _SPKIS.put(id(cert), (cert, der))
    return der


def subject_text(cert: x509.Certificate) -> str:
    """``cert.subject.rfc4514_string()``, once per certificate object."""
    hit = _SUBJECTS.get(id(cert))
    if hit is not None and hit[0] is cert and hit[2] is not None:
        return hit[2]
    text = cert.subject.rfc4514_string()
    _SUBJECTS.put(id(cert), (cert, subject_der(cert), text))
    return text


#: ecdsa-with-SHA256 (RFC 5758), the one algorithm of the fast signature path.
_ECDSA_SHA256_ALG = bytes.fromhex("300a06082a8648ce3d040302")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


#: The type of the EC public keys ``cryptography`` makes (its Rust class, which
#: ``ec.EllipticCurvePublicKey`` registers): an exact type test is cheaper than the ABC's check.
_EC_PUBLIC_KEY = type(ec.derive_private_key(1, ec.SECP256R1()).public_key())


def is_ec_public_key(key: object) -> TypeGuard[ec.EllipticCurvePublicKey]:
    """``isinstance(key, ec.EllipticCurvePublicKey)``, the exact type of ``cryptography``'s own
    keys tested first (0.06 against 0.3 us for the ABC's check; a few per verification)."""
    return type(key) is _EC_PUBLIC_KEY or isinstance(key, ec.EllipticCurvePublicKey)


def _p256(key: object) -> ec.EllipticCurvePublicKey | None:
    if is_ec_public_key(key) and isinstance(key.curve, ec.SECP256R1):
        return key
    return None


# A certificate's P-256 key by the exact DER it was loaded from: a CA recurs in every chain of
# its platforms, and a leaf's key, built when the leaf is checked, is used again for the
# signature it vouches for (building the key object is ~12 us). Only keys that parsed are kept.
_KEYS: Lru[bytes, ec.EllipticCurvePublicKey] = Lru(256)


def public_key_of(cert: x509.Certificate) -> Any:
    """``cert.public_key()`` (same exceptions); a P-256 key is kept by the certificate's DER."""
    return _key_of(cert, _loaded(cert))


def _key_of(cert: x509.Certificate, hit: _Loaded | None) -> Any:
    if hit is None:
        return cert.public_key()
    kept = _KEYS.get(hit.der)
    if kept is not None:
        return kept
    key = cert.public_key()
    p256 = _p256(key)
    if p256 is not None:
        _KEYS.put(hit.der, p256)
    return key


def forget_keys(keys: Iterable[object]) -> None:
    """Forget the kept P-256 keys that are these objects (the leaves of forgotten platforms:
    a platform never seen builds its leaf's key)."""
    ids = {id(k) for k in keys}
    if ids:
        for der, key in _KEYS.items():
            if id(key) in ids:
                _KEYS.discard(der)


def verify_issued_by(child: x509.Certificate, parent: x509.Certificate) -> None:
    """``child.verify_directly_issued_by(parent)``, with the same checks (inner and outer
    signature algorithm equal, child's issuer == parent's subject, the signature) and the same
    exceptions; an ECDSA-SHA256 signature by a P-256 key is checked over the signed bytes as
    loaded, without re-encoding them."""
    c, p = _raw_parts(child), _raw_parts(parent)
    key = _p256(public_key_of(parent)) if c is not None and p is not None else None
    if (
        c is None
        or p is None
        or key is None
        or c.outer_alg != _ECDSA_SHA256_ALG
        or c.inner_alg != c.outer_alg
        or c.issuer != p.subject
    ):
        child.verify_directly_issued_by(parent)  # every other case, as before
        return
    key.verify(c.signature, c.tbs, _ECDSA_SHA256)


def crl_signature_valid(crl: AnyCrl, key: object) -> bool:
    """``crl.is_signature_valid(key)`` (inner and outer algorithm equal, then the signature);
    an ECDSA-SHA256 signature by a P-256 key is checked over the signed bytes as loaded."""
    if isinstance(crl, ReadCrl):  # (ecdsa-with-SHA256 inside and out, as read)
        k = _p256(key)
        if k is None:
            return x509.load_der_x509_crl(crl.der).is_signature_valid(key)  # type: ignore[arg-type]
        try:
            k.verify(crl.signature, crl.tbs, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True
    r, k = _raw_parts(crl), _p256(key)
    if r is None or k is None or r.outer_alg != _ECDSA_SHA256_ALG or r.inner_alg != r.outer_alg:
        return crl.is_signature_valid(key)  # type: ignore[arg-type]
    try:
        k.verify(r.signature, r.tbs, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def same_name(crl: AnyCrl, cert: x509.Certificate) -> bool:
    """``crl.issuer == cert.subject`` (equal DER first, without building either name)."""
    if isinstance(crl, ReadCrl):
        c = _raw_parts(cert)
        if c is not None and crl.issuer_der == c.subject:
            return True
        return bool(x509.load_der_x509_crl(crl.der).issuer == cert.subject)
    r, c = _raw_parts(crl), _raw_parts(cert)
    if r is not None and c is not None and r.issuer == c.subject:
        return True
    return bool(crl.issuer == cert.subject)


def crl_issuer_der(crl: AnyCrl) -> bytes:
    """``crl.issuer.public_bytes()`` (for a CRL read here: the issuer's DER as read, a name of the
    plain layout, which ``public_bytes()`` gives back unchanged)."""
    return crl.issuer_der if isinstance(crl, ReadCrl) else crl.issuer.public_bytes()


#: CA certificates that passed :func:`checked_certificate`, by their exact DER.
_CHECKED_CAS: Lru[bytes, x509.Certificate] = Lru(256)


def forget_checked() -> None:
    """Forget the checked CA certificates (collateral reload, tests, benchmarks)."""
    # The kept trust anchors' names decoded when they were checked (as kept: a name read, not
    # built, by its attributes): a chain's CA names its pinned root as issuer before the root's
    # own block is read. Their keys too (configuration: a key depends on the exact DER only).
    anchor_keys = [(a.der, _KEYS.get(a.der)) for a in _ANCHORS.values()]
    anchor_names: list[tuple[bytes, x509.Name | tuple[tuple[bytes, str], ...]]] = []
    for anchor in _ANCHORS.values():
        raw, cert = anchor.parts(), anchor.obj
        if raw is not None and isinstance(cert, x509.Certificate):
            subject, issuer = _CHECKED_NAMES.get(raw.subject), _CHECKED_NAMES.get(raw.issuer)
            anchor_names.append((raw.subject, cert.subject if subject is None else subject))
            anchor_names.append((raw.issuer, cert.issuer if issuer is None else issuer))
    _CHECKED_CAS.clear()
    _CHECKED_PEM.clear()
    _CHECKED_NAMES.clear()
    _RAWS.clear()
    _KEYS.clear()
    _SUBJECTS.clear()
    _SPKIS.clear()
    _SERIALS.clear()
    _ENTRY_EXTS_OK.clear()
    for der, name in anchor_names:
        _CHECKED_NAMES.put(der, name)
    for block, der in _ANCHOR_BLOCKS.items():
        cert = _known_ca(der)  # (None: the anchor is gone, and so is its text)
        if cert is not None:
            _CHECKED_PEM.put(block, cert)
    for der, key in anchor_keys:
        if key is not None:
            _KEYS.put(der, key)


#: Pinned trust anchors (verifier configuration, not evidence) that passed
#: :func:`checked_certificate` as CAs, by their exact DER: kept across :func:`forget_checked`, so a
#: cold verification does not parse and check the same pinned root again. Only a verifier's pin
#: check puts one here (:func:`keep_anchor`); the pin itself is still checked on every use.
_ANCHORS: Lru[bytes, _Loaded] = Lru(16)


def keep_anchor(cert: x509.Certificate) -> None:
    """Keep ``cert``, a CA certificate loaded and checked here that the caller found pinned, across
    :func:`forget_checked` (a certificate not checked here as a CA is ignored)."""
    hit = _loaded(cert)
    if hit is not None and _ANCHORS.get(hit.der) is hit:
        return  # kept already (the same object: checked as a CA when it was kept)
    if hit is not None and not hit.crl and _CHECKED_CAS.get(hit.der) is cert:
        _ANCHORS.put(hit.der, hit)


def forget_anchors() -> None:
    """Forget the kept trust anchors too (tests)."""
    _ANCHORS.clear()
    _ANCHOR_BLOCKS.clear()


#: The PEM block texts (base64, as :func:`_checked_block` takes them) of kept trust anchors, by
#: text: the DER each decodes to. Kept across :func:`forget_checked` with the anchors, so a cold
#: verification does not decode the pinned root's block again (one text decodes to one DER).
_ANCHOR_BLOCKS: Lru[bytes, bytes] = Lru(16)


def _known_ca(der: bytes) -> x509.Certificate | None:
    """The CA certificate of exactly these bytes that passed the check, if one did."""
    known = _CHECKED_CAS.get(der)
    if known is not None:
        return known
    anchor = _ANCHORS.get(der)
    if anchor is None:
        return None
    cert = anchor.obj
    assert isinstance(cert, x509.Certificate)
    _RAWS.put(id(cert), anchor)
    _CHECKED_CAS.put(der, cert)
    return cert


def _checked_known(
    cert: x509.Certificate, field: str, der: bytes | None = None
) -> x509.Certificate:
    """:func:`checked_certificate`, or the CA certificate of the same DER that passed it before."""
    if der is None:
        der = cert.public_bytes(serialization.Encoding.DER)
    known = _known_ca(der)
    if known is not None:
        return known
    return _checked_new(cert, field, der)


def _checked_new(
    cert: x509.Certificate, field: str, der: bytes, raw: _Raw | None = None
) -> x509.Certificate:
    """:func:`checked_certificate` on a certificate of no known DER, kept when it is a CA
    (``raw``: its DER walked already)."""
    hit = _remember(cert, der)
    if raw is not None:
        hit.raw, hit.walked = raw, True
    _check(cert, field, hit)
    if is_ca(cert):
        _CHECKED_CAS.put(der, cert)
    return cert


def _load_der(der: bytes, raw: _Raw | None) -> x509.Certificate:
    """``x509.load_der_x509_certificate(der)``, its deprecation warnings silenced. The one
    ``cryptography`` gives at load is for a serial number that is not positive: a certificate
    whose serial (``raw``, the walk of ``der``) is positive is loaded without the
    ``catch_warnings`` block (~2 us)."""
    serial = raw.serial if raw is not None else b""
    if serial and serial[0] < 0x80 and serial.strip(b"\0"):
        return x509.load_der_x509_certificate(der)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(der)


def validity(cert: x509.Certificate) -> tuple[datetime, datetime]:
    """``(cert.not_valid_before_utc, cert.not_valid_after_utc)``, read once per certificate
    loaded here (``cryptography`` makes new datetimes on every access)."""
    hit = _loaded(cert)
    if hit is not None and hit.validity is not None:
        return hit.validity
    window = cert.not_valid_before_utc, cert.not_valid_after_utc
    if hit is not None:
        hit.validity = window
    return window


def sha256_of(cert: x509.Certificate) -> bytes:
    """SHA-256 of the exact DER ``cert`` was loaded from (a pin's fingerprint), once per
    certificate loaded here."""
    hit = _loaded(cert)
    if hit is None:
        return hashlib.sha256(der_of(cert)).digest()
    if hit.sha256 is None:
        hit.sha256 = hashlib.sha256(hit.der).digest()
    return hit.sha256


def is_ca(cert: x509.Certificate) -> bool:
    """Whether ``cert``'s basic constraints say cA (False without them), read once per
    certificate loaded here; the same exceptions as ``cert.extensions``."""
    hit = _loaded(cert)
    if hit is not None and hit.ca is not None:
        return hit.ca
    try:
        ca = bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        ca = False
    if hit is not None:
        hit.ca = ca
    return ca


def checked_crl(crl: x509.CertificateRevocationList, field: str) -> x509.CertificateRevocationList:
    """``crl`` after touching every lazily parsed part (its entries' extensions too; their serial
    numbers and dates are read at load), or MalformedError. An entry with a critical extension
    other than those veritee understands is refused (RFC 5280 5.3: an indirect CRL's
    certificateIssuer, any unknown one). The revoked serial numbers are kept for
    :func:`revoked_serials`."""
    try:
        exts = crl.extensions
        raw = _raw_parts(crl)
        if raw is None or raw.outer_alg != _ECDSA_SHA256_ALG:
            # (The exact DER of ecdsa-with-SHA256 reads as SHA256 in cryptography: nothing to
            # force, as for certificates.)
            crl.signature_hash_algorithm  # noqa: B018
        if raw is None or _CHECKED_NAMES.get(raw.issuer) is None:
            attrs = _plain_attributes(raw.issuer) if raw is not None else None
            if raw is not None and attrs is not None:
                _CHECKED_NAMES.put(raw.issuer, attrs)
            else:
                crl.issuer  # noqa: B018 - builds (so decodes and validates) every name attribute
                if raw is not None:
                    _CHECKED_NAMES.put(raw.issuer, crl.issuer)
        crl.last_update_utc  # noqa: B018
        crl.next_update_utc  # noqa: B018
        serials = _entries_fast(crl, raw)
        if serials is None:
            serials = []
            for entry in crl:
                _refuse_critical(entry.extensions, _ENTRY_EXTENSIONS)
                serials.append(entry.serial_number)
    except PARSE_ERRORS as e:
        raise MalformedError(f"CRL is malformed ({type(e).__name__})", field=field) from None
    _refuse_partial_crl(exts, field)
    _SERIALS.put(id(crl), (crl, frozenset(serials)))
    return crl


#: The CRL extensions veritee may find critical: the CRL number and the authority key identifier
#: (informational; RFC 5280 makes both non-critical). Any other critical one refuses the CRL.
_CRL_EXTENSIONS = frozenset({ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER})


def _refuse_partial_crl(exts: x509.Extensions, field: str) -> None:
    """MalformedError (``crl_invalid``) for a CRL that does not list every revoked certificate
    of its issuer, which is how veritee reads every CRL: a delta CRL (its indicator), a CRL with
    an issuing distribution point (it scopes the CRL to the certificates of one distribution
    point, to some kinds or reasons, or makes it indirect; veritee matches none of these), critical
    or not, or with any other critical extension veritee does not process (RFC 5280 5.2, 6.3.3:
    such a CRL must not decide revocation)."""
    for ext in exts:
        partial = isinstance(ext.value, x509.DeltaCRLIndicator | x509.IssuingDistributionPoint)
        if partial or (ext.critical and ext.oid not in _CRL_EXTENSIONS):
            raise MalformedError(
                f"CRL has an extension that makes it partial or that veritee does not process "
                f"({ext.oid.dotted_string}{', critical' if ext.critical else ''}): it cannot "
                "decide revocation",
                code="crl_invalid",
                field=field,
            )


#: The CRL entry extensions veritee may find critical (informational: the reason code, the
#: invalidity date); any other critical entry extension (an indirect CRL's certificateIssuer, an
#: unknown one) refuses the CRL.
_ENTRY_EXTENSIONS = frozenset(
    {CRLEntryExtensionOID.CRL_REASON, CRLEntryExtensionOID.INVALIDITY_DATE}
)


def _refuse_critical(exts: x509.Extensions, known: frozenset[x509.ObjectIdentifier]) -> None:
    for ext in exts:
        if ext.critical and ext.oid not in known:
            raise ValueError("unrecognized critical extension")


#: An entry's crlEntryExtensions element (its exact DER) whose extensions decoded and passed
#: :func:`_refuse_critical`: a decoding depends on these bytes only (Intel's PCK CRLs repeat a
#: handful of reason codes).
_ENTRY_EXTS_OK: Lru[bytes, bool] = Lru(256)


def _revoked_span(raw: _Raw) -> tuple[int, int] | None:
    """(start, end) of the revokedCertificates content in ``raw.tbs``; (0, 0) when absent."""
    tbs = raw.tbs
    _, _, pos, end = _tlv(tbs, 0, len(tbs))
    if tbs[pos] == 0x02:  # version
        pos = _tlv(tbs, pos, end)[3]
    for _ in range(3):  # signature, issuer, thisUpdate
        pos = _tlv(tbs, pos, end)[3]
    if pos < end and tbs[pos] in (0x17, 0x18):  # nextUpdate
        pos = _tlv(tbs, pos, end)[3]
    if pos >= end or tbs[pos] != 0x30:
        return (0, 0)
    _, _, vs, ve = _tlv(tbs, pos, end)
    return vs, ve


def _entries_fast(crl: x509.CertificateRevocationList, raw: _Raw | None) -> list[int] | None:
    """The revoked serial numbers, read from the DER ``cryptography`` accepted at load (which
    parsed every entry's serial, date and extensions' outer structure); each distinct entry
    extensions element is decoded by ``cryptography`` once (then by its bytes). None: anything
    unexpected (long lengths, no DER kept), and the caller reads every entry through
    ``cryptography``. ValueError for a refused entry extension."""
    if raw is None:
        return None
    try:
        span = _revoked_span(raw)
        if span is None:
            return None
        tbs, (pos, end) = raw.tbs, span
        serials: list[int] = []
        append, from_bytes = serials.append, int.from_bytes  # (one loop turn per entry)
        blobs: dict[bytes, int] = {}
        while pos < end:
            ln = tbs[pos + 1]
            sl = tbs[pos + 3]
            if tbs[pos] != 0x30 or ln > 0x7F or tbs[pos + 2] != 0x02 or sl > 0x7F:
                return None
            e = pos + 2 + ln
            q = pos + 4 + sl
            append(from_bytes(tbs[pos + 4 : q], "big", signed=True))
            dl = tbs[q + 1]
            if dl > 0x7F or tbs[q] not in (0x17, 0x18):  # revocationDate
                return None
            q += 2 + dl
            if q < e:
                blobs.setdefault(tbs[q:e], len(serials) - 1)
            pos = e
    except IndexError:
        return None
    if pos != end or len(serials) != len(crl):
        return None
    for blob, index in blobs.items():
        if not _ENTRY_EXTS_OK.get(blob):
            _refuse_critical(crl[index].extensions, _ENTRY_EXTENSIONS)
            _ENTRY_EXTS_OK.put(blob, True)
    return serials


#: The revoked serial numbers of the CRLs checked here, by object identity (the object is held).
_SERIALS: Lru[int, tuple[x509.CertificateRevocationList, frozenset[int]]] = Lru(256)


def revoked_serials(crl: AnyCrl) -> frozenset[int]:
    """The serial numbers ``crl`` revokes (read once, when it was checked or read)."""
    if isinstance(crl, ReadCrl):
        return crl.serials
    hit = _SERIALS.get(id(crl))
    if hit is not None and hit[0] is crl:
        return hit[1]
    return frozenset(e.serial_number for e in crl)


def revoked(crl: AnyCrl) -> Container[int]:
    """What ``crl`` revokes, for ``serial in revoked(crl)``: a CRL read here looks a serial up
    without reading every entry first (:class:`ReadCrl`); else :func:`revoked_serials`."""
    if isinstance(crl, ReadCrl):
        return crl
    return revoked_serials(crl)


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
    der = bytes(data)
    known = _known_ca(der)
    if known is not None:
        return known
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(der)
    except PARSE_ERRORS as e:
        raise MalformedError(
            f"not a DER X.509 certificate ({type(e).__name__})", field=field
        ) from None
    return _checked_known(cert, field, der)


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


_PEM_BEGIN, _PEM_END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"


def _pem_blocks(data: bytes) -> list[bytes] | None:
    """The base64 text of every certificate of a PEM text made of CERTIFICATE blocks and
    whitespace only; None for any other text (``cryptography`` then reads it)."""
    *blocks, tail = data.split(_PEM_END)
    if not blocks or tail.strip():
        return None
    out = []
    for block in blocks:
        block = block.lstrip()
        if not block.startswith(_PEM_BEGIN):
            return None
        out.append(block[len(_PEM_BEGIN) :])
    return out


#: A block's text the fast path takes: an optional line break after the BEGIN line, then lines of
#: base64 (no empty line: ``cryptography`` refuses one), the last one's line break optional.
_PEM_BODY = re.compile(rb"(?:\r?\n)?(?:[A-Za-z0-9+/=]+\r?\n)*[A-Za-z0-9+/=]*")


def _pem_der(block: bytes) -> bytes:
    """One block's DER: strict base64 (the alphabet and padding) on lines; else binascii.Error."""
    if b"\r" not in block:  # the usual text: what _PEM_BODY accepts, without the regex
        lines = block.split(b"\n")
        if not lines[0]:  # the line break after the BEGIN line
            del lines[0]
        if b"" in lines[:-1]:  # an empty line (only the last one, after the last break, may be)
            raise binascii.Error("not the plain PEM layout")
        return binascii.a2b_base64(b"".join(lines), strict_mode=True)
    if _PEM_BODY.fullmatch(block) is None:
        raise binascii.Error("not the plain PEM layout")
    return binascii.a2b_base64(block.translate(None, b"\r\n"), strict_mode=True)


#: CA certificates that passed :func:`checked_certificate`, by the exact base64 text of their PEM
#: block (one text decodes to one DER): a chain's CA certificates are not even decoded again.
_CHECKED_PEM: Lru[bytes, x509.Certificate] = Lru(256)


def load_pem_certificates(data: bytes, field: str) -> list[x509.Certificate]:
    """Every PEM certificate in ``data`` (at least one), each checked; else MalformedError."""
    data = bytes(data)
    blocks = _pem_blocks(data)
    if blocks is not None:  # the usual text: a CA certificate seen before is not even decoded
        try:
            return [_checked_block(b, f"{field}[{i}]") for i, b in enumerate(blocks)]
        except binascii.Error:
            pass  # not strict base64: cryptography reads it below, as before
        except PARSE_ERRORS as e:
            raise MalformedError(
                f"not PEM X.509 certificates ({type(e).__name__})", field=field
            ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certs: Sequence[x509.Certificate] = x509.load_pem_x509_certificates(data)
    except PARSE_ERRORS as e:
        raise MalformedError(
            f"not PEM X.509 certificates ({type(e).__name__})", field=field
        ) from None
    return [_checked_known(c, f"{field}[{i}]") for i, c in enumerate(certs)]


def _checked_block(block: bytes, field: str) -> x509.Certificate:
    known = _CHECKED_PEM.get(block)
    if known is not None:
        return known
    der = _pem_der(block)
    known = _known_ca(der)
    if known is None:
        raw = _walk(der, False)
        known = _checked_new(_load_der(der, raw), field, der, raw)
        if not is_ca(known):
            return known  # a leaf: never kept
    if _CHECKED_CAS.get(der) is known:
        _CHECKED_PEM.put(block, known)
        if _ANCHORS.get(der) is not None:  # a pinned root's text: kept with it (forget_checked)
            _ANCHOR_BLOCKS.put(block, der)
    return known


def load_der_crl(data: bytes, field: str) -> x509.CertificateRevocationList:
    """One DER CRL, every entry checked; MalformedError naming ``field`` otherwise."""
    der = bytes(data)
    try:
        crl = x509.load_der_x509_crl(der)
    except PARSE_ERRORS as e:
        raise MalformedError(f"not a DER X.509 CRL ({type(e).__name__})", field=field) from None
    _remember(crl, der, crl=True)
    return checked_crl(crl, field)


def load_pem_crl(data: bytes, field: str) -> x509.CertificateRevocationList:
    """One PEM CRL, every entry checked; MalformedError naming ``field`` otherwise."""
    try:
        crl = x509.load_pem_x509_crl(bytes(data))
    except PARSE_ERRORS as e:
        raise MalformedError(f"not a PEM X.509 CRL ({type(e).__name__})", field=field) from None
    return checked_crl(crl, field)


# --- CRLs of Intel's layout, read without a ``cryptography`` object -----------------------------
#
# Issue 15 item 2 (a cold DCAP verification, seventh pass): loading an Intel PCK CRL through
# ``cryptography`` and reading its 40-odd entries back costs several times reading the DER
# directly. :func:`read_der_crl` reads a CRL of exactly Intel's layout (v2, ecdsa-with-SHA256
# inside and out, a name of the plain layout, UTCTime dates, entries with at most a non-critical
# reason code, the CRL number and authority key identifier as its only extensions) by a strict DER
# reader whose regular expressions run in C; any other CRL, and anything the reader does not
# recognise, is loaded by ``cryptography`` (:func:`load_der_crl`), which decides as before. What
# the reader accepts, ``cryptography`` accepts too and reads the same way (a test holds them to
# that on every one-byte change of the real CRLs).


def _stlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of value, end) of the DER element at ``pos``, lengths in their shortest form
    (as DER requires); ValueError otherwise."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, ln = data[pos], data[pos + 1]
    vs = pos + 2
    if ln & 0x80:
        n = ln & 0x7F
        if n == 0 or n > 3 or vs + n > end or data[vs] == 0:
            raise ValueError("bad length")
        ln = int.from_bytes(data[vs : vs + n], "big")
        vs += n
        if ln < 0x80:
            raise ValueError("long form of a short length")
    if vs + ln > end:
        raise ValueError("overrun")
    return tag, vs, vs + ln


#: UTCTime content (RFC 5280 4.1.2.5.1: YYMMDDHHMMSSZ, years 1950-2049) of a valid date: the day
#: within its month, 29 February only in the years divisible by 4 (all leap years in that range).
_UTC_TIME = (
    rb"[0-9]{2}(?:(?:0[1-9]|1[0-2])(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])(?:29|30)"
    rb"|(?:0[13578]|1[02])31)(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]Z"
    rb"|(?:[02468][048]|[13579][26])0229(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]Z"
)
_UTC_TIME_RE = re.compile(_UTC_TIME)


def _positive_integer(n: int) -> bytes:
    """A pattern of the content of a DER INTEGER of ``n`` octets that is >= 0 (shortest form)."""
    if n == 1:
        return rb"[\x00-\x7f]"
    return rb"(?:[\x01-\x7f][\x00-\xff]|\x00[\x80-\xff])[\x00-\xff]{%d}" % (n - 2)


#: A non-critical reasonCode entry extension (RFC 5280 5.3.1) with a value that names a reason.
_REASON_EXT = re.escape(bytes.fromhex("300c300a0603551d1504030a01")) + rb"[\x00-\x06\x08-\x0a]"


def _entry_patterns() -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """Patterns of revokedCertificates' content: every entry (serial, UTCTime revocation date,
    optionally the reason code) with its lengths exact; and one that captures each serial."""
    whole: list[bytes] = []
    serial: list[bytes] = []
    # Serial numbers of up to 20 octets (RFC 5280 4.1.2.2) and a leading zero.
    for n in (20, 21, *range(1, 20)):
        body = _positive_integer(n) + rb"\x17\x0d(?:" + _UTC_TIME + rb")"
        head = bytes([0x02, n])
        whole.append(re.escape(bytes([0x30, 2 + n + 15 + 14]) + head) + body + _REASON_EXT)
        whole.append(re.escape(bytes([0x30, 2 + n + 15]) + head) + body)
        serial.append(rb"(?<=%s)[\x00-\xff]{%d}" % (re.escape(bytes([n])), n))
    entries = re.compile(rb"(?:" + b"|".join(whole) + rb")+")
    # Run only over a content ``entries`` matched in full: entry by entry, the same split.
    serials = re.compile(
        rb"\x30[\x00-\x7f]\x02[\x01-\x15](" + b"|".join(serial) + rb")\x17\x0d[0-9]{12}Z"
        rb"(?:" + _REASON_EXT + rb")?"
    )
    return entries, serials


_ENTRIES_RE, _SERIALS_RE = _entry_patterns()


def _crl_extensions_pattern() -> re.Pattern[bytes]:
    """crlExtensions of exactly a non-critical CRL number (up to 4 octets) and a non-critical
    authority key identifier of a 20-octet keyIdentifier only, in that order (Intel's)."""
    aki = re.escape(bytes.fromhex("301f0603551d23041830168014")) + rb"[\x00-\xff]{20}"
    alts = []
    for k in range(1, 5):
        head = bytes([0xA0, 0x2E + k, 0x30, 0x2C + k, 0x30, 0x09 + k]) + bytes.fromhex(
            "0603551d1404"
        )
        alts.append(re.escape(head + bytes([2 + k, 0x02, k])) + _positive_integer(k) + aki)
    return re.compile(b"|".join(alts))


_CRL_EXTENSIONS_RE = _crl_extensions_pattern()

#: The attribute types a name read here may hold (commonName, organizationName, localityName,
#: stateOrProvinceName, countryName, organizationalUnitName), by their DER.
_NAME_OIDS = frozenset(bytes.fromhex(h) for h in ("0603550403", "060355040a", "0603550407",
                                                   "0603550408", "0603550406", "060355040b"))  # fmt: skip
_PRINTABLE_RE = re.compile(rb"[A-Za-z0-9 '()+,\-./:=?]*")


def _strict_plain_name(der: bytes) -> bool:
    """Whether ``der`` is a Name of the plain layout (:func:`_name_decodes`) in strict DER, each
    attribute of a type in :data:`_NAME_OIDS`, a PrintableString of its alphabet only: one that
    ``cryptography`` loads and builds without an error or a warning."""
    try:
        tag, pos, end = _stlv(der, 0, len(der))
        if tag != 0x30 or end != len(der):
            return False
        while pos < end:
            stag, spos, send = _stlv(der, pos, end)
            atag, apos, aend = _stlv(der, spos, send)
            if stag != 0x31 or atag != 0x30 or aend != send:
                return False
            otag, _, oend = _stlv(der, apos, aend)
            vtag, vpos, vend = _stlv(der, oend, aend)
            oid = der[apos:oend]
            if otag != 0x06 or oid not in _NAME_OIDS or vend != aend:
                return False
            if vtag == 0x13:
                if _PRINTABLE_RE.fullmatch(der, vpos, vend) is None:
                    return False
            elif vtag != 0x0C:
                return False
            der[vpos:vend].decode("utf-8")
            limits = _LENGTH_LIMITS.get(oid)
            if limits is not None and not limits[0] <= vend - vpos <= limits[1]:
                return False
            pos = send
    except ValueError:  # (UnicodeDecodeError too)
        return False
    return True


def _utc_time(der: bytes, pos: int) -> datetime | None:
    """The UTCTime element at ``pos`` (tag, length 13, a valid date), or None."""
    if der[pos : pos + 2] != b"\x17\x0d" or _UTC_TIME_RE.fullmatch(der, pos + 2, pos + 15) is None:
        return None
    d = der[pos + 2 : pos + 15]
    yy = int(d[0:2])
    return datetime(
        (1900 if yy >= 50 else 2000) + yy, int(d[2:4]), int(d[4:6]), int(d[6:8]), int(d[8:10]),
        int(d[10:12]), tzinfo=UTC,
    )  # fmt: skip


class ReadCrl:
    """A CRL read from its DER by :func:`read_der_crl`'s strict reader: what the verifiers use of
    it (``last_update_utc`` and ``next_update_utc`` as ``cryptography`` names them), no object of
    ``cryptography``. Its algorithm is ecdsa-with-SHA256, inside and out.

    ``serial in crl``: whether it revokes ``serial``. The first serial looked up is searched for
    in the entries' DER, its one encoding at an entry's start (a cold verification looks up one
    serial per CRL, twice), and the answer kept; any other serial, and :attr:`serials`, use the
    set of every serial, read once."""

    __slots__ = ("_last", "_serials", "der", "entries", "issuer_der", "last_update_utc",
                 "next_update_utc", "signature", "tbs")  # fmt: skip

    def __init__(self, der: bytes, tbs: bytes, issuer_der: bytes, last: datetime, nxt: datetime,
                 entries: tuple[int, int], signature: bytes) -> None:  # fmt: skip
        self.der, self.tbs, self.issuer_der, self.signature = der, tbs, issuer_der, signature
        self.last_update_utc: datetime = last
        self.next_update_utc: datetime | None = nxt
        #: (start, end) in ``der`` of the revokedCertificates content, every entry of which
        #: :data:`_ENTRIES_RE` matched (an empty span: no entry)
        self.entries = entries
        self._serials: frozenset[int] | None = None
        self._last: tuple[int, bool] | None = None  #: the first serial looked up, and the answer

    @property
    def serials(self) -> frozenset[int]:
        """Every revoked serial number (read from the entries once)."""
        found = self._serials
        if found is None:
            start, end = self.entries
            found = frozenset(map(int.from_bytes, _SERIALS_RE.findall(self.der, start, end)))
            self._serials = found
        return found

    def __contains__(self, serial: object) -> bool:
        last = self._last
        if last is not None and last[0] == serial and type(serial) is int:
            return last[1]  # (the same serial again: a verification looks its leaf up twice)
        if self._serials is not None or last is not None or type(serial) is not int:
            return serial in self.serials  # (another serial: the set, a verifier's steady state)
        found = _entry_of(self.der, self.entries, serial)
        self._last = (serial, found)
        return found


def _entry_of(der: bytes, entries: tuple[int, int], serial: int) -> bool:
    """Whether an entry of the validated ``entries`` of ``der`` has the serial number ``serial``:
    its encoding (positive, shortest form, as every entry's) followed by a revocationDate, found
    where an entry starts. Entries parse one way only (an entry's first two octets fix its
    length), so a position is an entry's start exactly when the entries before it match in full."""
    n = (serial.bit_length() + 8) // 8
    if serial < 0 or n > 21:
        return False  # (every entry's serial is >= 0, of at most 21 octets)
    start, end = entries
    needle = b"\x02" + bytes([n]) + serial.to_bytes(n, "big") + b"\x17\x0d"
    at = der.find(needle, start + 2, end)
    while at != -1:
        if at - 2 == start or _ENTRIES_RE.fullmatch(der, start, at - 2) is not None:
            return True
        at = der.find(needle, at + 1, end)
    return False


#: A CRL as the loaders here give it.
AnyCrl = x509.CertificateRevocationList | ReadCrl


def _read_crl(der: bytes) -> ReadCrl | None:
    """``der`` read as a CRL of Intel's layout (above), or None."""
    try:
        tag, pos, end = _stlv(der, 0, len(der))
        if tag != 0x30 or end != len(der):
            return None
        tbs_start = pos
        ttag, pos, tend = _stlv(der, pos, end)
        if ttag != 0x30 or der[tend : tend + 12] != _ECDSA_SHA256_ALG:
            return None
        btag, bpos, bend = _stlv(der, tend + 12, end)
        if btag != 0x03 or bend != end or bpos >= bend or der[bpos] != 0:
            return None
        if der[pos : pos + 3] != b"\x02\x01\x01" or der[pos + 3 : pos + 15] != _ECDSA_SHA256_ALG:
            return None
        ntag, _, nend = _stlv(der, pos + 15, tend)
        issuer = der[pos + 15 : nend]
        # (A name that loaded and decoded here before, in a certificate: the PCK CA's, the root's.)
        if ntag != 0x30 or (_CHECKED_NAMES.get(issuer) is None and not _strict_plain_name(issuer)):
            return None
        last, nxt = _utc_time(der, nend), _utc_time(der, nend + 15)
        if last is None or nxt is None:
            return None
        pos = nend + 30
        entries = (pos, pos)
        if pos < tend and der[pos] == 0x30:
            _, rpos, rend = _stlv(der, pos, tend)
            if _ENTRIES_RE.fullmatch(der, rpos, rend) is None:
                return None
            entries = (rpos, rend)
            pos = rend
        if _CRL_EXTENSIONS_RE.fullmatch(der, pos, tend) is None:
            return None
    except (ValueError, IndexError):
        return None
    return ReadCrl(der, der[tbs_start:tend], issuer, last, nxt, entries, der[bpos + 1 : bend])


def read_der_crl(data: bytes, field: str) -> AnyCrl:
    """One DER CRL: of Intel's layout, read by the strict reader here (:class:`ReadCrl`); else
    loaded and checked by :func:`load_der_crl` (MalformedError naming ``field``)."""
    der = bytes(data)
    fast = _read_crl(der)
    return fast if fast is not None else load_der_crl(der, field)


# --- certificate extensions of Intel's layout, read without building them ------------------------
#
# Issue 15 item 2 (seventh pass): ``cert.extensions`` builds an object for every extension (10 us
# for a PCK certificate), only to check that each parses. The extensions of Intel's SGX
# certificates (root, PCK CA, PCK certificate, TCB signing) have one layout: authority key
# identifier, a CRL distribution point of one URI, subject key identifier, key usage (critical),
# basic constraints (critical), and the PCK certificate's SGX extension (not parsed by
# cryptography either: veritee's own parser reads it). :func:`_read_extensions` recognises exactly
# that, with the key usages and basic constraints Intel uses, by regular expressions; for anything
# else ``cert.extensions`` parses them, as before. A test holds the reader to cryptography on every
# one-bit and one-byte change of real and synthetic certificates.


class IntelExtensions(NamedTuple):
    """What the verifiers use of a certificate's extensions of Intel's layout."""

    ca: bool  #: basic constraints' cA
    digital_signature: bool  #: key usage's digitalSignature
    sgx: bytes | None  #: the SGX extension's value (OID 1.2.840.113741.1.13.1), if present


_EXT_HEAD = re.compile(
    # authorityKeyIdentifier: a 20-octet keyIdentifier only
    rb"\x30\x1f\x06\x03\x55\x1d\x23\x04\x18\x30\x16\x80\x14[\x00-\xff]{20}"
    # cRLDistributionPoints: one point, its fullName one URI (lengths checked by the caller)
    rb"\x30([\x00-\x7f])\x06\x03\x55\x1d\x1f\x04([\x00-\x7f])\x30([\x00-\x7f])\x30([\x00-\x7f])"
    rb"\xa0([\x00-\x7f])\xa0([\x00-\x7f])\x86([\x00-\x7f])"
)
_URI = re.compile(rb"[\x21-\x7e]+")
_EXT_TAIL = re.compile(
    # subjectKeyIdentifier of 20 octets
    rb"\x30\x1d\x06\x03\x55\x1d\x0e\x04\x16\x04\x14[\x00-\xff]{20}"
    # keyUsage, critical: digitalSignature + nonRepudiation, keyCertSign + cRLSign, or digitalSignature
    rb"\x30\x0e\x06\x03\x55\x1d\x0f\x01\x01\xff\x04\x04\x03\x02(\x06\xc0|\x01\x06|\x07\x80)"
    # basicConstraints, critical: not a CA; a CA with a pathLenConstraint of 0-127; a CA
    rb"(\x30\x0c\x06\x03\x55\x1d\x13\x01\x01\xff\x04\x02\x30\x00"
    rb"|\x30\x12\x06\x03\x55\x1d\x13\x01\x01\xff\x04\x08\x30\x06\x01\x01\xff\x02\x01[\x00-\x7f]"
    rb"|\x30\x0f\x06\x03\x55\x1d\x13\x01\x01\xff\x04\x05\x30\x03\x01\x01\xff)"
)
#: The SGX extension's header (non-critical, the OCTET STRING's length of two octets).
_SGX_HEAD = re.compile(
    rb"\x30\x82([\x01-\xff][\x00-\xff])\x06\x09\x2a\x86\x48\x86\xf8\x4d\x01\x0d\x01"
    rb"\x04\x82([\x01-\xff][\x00-\xff])"
)


def _read_extensions(content: bytes) -> IntelExtensions | None:
    """The extensions SEQUENCE content of a certificate ``cryptography`` loaded, read when it is of
    Intel's layout (above); else None (``cert.extensions`` then parses it)."""
    head = _EXT_HEAD.match(content)
    if head is None:
        return None
    l1, l2, l3, l4, l5, l6, l7 = head.group(1, 2, 3, 4, 5, 6, 7)
    n = l7[0]
    if (l6[0], l5[0], l4[0], l3[0], l2[0], l1[0]) != (n + 2, n + 4, n + 6, n + 8, n + 10, n + 17):
        return None
    pos = head.end() + n
    if _URI.fullmatch(content, head.end(), pos) is None:
        return None
    tail = _EXT_TAIL.match(content, pos)
    if tail is None:
        return None
    usage, bc = tail.group(1, 2)
    ext = IntelExtensions(ca=len(bc) != 14, digital_signature=usage != b"\x01\x06", sgx=None)
    pos = tail.end()
    if pos == len(content):
        return ext
    sgx = _SGX_HEAD.match(content, pos)
    if sgx is None:
        return None
    outer, inner = (int.from_bytes(g) for g in sgx.group(1, 2))
    if outer != inner + 15 or sgx.end() + inner != len(content):
        return None
    return ext._replace(sgx=content[sgx.end() :])


def intel_extensions(cert: x509.Certificate) -> IntelExtensions | None:
    """``cert``'s extensions as read when it was checked here, if they are of Intel's layout;
    None: read them from ``cert.extensions``."""
    hit = _loaded(cert)
    return hit.ext if hit is not None else None
