"""AMD key distribution: pinned ARKs, the VCEK/VLEK -> ASK/ASVK -> ARK chain, CRLs, VCEK extensions.

Sources of the facts used here:

* AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification"
  (doc. 57230): certificate chain VCEK -> ASK -> ARK, all signed RSASSA-PSS with SHA-384; the
  VCEK extensions (table "VCEK Certificate Extensions"):

  ======================  ==========  ==================================================
  OID                     name        value
  ======================  ==========  ==================================================
  1.3.6.1.4.1.3704.1.2    productName IA5String ("Milan-B0", "Genoa", "Turin", ...)
  1.3.6.1.4.1.3704.1.3.1  blSPL       INTEGER, boot loader SVN
  1.3.6.1.4.1.3704.1.3.2  teeSPL      INTEGER, PSP OS SVN
  1.3.6.1.4.1.3704.1.3.3  snpSPL      INTEGER, SNP firmware SVN
  1.3.6.1.4.1.3704.1.3.8  ucodeSPL    INTEGER, microcode patch level
  1.3.6.1.4.1.3704.1.3.9  fmcSPL      INTEGER, FMC SVN (Turin and later)
  1.3.6.1.4.1.3704.1.4    hwID        64 bytes (Milan, Genoa) or 8 bytes (Turin): CHIP_ID
  ======================  ==========  ==================================================

* VLEK (Versioned Loaded Endorsement Key) chains VLEK -> ASVK -> ARK; it has no hwID (it is
  issued to a cloud provider, ``1.3.6.1.4.1.3704.1.5`` csp_id names it).
* KDS ``/vcek/v1/{product}/crl``: an ARK-signed CRL that lists revoked ASK/ASVK serial numbers.

Each product's ARK is pinned by the SHA-256 of its DER (:data:`ARK_MILAN_SHA256`, ...). The ARK
certificates themselves come from collateral; a root whose fingerprint is not pinned is refused.

:class:`ChainCache` remembers verified chains (bounded LRU, thread-safe), so repeated reports of
one chip cost one ECDSA verification. Pure: no I/O, no clock (``at`` is passed in).
"""

from __future__ import annotations

import enum
import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from veritee._lru import Lru
from veritee.errors import CollateralError, VerificationError

__all__ = [
    "ARK_GENOA_SHA256",
    "ARK_MILAN_SHA256",
    "ARK_TURIN_SHA256",
    "DEFAULT_CHAIN_CACHE",
    "OID_BL_SPL",
    "OID_FMC_SPL",
    "OID_HW_ID",
    "OID_PRODUCT_NAME",
    "OID_SNP_SPL",
    "OID_TEE_SPL",
    "OID_UCODE_SPL",
    "PINNED_ARKS",
    "AmdTrust",
    "ChainCache",
    "EndorsementKeyInfo",
    "Product",
    "VerifiedChain",
    "check_ca_chain",
    "check_crl",
    "common_name",
    "endorsement_key_info",
    "issued_by",
    "issuer_cn",
    "issuer_key",
    "name_key",
    "subject_cn",
    "subject_key",
    "verify_chain",
]


class Product(enum.StrEnum):
    """AMD EPYC generations with SEV-SNP, named as in KDS URLs (lower case)."""

    MILAN = "milan"
    GENOA = "genoa"
    TURIN = "turin"


#: SHA-256 of the DER of AMD's ARK-Milan (self-signed, 2020-10-22 .. 2045-10-22). The same ARK
#: issues the ASK (VCEK chain) and the ASVK (VLEK chain).
ARK_MILAN_SHA256 = "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"
#: SHA-256 of the DER of AMD's ARK-Genoa (2022-01-26 .. 2047-01-26).
ARK_GENOA_SHA256 = "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"
#: SHA-256 of the DER of AMD's ARK-Turin (2023-05-15 .. 2048-05-15).
ARK_TURIN_SHA256 = "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"

#: Pinned ARK fingerprint -> product.
PINNED_ARKS: Mapping[str, Product] = {
    ARK_MILAN_SHA256: Product.MILAN,
    ARK_GENOA_SHA256: Product.GENOA,
    ARK_TURIN_SHA256: Product.TURIN,
}

_ARC = "1.3.6.1.4.1.3704.1"
_V = TypeVar("_V")
OID_PRODUCT_NAME = x509.ObjectIdentifier(_ARC + ".2")
OID_BL_SPL = x509.ObjectIdentifier(_ARC + ".3.1")
OID_TEE_SPL = x509.ObjectIdentifier(_ARC + ".3.2")
OID_SNP_SPL = x509.ObjectIdentifier(_ARC + ".3.3")
OID_UCODE_SPL = x509.ObjectIdentifier(_ARC + ".3.8")
OID_FMC_SPL = x509.ObjectIdentifier(_ARC + ".3.9")
OID_HW_ID = x509.ObjectIdentifier(_ARC + ".4")

_CN_VCEK = "SEV-VCEK"
_CN_VLEK = "SEV-VLEK"


@dataclass(frozen=True)
class EndorsementKeyInfo:
    """What a VCEK/VLEK certificate says (table "VCEK Certificate Extensions", doc. 57230)."""

    kind: str  # "vcek" or "vlek"
    tcb: dict[str, int]  # bootloader, tee, snp, microcode (+ fmc when present)
    hwid: bytes | None
    product_name: str | None


@dataclass(frozen=True)
class VerifiedChain:
    """A VCEK/VLEK whose chain to a pinned ARK checked out, valid in ``[not_before, not_after]``."""

    product: Product
    public_key: ec.EllipticCurvePublicKey
    info: EndorsementKeyInfo
    not_before: datetime
    not_after: datetime
    leaf_sha256: str
    ark_sha256: str
    #: Signature values of the ASK/ASVK and ARK, so a cache hit still needs them in collateral.
    issuer_signatures: tuple[bytes, bytes]
    #: Whether a CRL of the chain's ARK was checked (the ASK/ASVK's revocation): without one,
    #: a revoked ASK/ASVK would pass, so the verifier says so (``revocation_not_checked``).
    revocation_checked: bool = False


class ChainCache:
    """A bounded, thread-safe LRU of :class:`VerifiedChain`, looked up by certificate + time.

    The key is the leaf certificate's signature value (unique per issued certificate) together
    with the trust anchors and the CRLs in use. A hit returns only data taken from the
    certificate that was verified when the entry was made, so a look-alike certificate cannot
    change an outcome; an entry is used only when ``at`` lies inside every validity window of
    its chain (and of the CRLs it was checked against).
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be positive")
        self._entries: Lru[tuple[object, ...], VerifiedChain] = Lru(maxsize)
        self._lock = threading.Lock()  # (the counters')
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[object, ...], at: datetime) -> VerifiedChain | None:
        entry = self._entries.get(key)
        hit = entry is not None and entry.not_before <= at <= entry.not_after
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
        return entry if hit else None

    def put(self, key: tuple[object, ...], entry: VerifiedChain) -> None:
        self._entries.put(key, entry)

    def clear(self) -> None:
        self._entries.clear()
        with self._lock:
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


#: The process-wide cache used when :class:`AmdTrust` names none.
DEFAULT_CHAIN_CACHE = ChainCache()


@dataclass(frozen=True)
class AmdTrust:
    """Trust anchors for SEV-SNP: pinned ARK fingerprints (SHA-256 hex -> product) and a cache.

    ``AmdTrust()`` pins AMD's genuine ARKs. Tests and private deployments may pin other roots
    with :meth:`with_roots`; a fingerprint that is not here is never trusted.
    """

    roots: tuple[tuple[str, Product], ...] = tuple(sorted(PINNED_ARKS.items()))
    cache: ChainCache | None = field(default=DEFAULT_CHAIN_CACHE, compare=False)

    @classmethod
    def with_roots(
        cls, roots: Mapping[str, Product | str], *, cache: ChainCache | None = DEFAULT_CHAIN_CACHE
    ) -> AmdTrust:
        pinned = tuple(sorted((fp.lower(), Product(p)) for fp, p in roots.items()))
        return cls(roots=pinned, cache=cache)

    def product_of(self, ark_sha256: str) -> Product | None:
        for fp, product in self.roots:
            if fp == ark_sha256:
                return product
        return None


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


#: A name as :meth:`x509.Name.__eq__` compares it (RDNs in order, each a set of (OID, value)),
#: as a plain tuple: equal keys exactly when the names are equal, compared at C speed.
NameKey = tuple[frozenset[tuple[str, str | bytes]], ...]


def name_key(name: x509.Name) -> NameKey:
    return tuple(frozenset((a.oid.dotted_string, a.value) for a in rdn) for rdn in name.rdns)


@dataclass(frozen=True)
class _Facts:
    """What the chain checks read from one certificate, read once per distinct DER."""

    subject: NameKey
    issuer: NameKey
    subject_cn: str
    issuer_cn: str
    sha256: str  # of the DER


class _PerCert(Generic[_V]):
    """A bounded memo keyed by the certificate object itself (its identity: the entry holds the
    certificate, so its id cannot be reused while the entry lives). Collateral is parsed once
    and passed again on every call, so the same objects come back; a hit is the value computed
    from those very bytes. Emptied when full; a plain dict (its operations are atomic)."""

    def __init__(self, maxsize: int) -> None:
        self._data: dict[int, tuple[x509.Certificate, _V]] = {}
        self._max = maxsize

    def get(self, cert: x509.Certificate) -> _V | None:
        entry = self._data.get(id(cert))
        return entry[1] if entry is not None and entry[0] is cert else None

    def put(self, cert: x509.Certificate, value: _V) -> None:
        if len(self._data) >= self._max:
            self._data.clear()
        self._data[id(cert)] = (cert, value)


_FACTS: _PerCert[_Facts] = _PerCert(512)
#: VCEK/VLEK -> the :class:`EndorsementKeyInfo` read from it (successes only).
_INFOS: _PerCert[EndorsementKeyInfo] = _PerCert(512)
#: Self-signed certificates whose self-signature verified (successes only).
_SELF_SIGNED: _PerCert[bool] = _PerCert(64)


def _facts(cert: x509.Certificate) -> _Facts:
    known = _FACTS.get(cert)
    if known is None:
        subject, issuer = cert.subject, cert.issuer
        known = _Facts(
            name_key(subject),
            name_key(issuer),
            common_name(subject),
            common_name(issuer),
            hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        )
        _FACTS.put(cert, known)
    return known


def subject_cn(cert: x509.Certificate) -> str:
    """``common_name(cert.subject)``, read once per distinct certificate."""
    return _facts(cert).subject_cn


def issuer_cn(cert: x509.Certificate) -> str:
    """``common_name(cert.issuer)``, read once per distinct certificate."""
    return _facts(cert).issuer_cn


def subject_key(cert: x509.Certificate) -> NameKey:
    """:func:`name_key` of ``cert.subject``, read once per distinct certificate."""
    return _facts(cert).subject


def issuer_key(cert: x509.Certificate) -> NameKey:
    """:func:`name_key` of ``cert.issuer``, read once per distinct certificate."""
    return _facts(cert).issuer


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``cert.issuer == issuer.subject``, with the names read once per distinct certificate."""
    return _facts(cert).issuer == _facts(issuer).subject


def _der_small_int(der: bytes, what: str) -> int:
    """Decode a DER INTEGER holding a small non-negative value (an SPL)."""
    if len(der) < 3 or der[0] != 0x02 or der[1] != len(der) - 2 or der[1] > 4:
        raise CollateralError(f"VCEK extension {what} is not a small DER INTEGER")
    value = int.from_bytes(der[2:], "big", signed=True)
    if value < 0 or value > 0xFF:
        raise CollateralError(f"VCEK extension {what} is out of range: {value}")
    return value


def _ext_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value
    raise CollateralError(f"VCEK extension {oid.dotted_string} has an unexpected type")


def endorsement_key_info(cert: x509.Certificate) -> EndorsementKeyInfo:
    """Read kind, TCB, hwID and product name from a VCEK/VLEK; raise :class:`CollateralError`."""
    known = _INFOS.get(cert)
    if known is None:
        known = _read_endorsement_key_info(cert)
        _INFOS.put(cert, known)
    return known


def _read_endorsement_key_info(cert: x509.Certificate) -> EndorsementKeyInfo:
    cn = subject_cn(cert)
    if cn == _CN_VCEK:
        kind = "vcek"
    elif cn == _CN_VLEK:
        kind = "vlek"
    else:
        raise CollateralError(f"certificate {cn!r} is neither a VCEK nor a VLEK")
    tcb: dict[str, int] = {}
    for name, oid in (
        ("bootloader", OID_BL_SPL),
        ("tee", OID_TEE_SPL),
        ("snp", OID_SNP_SPL),
        ("microcode", OID_UCODE_SPL),
        ("fmc", OID_FMC_SPL),
    ):
        raw = _ext_value(cert, oid)
        if raw is None:
            if name == "fmc":
                continue
            raise CollateralError(
                f"{kind.upper()} lacks the {name} SPL extension {oid.dotted_string}"
            )
        tcb[name] = _der_small_int(raw, oid.dotted_string)
    hwid = _ext_value(cert, OID_HW_ID)
    if hwid is not None and len(hwid) in (10, 66) and hwid[:2] == bytes([0x04, len(hwid) - 2]):
        # Some issuances wrap hwID in an OCTET STRING; a bare 8- or 64-byte hwID is never
        # unwrapped, whatever its first two bytes (one chip in 65,536 starts 04 3E).
        hwid = hwid[2:]
    if kind == "vcek" and (hwid is None or len(hwid) not in (8, 64)):
        raise CollateralError("VCEK lacks a hwID extension of 8 or 64 bytes")
    raw_name = _ext_value(cert, OID_PRODUCT_NAME)
    product_name = None
    if (
        raw_name is not None
        and len(raw_name) >= 2
        and raw_name[0] == 0x16
        and raw_name[1] == len(raw_name) - 2
    ):
        product_name = raw_name[2:].decode("ascii", "replace")
    return EndorsementKeyInfo(kind=kind, tcb=tcb, hwid=hwid, product_name=product_name)


def _check_window(cert: x509.Certificate, role: str, at: datetime) -> None:
    if not (cert.not_valid_before_utc <= at <= cert.not_valid_after_utc):
        raise CollateralError(
            f"{role} certificate is not valid at {at.isoformat()} (valid "
            f"{cert.not_valid_before_utc.isoformat()} .. {cert.not_valid_after_utc.isoformat()})",
            code="certificate_expired",
        )


def _check_pss_signed(
    signed_sig: bytes,
    tbs: bytes,
    algorithm: x509.ObjectIdentifier,
    params: object,
    hash_alg: hashes.HashAlgorithm | None,
    issuer: x509.Certificate,
    what: str,
) -> None:
    """Check an RSASSA-PSS/SHA-384 signature by ``issuer`` (the only algorithm AMD uses)."""
    if algorithm != SignatureAlgorithmOID.RSASSA_PSS or not isinstance(hash_alg, hashes.SHA384):
        raise VerificationError(f"{what} is not signed with RSASSA-PSS/SHA-384")
    if not isinstance(params, padding.PSS):
        raise VerificationError(f"{what} has unusable RSASSA-PSS parameters")
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise VerificationError(f"issuer of {what} does not have an RSA key")
    try:
        key.verify(signed_sig, tbs, params, hash_alg)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        raise VerificationError(
            f"signature on {what} does not verify", code="signature_invalid"
        ) from None


def _check_cert_signed(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    if not issued_by(cert, issuer):
        raise VerificationError(f"{what} is not issued by {subject_cn(issuer)!r}")
    try:
        params = cert.signature_algorithm_parameters
        hash_alg = cert.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError):
        raise VerificationError(f"{what} uses an unsupported signature algorithm") from None
    _check_pss_signed(
        cert.signature,
        cert.tbs_certificate_bytes,
        cert.signature_algorithm_oid,
        params,
        hash_alg,
        issuer,
        what,
    )


def _check_self_signed(ark: x509.Certificate) -> None:
    """The ARK's self-signature, checked once per distinct DER (the result depends on nothing
    else; a failure is not remembered, so it is raised again each time)."""
    if _SELF_SIGNED.get(ark) is None:
        _check_cert_signed(ark, ark, "ARK (self-signature)")
        _SELF_SIGNED.put(ark, True)


def _check_ca(cert: x509.Certificate, role: str) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise VerificationError(f"{role} has no basicConstraints") from None
    if not bc.ca:
        raise VerificationError(f"{role} is not a CA certificate")


def _find_issuer(
    cert: x509.Certificate, pool: Sequence[x509.Certificate], role: str
) -> x509.Certificate:
    found = [c for c in pool if issued_by(cert, c) and c is not cert]
    if not found:
        raise CollateralError(
            f"collateral lacks the {role} certificate {_facts(cert).issuer_cn!r}",
            code="collateral_missing",
        )
    last: VerificationError | None = None
    for cand in found:  # several with the same name (e.g. re-issued): take one that verifies
        try:
            _check_cert_signed(cert, cand, f"certificate {subject_cn(cert)!r}")
            return cand
        except VerificationError as e:
            last = e
    raise last if last is not None else VerificationError(f"no usable {role} certificate")


def _check_crls(
    crls: Iterable[x509.CertificateRevocationList],
    ark: x509.Certificate,
    ask: x509.Certificate,
    at: datetime,
) -> tuple[datetime | None, datetime | None]:
    """Check every CRL issued by ``ark``; refuse a revoked ASK/ASVK. Returns the CRL window."""
    start: datetime | None = None
    end: datetime | None = None
    for crl in crls:
        if crl.issuer != ark.subject:
            continue  # another product's or vendor's CRL
        what = f"CRL of {common_name(ark.subject)!r}"
        try:
            params = crl.signature_algorithm_parameters
            hash_alg = crl.signature_hash_algorithm
        except (UnsupportedAlgorithm, ValueError):
            raise CollateralError(f"{what} uses an unsupported signature algorithm") from None
        try:
            _check_pss_signed(
                crl.signature,
                crl.tbs_certlist_bytes,
                crl.signature_algorithm_oid,
                params,
                hash_alg,
                ark,
                what,
            )
        except VerificationError as e:
            raise CollateralError(str(e), code="crl_invalid") from None
        last, nxt = crl.last_update_utc, crl.next_update_utc
        if at < last or (nxt is not None and at > nxt):
            raise CollateralError(
                f"{what} is not current at {at.isoformat()} (this update {last.isoformat()}, "
                f"next update {nxt.isoformat() if nxt else 'none'})",
                code="crl_expired",
            )
        start = last if start is None else max(start, last)
        if nxt is not None:
            end = nxt if end is None else min(end, nxt)
        if crl.get_revoked_certificate_by_serial_number(ask.serial_number) is not None:
            raise VerificationError(
                f"certificate {common_name(ask.subject)!r} (serial {ask.serial_number:#x}) is revoked by "
                f"the {what}",
                code="certificate_revoked",
            )
    return start, end


def verify_chain(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
    trust: AmdTrust,
) -> VerifiedChain:
    """Verify ``leaf`` (VCEK/VLEK) -> ASK/ASVK -> pinned ARK at ``at``, with CRLs from ``crls``.

    Steps: (1) leaf is a VCEK/VLEK with a P-384 key and its extensions parse; (2) its issuer
    (ASK for a VCEK, ASVK for a VLEK) is in ``pool`` and signed it (RSASSA-PSS/SHA-384);
    (3) the ARK is in ``pool``, self-signed, and its SHA-256 is pinned in ``trust``; (4) every
    certificate is valid at ``at``; (5) ARK-signed CRLs are authentic and current and do not
    list the ASK/ASVK. Raises :class:`VerificationError` or :class:`CollateralError`.
    """
    info = endorsement_key_info(leaf)
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VerificationError(f"{info.kind.upper()} key is not ECDSA P-384")
    role_i = "ASVK" if info.kind == "vlek" else "ASK"
    ask = _find_issuer(leaf, pool, role_i)
    ask_cn = subject_cn(ask)
    if (info.kind == "vlek") != ask_cn.startswith("SEV-VLEK-"):
        raise VerificationError(f"{info.kind.upper()} is issued by {ask_cn!r}, not by an {role_i}")
    _check_ca(ask, role_i)
    ark = _find_issuer(ask, pool, "ARK")
    _check_ca(ark, "ARK")
    ark_fp = _facts(ark).sha256
    product = trust.product_of(ark_fp)
    if product is None:
        raise VerificationError(
            f"root {subject_cn(ark)!r} (SHA-256 {ark_fp[:16]}...) is not a pinned AMD ARK",
            code="root_not_pinned",
        )
    _check_self_signed(ark)
    for cert, role in ((leaf, info.kind.upper()), (ask, role_i), (ark, "ARK")):
        _check_window(cert, role, at)
    crl_start, crl_end = _check_crls(crls, ark, ask, at)
    if info.product_name is not None and not info.product_name.lower().startswith(product.value):
        raise VerificationError(
            f"{info.kind.upper()} product {info.product_name!r} does not match the {product.value} ARK"
        )
    not_before = max(c.not_valid_before_utc for c in (leaf, ask, ark))
    not_after = min(c.not_valid_after_utc for c in (leaf, ask, ark))
    if crl_start is not None:
        not_before = max(not_before, crl_start)
    if crl_end is not None:
        not_after = min(not_after, crl_end)
    return VerifiedChain(
        product=product,
        public_key=key,
        info=info,
        not_before=not_before,
        not_after=not_after,
        leaf_sha256=_facts(leaf).sha256,
        ark_sha256=ark_fp,
        issuer_signatures=(ask.signature, ark.signature),
        revocation_checked=crl_start is not None,
    )


def check_ca_chain(
    certs: Sequence[x509.Certificate], at: datetime, trust: AmdTrust
) -> tuple[Product, x509.Certificate]:
    """Check an AMD KDS ``cert_chain`` (ASK or ASVK, then ARK) as :func:`verify_chain` checks
    those two: the ARK is self-signed and pinned in ``trust``, it signed the ASK/ASVK, both are
    CAs, both valid at ``at``. Returns the product and the ARK. For fetched collateral."""
    if len(certs) != 2:
        raise CollateralError(
            f"AMD cert chain has {len(certs)} certificates, expected 2", code="collateral_invalid"
        )
    ask, ark = certs
    _check_ca(ask, "ASK/ASVK")
    _check_ca(ark, "ARK")
    ark_fp = hashlib.sha256(ark.public_bytes(serialization.Encoding.DER)).hexdigest()
    product = trust.product_of(ark_fp)
    if product is None:
        raise VerificationError(
            f"root {common_name(ark.subject)!r} (SHA-256 {ark_fp[:16]}...) is not a pinned AMD ARK",
            code="root_not_pinned",
        )
    _check_cert_signed(ark, ark, "ARK (self-signature)")
    _check_cert_signed(ask, ark, f"certificate {common_name(ask.subject)!r}")
    for cert, role in ((ask, "ASK/ASVK"), (ark, "ARK")):
        _check_window(cert, role, at)
    return product, ark


def check_crl(crl: x509.CertificateRevocationList, ark: x509.Certificate, at: datetime) -> None:
    """Check a KDS CRL as :func:`verify_chain` does: issued and signed (RSASSA-PSS/SHA-384) by
    ``ark`` (a pinned ARK, see :func:`check_ca_chain`) and current at ``at``."""
    if crl.issuer != ark.subject:
        raise CollateralError(
            f"CRL is not issued by {common_name(ark.subject)!r}", code="crl_invalid"
        )
    what = f"CRL of {common_name(ark.subject)!r}"
    try:
        params = crl.signature_algorithm_parameters
        hash_alg = crl.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError):
        raise CollateralError(
            f"{what} uses an unsupported signature algorithm", code="crl_invalid"
        ) from None
    try:
        _check_pss_signed(
            crl.signature,
            crl.tbs_certlist_bytes,
            crl.signature_algorithm_oid,
            params,
            hash_alg,
            ark,
            what,
        )
    except VerificationError as e:
        raise CollateralError(str(e), code="crl_invalid") from None
    last, nxt = crl.last_update_utc, crl.next_update_utc
    if nxt is None:
        raise CollateralError(f"{what} has no nextUpdate", code="crl_invalid")
    if at < last or at > nxt:
        raise CollateralError(
            f"{what} is not current at {at.isoformat()} (this update {last.isoformat()}, next update "
            f"{nxt.isoformat()})",
            code="crl_expired",
        )
