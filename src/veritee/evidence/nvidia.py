"""NVIDIA Hopper GPU attestation: an SPDM 1.1 GET_MEASUREMENTS exchange signed by the GPU.

Evidence is a JSON document ``{"report": <hex or base64>, "certificate_chain": <PEM, leaf
first>}``: the report is the request and the response of SPDM's GET_MEASUREMENTS (DMTF DSP0274
1.1), as the GPU driver returns them, and the chain is the GPU's device certificate chain
(GSP FMC leaf, GSP BROM, provisioner ICA, GH100 identity, NVIDIA Device Identity CA).

* request (37 bytes): version 0x11, code 0xE0, param1 (bit 0: signature requested), param2
  (0xFF: all blocks; required), the verifier's 32-byte nonce, slot;
* response: version 0x11, code 0x60, param1, param2 (slot), block count u8, record length u24,
  the measurement record (blocks: index u8, specification u8, size u16, then the DMTF value:
  type u8, size u16, value), the responder's 32-byte nonce, opaque length u16, opaque data (TLVs:
  type u16, size u16, value, each type once; type 3 is the driver version), the ECDSA-P384
  signature (r || s); at least one block.
  All little-endian.

:func:`verify` checks: (1) the chain to the pinned NVIDIA Device Identity CA
(:data:`NVIDIA_DEVICE_IDENTITY_CA_SHA256`), every certificate valid at ``at``; (2) the
signature with the leaf's P-384 key over SHA-384(request || response up to the signature);
(3) the reported firmware ID (opaque type 20) is the FWID the leaf's TCG DICE extension
certifies, where both are present (claim ``firmware_id``).
Revocation (NVIDIA publishes it by OCSP only) is not checked offline, and the measurements are
not compared with NVIDIA's reference manifests (RIMs): policies pin measurement values. Claims:
platform ``nvidia-gpu``, ``report_data`` the request nonce, ``measurements`` by block index,
``measurement`` SHA-384 over all block values in index order, ``driver_version``, ``opaque``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee import certs
from veritee.collateral import Collateral
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.evidence._reader import Reader, json_object
from veritee.evidence.claims import Reason, VerifiedEvidence
from veritee.evidence.nitro import verify_chain

__all__ = ["NVIDIA_DEVICE_IDENTITY_CA_SHA256", "SpdmMeasurements", "detect", "parse",
           "parse_claims", "verify"]  # fmt: skip

#: SHA-256 of the DER of "NVIDIA Device Identity CA" (P-384, 2021-11-05 .. 9999-12-31).
NVIDIA_DEVICE_IDENTITY_CA_SHA256 = (
    "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
)
SPDM_VERSION = 0x11
GET_MEASUREMENTS, MEASUREMENTS = 0xE0, 0x60
SIGNATURE_SIZE = 96
MAX_TRAILING = 16
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_CHAIN = 8
OPAQUE_DRIVER_VERSION = 3


class SpdmMeasurements:
    """A parsed GET_MEASUREMENTS exchange (nothing verified)."""

    def __init__(self, report: bytes) -> None:
        r = Reader(report)
        if r.u8("request.version") != SPDM_VERSION or r.u8("request.code") != GET_MEASUREMENTS:
            raise MalformedError("not an SPDM 1.1 GET_MEASUREMENTS request", field="request")
        attributes = r.u8("request.param1")
        if not attributes & 1:
            raise MalformedError("the request did not ask for a signature", field="request.param1")
        if r.u8("request.param2") != 0xFF:  # (a subset: the claims would pin part of the GPU)
            raise MalformedError("the request did not ask for every measurement block",
                                 field="request.param2")  # fmt: skip
        self.nonce = r.bytes(32, "request.nonce")
        r.u8("request.slot")
        if r.u8("response.version") != SPDM_VERSION or r.u8("response.code") != MEASUREMENTS:
            raise MalformedError("not an SPDM 1.1 MEASUREMENTS response", field="response")
        r.u8("response.param1")
        r.u8("response.param2")
        count = r.u8("response.block_count")
        length = int.from_bytes(r.bytes(3, "response.record_length"), "little")
        self.blocks = self._blocks(r.bytes(length, "response.record"), count)
        self.responder_nonce = r.bytes(32, "response.nonce")
        self.opaque = self._tlvs(r.bytes(r.u16("response.opaque_length"), "response.opaque"))
        self.signed = report[: r.offset]
        self.signature = r.bytes(SIGNATURE_SIZE, "response.signature")
        if r.remaining > MAX_TRAILING:  # a few unsigned bytes occur after real responses
            raise MalformedError(f"{r.remaining} bytes after the signature", field="response")

    @staticmethod
    def _blocks(record: bytes, count: int) -> dict[int, bytes]:
        r = Reader(record)
        blocks: dict[int, bytes] = {}
        while r.remaining:
            index = r.u8("block.index")
            r.u8("block.specification")
            size = r.u16("block.size")
            b = Reader(r.bytes(size, "block.measurement"))
            b.u8("block.value_type")
            value = b.bytes(b.u16("block.value_size"), "block.value")
            if b.remaining or index in blocks:
                raise MalformedError(f"measurement block {index} is malformed or repeated",
                                     field="block")  # fmt: skip
            blocks[index] = value
        if len(blocks) != count:
            raise MalformedError(f"{len(blocks)} blocks, the response says {count}",
                                 field="response.block_count")  # fmt: skip
        if not blocks:  # (the measurement claim would be the hash of nothing, pinning nothing)
            raise MalformedError("the response holds no measurement block", field="block")
        return blocks

    @staticmethod
    def _tlvs(data: bytes) -> dict[int, bytes]:
        r = Reader(data)
        out: dict[int, bytes] = {}
        while r.remaining:
            kind = r.u16("opaque.type")
            if kind in out:  # (one value per type: none may shadow another, e.g. the driver's)
                raise MalformedError(f"opaque data type {kind} repeated", field="opaque.type")
            out[kind] = r.bytes(r.u16("opaque.size"), "opaque.value")
        return out


def detect(data: bytes) -> bool:
    return data[:64].lstrip()[:1] == b"{" and b'"certificate_chain"' in data and b'"report"' in data


def parse(data: bytes) -> tuple[SpdmMeasurements, list[x509.Certificate]]:
    doc = json_object(data, MAX_DOCUMENT_BYTES)
    if set(doc) != {"report", "certificate_chain"}:
        raise MalformedError("expected exactly report and certificate_chain", field="document")
    text, pem = doc["report"], doc["certificate_chain"]
    if not isinstance(text, str) or not isinstance(pem, str):
        raise MalformedError("report and certificate_chain must be text", field="document")
    try:
        report = bytes.fromhex(text)
    except ValueError:
        try:
            report = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedError("report is neither hex nor base64", field="report") from None
    chain = certs.load_pem_certificates(pem.encode(), "certificate_chain")
    if not 1 < len(chain) <= MAX_CHAIN:
        raise MalformedError(f"the chain has {len(chain)} certificates", field="certificate_chain")
    return SpdmMeasurements(report), chain


def _claims(m: SpdmMeasurements, leaf: x509.Certificate) -> dict[str, Any]:
    driver = m.opaque.get(OPAQUE_DRIVER_VERSION, b"").rstrip(b"\0")
    claims: dict[str, Any] = {
        "platform": "nvidia-gpu",
        "measurement": hashlib.sha384(b"".join(m.blocks[i] for i in sorted(m.blocks))).hexdigest(),
        "report_data": m.nonce.hex(),
        "debug": False,
        "measurements": {str(i): v.hex() for i, v in sorted(m.blocks.items())},
        "responder_nonce": m.responder_nonce.hex(),
        "driver_version": driver.decode("ascii", errors="replace"),
        "opaque": {str(k): v.hex() for k, v in sorted(m.opaque.items())},
        "device_certificate": leaf.subject.rfc4514_string(),
    }
    certified = _certified_fwid(leaf)
    if certified is not None:  # (the firmware the device certificate certifies; verify compares)
        claims["firmware_id"] = certified.hex()
    return claims


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims, for display."""
    m, chain = parse(data)
    return _claims(m, chain[0])


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Verify a GPU's measurements document at ``at`` (see the module docstring).

    ``trust``: root SHA-256 fingerprints to pin instead of the NVIDIA Device Identity CA.
    """
    if at.tzinfo is None:
        raise UsageError("verification time must be timezone-aware")
    roots = {NVIDIA_DEVICE_IDENTITY_CA_SHA256} if trust is None else {str(t).lower() for t in trust}
    m, chain = parse(data)
    root = chain[-1]
    if hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest() not in roots:
        raise VerificationError("the GPU chain does not end at the pinned NVIDIA root",
                                code="root_not_pinned")  # fmt: skip
    names = ["leaf", *(f"certificate_chain[{i}]" for i in range(1, len(chain)))]
    verify_chain(
        list(reversed(list(zip(names, chain, strict=True)))),
        at,
        then=("measurements_signature",),
        remember=True,
    )
    key = chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VerificationError("the GPU's leaf key is not ECDSA P-384", code="chain_invalid")
    half = SIGNATURE_SIZE // 2
    der = encode_dss_signature(int.from_bytes(m.signature[:half], "big"),
                               int.from_bytes(m.signature[half:], "big"))  # fmt: skip
    try:
        key.verify(der, m.signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise VerificationError("the GPU's measurements signature does not verify",
                                code="signature_invalid") from None  # fmt: skip
    claims = _claims(m, chain[0])
    certified, reported = claims.get("firmware_id"), m.opaque.get(OPAQUE_FWID)
    if certified is not None and reported is not None and reported.hex() != certified:
        raise VerificationError(
            "the report's firmware ID (opaque data type 20) differs from the one the GPU's device "
            "certificate certifies", code="fwid_mismatch",
        )  # fmt: skip
    return VerifiedEvidence(format="nvidia-gpu", claims=claims, verified_at=at,
                            findings=NOT_ESTABLISHED)  # fmt: skip


#: The opaque-data type of the firmware ID (FWID) the GPU reports.
OPAQUE_FWID = 20
#: The TCG DICE extension of the GPU's device (GSP FMC) certificate that carries its FWID.
OID_DICE_FWID = x509.ObjectIdentifier("2.23.133.5.4.1")
#: ``SEQUENCE { OID sha384, OCTET STRING (48) }``: the FWID element, as the extension ends.
_FWID_HEAD = bytes.fromhex("303d0609608648016503040202" + "0430")


def _certified_fwid(leaf: x509.Certificate) -> bytes | None:
    """The SHA-384 FWID the leaf's DICE extension certifies (``SEQUENCE { version, the key,
    SEQUENCE { sha384, OCTET STRING } }``, as NVIDIA's GSP FMC certificates carry it), or None
    when the leaf has no such extension; MalformedError when it has one of another layout."""
    try:
        value = leaf.extensions.get_extension_for_oid(OID_DICE_FWID).value
    except x509.ExtensionNotFound:
        return None
    raw = getattr(value, "value", b"")
    end = len(raw) - len(_FWID_HEAD) - 48
    if (
        end < 4
        or raw[end : end + len(_FWID_HEAD)] != _FWID_HEAD
        or raw[0] != 0x30
        or not _spans_whole(raw)
    ):
        raise MalformedError("the device certificate's FWID extension is not of the known layout",
                             field="certificate_chain[0]")  # fmt: skip
    return raw[-48:]


def _spans_whole(raw: bytes) -> bool:
    """Whether ``raw`` is one DER SEQUENCE, its length (short or long form) covering the rest."""
    if len(raw) < 2:
        return False
    n = raw[1]
    if n < 0x80:
        return 2 + n == len(raw)
    k = n & 0x7F
    return 0 < k <= 2 and 2 + k + int.from_bytes(raw[2 : 2 + k], "big") == len(raw)


#: What this verifier does not establish (the appraisal says so: AR4SI ``warning``).
NOT_ESTABLISHED = (
    Reason("revocation_not_checked",
           "the GPU's certificates were not checked for revocation (NVIDIA publishes it by "
           "OCSP only; this verifier is offline)"),
    Reason("reference_values_not_compared",
           "the GPU's measurements were not compared with NVIDIA's reference integrity "
           "manifests (RIMs); pin them with a policy's measurements or blocks"),
)  # fmt: skip
