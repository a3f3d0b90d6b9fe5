"""Signed SEV-SNP reports, TDX quotes and Arm CCA tokens binding a chosen report data.

What a platform would return for a given ``inblob``, signed by test keys whose roots a test then
pins (``trust=``), so the attester's output goes through the real verifiers end to end:

* :func:`snp` — an SNP report from the fake AMD chain of :mod:`tests.fakes.amd` (re-signed by
  its VCEK with the report data put in), and the GHCB certificate table (VCEK, ASK, ARK);
* :func:`tdx` — a TD quote from :func:`tests.fakes.intel.build` with the report data put in the
  TD body and the quote re-signed by its attestation key;
* :func:`cca` — a CCA token with a fresh RAK and a test CPAK.

Example::

    maker = snp()
    report, table = maker.generate(inblob, 0)
    sev_snp.verify(report, collateral=maker.collateral, trust=maker.trust, at=maker.at)
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tests.fakes import amd as amd_fake
from tests.fakes import intel as dcap_fake

from veritee.collateral import Collateral
from veritee.evidence import cca as cca_evidence
from veritee.evidence import sev_snp
from veritee.evidence.nitro import sig_structure
from veritee.platforms import configfs_tsm


@dataclass
class Maker:
    generate: Any
    collateral: Collateral
    trust: Any
    at: datetime


def _resign_snp(
    chain: amd_fake.Chain, report: bytes, report_data: bytes, host_data: bytes
) -> bytes:
    b = bytearray(report)
    b[sev_snp.OFF_REPORT_DATA : sev_snp.OFF_REPORT_DATA + 64] = report_data
    b[sev_snp.OFF_HOST_DATA : sev_snp.OFF_HOST_DATA + 32] = host_data
    r, s = decode_dss_signature(
        chain.leaf_key.sign(bytes(b[: sev_snp.SIGNED_SIZE]), ec.ECDSA(hashes.SHA384()))
    )
    b[sev_snp.OFF_SIGNATURE_R : sev_snp.OFF_SIGNATURE_R + 72] = r.to_bytes(72, "little")
    b[sev_snp.OFF_SIGNATURE_S : sev_snp.OFF_SIGNATURE_S + 72] = s.to_bytes(72, "little")
    return bytes(b)


def snp(host_data: bytes = bytes(32), policy: int = 0x30000) -> Maker:
    chain = amd_fake.make_chain()
    base = amd_fake.make_report(chain, policy=policy)
    der = serialization.Encoding.DER
    table = configfs_tsm.build_cert_table({
        guid: cert.public_bytes(der)
        for guid, cert in zip(list(configfs_tsm.CERT_GUIDS)[:1] + list(configfs_tsm.CERT_GUIDS)[2:],
                              (chain.leaf, chain.ask, chain.ark), strict=True)
    })  # fmt: skip

    def generate(inblob: bytes, privlevel: int) -> tuple[bytes, bytes]:
        return _resign_snp(chain, base, inblob, host_data), table

    return Maker(
        generate, Collateral(certificates=(chain.ask, chain.ark)), chain.trust(), amd_fake.AT
    )


# TD quote v4: 48-byte header, then the TD report body whose REPORTDATA is its last 64 bytes.
_TD_BODY_REPORT_DATA = 48 + 520


def tdx() -> Maker:
    syn = dcap_fake.build()
    key = dcap_fake.KEYS["att"]

    def generate(inblob: bytes, privlevel: int) -> tuple[bytes, bytes]:
        q = bytearray(syn.quote)
        q[_TD_BODY_REPORT_DATA : _TD_BODY_REPORT_DATA + 64] = inblob
        signed_end = 48 + 584
        q[signed_end + 4 : signed_end + 4 + 64] = dcap_fake.raw_sign(key, bytes(q[:signed_end]))
        return bytes(q), b""

    return Maker(generate, syn.collateral, syn.trust, dcap_fake.AT)


@functools.cache
def _cpak() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _sign1(key: ec.EllipticCurvePrivateKey, claims: dict[int, Any]) -> bytes:
    protected = cbor2.dumps({1: -35})
    payload = cbor2.dumps(claims)
    r, s = decode_dss_signature(
        key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA384()))
    )
    return bytes(
        cbor2.dumps(
            cbor2.CBORTag(
                18, [protected, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")]
            )
        )
    )


def cca(personalization: bytes = bytes(64), lifecycle: int = 0x3000) -> Maker:
    cpak = _cpak()

    def generate(inblob: bytes, privlevel: int) -> tuple[bytes, bytes]:
        rak = ec.generate_private_key(ec.SECP384R1())
        point = rak.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)  # fmt: skip
        realm = {10: inblob, 44235: personalization, 44236: "sha-256", 44237: point,
                 44238: b"\x42" * 32, 44239: [bytes(32)] * 4, 44240: "sha-256"}  # fmt: skip
        platform = {10: hashlib.sha256(point).digest(), 256: b"\x01" + bytes(32), 2396: bytes(32),
                    2395: lifecycle, 2399: [{1: "BL", 2: b"\x07" * 32, 4: "1.0", 5: bytes(32)}],
                    2401: b"\x00", 2402: "sha-256", 265: "tag:arm.com,2023:cca_platform#1.0.0"}  # fmt: skip
        token = cbor2.dumps(cbor2.CBORTag(cca_evidence.CCA_TOKEN_TAG, {
            cca_evidence.PLATFORM: _sign1(cpak, platform), cca_evidence.REALM: _sign1(rak, realm),
        }))  # fmt: skip
        return bytes(token), b""

    pem = cpak.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    return Maker(
        generate, Collateral.from_blobs([("cpak.pem", pem)]), None, datetime(2026, 1, 1, tzinfo=UTC)
    )


__all__ = ["Maker", "cca", "snp", "tdx"]
