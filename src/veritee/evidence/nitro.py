"""AWS Nitro Enclaves attestation documents: parse and verify. Pure: no network, clock or env.

An attestation document is a COSE_Sign1 structure (RFC 9052 §4.2), optionally wrapped in CBOR
tag 18::

    COSE_Sign1 = [ protected: bstr .cbor {1: -35},   ; alg ES384
                   unprotected: {},
                   payload: bstr .cbor AttestationDocument,
                   signature: bstr (96 bytes, r || s) ]

The payload (AWS "Nitro Enclaves attestation process", section "Attestation document
specification") is a CBOR map::

    module_id: tstr (non-empty)        digest: "SHA384" (or "SHA256" / "SHA512")
    timestamp: uint (ms since epoch)   pcrs: {0..31: bstr of the digest size}
    certificate: bstr (DER leaf)       cabundle: [bstr (root), ..., bstr (issuer of the leaf)]
    public_key / user_data / nonce: bstr (<= 1024 bytes) or null (optional)

Verification (numbered as in the AWS document, section "Verifying the root of trust"):

1. parse strictly (types, sizes, preferred CBOR encoding, so no duplicate map keys);
2. ``cabundle[0]`` is the AWS Nitro Enclaves Root G1, pinned by the SHA-256 of its DER;
3. each certificate of ``cabundle[1:] + [certificate]`` is issued and signed by the previous,
   is valid at ``at``, and every issuer is a CA whose path length allows the rest of the chain;
4. the ES384 signature over ``Sig_structure = ["Signature1", protected, h'', payload]`` verifies
   with the leaf's P-384 key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee import certs
from veritee._lru import Lru
from veritee.collateral import Collateral
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.evidence._cheap import CheapChecks
from veritee.evidence.claims import VerifiedEvidence

__all__ = [
    "AWS_NITRO_ROOT_G1_SHA256",
    "COSE_ALG_ES256",
    "COSE_ALG_ES384",
    "COSE_ALG_ES512",
    "ES_SIGNATURE_BYTES",
    "AttestationDocument",
    "CoseSign1",
    "NitroTrust",
    "clear_caches",
    "detect",
    "parse",
    "parse_claims",
    "sig_structure",
    "verify",
    "verify_chain",
]

#: SHA-256 of the DER of the AWS Nitro Enclaves Root G1 (CN=aws.nitro-enclaves, P-384,
#: 2019-10-28..2049-10-28). Computed from root.pem in AWS_NitroEnclaves_Root-G1.zip (the zip
#: itself hashes to 8cf60e2b...faff7c, the value AWS publishes); equals the fingerprint AWS
#: lists in its Nitro Enclaves documentation.
AWS_NITRO_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

#: COSE algorithm identifiers of ECDSA with SHA-256, -384 and -512 (RFC 9053 §2.1).
COSE_ALG_ES256, COSE_ALG_ES384, COSE_ALG_ES512 = -7, -35, -36
#: Each ECDSA algorithm's signature size (r || s) in a COSE_Sign1 (RFC 9053 §2.1).
ES_SIGNATURE_BYTES = {COSE_ALG_ES256: 64, COSE_ALG_ES384: 96, COSE_ALG_ES512: 132}
#: CBOR tag of COSE_Sign1 (RFC 9052 §2).
COSE_SIGN1_TAG = 18
#: COSE header labels (RFC 9052 §3.1).
HEADER_ALG = 1
HEADER_CRIT = 2

#: Size limits from the AWS specification.
MAX_PCRS = 32
MAX_OPTIONAL_BYTES = 1024
MAX_CERT_BYTES = 1024
MAX_CABUNDLE = 8
MAX_MODULE_ID = 256
ES384_SIGNATURE_BYTES = 96
DIGEST_SIZES = {"SHA256": 32, "SHA384": 48, "SHA512": 64}
REQUIRED_FIELDS = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
OPTIONAL_FIELDS = ("public_key", "user_data", "nonce")


@dataclass(frozen=True)
class NitroTrust:
    """Trust anchors for Nitro: the accepted root fingerprints (SHA-256 of DER, hex).

    The default is the AWS Nitro Enclaves Root G1 only. Tests pass their own root here.
    """

    root_sha256: tuple[str, ...] = (AWS_NITRO_ROOT_G1_SHA256,)


@dataclass(frozen=True)
class CoseSign1:
    """The four members of a COSE_Sign1 (RFC 9052 §4.2), with the protected header decoded."""

    protected: bytes
    alg: int
    payload: bytes
    signature: bytes
    tagged: bool

    @classmethod
    def from_bytes(cls, data: bytes) -> CoseSign1:
        """Parse the COSE_Sign1 envelope; raise :class:`MalformedError` naming the member."""
        obj = _loads(data, "COSE_Sign1")
        tagged = False
        if isinstance(obj, cbor2.CBORTag):
            if obj.tag != COSE_SIGN1_TAG:
                raise MalformedError(f"unexpected CBOR tag {obj.tag}", field="COSE_Sign1")
            obj, tagged = obj.value, True
        if not isinstance(obj, list | tuple) or len(obj) != 4:
            raise MalformedError("not a 4-element COSE_Sign1 array", field="COSE_Sign1")
        protected, unprotected, payload, signature = obj
        if not isinstance(protected, bytes) or not protected:
            raise MalformedError("protected header must be a non-empty bstr", field="protected")
        if not isinstance(unprotected, Mapping):
            raise MalformedError("unprotected header must be a map", field="unprotected")
        if not isinstance(payload, bytes) or not payload:
            raise MalformedError("payload must be a non-empty bstr", field="payload")
        if not isinstance(signature, bytes):
            raise MalformedError("signature must be a bstr", field="signature")
        header = _loads(protected, "protected")
        if not isinstance(header, Mapping):
            raise MalformedError("protected header must encode a map", field="protected")
        for labels, where in ((header, "protected"), (unprotected, "unprotected")):
            # RFC 9052 3.1: a label is an int or a tstr. (A Python map also finds 1 under the
            # key True or 1.0, which no COSE reader would take for the alg label.)
            if any(type(label) not in (int, str) for label in labels):
                raise MalformedError("header labels must be integers or text", field=where)
        if HEADER_CRIT in header or HEADER_CRIT in unprotected:
            raise MalformedError("critical headers are not supported", field="protected.crit")
        if HEADER_ALG in unprotected:
            raise MalformedError("alg must be in the protected header", field="unprotected.alg")
        alg = header.get(HEADER_ALG)
        if not isinstance(alg, int) or isinstance(alg, bool):
            raise MalformedError("protected header has no integer alg", field="protected.alg")
        return cls(protected, alg, payload, signature, tagged)

    def check_signature_size(self) -> None:
        """The signature has the size its ECDSA alg gives (r || s), else MalformedError."""
        size = ES_SIGNATURE_BYTES.get(self.alg)
        if size is not None and len(self.signature) != size:
            raise MalformedError(f"an alg {self.alg} signature is {size} bytes, got "
                                 f"{len(self.signature)}", field="signature")  # fmt: skip


@dataclass(frozen=True)
class AttestationDocument:
    """The payload of a Nitro attestation document (AWS attestation document specification)."""

    module_id: str
    digest: str
    timestamp: int
    pcrs: tuple[tuple[int, bytes], ...]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None

    @classmethod
    def from_bytes(cls, payload: bytes) -> AttestationDocument:
        """Parse and validate every field; raise :class:`MalformedError` naming the field."""
        doc = _loads(payload, "payload")
        if not isinstance(doc, Mapping):
            raise MalformedError("payload must be a CBOR map", field="payload")
        for key in doc:
            if not isinstance(key, str):
                raise MalformedError(
                    f"payload map key {key!r} is not a text string", field="payload"
                )
            if key not in REQUIRED_FIELDS and key not in OPTIONAL_FIELDS:
                raise MalformedError(f"unknown field {key!r}", field=key)
        for name in REQUIRED_FIELDS:
            if name not in doc:
                raise MalformedError(f"required field {name} is missing", field=name)
        module_id = doc["module_id"]
        if not isinstance(module_id, str) or not 0 < len(module_id) <= MAX_MODULE_ID:
            raise MalformedError(f"must be a text string of 1..{MAX_MODULE_ID}", field="module_id")
        digest = doc["digest"]
        if not isinstance(digest, str) or digest not in DIGEST_SIZES:
            raise MalformedError(f"must be one of {sorted(DIGEST_SIZES)}", field="digest")
        timestamp = doc["timestamp"]
        if (
            not isinstance(timestamp, int)
            or isinstance(timestamp, bool)
            or not 0 < timestamp < 2**64
        ):
            raise MalformedError("must be a positive integer (ms since epoch)", field="timestamp")
        pcrs = _parse_pcrs(doc["pcrs"], DIGEST_SIZES[digest])
        certificate = _bstr(doc["certificate"], "certificate", 1, MAX_CERT_BYTES)
        cabundle_raw = doc["cabundle"]
        if not isinstance(cabundle_raw, list | tuple) or not 0 < len(cabundle_raw) <= MAX_CABUNDLE:
            raise MalformedError(
                f"must be an array of 1..{MAX_CABUNDLE} certificates", field="cabundle"
            )
        cabundle = tuple(
            _bstr(c, f"cabundle[{i}]", 1, MAX_CERT_BYTES) for i, c in enumerate(cabundle_raw)
        )
        optional = {name: _optional_bstr(doc.get(name), name) for name in OPTIONAL_FIELDS}
        return cls(
            module_id=module_id,
            digest=digest,
            timestamp=timestamp,
            pcrs=pcrs,
            certificate=certificate,
            cabundle=cabundle,
            public_key=optional["public_key"],
            user_data=optional["user_data"],
            nonce=optional["nonce"],
        )

    def pcr(self, index: int) -> bytes:
        for i, value in self.pcrs:
            if i == index:
                return value
        raise MalformedError(f"PCR{index} is missing", field=f"pcrs[{index}]")

    @property
    def debug(self) -> bool:
        """Debug-mode enclaves report PCR0, PCR1 and PCR2 as all zeros."""
        return all(not any(self.pcr(i)) for i in (0, 1, 2))

    def claims(self) -> dict[str, Any]:
        """Normalized claims (DESIGN.md, "Normalized claims"); JSON types only."""
        pcr0 = self.pcr(0).hex()
        out: dict[str, Any] = {
            "platform": "nitro",
            "measurement": pcr0,
            "report_data": self.user_data.hex() if self.user_data is not None else None,
            "debug": self.debug,
            "tcb_status": None,
            "module_id": self.module_id,
            "digest": self.digest,
            "timestamp_ms": self.timestamp,
            "nonce": self.nonce.hex() if self.nonce is not None else None,
            "user_data": self.user_data.hex() if self.user_data is not None else None,
            "public_key": self.public_key.hex() if self.public_key is not None else None,
        }
        for index, value in self.pcrs:
            out[f"pcr{index}"] = value.hex()
        return out


def _loads(data: bytes, what: str) -> Any:
    """Decode one CBOR item that must be the whole of ``data`` in preferred encoding.

    Re-encoding must give the same bytes: this refuses trailing bytes, duplicate map keys,
    indefinite lengths and non-minimal heads, so two parsers cannot read different documents.
    """
    try:
        obj = cbor2.loads(data)
        same = cbor2.dumps(obj) == data
    except (
        cbor2.CBORError,
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
        MemoryError,
    ) as e:
        raise MalformedError(f"invalid CBOR: {type(e).__name__}", field=what) from None
    if not same:
        raise MalformedError(
            "not in preferred CBOR encoding (trailing bytes, duplicate keys or "
            "non-minimal lengths)",
            field=what,
        )
    return obj


def _bstr(value: Any, field: str, low: int, high: int) -> bytes:
    if not isinstance(value, bytes):
        raise MalformedError("must be a byte string", field=field)
    if not low <= len(value) <= high:
        raise MalformedError(f"length {len(value)} outside {low}..{high}", field=field)
    return value


def _optional_bstr(value: Any, field: str) -> bytes | None:
    if value is None:
        return None
    return _bstr(value, field, 0, MAX_OPTIONAL_BYTES)


def _parse_pcrs(value: Any, size: int) -> tuple[tuple[int, bytes], ...]:
    if not isinstance(value, Mapping) or not 0 < len(value) <= MAX_PCRS:
        raise MalformedError(f"must be a map of 1..{MAX_PCRS} PCRs", field="pcrs")
    out: list[tuple[int, bytes]] = []
    for index, pcr in value.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_PCRS:
            raise MalformedError(f"PCR index {index!r} outside 0..{MAX_PCRS - 1}", field="pcrs")
        out.append((index, _bstr(pcr, f"pcrs[{index}]", size, size)))
    out.sort()
    for required in (0, 1, 2):
        if required not in dict(out):
            raise MalformedError(f"PCR{required} is missing", field=f"pcrs[{required}]")
    return tuple(out)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """``Sig_structure = ["Signature1", protected, external_aad = h'', payload]`` (RFC 9052 §4.4)."""
    return bytes(cbor2.dumps(["Signature1", protected, b"", payload]))


def detect(data: bytes) -> bool:
    """A COSE_Sign1 array (tagged 18 or not) whose first member is a bstr holding a map."""
    body = data[1:] if data[:1] == b"\xd2" else data
    if len(body) < 3 or body[0] != 0x84:
        return False
    head = body[1]
    if 0x41 <= head <= 0x57:
        first = body[2]
    elif head == 0x58 and len(body) > 3:
        first = body[3]
    else:
        return False
    return 0xA0 <= first <= 0xBB


def parse(data: bytes) -> tuple[CoseSign1, AttestationDocument]:
    """Parse envelope and payload (no checks of signatures or certificates)."""
    envelope = CoseSign1.from_bytes(data)
    return envelope, AttestationDocument.from_bytes(envelope.payload)


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims of a Nitro document, for display."""
    return parse(data)[1].claims()


def _load_cert(der: bytes, field: str) -> x509.Certificate:
    return certs.load_der_certificate(der, field)


def _roots(trust: Any) -> frozenset[str]:
    if trust is None:
        return frozenset({AWS_NITRO_ROOT_G1_SHA256})
    if isinstance(trust, NitroTrust):
        return frozenset(fp.lower() for fp in trust.root_sha256)
    raise UsageError("nitro trust must be a NitroTrust or None")


#: Certificate links whose signature verified: (issuer's DER, certificate's DER) exactly as
#: loaded. That a certificate is issued and signed by another (names, algorithms, signature)
#: depends on those bytes alone; validity windows and CA constraints are checked on every call.
#: Only links that verified are kept, at most 1,024 (a few hundred KB).
_LINKS: Lru[tuple[bytes, bytes], bool] = Lru(1024)
_der_of = certs.der_of  # verify_chain's own ``certs`` is the chain


def clear_caches() -> None:
    """Forget the certificate links :func:`verify_chain` has verified (tests, benchmarks)."""
    _LINKS.clear()


def _constraints(
    cert: x509.Certificate,
) -> tuple[x509.BasicConstraints | None, x509.KeyUsage | None]:
    """``cert``'s basic constraints and key usage (None where absent), in one pass over its
    extensions (two ``get_extension_for_class`` calls cost twice that, on every document)."""
    bc = usage = None
    for ext in cert.extensions:
        value = ext.value
        if isinstance(value, x509.BasicConstraints):
            bc = value
        elif isinstance(value, x509.KeyUsage):
            usage = value
    return bc, usage


def verify_chain(
    chain: Iterable[tuple[str, x509.Certificate]],
    at: datetime,
    *,
    then: tuple[str, ...] = ("evidence_signature",),
    also: Iterable[VerificationError] = (),
    remember: bool = False,
) -> None:
    """Step 3: each certificate issued and signed by the previous, valid at ``at``; issuers are CAs
    whose key usage (if given) allows signing certificates; the leaf is not a CA.

    ``chain`` runs from the (already pinned) root to the leaf. The cheap checks (every validity
    window, every issuer a CA allowed this path length) run first and refuse with all their
    failures, naming the chain's signatures and the caller's later costly checks (``then``) as
    not reached (:mod:`veritee.evidence._cheap`); ``also``: the caller's own cheap failures,
    listed after the chain's. ``remember``: a link (issuer, certificate) whose signature
    verified before, byte for byte, is not verified again (Nitro and NVIDIA chains come back
    unchanged with every document of one enclave or GPU). Raises VerificationError.
    """
    certs = list(chain)
    checks = CheapChecks()
    for position, (name, cert) in enumerate(certs):
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            checks.add(VerificationError(
                f"{name} is not valid at {at.isoformat()} (valid "
                f"{cert.not_valid_before_utc.isoformat()}..{cert.not_valid_after_utc.isoformat()})",
                code="certificate_expired",
            ))  # fmt: skip
        below = len(certs) - 1 - position  # certificates issued beneath this one
        bc, usage = _constraints(cert)
        if below:
            if bc is None:
                checks.add(VerificationError(f"{name} is not a CA", code="chain_invalid"))
                continue
            if not bc.ca or (bc.path_length is not None and bc.path_length < below - 1):
                checks.add(
                    VerificationError(
                        f"{name} may not issue a chain of this length", code="chain_invalid"
                    )
                )
            if usage is not None and not usage.key_cert_sign:  # (RFC 5280 4.2.1.3)
                checks.add(VerificationError(f"{name}'s key usage does not allow signing "
                                             "certificates", code="chain_invalid"))  # fmt: skip
        elif bc is not None and bc.ca:  # the key that signs the evidence is an end entity's
            checks.add(VerificationError(f"{name} is a CA, not an end-entity certificate",
                                         code="chain_invalid"))  # fmt: skip
    for error in also:
        checks.add(error)
    checks.refuse(("chain_signatures", *then))
    for position in range(1, len(certs)):
        (issuer_name, issuer), (name, cert) = certs[position - 1], certs[position]
        link = (_der_of(issuer), _der_of(cert)) if remember else None
        if link is not None and _LINKS.get(link):
            continue
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise VerificationError(
                f"{name} is not issued and signed by {issuer_name}", code="chain_invalid"
            ) from None
        if link is not None:
            _LINKS.put(link, True)


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Verify a Nitro attestation document at ``at``; return its claims.

    ``collateral`` is not needed (the document carries its chain; AWS publishes no leaf CRL).
    ``trust`` is a :class:`NitroTrust` or None for the pinned AWS root. Raises MalformedError
    when the bytes do not parse and VerificationError when a check fails.
    """
    if at.tzinfo is None:
        raise UsageError("verification time must be timezone-aware")
    roots = _roots(trust)
    # 1. Parse strictly.
    envelope, doc = parse(data)
    if envelope.alg != COSE_ALG_ES384:
        raise VerificationError(
            f"unsupported COSE alg {envelope.alg}; Nitro documents use ES384 (-35)",
            code="algorithm_unsupported",
        )
    envelope.check_signature_size()
    # 2. Pin the root.
    root_fp = hashlib.sha256(doc.cabundle[0]).hexdigest()
    if root_fp not in roots:
        raise VerificationError(
            f"cabundle[0] is not a trusted Nitro root (sha256 {root_fp[:16]}...)",
            code="root_not_pinned",
        )
    chain = [
        (f"cabundle[{i}]", _load_cert(der, f"cabundle[{i}]")) for i, der in enumerate(doc.cabundle)
    ]
    leaf = _load_cert(doc.certificate, "certificate")
    chain.append(("certificate", leaf))
    # 3. Chain from the root down to the leaf, at the verification time.
    verify_chain(chain, at, then=("cose_signature",), remember=True)
    # 4. The COSE signature with the leaf's P-384 key.
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VerificationError("leaf certificate key is not ECDSA P-384", code="chain_invalid")
    half = ES384_SIGNATURE_BYTES // 2
    r = int.from_bytes(envelope.signature[:half], "big")
    s = int.from_bytes(envelope.signature[half:], "big")
    try:
        key.verify(
            encode_dss_signature(r, s),
            sig_structure(envelope.protected, envelope.payload),
            ec.ECDSA(hashes.SHA384()),
        )
    except InvalidSignature:
        raise VerificationError(
            "COSE_Sign1 signature does not verify with the leaf key", code="signature_invalid"
        ) from None
    return VerifiedEvidence(format="nitro", claims=doc.claims(), verified_at=at)
