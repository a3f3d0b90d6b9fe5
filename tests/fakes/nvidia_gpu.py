"""A synthetic NVIDIA GPU: its own P-384 root, intermediate and device leaf, and SPDM 1.1
GET_MEASUREMENTS exchanges the leaf signs (the layout of :mod:`veritee.evidence.nvidia`), for
cases the two public reports cannot reach (other blocks, other opaque data, re-signed)."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from tests.fakes.intel import der_tlv

from veritee.collateral import Collateral
from veritee.evidence import nvidia
from veritee.evidence.claims import VerifiedEvidence

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
    *, ca: bool, fwid: bytes | None = None,
) -> x509.Certificate:  # fmt: skip
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    b = (
        x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(AT - timedelta(days=1)).not_valid_after(AT + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if fwid is not None:
        b = b.add_extension(dice_fwid_extension(key, fwid), critical=False)
    return b.sign(signer, hashes.SHA384())


def dice_fwid_extension(key: ec.EllipticCurvePrivateKey, fwid: bytes) -> x509.UnrecognizedExtension:
    """The TCG DICE extension (2.23.133.5.4.1) of NVIDIA's GSP FMC certificates, as they carry
    it: ``SEQUENCE { INTEGER 1, the key's SubjectPublicKeyInfo, SEQUENCE { sha384, OCTET STRING
    fwid } }``."""
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fw = bytes.fromhex("303d0609608648016503040202") + der_tlv(0x04, fwid)
    return x509.UnrecognizedExtension(
        x509.ObjectIdentifier("2.23.133.5.4.1"), der_tlv(0x30, b"\x02\x01\x01" + spki + fw)
    )


def block(index: int, value: bytes, value_type: int = 1) -> bytes:
    """One measurement block: index, DMTF specification, size, then type, size, value."""
    dmtf = bytes([value_type]) + struct.pack("<H", len(value)) + value
    return bytes([index, 1]) + struct.pack("<H", len(dmtf)) + dmtf


def tlv(kind: int, value: bytes) -> bytes:
    """One opaque-data item: type, size, value."""
    return struct.pack("<HH", kind, len(value)) + value


DEFAULT_BLOCKS = tuple(block(i, bytes([i]) * 48) for i in range(1, 5))
DEFAULT_OPAQUE = tlv(3, b"550.90.07\0")


@dataclass
class Gpu:
    """Keys and certificates of one synthetic GPU; ``trust`` pins its root."""

    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    ica_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    leaf_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    #: The FWID the leaf certifies (its DICE extension), or None for a leaf without one.
    fwid: bytes | None = None

    def __post_init__(self) -> None:
        self.root = _cert("Fake Device Identity CA", self.root_key, "Fake Device Identity CA",
                          self.root_key, ca=True)  # fmt: skip
        self.ica = _cert("Fake GH100 ICA", self.ica_key, "Fake Device Identity CA", self.root_key,
                         ca=True)  # fmt: skip
        self.leaf = _cert("Fake GPU FMC", self.leaf_key, "Fake GH100 ICA", self.ica_key, ca=False,
                          fwid=self.fwid)  # fmt: skip
        der = self.root.public_bytes(serialization.Encoding.DER)
        self.trust = [hashlib.sha256(der).hexdigest()]

    def report(
        self,
        *,
        nonce: bytes = b"\x11" * 32,
        blocks: tuple[bytes, ...] = DEFAULT_BLOCKS,
        opaque: bytes = DEFAULT_OPAQUE,
        param2: int = 0xFF,
    ) -> bytes:
        """A GET_MEASUREMENTS request and response, signed by the leaf."""
        record = b"".join(blocks)
        request = bytes([0x11, 0xE0, 1, param2]) + nonce + b"\0"
        response = (
            bytes([0x11, 0x60, 0, 0, len(blocks)]) + len(record).to_bytes(3, "little") + record
            + b"\x22" * 32 + struct.pack("<H", len(opaque)) + opaque
        )  # fmt: skip
        signed = request + response
        r, s = decode_dss_signature(self.leaf_key.sign(signed, ec.ECDSA(hashes.SHA384())))
        return signed + r.to_bytes(48, "big") + s.to_bytes(48, "big")

    def document(self, report: bytes) -> bytes:
        """The evidence document: the report and the chain, leaf first."""
        pem = b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, self.ica, self.root)
        )
        return json.dumps({"report": report.hex(), "certificate_chain": pem.decode()}).encode()

    def verify(self, report: bytes) -> VerifiedEvidence:
        return nvidia.verify(
            self.document(report), collateral=Collateral.empty(), at=AT, trust=self.trust
        )
