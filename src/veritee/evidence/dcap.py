"""Intel DCAP ECDSA quotes: the parts SGX (v3) and TDX (v4, v5) quotes share, and their collateral.

Spec references (Intel SGX/TDX DCAP Quoting Library API, appendix A "Quote Format"; Intel PCS
API v4 for TCB info / QE identity; Intel SGX PCK Certificate and CRL Profile):

* Table A.2 / A.3 "Quote Header" (48 bytes): version, attestation key type, TEE type,
  QE SVN / PCE SVN (v3) or reserved, QE vendor ID, user data.
* Quote body: SGX report body (384 bytes, v3), TD report 1.0 (584 bytes, v4) or a v5 body
  descriptor ``type u16 || size u32`` followed by SGX report (type 1), TD report 1.0 (type 2)
  or TD report 1.5 (type 3, 648 bytes).
* "ECDSA 256-bit Quote Signature Data Structure": quote signature (r||s), attestation key
  (x||y), then for v3 the QE report, its signature, QE authentication data and certification
  data (type 5, PEM PCK chain); for v4/v5 certification data type 6 ("QE Report Certification
  Data") wraps the same QE report fields and a nested type-5 PCK chain.

Verification (:func:`verify_quote`) first runs the cheap checks of steps 2, 6 and 8 (validity
windows of the PCK chain and the chosen collateral, TCB info for this TEE, FMSPC and PCE ID) on
the data before its signatures are checked, and refuses on them with every failure it found and
the costly checks it did not reach (:data:`NOT_REACHED`; :mod:`veritee.evidence._cheap`). Then
it runs these numbered steps; each raises on failure:

1. header: ECDSA-256 attestation key, Intel QE vendor ID;
2. PCK chain to the Intel SGX Root CA pinned by SHA-256 fingerprint, validity at ``at``;
3. QE report signed by the PCK key;
4. QE report data[0:32] == SHA-256(attestation key || QE auth data), data[32:64] zero;
5. quote (header || body) signed by the attestation key;
6. collateral (TCB info, QE identity, PCK CRL, root CA CRL) signed via chains to the pinned
   root, TCB info and QE identity by the Intel SGX TCB Signing certificate the root issued
   (:func:`_tcb_signing_chain`), every window open at ``at``
   (:class:`~veritee.errors.CollateralError` otherwise);
7. PCK certificate and PCK CA not revoked;
8. FMSPC / PCE ID / TEE kind of the TCB info match the PCK certificate and quote;
9. QE identity (MRSIGNER, ISVPRODID, masked MISCSELECT / ATTRIBUTES) and its TCB level;
10. platform TCB level (SGX components + PCE SVN; TDX: TEE_TCB_SVN, TDX module identity);
11. converge platform, TDX module and QE status into one Intel TCB status.

A TCB status other than ``UpToDate`` is not an authenticity failure: it is returned with the
advisory IDs and the caller turns it into a finding. "No matching TCB level" is a failure
(code ``tcb_level_not_found``), as in Intel's QVL (``STATUS_TCB_NOT_SUPPORTED``), and so is
``Revoked`` (code ``tcb_revoked``), QVL's terminal result, which no policy may accept.

Verified collateral and PCK chains are cached (bounded, thread-safe LRU) keyed by the SHA-256
of their exact bytes and the pinned roots, and reused only for a time inside their windows.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from veritee import certs as _certs
from veritee._frozen import maker as _maker
from veritee._lru import Lru as _Lru
from veritee.collateral import Collateral
from veritee.collateral import marks as _marks
from veritee.collateral.marks import Mark, Marks
from veritee.errors import CollateralError, MalformedError, VerificationError, VeriteeError
from veritee.evidence._cheap import CheapChecks
from veritee.evidence.claims import Reason
from veritee.evidence.dcap_pck import (
    PckExtension,
    parse_pck_extension,
)
from veritee.evidence.dcap_quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    BODY_SGX,
    BODY_SIZES,
    BODY_TD10,
    BODY_TD15,
    ECDSA_SIG_SIZE,
    INTEL_QE_VENDOR_ID,
    INTEL_SGX_ROOT_CA_SHA256,
    SGX_EXTENSIONS_OID,
    TCB_STATUSES,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    EnclaveReport,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    looks_like_quote,
    parse_quote,
    trailing_findings,
)
from veritee.evidence.dcap_tcb import (
    Levels,
    TdxTcbInput,
    check_qe_identity,
    check_tcb_info_levels,
    collateral_time,
    converge_status,
    platform_tcb,
    qe_tcb,
)
from veritee.reasons import Code

# The quote structures, the PCK extension and the TCB evaluation live in dcap_quote,
# dcap_pck and dcap_tcb; the names callers use most are re-exported here.
__all__ = [
    "BODY_SGX",
    "BODY_SIZES",
    "BODY_TD10",
    "BODY_TD15",
    "DEFAULT_CACHE",
    "INTEL_QE_VENDOR_ID",
    "INTEL_SGX_ROOT_CA_SHA256",
    "TCB_STATUSES",
    "TEE_TYPE_SGX",
    "TEE_TYPE_TDX",
    "CheckedSet",
    "DcapCache",
    "DcapResult",
    "DcapTrust",
    "EnclaveReport",
    "PckExtension",
    "Quote",
    "QuoteHeader",
    "QuoteSignatureData",
    "TdxTcbInput",
    "cheap_checks",
    "check_collateral_set",
    "clear_caches",
    "collateral_marks",
    "looks_like_quote",
    "parse_pck_extension",
    "parse_quote",
    "trailing_findings",
    "verify_quote",
]

# --- small crypto helpers -------------------------------------------------------------------


def _raw_sig_to_der(sig: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


def _p256_key(raw_xy: bytes, name: str) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw_xy)
    except ValueError:
        raise VerificationError(f"{name} is not a P-256 point", code="key_invalid") from None


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _verify_raw(
    key: ec.EllipticCurvePublicKey, sig: bytes, msg: bytes, what: str, *, code: str
) -> None:
    if len(sig) != ECDSA_SIG_SIZE:
        raise VerificationError(f"{what}: signature is not 64 bytes", code=code)
    try:
        key.verify(_raw_sig_to_der(sig), msg, _ECDSA_SHA256)
    except InvalidSignature:
        raise VerificationError(f"{what}: signature does not verify", code=code) from None


class DcapCache:
    """What a DCAP verifier remembers between verifications: verified PCK chains, attestation
    keys, CA links, verified collateral sets (with their memo of TCB verdicts), the cheap
    checks' parse of a set and the sets' ranks. Bounded, thread-safe LRUs.

    A cache belongs to a :class:`DcapTrust` (as :class:`veritee.evidence.amd.ChainCache` to an
    ``AmdTrust``); every trust not given one of its own shares :data:`DEFAULT_CACHE`. Entries
    are keyed by the exact bytes they were made from and the pinned roots' tag
    (``DcapTrust.cache_tag``), so trusts sharing a cache never see each other's verdicts. What a
    hit returns was established when the entry was made; validity windows are checked against
    ``at`` on every use.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be positive")
        small = max(1, maxsize // 4)
        #: PCK chains verified to a pinned root, by (roots' tag, the chain's PEM as quoted).
        self.pck_chains: _Lru[_PckKey, _PckChain] = _Lru(maxsize)
        #: Attestation keys built, by their raw 64 bytes.
        self.att_keys: _Lru[bytes, ec.EllipticCurvePublicKey] = _Lru(maxsize)
        #: Certificate links whose child is a CA and whose signature verified: (child, issuer) DER.
        self.ca_links: _Lru[tuple[bytes, bytes], bool] = _Lru(small)
        #: Collateral sets whose every signature and chain verified, by their set key.
        self.collateral: _Lru[_SetKey, _VerifiedCollateral] = _Lru(small)
        #: What the cheap checks read of a set not verified yet (windows, TCB info), by set key.
        self.collateral_cheap: _Lru[_SetKey, _CollateralCheap] = _Lru(small)
        #: How new a set is (its TCB evaluation number and CRL dates), by set key.
        self.ranks: _Lru[_SetKey, _Rank] = _Lru(small)

    def clear(self, *, keep_collateral: bool = False) -> None:
        """Forget the verified PCK chains and attestation keys, and (unless kept) the collateral
        sets, their ranks and the CA links. A forgotten platform's PCK certificate key is
        forgotten too (:func:`veritee.certs.forget_keys`: a platform never seen builds it)."""
        leaves = [chain.leaf_key for chain in self.pck_chains.values()]
        self.pck_chains.clear()
        self.att_keys.clear()
        _certs.forget_keys(leaves)
        if not keep_collateral:
            self.ca_links.clear()
            self.collateral.clear()
            self.collateral_cheap.clear()
            self.ranks.clear()


#: The cache of every :class:`DcapTrust` that names no other.
DEFAULT_CACHE = DcapCache()


@dataclass(frozen=True)
class DcapTrust:
    """Trust anchors for DCAP: accepted root CA fingerprints (SHA-256 of DER), and the cache of
    what was verified under them.

    The default pins the Intel SGX Root CA only. Tests pass their own fake root here. ``cache``:
    the process-wide :data:`DEFAULT_CACHE` unless the trust is given one of its own.
    """

    root_sha256: frozenset[bytes] = frozenset({INTEL_SGX_ROOT_CA_SHA256})
    cache: DcapCache = field(default=DEFAULT_CACHE, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.cache, DcapCache):  # (None is no cache: a DcapCache is needed)
            raise TypeError(f"DcapTrust.cache must be a DcapCache, not {type(self.cache).__name__}")

    @functools.cached_property
    def cache_tag(self) -> bytes:
        """The pinned roots' fingerprints, sorted and joined (computed once: the set is frozen)."""
        return b"".join(sorted(self.root_sha256))


DEFAULT_TRUST = DcapTrust()


@dataclass(frozen=True)
class DcapResult:
    """What DCAP verification establishes beyond the quote body itself."""

    tcb_status: str
    advisory_ids: tuple[str, ...]
    fmspc: str
    pce_id: str
    platform_tcb_status: str
    qe_tcb_status: str
    tdx_module_tcb_status: str | None
    tcb_date: str | None
    tcb_evaluation_data_number: int
    collateral_expires: datetime
    findings: tuple[Reason, ...]

    def claims(self, *, tdx: bool = False) -> dict[str, Any]:
        """The claims SGX and TDX quotes gain from collateral (TDX: ``tdx_module_tcb_status``)."""
        out: dict[str, Any] = {
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "fmspc": self.fmspc,
            "qe_tcb_status": self.qe_tcb_status,
            "tcb_date": self.tcb_date,
            "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
        }
        if tdx:
            out["tdx_module_tcb_status"] = self.tdx_module_tcb_status
        return out


#: ``DcapResult(...)`` with every field positional (one per cold verification and TCB).
_make_result = _maker(DcapResult)


# --- certificate chains ---------------------------------------------------------------------


def _load_pem_chain(pem: bytes, name: str) -> list[x509.Certificate]:
    certs = _certs.load_pem_certificates(pem.rstrip(b"\x00 \t\r\n"), name)
    if not certs:
        raise MalformedError(f"{name} holds no certificate", field=name)
    return certs


#: What cryptography raises when it parses a field lazily and finds it malformed.
_LAZY_PARSE_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)


def _cert_window(cert: x509.Certificate) -> tuple[datetime, datetime]:
    return _certs.validity(cert)


def _extensions(cert: x509.Certificate, name: str) -> x509.Extensions:
    try:
        return cert.extensions
    except ValueError as e:
        raise MalformedError(
            f"{name}: certificate extensions do not parse: {e}", field=name
        ) from None


def _pubkey(cert: x509.Certificate, name: str) -> Any:
    try:
        return _certs.public_key_of(cert)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise MalformedError(f"{name}: certificate key does not parse: {e}", field=name) from None


def _der(cert: x509.Certificate) -> bytes:
    return _certs.der_of(cert)


def _is_ca(cert: x509.Certificate, name: str) -> bool:
    try:
        return _certs.is_ca(cert)  # (read once per certificate: the leaf's when it was checked)
    except ValueError as e:
        raise MalformedError(
            f"{name}: certificate extensions do not parse: {e}", field=name
        ) from None


def _verify_chain(certs: list[x509.Certificate], trust: DcapTrust, name: str) -> None:
    """Each certificate is signed by the next; the last one is a pinned root. Time is not checked."""
    root = certs[-1]
    if _certs.sha256_of(root) not in trust.root_sha256:
        raise VerificationError(
            f"{name}: root certificate is not a pinned Intel SGX Root CA", code="root_not_pinned"
        )
    _certs.keep_anchor(root)  # configuration, not evidence: kept across clear_caches()
    for i, (child, parent) in enumerate(itertools.pairwise(certs)):
        # A link from a CA (the PCK CA to the root) recurs in every chain and collateral set of
        # its platforms: its signature is checked once per DER pair, and a link is remembered
        # only after the parent was found a CA (below).
        link: tuple[bytes, bytes] | None = None
        if i > 0 or _is_ca(child, name):
            link = (_der(child), _der(parent))
            if trust.cache.ca_links.get(link):
                continue
        if not _is_ca(parent, name):
            raise VerificationError(
                f"{name}: certificate {i + 1} is not a CA", code="chain_invalid"
            )
        try:
            _certs.verify_issued_by(child, parent)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise VerificationError(
                f"{name}: certificate {i} is not signed by certificate {i + 1}",
                code="chain_invalid",
            ) from None
        if link is not None:
            trust.cache.ca_links.put(link, True)


class _Window(NamedTuple):
    """One validity window of a piece of collateral or a certificate (a tuple: a cold
    verification makes a dozen)."""

    name: str
    not_before: datetime
    not_after: datetime


def _check_windows(
    windows: tuple[_Window, ...],
    span: tuple[datetime, datetime],
    at: datetime,
    err: type[VerificationError],
) -> None:
    """Raise ``err`` naming the first window closed at ``at`` (fast path: the precomputed span)."""
    if span[0] <= at <= span[1]:
        return
    early, late = (
        (Code.COLLATERAL_NOT_YET_VALID, Code.COLLATERAL_EXPIRED)
        if err is CollateralError
        else (Code.CERTIFICATE_NOT_YET_VALID, Code.CERTIFICATE_EXPIRED)
    )
    for w in windows:
        if at < w.not_before:
            raise err(f"{w.name} is not valid before {w.not_before.isoformat()}", code=early)
        if at > w.not_after:
            raise err(f"{w.name} expired at {w.not_after.isoformat()}", code=late)


def _span(windows: Iterable[_Window]) -> tuple[datetime, datetime]:
    """The intersection of ``windows``: the times at which every one of them is open."""
    ws = windows if isinstance(windows, tuple | list) else list(windows)
    return max([w.not_before for w in ws]), min([w.not_after for w in ws])


#: A PCK chain's cache key: the pinned roots' tag and the chain's exact PEM bytes (compared in
#: full on a hit; Python's keyed hash of 4 KB costs half a SHA-256 of it).
_PckKey = tuple[bytes, bytes]


@dataclass(frozen=True)
class _PckChain:
    """A PCK chain whose signatures were checked up to a pinned root."""

    leaf_key: ec.EllipticCurvePublicKey
    ext: PckExtension
    leaf_serial: int
    ca_name: bytes
    ca_spki: bytes
    ca_serial: int
    windows: tuple[_Window, ...]
    span: tuple[datetime, datetime]
    key: _PckKey


#: ``_PckChain(...)`` with every field positional, without the frozen dataclass's per-field
#: ``object.__setattr__`` (one per new platform).
_make_pck_chain = _maker(_PckChain)


_CHAIN_ROLES = ("PCK certificate", "PCK CA", "root CA")


def _pck_chain_key(pem: bytes, trust: DcapTrust) -> _PckKey:
    return trust.cache_tag, bytes(pem)


def _pck_chain(
    pem: bytes, trust: DcapTrust, key: _PckKey, cheap: _PckCheap | None = None
) -> _PckChain:
    cache = trust.cache.pck_chains
    hit = None if cheap is not None else cache.get(key)  # (cheap: not cached just now)
    if hit is not None:
        return hit
    try:
        if cheap is not None:  # parsed for the cheap checks: its certificates and SGX extension
            chain = _pck_chain_uncached(
                cheap.certs, trust, key, cheap.ext, cheap.windows, cheap.span
            )
        else:
            chain = _pck_chain_uncached(_load_pem_chain(pem, "pck_chain"), trust, key)
    except _LAZY_PARSE_ERRORS as e:
        raise MalformedError(f"PCK chain does not parse: {e}", field="pck_chain") from None
    cache.put(key, chain)
    return chain


_SGX_OID = x509.ObjectIdentifier(SGX_EXTENSIONS_OID)


_PCK_WINDOW_NAMES = tuple(f"PCK chain certificate {i} ({r})" for i, r in enumerate(_CHAIN_ROLES))


def _sgx_extension_value(leaf: x509.Certificate) -> bytes:
    """The value of the PCK certificate's SGX extension: as read when the certificate was checked
    (Intel's layout), else from ``cert.extensions``; MalformedError when it has none."""
    read = _certs.intel_extensions(leaf)
    if read is not None and read.sgx is not None:
        return read.sgx
    try:
        ext_value = _extensions(leaf, "pck_chain").get_extension_for_oid(_SGX_OID).value
    except x509.ExtensionNotFound:
        raise MalformedError(
            "PCK certificate has no SGX extension", field="pck_extension"
        ) from None
    if not isinstance(ext_value, x509.UnrecognizedExtension):
        raise MalformedError("SGX extension of unexpected kind", field="pck_extension")
    return ext_value.value


def _pck_windows(certs: list[x509.Certificate]) -> tuple[_Window, ...]:
    if len(certs) == 3:  # leaf, PCK CA, root (the only chain accepted)
        n0, n1, n2 = _PCK_WINDOW_NAMES
        return (
            _Window(n0, *_certs.validity(certs[0])),
            _Window(n1, *_certs.validity(certs[1])),
            _Window(n2, *_certs.validity(certs[2])),
        )
    return tuple(
        _Window(
            f"PCK chain certificate {i} ({_CHAIN_ROLES[i] if i < 3 else 'extra'})", *_cert_window(c)
        )
        for i, c in enumerate(certs)
    )


@dataclass(frozen=True)
class _PckCheap:
    """What the cheap checks read from a PCK chain whose signatures are not checked yet."""

    certs: list[x509.Certificate]
    windows: tuple[_Window, ...]
    span: tuple[datetime, datetime]
    fmspc: str
    pce_id: str
    ca_name: bytes
    ext: PckExtension


_make_pck_cheap = _maker(_PckCheap)  # (as _make_pck_chain)


#: What reading a chain or collateral set for the cheap checks may raise: it then has none.
_CHEAP_ERRORS: tuple[type[Exception], ...] = (
    VeriteeError,
    x509.ExtensionNotFound,
    *_certs.PARSE_ERRORS,
)


def _pck_cheap(pem: bytes, key: _PckKey, trust: DcapTrust) -> _PckChain | _PckCheap | None:
    """The verified chain when cached, else the chain parsed without any signature check
    (None where it does not parse: the full check then names the fault)."""
    hit = trust.cache.pck_chains.get(key)
    if hit is not None:
        return hit
    try:
        certs = _load_pem_chain(pem, "pck_chain")
        if len(certs) != 3:
            return None
        ext = parse_pck_extension(_sgx_extension_value(certs[0]))
        (b0, a0), (b1, a1), (b2, a2) = (_certs.validity(c) for c in certs)
        n0, n1, n2 = _PCK_WINDOW_NAMES
        windows = (_Window(n0, b0, a0), _Window(n1, b1, a1), _Window(n2, b2, a2))
        span = max(b0, b1, b2), min(a0, a1, a2)  # (_span of the three)
        return _make_pck_cheap(certs, windows, span, ext.fmspc.hex().upper(), ext.pce_id.hex().upper(),
                         _certs.subject_der(certs[1]), ext)  # fmt: skip
    except _CHEAP_ERRORS:
        return None


def _pck_chain_uncached(
    certs: list[x509.Certificate],
    trust: DcapTrust,
    key: _PckKey,
    ext: PckExtension | None = None,
    windows: tuple[_Window, ...] | None = None,
    span: tuple[datetime, datetime] | None = None,
) -> _PckChain:
    if windows is None:
        windows = _pck_windows(certs)
    if span is None:
        span = _span(windows)
    if len(certs) != 3:
        raise VerificationError(
            f"PCK chain has {len(certs)} certificates, expected 3", code="chain_invalid"
        )
    _verify_chain(certs, trust, "PCK chain")
    leaf, ca = certs[0], certs[1]
    leaf_key = _pubkey(leaf, "pck_chain")
    if not _certs.is_ec_public_key(leaf_key) or not isinstance(leaf_key.curve, ec.SECP256R1):
        raise VerificationError("PCK certificate key is not ECDSA P-256", code="key_invalid")
    if ext is None:
        ext = parse_pck_extension(_sgx_extension_value(leaf))
    return _make_pck_chain(
        leaf_key, ext, leaf.serial_number, _certs.subject_der(ca), _certs.public_key_der(ca),
        ca.serial_number, windows, span, key,
    )  # fmt: skip


# --- collateral -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _RawCollateral:
    """The exact bytes of one set of DCAP collateral (PCS API v4 / QuoteCollateralV3)."""

    tcb_info: bytes
    tcb_info_signature: bytes
    tcb_info_chain: bytes
    qe_identity: bytes
    qe_identity_signature: bytes
    qe_identity_chain: bytes
    pck_crl: bytes
    pck_crl_chain: bytes
    root_crl: bytes
    source: str

    def digest(self, trust: DcapTrust) -> bytes:
        h = hashlib.sha256(trust.cache_tag)
        for part in (
            self.tcb_info, self.tcb_info_signature, self.tcb_info_chain, self.qe_identity,
            self.qe_identity_signature, self.qe_identity_chain, self.pck_crl,
            self.pck_crl_chain, self.root_crl,
        ):  # fmt: skip
            h.update(len(part).to_bytes(4, "big"))
            h.update(part)
        return h.digest()


@dataclass(frozen=True)
class _VerifiedCollateral:
    """Collateral whose signatures and chains checked out; windows are checked on every use."""

    tcb_info: dict[str, Any]
    qe_identity: dict[str, Any]
    pck_crl_issuer: bytes
    pck_crl_issuer_spki: bytes
    #: What the PCK CRL and the root CA CRL revoke (``serial in``; :func:`veritee.certs.revoked`).
    pck_revoked: Container[int]
    root_revoked: Container[int]
    windows: tuple[_Window, ...]
    span: tuple[datetime, datetime]
    fmspc: str
    #: Computes :attr:`marks` (formatting the CRL issuers' names), on first use only: a caller
    #: without high-water marks never needs them.
    marks_from: Callable[[], tuple[Mark, ...]] = field(default=tuple, compare=False, repr=False)
    #: Steps 7-11 are a pure function of (this collateral, the PCK chain's CA, FMSPC, PCE ID and
    #: TCB, the QE report, the TD TCB input) once the leaf's revocation is checked: successful
    #: results are memoized here (:func:`verify_quote`).
    memo: _Lru[tuple[Any, ...], DcapResult] = field(
        default_factory=lambda: _Lru(256), compare=False, repr=False
    )
    #: The TCB info's and QE identity's levels in Intel QVL's order, as checked.
    platform_levels: Levels | None = field(default=None, compare=False, repr=False)
    qe_levels: Levels | None = field(default=None, compare=False, repr=False)
    #: Each TDX module identity's levels in QVL's order (one per ``tdxModuleIdentities`` entry).
    module_levels: tuple[Levels, ...] | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def marks(self) -> tuple[Mark, ...]:
        """How new each part is (:mod:`veritee.collateral.marks`), held against the relying
        party's high-water marks on every use."""
        return self.marks_from()


#: ``_VerifiedCollateral(...)`` with every field positional, its memo a new ``Lru(256)`` (one per
#: cold verification: its 15 fields without the frozen dataclass's ``object.__setattr__``).
_make_verified = _maker(_VerifiedCollateral)

#: A collateral set's cache key: SHA-256 over its exact bytes and the pinned roots, or a
#: test-vector-layout document's exact strings and the pinned roots' tag (:func:`_layout_key`).
_SetKey = bytes | tuple[object, ...]


def clear_caches(*, keep_collateral: bool = False) -> None:
    """Forget what :data:`DEFAULT_CACHE` holds (:meth:`DcapCache.clear`) and, unless collateral
    is kept, the checked CA certificates (:func:`veritee.certs.forget_checked`: what every
    platform's chain shares with the collateral; the pinned roots are kept). For collateral
    reload, tests and benchmarks; a trust with a cache of its own clears it with
    ``trust.cache.clear()``."""
    DEFAULT_CACHE.clear(keep_collateral=keep_collateral)
    if not keep_collateral:
        _certs.forget_checked()


def _der_or_hex(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError(f"{name} must be a string", field=name)
    if value.lstrip().startswith("-----BEGIN"):
        return _certs.load_pem_crl(value.encode(), name).public_bytes(serialization.Encoding.DER)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedError(f"{name} is not hex", field=name) from None


def _str(doc: dict[str, Any], key: str, src: str) -> str:
    v = doc.get(key)
    if not isinstance(v, str):
        raise MalformedError(f"collateral {src}: {key} must be a string", field=key)
    return v


def _raw_from_layout(doc: dict[str, Any]) -> _RawCollateral:
    src = str(doc.get("_source", "collateral"))
    return _RawCollateral(
        tcb_info=_str(doc, "tcb_info", src).encode(),
        tcb_info_signature=_der_or_hex(doc.get("tcb_info_signature"), "tcb_info_signature"),
        tcb_info_chain=_str(doc, "tcb_info_issuer_chain", src).encode(),
        qe_identity=_str(doc, "qe_identity", src).encode(),
        qe_identity_signature=_der_or_hex(
            doc.get("qe_identity_signature"), "qe_identity_signature"
        ),
        qe_identity_chain=_str(doc, "qe_identity_issuer_chain", src).encode(),
        pck_crl=_der_or_hex(doc.get("pck_crl"), "pck_crl"),
        pck_crl_chain=_str(doc, "pck_crl_issuer_chain", src).encode(),
        root_crl=_der_or_hex(doc.get("root_ca_crl"), "root_ca_crl"),
        source=src,
    )


def _raw_member(doc: dict[str, Any], key: str) -> bytes:
    """The exact text of ``doc[key]``: from ``_raw`` when the loader kept it, else compact JSON.

    Intel PCS responses are compact JSON with keys in signing order, so the compact
    re-serialization reproduces the signed bytes; if it does not, the signature check fails.
    """
    raw = doc.get("_raw")
    if isinstance(raw, str | bytes):
        text = raw.decode() if isinstance(raw, bytes) else raw
        start = text.find(f'"{key}":')
        end = text.rfind(',"signature"')
        if start != -1 and end > start:
            return text[start + len(key) + 3 : end].encode()
    return json.dumps(doc[key], separators=(",", ":"), ensure_ascii=False).encode()


def _pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _raw_from_bag(collateral: Collateral) -> _RawCollateral | None:
    """Assemble collateral from separate PCS responses, CRLs and certificates in the bag."""
    tcb = next((d for d in collateral.documents if "tcbInfo" in d and "signature" in d), None)
    qe = next(
        (d for d in collateral.documents if "enclaveIdentity" in d and "signature" in d), None
    )
    if tcb is None or qe is None:
        return None
    roots = [c for c in collateral.certificates if c.subject == c.issuer]
    root_names = {r.subject for r in roots}
    # Only certificates that could pass _tcb_signing_chain: the exact CN, issued by a root here.
    signing = [
        c for c in collateral.certificates if c.issuer in root_names and _is_tcb_signer_name(c)
    ]
    cas = [
        c
        for c in collateral.certificates
        if c.subject != c.issuer and "PCK" in c.subject.rfc4514_string()
    ]
    root_crls = [c for c in collateral.crls if c.issuer in root_names]
    pck_crls = [c for c in collateral.crls if c.issuer not in root_names]
    if not (roots and signing and cas and root_crls and pck_crls):
        raise CollateralError(
            "collateral lacks a root CA, TCB signing certificate, PCK CA, root CRL or PCK CRL",
            code="collateral_missing",
        )
    tcb_chain = _pem([signing[0], roots[0]])
    return _RawCollateral(
        tcb_info=_raw_member(tcb, "tcbInfo"),
        tcb_info_signature=_der_or_hex(tcb["signature"], "tcbInfo.signature"),
        tcb_info_chain=tcb_chain,
        qe_identity=_raw_member(qe, "enclaveIdentity"),
        qe_identity_signature=_der_or_hex(qe["signature"], "enclaveIdentity.signature"),
        qe_identity_chain=tcb_chain,
        pck_crl=pck_crls[0].public_bytes(serialization.Encoding.DER),
        pck_crl_chain=_pem([cas[0], roots[0]]),
        root_crl=root_crls[0].public_bytes(serialization.Encoding.DER),
        source="collateral files",
    )


def _load_crl(der: bytes, name: str) -> _certs.AnyCrl:
    return _certs.read_der_crl(der, name)  # (a CRL of Intel's layout: read, no x509 object)


def _crl_window(crl: _certs.AnyCrl, name: str) -> _Window:
    nxt = crl.next_update_utc
    if nxt is None:
        raise CollateralError(f"{name} has no nextUpdate", code="collateral_invalid")
    return _Window(name, crl.last_update_utc, nxt)


def _check_crl(crl: _certs.AnyCrl, issuer: x509.Certificate, name: str) -> None:
    key = _pubkey(issuer, name)
    if not _certs.same_name(crl, issuer) or not _certs.is_ec_public_key(key):
        raise CollateralError(
            f"{name} is not issued by {issuer.subject.rfc4514_string()}", code="crl_invalid"
        )
    if not _certs.crl_signature_valid(crl, key):
        raise CollateralError(f"{name}: signature does not verify", code="crl_invalid")


def _json_doc(raw: bytes, name: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise MalformedError(f"{name} is nested too deeply", field=name) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedError(f"{name} is not JSON: {e}", field=name) from None
    if not isinstance(doc, dict):
        raise MalformedError(f"{name} is not a JSON object", field=name)
    return doc


def _iso(doc: dict[str, Any], key: str, name: str) -> datetime:
    return collateral_time(doc.get(key), f"{name}.{key}")


#: Subject CN of the only certificate that signs TCB info and QE identity (Intel SGX PCK
#: Certificate and CRL Profile, "Intel SGX TCB Signing Certificate").
TCB_SIGNING_CN = "Intel SGX TCB Signing"


def _is_tcb_signer_name(cert: x509.Certificate) -> bool:
    plain = _certs.plain_names(cert)  # read from the DER: no Name built
    if plain is not None:
        cns, self_issued = plain
        return cns == [TCB_SIGNING_CN] and not self_issued
    # (The names as built when the certificate was checked: no new build per use.)
    subject = _certs.subject_name(cert)
    values = [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return values == [TCB_SIGNING_CN] and subject != _certs.issuer_name(cert)


def _signer_usage(signer: x509.Certificate, name: str, what: str) -> tuple[bool, bool]:
    """(basic constraints' cA, key usage's digitalSignature) of the TCB signing certificate: as
    read when it was checked (Intel's layout), else from ``cert.extensions``."""
    read = _certs.intel_extensions(signer)
    if read is not None:
        return read.ca, read.digital_signature
    exts = _extensions(signer, what)
    try:
        bc = exts.get_extension_for_class(x509.BasicConstraints).value
        ku = exts.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise VerificationError(
            f"{name} signing certificate lacks basic constraints or key usage",
            code=Code.COLLATERAL_SIGNER_INVALID,
        ) from None
    return bc.ca, ku.digital_signature


def _tcb_signing_chain(
    chain_pem: bytes,
    trust: DcapTrust,
    root: x509.Certificate,
    root_revoked: Container[int],
    name: str,
    certs: list[x509.Certificate] | None = None,
) -> list[x509.Certificate]:
    """The issuer chain of TCB info or QE identity, as Intel QVL's ``TCBSigningChain::verify``:
    exactly [Intel SGX TCB Signing certificate, pinned root]; the signing certificate has that CN,
    is issued and signed directly by the root whose CRL was checked (``root``), is not a CA, may
    sign (digitalSignature) and is not on the root CA CRL. Any other certificate under the root (a
    platform's PCK certificate, the PCK CA) could otherwise vouch for its own TCB status."""
    if certs is None:  # else: ``chain_pem`` as the cheap checks parsed it
        certs = _load_pem_chain(chain_pem, f"{name}_issuer_chain")
    what = f"{name} issuer chain"
    if len(certs) != 2:
        raise VerificationError(
            f"{what} has {len(certs)} certificates, expected the {TCB_SIGNING_CN} certificate and the root",
            code=Code.COLLATERAL_SIGNER_INVALID,
        )
    _verify_chain(certs, trust, what)  # the root is pinned and signed the signing certificate
    signer = certs[0]
    if certs[1] != root:
        raise VerificationError(
            f"{what} ends at another root than the root CA CRL's",
            code=Code.COLLATERAL_SIGNER_INVALID,
        )
    if not _is_tcb_signer_name(signer):
        cns = [a.value for a in signer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        raise VerificationError(
            f"{name} is signed by {cns!r}, not the {TCB_SIGNING_CN} certificate",
            code=Code.COLLATERAL_SIGNER_INVALID,
        )
    ca, may_sign = _signer_usage(signer, name, what)
    if ca or not may_sign:
        raise VerificationError(
            f"{name} signing certificate is a CA or may not sign (digitalSignature)",
            code=Code.COLLATERAL_SIGNER_INVALID,
        )
    if signer.serial_number in root_revoked:
        raise VerificationError(
            f"{name} signing certificate is revoked", code="certificate_revoked"
        )
    return certs


def _verify_signed_json(
    raw: bytes,
    sig: bytes,
    chain_pem: bytes,
    trust: DcapTrust,
    root: x509.Certificate,
    root_revoked: Container[int],
    name: str,
    seen: dict[bytes, list[x509.Certificate]],
    parsed: tuple[list[x509.Certificate], dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[_Window]]:
    """``raw`` signed by the TCB signing chain ``chain_pem``; ``parsed``: the chain and the JSON
    document as the cheap checks parsed the same bytes."""
    certs = seen.get(chain_pem)
    if certs is None:  # TCB info and QE identity usually share one chain: verify it once
        certs = _tcb_signing_chain(
            chain_pem, trust, root, root_revoked, name, parsed[0] if parsed else None
        )
        seen[chain_pem] = certs
    key = _pubkey(certs[0], name)
    if not _certs.is_ec_public_key(key):
        raise CollateralError(f"{name} signing key is not ECDSA", code="collateral_invalid")
    _verify_raw(key, sig, raw, name, code="collateral_signature_invalid")
    if parsed:  # the cheap checks made these windows from the same bytes (the caller keeps them)
        return parsed[1], []
    doc = _json_doc(raw, name)
    windows = [
        _Window(f"{name} issuer chain certificate {i}", *_cert_window(c))
        for i, c in enumerate(certs)
    ]
    windows.append(_Window(name, _iso(doc, "issueDate", name), _iso(doc, "nextUpdate", name)))
    return doc, windows


def _verify_collateral(
    raw: _RawCollateral, trust: DcapTrust, key: _SetKey, parsed: _CollateralCheap | None = None
) -> _VerifiedCollateral:
    """Signatures and chains of one collateral set (step 6, without times); cached under ``key``.
    ``parsed``: the same bytes as the cheap checks parsed them (certificates, CRLs, JSON); used
    only when they are these very bytes (documents changed in place in between are read again)."""
    if parsed is not None and parsed.raw != raw:
        parsed = None
    try:
        verified = _verify_collateral_uncached(raw, trust, parsed)
    except _LAZY_PARSE_ERRORS as e:
        raise MalformedError(
            f"collateral {raw.source} does not parse: {e}", field="collateral"
        ) from None
    trust.cache.collateral.put(key, verified)
    return verified


def _verify_collateral_uncached(
    raw: _RawCollateral, trust: DcapTrust, parsed: _CollateralCheap | None = None
) -> _VerifiedCollateral:
    # Root CA CRL: signed by the pinned root (taken from the PCK CRL issuer chain).
    crl_chain = (
        parsed.crl_chain if parsed else _load_pem_chain(raw.pck_crl_chain, "pck_crl_issuer_chain")
    )
    _verify_chain(crl_chain, trust, "PCK CRL issuer chain")
    root_crl = parsed.root_crl if parsed else _load_crl(raw.root_crl, "root_ca_crl")
    _check_crl(root_crl, crl_chain[-1], "root CA CRL")
    root_revoked = _certs.revoked(root_crl)
    for c in crl_chain[:-1]:
        if c.serial_number in root_revoked:
            raise VerificationError("PCK CA certificate is revoked", code="certificate_revoked")
    pck_crl = parsed.pck_crl if parsed else _load_crl(raw.pck_crl, "pck_crl")
    _check_crl(pck_crl, crl_chain[0], "PCK CRL")
    windows: list[_Window] = []
    if parsed is None:
        windows = [_crl_window(root_crl, "root CA CRL"), _crl_window(pck_crl, "PCK CRL")]
        windows += [
            _Window(f"PCK CRL issuer chain certificate {i}", *_cert_window(c))
            for i, c in enumerate(crl_chain)
        ]
    seen: dict[bytes, list[x509.Certificate]] = {}
    root = crl_chain[-1]
    pre = parsed.signed if parsed else {}
    tcb_info, w1 = _verify_signed_json(
        raw.tcb_info,
        raw.tcb_info_signature,
        raw.tcb_info_chain,
        trust,
        root,
        root_revoked,
        "tcb_info",
        seen,
        pre.get("tcb_info"),
    )
    qe_identity, w2 = _verify_signed_json(
        raw.qe_identity,
        raw.qe_identity_signature,
        raw.qe_identity_chain,
        trust,
        root,
        root_revoked,
        "qe_identity",
        seen,
        pre.get("qe_identity"),
    )
    # Every field of every level, once per collateral set (Intel QVL parses them all); the
    # levels in QVL's order are kept for the evaluation.
    platform_levels, module_levels = check_tcb_info_levels(tcb_info)
    qe_levels = check_qe_identity(qe_identity)
    fmspc = str(tcb_info.get("fmspc", "")).upper()
    if parsed is not None:  # the same windows, in the same order, from the same bytes
        all_windows, span = parsed.windows, parsed.span
    else:
        all_windows = tuple(windows + w1 + w2)
        span = _span(all_windows)
    marks_from = functools.partial(
        _collateral_set_marks, crl_chain[0], crl_chain[-1], pck_crl.last_update_utc,
        root_crl.last_update_utc, tcb_info, qe_identity, raw.source,
    )  # fmt: skip
    return _make_verified(
        tcb_info, qe_identity, _certs.subject_der(crl_chain[0]),
        _certs.public_key_der(crl_chain[0]), _certs.revoked(pck_crl), root_revoked, all_windows,
        span, fmspc, marks_from, _Lru(256), platform_levels, qe_levels, module_levels,
    )  # fmt: skip


def _collateral_set_marks(
    pck_ca: x509.Certificate,
    root: x509.Certificate,
    pck_crl_update: datetime,
    root_crl_update: datetime,
    tcb_info: dict[str, Any],
    qe_identity: dict[str, Any],
    source: str,
) -> tuple[Mark, ...]:
    """How new each part of a verified set is (:mod:`veritee.collateral.marks`)."""
    fmspc = str(tcb_info.get("fmspc", "")).upper()
    marks = [
        # The CRLs' issuers are these certificates' subjects (_check_crl).
        Mark("pck_crl", _marks.subject(_certs.subject_text(pck_ca)),
             int(pck_crl_update.timestamp()), source),
        Mark("root_crl", _marks.subject(_certs.subject_text(root)),
             int(root_crl_update.timestamp()), source),
    ]  # fmt: skip
    if (n := _evaluation_number(tcb_info)) >= 0:
        marks.append(
            Mark("tcb_info", _marks.subject(f"{tcb_info.get('id', 'SGX')}:{fmspc}"), n, source)
        )
    if (n := _evaluation_number(qe_identity)) >= 0:
        marks.append(
            Mark("qe_identity", _marks.subject(str(qe_identity.get("id", "QE"))), n, source)
        )
    return tuple(marks)


_LAYOUT_KEYS = (
    "tcb_info", "tcb_info_signature", "tcb_info_issuer_chain", "qe_identity", "qe_identity_signature",
    "qe_identity_issuer_chain", "pck_crl", "pck_crl_issuer_chain", "root_ca_crl",
)  # fmt: skip


def _layout_key(doc: dict[str, Any], trust: DcapTrust) -> _SetKey | None:
    """Cache key of a test-vector-layout document: its nine exact strings themselves (and the
    pinned roots' tag). Python hashes a str once and keeps the hash, and a cache hit compares the
    strings in full; a str subclass (whose hash and equality are its own) is hashed by SHA-256."""
    values = tuple(map(doc.get, _LAYOUT_KEYS))
    if list(map(type, values)).count(str) == len(_LAYOUT_KEYS):  # (exact str, in C)
        return ("layout", trust.cache_tag, *values)
    return _layout_key_uncached(doc, trust.cache_tag)


def _layout_key_uncached(doc: dict[str, Any], tag: bytes) -> bytes | None:
    h = hashlib.sha256(b"layout" + tag)
    for k in _LAYOUT_KEYS:
        v = doc.get(k)
        if not isinstance(v, str):
            return None
        b = str.encode(v)  # (a str subclass's own encode() is not called)
        h.update(len(b).to_bytes(4, "big"))
        h.update(b)
    return h.digest()


def _choose_collateral(
    collateral: Collateral, fmspc: str, trust: DcapTrust, pck_ca: bytes = b""
) -> _Candidate:
    """The collateral set for ``fmspc`` (step 6), chosen by provenance, then age: its cache key
    and a way to its bytes (verified by the caller).

    1. The relying party's own sets (:class:`~veritee.collateral.Collateral` module docstring):
       its set for ``fmspc`` always wins. Only when it has none do the attester's admitted sets
       (``collateral.attester``) compete, and only for their ``fmspc``.
    2. Among the sets of that provenance for ``fmspc``: the highest ``tcbEvaluationDataNumber``
       of the TCB info, then the newest PCK CRL ``thisUpdate``, then the newest root CA CRL.
    3. The PCK CRL (of the quote's PCK CA, ``pck_ca``: its subject DER) and the root CA CRL are
       the newest of every candidate's, whoever supplied them: a newer CRL only adds revocations,
       and it is verified like any other.

    No set for ``fmspc`` at all: the relying party's best (or else the attester's) is used, and
    step 8 names the mismatch. A lone set is used as it is (cache hit: hashing only).
    """
    tiers = [_candidates(collateral, trust, pck_ca)]
    if collateral.attester is not None:
        sent = collateral.attester.with_untrusted(collateral.path_candidates)
        try:
            tiers.append(
                [(k, r) for k, r in _candidates(sent, trust, pck_ca) if _rankable(trust, k, r)]
            )
        except (CollateralError, MalformedError):
            if tiers[0]:  # an attester's incomplete or malformed set is no candidate
                tiers.append([])
            else:
                raise
    every = [c for tier in tiers for c in tier]
    if not every:
        for part in (collateral, collateral.attester):
            if part is not None and any("tcb_info" in d for d in part.documents):
                _raw_from_layout(
                    next(d for d in part.documents if "tcb_info" in d)
                )  # names the bad field
        raise CollateralError(
            "no DCAP collateral (TCB info, QE identity, CRLs) was supplied",
            code="collateral_missing",
        )
    if len(every) == 1:
        return every[0]
    ranked = [
        [(_rank(trust, key, get_raw), key, get_raw) for key, get_raw in tier] for tier in tiers
    ]
    chosen = None
    for tier in ranked:
        matching = [c for c in tier if c[0].fmspc == fmspc]
        if matching:
            chosen = max(matching, key=lambda c: c[0].order)
            break
    if chosen is None:
        chosen = max(next(t for t in ranked if t), key=lambda c: c[0].order)
    rank, key, get_raw = chosen
    everything = [c for tier in ranked for c in tier]
    # The PCK CRL of the quote's PCK CA where any candidate has one, else the chosen set's CA.
    want = pck_ca if any(c[0].pck_crl_issuer == pck_ca for c in everything) else rank.pck_crl_issuer
    pck = max(
        (c for c in everything if c[0].pck_crl_issuer == want), key=lambda c: c[0].pck_crl_update
    )
    root = max(everything, key=lambda c: c[0].root_crl_update)
    newer_pck = want != rank.pck_crl_issuer or pck[0].pck_crl_update > rank.pck_crl_update
    newer_root = root[0].root_crl_update > rank.root_crl_update
    if not (newer_pck or newer_root):
        return key, get_raw
    raw = get_raw()
    if newer_pck:
        other = pck[2]()
        raw = replace(raw, pck_crl=other.pck_crl, pck_crl_chain=other.pck_crl_chain)
    if newer_root:
        raw = replace(raw, root_crl=root[2]().root_crl)
    return raw.digest(trust), functools.partial(_same, raw)


_Candidate = tuple[_SetKey, Callable[[], _RawCollateral]]


def _candidates(collateral: Collateral, trust: DcapTrust, pck_ca: bytes) -> list[_Candidate]:
    """Every complete collateral set in ``collateral`` (its own documents and CRLs; certificates
    from :attr:`~veritee.collateral.Collateral.path_candidates`), with its cache key.

    Layout documents are sets already. Separate PCS responses make one set per TCB info, with
    the newest QE identity and, first, the quote's PCK CA and the newest CRLs. A set's bytes
    are read only when it is not cached (each candidate is a cache key and a way to the bytes)."""
    out: list[_Candidate] = []
    for d in collateral.documents:
        if "tcb_info" in d and "qe_identity" in d:
            k = _layout_key(d, trust)
            if k is not None:
                out.append((k, functools.partial(_raw_from_layout, d)))
    infos = [d for d in collateral.documents if "tcbInfo" in d and "signature" in d]
    if not infos:
        return out
    qes = sorted(
        (d for d in collateral.documents if "enclaveIdentity" in d and "signature" in d),
        key=lambda d: -_evaluation_number(d.get("enclaveIdentity")),
    )
    certs = sorted(collateral.path_candidates, key=lambda c: c.subject.public_bytes() != pck_ca)
    crls = sorted(
        collateral.crls,
        key=lambda c: (c.issuer.public_bytes() != pck_ca, -c.last_update_utc.timestamp()),
    )
    for info in infos:
        view = Collateral(certificates=tuple(certs), crls=tuple(crls), documents=(info, *qes[:1]))
        bag = _raw_from_bag(view)
        if bag is not None:
            out.append((bag.digest(trust), functools.partial(_same, bag)))
    return out


def _same(raw: _RawCollateral) -> _RawCollateral:
    return raw


def _evaluation_number(body: Any) -> int:
    n = body.get("tcbEvaluationDataNumber") if isinstance(body, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else -1


@dataclass(frozen=True)
class _Rank:
    """What orders candidate sets (read before their signatures are checked: ordering only)."""

    fmspc: str
    order: tuple[int, datetime, datetime]
    pck_crl_issuer: bytes
    pck_crl_update: datetime
    root_crl_update: datetime


def _rankable(trust: DcapTrust, key: _SetKey, get_raw: Callable[[], _RawCollateral]) -> bool:
    """Can this (attester's) set be ordered at all? A malformed one is no candidate."""
    try:
        _rank(trust, key, get_raw)
    except (CollateralError, MalformedError):
        return False
    return True


def _rank(trust: DcapTrust, key: _SetKey, get_raw: Callable[[], _RawCollateral]) -> _Rank:
    ranks = trust.cache.ranks
    hit = ranks.get(key)
    if hit is not None:
        return hit
    raw = get_raw()
    info = _json_doc(raw.tcb_info, "tcb_info")
    fmspc = info.get("fmspc")
    pck_crl = _load_crl(raw.pck_crl, "pck_crl")
    root_crl = _load_crl(raw.root_crl, "root_ca_crl")
    pck_update, root_update = pck_crl.last_update_utc, root_crl.last_update_utc
    rank = _Rank(
        fmspc=fmspc.upper() if isinstance(fmspc, str) else "",
        order=(_evaluation_number(info), pck_update, root_update),
        pck_crl_issuer=_certs.crl_issuer_der(pck_crl),
        pck_crl_update=pck_update,
        root_crl_update=root_update,
    )
    ranks.put(key, rank)
    return rank


# --- high-water marks (never rolled back) ---------------------------------------------------


def _check_marks(vc: _VerifiedCollateral, marks: Marks) -> None:
    """Refuse a chosen set any part of which is older than the relying party's mark for it."""
    for found in vc.marks:  # four marks: a dict lookup each (on every verification)
        held = marks.get(found.key)
        if held is None or found.value >= held.value:
            continue
        raise CollateralError(
            f"collateral {found.source or 'set'}: {found.describe()} is older than the "
            f"{held.describe()} accepted before (from {held.source or 'an earlier set'}); "
            "collateral is never rolled back",
            code=Code.COLLATERAL_ROLLED_BACK,
        )


def collateral_marks(
    collateral: Collateral, trust: DcapTrust | None = None
) -> tuple[list[Mark], list[str]]:
    """The marks of every authentic DCAP set among the relying party's own endorsements of
    ``collateral`` (never the attester's), and the sources of sets left out because they do not
    verify (signatures and chains, as step 6; windows are not checked: an expired set still
    says how new it is). A forged set never raises a mark."""
    trust = trust or DEFAULT_TRUST
    own = replace(collateral, untrusted=(), attester=None, marks=None)
    found: list[Mark] = []
    skipped: list[str] = []
    seen: set[_SetKey] = set()
    for ca in {c.issuer.public_bytes() for c in own.crls} or {b""}:
        try:
            candidates = _candidates(own, trust, ca)
        except VeriteeError as e:
            skipped.append(e.message)
            continue
        for key, get_raw in candidates:
            if key in seen:
                continue
            seen.add(key)
            try:
                vc = trust.cache.collateral.get(key) or _verify_collateral(get_raw(), trust, key)
            except VeriteeError as e:
                skipped.append(e.message)
                continue
            found += vc.marks
    return found, skipped


# --- cheap checks first ---------------------------------------------------------------------


@dataclass(frozen=True)
class _CollateralCheap:
    """What the cheap checks read from a collateral set whose signatures are not checked yet."""

    windows: tuple[_Window, ...]
    span: tuple[datetime, datetime]
    tcb_info: dict[str, Any]
    #: What was parsed, for the verification to reuse (:func:`_verify_collateral_uncached`).
    crl_chain: list[x509.Certificate]
    root_crl: _certs.AnyCrl
    pck_crl: _certs.AnyCrl
    #: name -> (issuer chain, document) of ``tcb_info`` and ``qe_identity``.
    signed: dict[str, tuple[list[x509.Certificate], dict[str, Any]]]
    #: The bytes all of it was parsed from (reused only for these very bytes).
    raw: _RawCollateral


_make_collateral_cheap = _maker(_CollateralCheap)  # (as _make_pck_chain)


def _collateral_cheap(
    trust: DcapTrust, key: _SetKey, get_raw: Callable[[], _RawCollateral]
) -> _VerifiedCollateral | _CollateralCheap | None:
    """The verified set when cached, else its windows (in the order step 6 checks them) and TCB
    info read without any signature check; None where it does not parse (step 6 then names it)."""
    caches = trust.cache
    hit = caches.collateral.get(key) or caches.collateral_cheap.get(key)
    if hit is not None:
        return hit
    try:
        raw = get_raw()
        crl_chain = _load_pem_chain(raw.pck_crl_chain, "pck_crl_issuer_chain")
        root_crl = _load_crl(raw.root_crl, "root_ca_crl")
        pck_crl = _load_crl(raw.pck_crl, "pck_crl")
        windows = [_crl_window(root_crl, "root CA CRL"), _crl_window(pck_crl, "PCK CRL")]
        windows += [
            _Window(f"PCK CRL issuer chain certificate {i}", *_cert_window(c))
            for i, c in enumerate(crl_chain)
        ]
        signed: dict[str, tuple[list[x509.Certificate], dict[str, Any]]] = {}
        for name, text, chain_pem in (("tcb_info", raw.tcb_info, raw.tcb_info_chain),
                                      ("qe_identity", raw.qe_identity, raw.qe_identity_chain)):  # fmt: skip
            # TCB info and QE identity usually share one chain: read it once.
            same = signed.get("tcb_info") if chain_pem == raw.tcb_info_chain else None
            certs = same[0] if same else _load_pem_chain(chain_pem, f"{name}_issuer_chain")
            windows += [
                _Window(f"{name} issuer chain certificate {i}", *_cert_window(c))
                for i, c in enumerate(certs)
            ]
            doc = _json_doc(text, name)
            windows.append(
                _Window(name, _iso(doc, "issueDate", name), _iso(doc, "nextUpdate", name))
            )
            signed[name] = (certs, doc)
    except _CHEAP_ERRORS:
        return None
    found = _make_collateral_cheap(tuple(windows), _span(windows), signed["tcb_info"][1], crl_chain, root_crl,
                                   pck_crl, signed, raw)  # fmt: skip
    caches.collateral_cheap.put(key, found)
    return found


#: The costly checks a cheap refusal skips (``checks_not_reached``), in the order they run.
NOT_REACHED = (
    "pck_chain_signatures", "qe_report_signature", "quote_signature", "collateral_signatures",
    "pck_revocation", "qe_identity", "tcb_level",
)  # fmt: skip


def _cheap_checks(
    pck: _PckChain | _PckCheap,
    coll: _VerifiedCollateral | _CollateralCheap | None,
    at: datetime,
    want_id: str,
    then: tuple[str, ...],
) -> None:
    """Validity windows of the PCK chain and the chosen collateral, and whether the TCB info is
    for this TEE and platform (steps 2, 6 and 8 on data not authenticated yet): every failure,
    before any signature (:mod:`veritee.evidence._cheap`)."""
    checks = CheapChecks()
    if not pck.span[0] <= at <= pck.span[1]:
        for w in pck.windows:
            checks.window(w.name, w.not_before, w.not_after, at)
    if coll is not None:
        if not coll.span[0] <= at <= coll.span[1]:
            for w in coll.windows:
                checks.window(w.name, w.not_before, w.not_after, at, collateral=True)
        info = coll.tcb_info
        fmspc = pck.fmspc if isinstance(pck, _PckCheap) else pck.ext.fmspc.hex().upper()
        pce_id = pck.pce_id if isinstance(pck, _PckCheap) else pck.ext.pce_id.hex().upper()
        info_id = info.get("id", "SGX")
        if info_id != want_id:
            checks.add(
                CollateralError(
                    f"TCB info is for {info_id!r}, the quote is {want_id}", code="tcb_info_mismatch"
                )
            )
        elif str(info.get("fmspc", "")).upper() != fmspc:
            checks.add(
                CollateralError(
                    f"TCB info FMSPC {info.get('fmspc')} != PCK FMSPC {fmspc}",
                    code="tcb_info_mismatch",
                )
            )
        elif str(info.get("pceId", "")).upper() != pce_id:
            checks.add(
                CollateralError(
                    "TCB info PCE ID does not match the PCK certificate", code="tcb_info_mismatch"
                )
            )
    checks.refuse(NOT_REACHED + then)


def _cheap(
    quote: Quote,
    collateral: Collateral,
    at: datetime,
    trust: DcapTrust,
    want_id: str,
    then: tuple[str, ...],
) -> tuple[
    _PckKey,
    _PckChain | _PckCheap | None,
    _Candidate | None,
    _VerifiedCollateral | _CollateralCheap | None,
]:
    """The cheap checks of :func:`verify_quote` (raise on failure, naming ``then`` after
    :data:`NOT_REACHED`); returns what the full check reuses: the PCK chain's cache key, the chain
    (verified when cached, else as parsed), the chosen collateral set and its cached verification
    or its parse."""
    sig = quote.signature_data
    pck_key = _pck_chain_key(sig.pck_chain_pem, trust)
    pck = _pck_cheap(sig.pck_chain_pem, pck_key, trust)
    if pck is None:
        return pck_key, None, None, None
    fmspc = pck.fmspc if isinstance(pck, _PckCheap) else pck.ext.fmspc.hex().upper()
    choice = _choose_collateral(collateral, fmspc, trust, pck.ca_name)
    coll = _collateral_cheap(trust, *choice)
    if not (isinstance(pck, _PckChain) and isinstance(coll, _VerifiedCollateral)
            and pck.span[0] <= at <= pck.span[1] and coll.span[0] <= at <= coll.span[1]):  # fmt: skip
        # Both verified and open at `at`: the full check decides at no extra cost (the cached
        # path). Else the cheap checks, with every failure.
        _cheap_checks(pck, coll, at, want_id, then)
    return pck_key, pck, choice, coll


def cheap_checks(
    quote: Quote,
    *,
    collateral: Collateral,
    at: datetime,
    trust: DcapTrust | None = None,
    tdx: bool,
    then: tuple[str, ...] = (),
) -> None:
    """Only the cheap checks of :func:`verify_quote` (windows, TCB info identity), for a caller
    that has costly checks of its own to run after them (an Azure TDX vTPM document's quote
    signature): raises as :func:`verify_quote` would, naming ``then`` as not reached too."""
    trust = trust or DEFAULT_TRUST
    if not isinstance(trust, DcapTrust):  # verify_quote refuses the trust anchors
        return
    sig = quote.signature_data
    pck = _pck_cheap(sig.pck_chain_pem, _pck_chain_key(sig.pck_chain_pem, trust), trust)
    if pck is None:
        return
    try:  # missing or malformed collateral: verify_quote names it, after the caller's checks
        choice = _choose_collateral(collateral, pck.fmspc if isinstance(pck, _PckCheap) else pck.ext.fmspc.hex().upper(),
                                    trust, pck.ca_name)  # fmt: skip
    except (CollateralError, MalformedError):
        return
    _cheap_checks(pck, _collateral_cheap(trust, *choice), at, "TDX" if tdx else "SGX", then)


@dataclass(frozen=True)
class CheckedSet:
    """What checking one DCAP collateral set (:func:`check_collateral_set`) established."""

    #: How new each part is (the same marks the verifier holds against the relying party's).
    marks: tuple[Mark, ...]
    #: The TCB info's FMSPC (upper case) and ``id`` (``SGX``, ``TDX``).
    fmspc: str
    tee: str
    #: The subject CN of the PCK CRL's issuer (``Intel SGX PCK Processor CA``, ``... Platform CA``).
    pck_ca: str


def check_collateral_set(
    doc: dict[str, Any], at: datetime, trust: DcapTrust | None = None
) -> CheckedSet:
    """Check one DCAP collateral set in the test-vector layout as the verifier checks it
    (step 6: every signature and chain to the pinned root, TCB info and QE identity by the
    Intel SGX TCB Signing certificate, every field of every TCB level) and that every window
    is open at ``at``. For collateral the service fetched, before it may decide anything.

    Raises :class:`VerificationError`, :class:`CollateralError` (``collateral_expired``,
    ``collateral_not_yet_valid``, ...) or :class:`MalformedError`."""
    trust = trust or DEFAULT_TRUST
    raw = _raw_from_layout(doc)
    key = raw.digest(trust)
    vc = trust.cache.collateral.get(key) or _verify_collateral(raw, trust, key)
    _check_windows(vc.windows, vc.span, at, CollateralError)
    chain = _load_pem_chain(raw.pck_crl_chain, "pck_crl_issuer_chain")
    cns = chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CheckedSet(
        marks=vc.marks, fmspc=vc.fmspc, tee=str(vc.tcb_info.get("id", "SGX")),
        pck_ca=str(cns[0].value) if cns else "",
    )  # fmt: skip


# --- the whole verification -----------------------------------------------------------------


def _attestation_key(raw: bytes, trust: DcapTrust) -> ec.EllipticCurvePublicKey:
    keys = trust.cache.att_keys
    key = keys.get(raw)
    if key is None:
        key = _p256_key(raw, "attestation key")
        keys.put(raw, key)
    return key


_ZERO32 = bytes(32)


def verify_quote(
    quote: Quote,
    *,
    collateral: Collateral,
    at: datetime,
    trust: DcapTrust | None = None,
    tdx: TdxTcbInput | None = None,
) -> DcapResult:
    """Run steps 1-11 of the module docstring; raise on any failure, return the TCB verdict.

    Raises :class:`VerificationError` (signatures, chains, identities, no TCB level),
    :class:`CollateralError` (collateral missing, wrong or outside its window at ``at``) and
    :class:`MalformedError` (unparsable certificates or collateral).
    """
    trust = trust or DEFAULT_TRUST
    if not isinstance(trust, DcapTrust):
        raise VerificationError("DCAP trust anchors must be a DcapTrust", code="trust_root_invalid")
    h, sig = quote.header, quote.signature_data
    # 1. header
    if h.att_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise VerificationError(
            f"attestation key type {h.att_key_type} is not ECDSA-256", code="key_type_unsupported"
        )
    if h.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise VerificationError("QE vendor ID is not Intel's", code="qe_vendor_unknown")
    # Cheap checks first (windows, TCB info identity), on the chain and collateral not yet
    # authenticated: a refusal never pays for the signatures below. Where the chain does not
    # parse cheaply, steps 2 and 6 name the fault in the usual order.
    pck_key, pck, choice, coll = _cheap(
        quote, collateral, at, trust, "TDX" if tdx is not None else "SGX", ()
    )
    # 2. PCK chain (signatures cached; validity checked at `at` every time)
    chain = (
        pck
        if isinstance(pck, _PckChain)
        else _pck_chain(
            sig.pck_chain_pem, trust, pck_key, pck if isinstance(pck, _PckCheap) else None
        )
    )
    _check_windows(chain.windows, chain.span, at, VerificationError)
    # 3. QE report signed by the PCK key
    _verify_raw(
        chain.leaf_key,
        sig.qe_report_signature,
        sig.qe_report.raw,
        "QE report",
        code="qe_report_signature_invalid",
    )
    # 4. QE report data binds the attestation key and QE authentication data
    expected = hashlib.sha256(sig.attestation_key + sig.qe_auth_data).digest()
    rd = sig.qe_report.report_data
    if not hmac.compare_digest(rd[:32], expected) or rd[32:] != _ZERO32:
        raise VerificationError(
            "QE report data does not bind the attestation key", code="qe_report_data_mismatch"
        )
    # 5. quote signed by the attestation key
    key = _attestation_key(sig.attestation_key, trust)
    _verify_raw(key, sig.signature, quote.signed, "quote", code="quote_signature_invalid")
    # 6. collateral
    if choice is None:
        choice = _choose_collateral(collateral, chain.ext.fmspc.hex().upper(), trust, chain.ca_name)
    set_key, get_raw = choice
    if isinstance(coll, _VerifiedCollateral):
        vc = coll
    else:
        # The bytes the cheap checks read and parsed for this key (not read from the documents
        # a second time); else read now.
        cheap = coll if isinstance(coll, _CollateralCheap) else None
        vc = trust.cache.collateral.get(set_key) or _verify_collateral(
            cheap.raw if cheap is not None else get_raw(), trust, set_key, cheap
        )
    if collateral.marks:
        _check_marks(vc, collateral.marks)
    _check_windows(vc.windows, vc.span, at, CollateralError)
    # Steps 7-11 read of the chain only its PCK CA, the FMSPC, PCE ID and TCB (not the PPID)
    # and the leaf's serial: platforms of one TCB share a memo entry once the leaf's own
    # revocation (the one per-platform input) is checked here, in step 7's order.
    if chain.ca_name == vc.pck_crl_issuer and chain.ca_spki == vc.pck_crl_issuer_spki \
            and chain.leaf_serial in vc.pck_revoked:  # fmt: skip
        raise VerificationError("PCK certificate is revoked", code="certificate_revoked")
    ext = chain.ext
    # (The TD inputs by their fields, every one of them (a test pins the list): a tuple of
    # bytes hashes and compares in C.)
    tdx_key = None if tdx is None else (tdx.tee_tcb_svn, tdx.mr_signer_seam, tdx.seam_attributes)
    memo_key = (ext.fmspc, ext.pce_id, ext.tcb_components, ext.pce_svn, chain.ca_name, chain.ca_spki,
                chain.ca_serial, sig.qe_report.raw, tdx_key)  # fmt: skip
    result = vc.memo.get(memo_key)
    if result is None:
        result = _evaluate(chain, vc, sig.qe_report, tdx)
        vc.memo.put(memo_key, result)
    return result


def _evaluate(
    chain: _PckChain, vc: _VerifiedCollateral, qe_report: EnclaveReport, tdx: TdxTcbInput | None
) -> DcapResult:
    """Steps 7-11: a pure function of verified inputs (memoized by the caller on success)."""
    fmspc = chain.ext.fmspc.hex().upper()
    # 7. revocation of the PCK certificate and its CA
    if chain.ca_name != vc.pck_crl_issuer or chain.ca_spki != vc.pck_crl_issuer_spki:
        raise CollateralError(
            "PCK CRL is not issued by the quote's PCK CA", code="crl_issuer_mismatch"
        )
    if chain.leaf_serial in vc.pck_revoked:
        raise VerificationError("PCK certificate is revoked", code="certificate_revoked")
    if chain.ca_serial in vc.root_revoked:
        raise VerificationError("PCK CA certificate is revoked", code="certificate_revoked")
    # 8. TCB info is for this platform and TEE
    info = vc.tcb_info
    want_id = "TDX" if tdx is not None else "SGX"
    info_id = info.get("id", "SGX")
    if info_id != want_id:
        raise CollateralError(
            f"TCB info is for {info_id!r}, the quote is {want_id}", code="tcb_info_mismatch"
        )
    if str(info.get("fmspc", "")).upper() != fmspc:
        raise CollateralError(
            f"TCB info FMSPC {info.get('fmspc')} != PCK FMSPC {fmspc}", code="tcb_info_mismatch"
        )
    if str(info.get("pceId", "")).upper() != chain.ext.pce_id.hex().upper():
        raise CollateralError(
            "TCB info PCE ID does not match the PCK certificate", code="tcb_info_mismatch"
        )
    # 9. QE identity
    qe_status, qe_adv = qe_tcb(vc.qe_identity, qe_report, tdx is not None, vc.qe_levels)
    # 10. platform TCB level
    plat = platform_tcb(info, chain.ext, tdx, vc.platform_levels, vc.module_levels)
    # 11. converge
    status = converge_status(plat.status, qe_status)
    if status == "Revoked":  # terminal (Intel QVL's terminal result; dcap-qvl refuses it too)
        raise VerificationError(
            f"Intel TCB status is Revoked (platform {plat.status}, QE {qe_status})",
            code=Code.TCB_REVOKED,
        )
    # Every matched level's advisories: platform, TDX module and QE (Intel QVL's
    # VerificationCollateralInfo, dcap-qvl), whatever the QE's own status.
    advisories = tuple(sorted(set(plat.advisories) | set(qe_adv)))
    findings: list[Reason] = []
    if status != "UpToDate":
        findings.append(Reason("tcb_status", f"Intel TCB status is {status}"))
    if advisories:
        findings.append(
            Reason("intel_advisories", "Intel security advisories apply: " + ", ".join(advisories))
        )
    return _make_result(
        status, advisories, fmspc, chain.ext.pce_id.hex().upper(), plat.status, qe_status,
        plat.module_status, plat.tcb_date, int(info.get("tcbEvaluationDataNumber", 0)),
        min(w.not_after for w in vc.windows), tuple(findings),
    )  # fmt: skip
