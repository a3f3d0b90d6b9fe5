"""AMD SEV-SNP attestation reports: parse, verify against the AMD chain, produce claims.

The layout is the ``ATTESTATION_REPORT`` structure of the "SEV Secure Nested Paging Firmware ABI
Specification" (AMD doc. 56860, table "ATTESTATION_REPORT Structure"), versions 2, 3 and 5.
All integers are little-endian; offsets are the ``OFF_*`` constants below::

    0x000  4  VERSION            2, 3 or 5
    0x004  4  GUEST_SVN
    0x008  8  POLICY             guest policy (table "Guest Policy Structure")
    0x010 16  FAMILY_ID
    0x020 16  IMAGE_ID
    0x030  4  VMPL
    0x034  4  SIGNATURE_ALGO     1 = ECDSA P-384 with SHA-384
    0x038  8  CURRENT_TCB        TCB_VERSION
    0x040  8  PLATFORM_INFO
    0x048  4  signer info        bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY
    0x050 64  REPORT_DATA
    0x090 48  MEASUREMENT
    0x0C0 32  HOST_DATA
    0x0E0 48  ID_KEY_DIGEST
    0x110 48  AUTHOR_KEY_DIGEST
    0x140 32  REPORT_ID
    0x160 32  REPORT_ID_MA
    0x180  8  REPORTED_TCB
    0x188  3  CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP   (version 3 and later)
    0x1A0 64  CHIP_ID            zero when the platform masks it (MaskChipId)
    0x1E0  8  COMMITTED_TCB
    0x1E8  3  CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR
    0x1EC  3  COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR
    0x1F0  8  LAUNCH_TCB
    0x1F8  8  LAUNCH_MIT_VECTOR  (version 5)
    0x200  8  CURRENT_MIT_VECTOR (version 5)
    0x2A0 512 SIGNATURE          R (72 bytes LE), S (72 bytes LE), reserved; over [0x000:0x2A0]

TCB_VERSION (table "TCB_VERSION Structure"): Milan and Genoa put BOOT_LOADER, TEE at bytes 0-1,
SNP at 6 and MICROCODE at 7; Turin (CPUID family 0x1A) puts FMC, BOOT_LOADER, TEE, SNP at 0-3
and MICROCODE at 7. Chain handling lives in :mod:`veritee.evidence.amd`.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.collateral import Collateral
from veritee.errors import (
    CollateralError,
    MalformedError,
    UsageError,
    VerificationError,
    VeriteeError,
)
from veritee.evidence import amd
from veritee.evidence._cheap import CheapChecks
from veritee.evidence.amd import AmdTrust, ChainCache, Product, VerifiedChain
from veritee.evidence.claims import Reason, VerifiedEvidence

__all__ = [
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "SUPPORTED_VERSIONS",
    "AttestationReport",
    "GuestPolicy",
    "PlatformInfo",
    "TcbVersion",
    "detect",
    "parse_claims",
    "product_from_cpuid",
    "tcb_dict",
    "verify",
]

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = (2, 3, 5)
SIG_ALGO_ECDSA_P384_SHA384 = 1
SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1

OFF_VERSION = 0x000
OFF_GUEST_SVN = 0x004
OFF_POLICY = 0x008
OFF_FAMILY_ID = 0x010
OFF_IMAGE_ID = 0x020
OFF_VMPL = 0x030
OFF_SIGNATURE_ALGO = 0x034
OFF_CURRENT_TCB = 0x038
OFF_PLATFORM_INFO = 0x040
OFF_SIGNER_INFO = 0x048
OFF_REPORT_DATA = 0x050
OFF_MEASUREMENT = 0x090
OFF_HOST_DATA = 0x0C0
OFF_ID_KEY_DIGEST = 0x0E0
OFF_AUTHOR_KEY_DIGEST = 0x110
OFF_REPORT_ID = 0x140
OFF_REPORT_ID_MA = 0x160
OFF_REPORTED_TCB = 0x180
OFF_CPUID_FAM_ID = 0x188
OFF_CHIP_ID = 0x1A0
OFF_COMMITTED_TCB = 0x1E0
OFF_CURRENT_BUILD = 0x1E8
OFF_COMMITTED_BUILD = 0x1EC
OFF_LAUNCH_TCB = 0x1F0
OFF_LAUNCH_MIT_VECTOR = 0x1F8
OFF_CURRENT_MIT_VECTOR = 0x200
OFF_SIGNATURE_R = 0x2A0
OFF_SIGNATURE_S = 0x2E8
OFF_SIGNATURE_RESERVED = 0x330
SIG_COMPONENT_SIZE = 72
P384_SIZE = 48

#: The whole report in one unpack (one struct call per report).
_LAYOUT = struct.Struct(
    "<IIQ16s16sIIQQI4x64s48s32s48s48s32s32sQBBB21x64sQBBBxBBBxQQQ152x72s72s368s"
)

#: (name, offset, size) of every field, for naming where a truncated input ends.
_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("version", OFF_VERSION, 4),
    ("guest_svn", OFF_GUEST_SVN, 4),
    ("policy", OFF_POLICY, 8),
    ("family_id", OFF_FAMILY_ID, 16),
    ("image_id", OFF_IMAGE_ID, 16),
    ("vmpl", OFF_VMPL, 4),
    ("signature_algo", OFF_SIGNATURE_ALGO, 4),
    ("current_tcb", OFF_CURRENT_TCB, 8),
    ("platform_info", OFF_PLATFORM_INFO, 8),
    ("signer_info", OFF_SIGNER_INFO, 8),
    ("report_data", OFF_REPORT_DATA, 64),
    ("measurement", OFF_MEASUREMENT, 48),
    ("host_data", OFF_HOST_DATA, 32),
    ("id_key_digest", OFF_ID_KEY_DIGEST, 48),
    ("author_key_digest", OFF_AUTHOR_KEY_DIGEST, 48),
    ("report_id", OFF_REPORT_ID, 32),
    ("report_id_ma", OFF_REPORT_ID_MA, 32),
    ("reported_tcb", OFF_REPORTED_TCB, 8),
    ("cpuid", OFF_CPUID_FAM_ID, 24),
    ("chip_id", OFF_CHIP_ID, 64),
    ("committed_tcb", OFF_COMMITTED_TCB, 8),
    ("current_version", OFF_CURRENT_BUILD, 4),
    ("committed_version", OFF_COMMITTED_BUILD, 4),
    ("launch_tcb", OFF_LAUNCH_TCB, 8),
    ("launch_mit_vector", OFF_LAUNCH_MIT_VECTOR, 8),
    ("current_mit_vector", OFF_CURRENT_MIT_VECTOR, 8),
    ("reserved", 0x208, 0x98),
    ("signature.r", OFF_SIGNATURE_R, 72),
    ("signature.s", OFF_SIGNATURE_S, 72),
    ("signature.reserved", OFF_SIGNATURE_RESERVED, 0x170),
)

_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
_ZERO_PAD = bytes(SIG_COMPONENT_SIZE - P384_SIZE)
_ZERO_SIG_RESERVED = bytes(REPORT_SIZE - OFF_SIGNATURE_RESERVED)
_ZERO_CHIP_ID = bytes(64)


def _field_at(offset: int) -> str:
    for name, off, size in _FIELDS:
        if off <= offset < off + size:
            return name
    return "end"


def product_from_cpuid(family: int, model: int) -> Product | None:
    """Product of a CPUID family/model pair (v3+ reports), or None when unknown."""
    if family == 0x19:
        if model <= 0x0F:
            return Product.MILAN
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:  # Genoa, Bergamo/Siena
            return Product.GENOA
    if family == 0x1A:
        return Product.TURIN
    return None


@dataclass(frozen=True, slots=True)
class TcbVersion:
    """TCB_VERSION (ABI spec, table "TCB_VERSION Structure"); layout depends on the product."""

    raw: int
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def from_raw(cls, raw: int, product: Product | None) -> TcbVersion:
        b = raw.to_bytes(8, "little")
        if product is Product.TURIN:
            return cls(raw, bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7], fmc=b[0])
        return cls(raw, bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])

    def as_dict(self) -> dict[str, int]:
        out = {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out


def tcb_dict(raw: int, product: Product | None) -> dict[str, int]:
    """``TcbVersion.from_raw(raw, product).as_dict()`` without the intermediate object."""
    b = raw.to_bytes(8, "little")
    if product is Product.TURIN:
        return {"bootloader": b[1], "tee": b[2], "snp": b[3], "microcode": b[7], "fmc": b[0]}
    return {"bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]}


@dataclass(frozen=True, slots=True)
class GuestPolicy:
    """Guest policy bits (ABI spec, table "Guest Policy Structure")."""

    abi_minor: int
    abi_major: int
    smt: bool
    migrate_ma: bool
    debug: bool
    single_socket: bool
    cxl_allow: bool
    mem_aes_256_xts: bool
    rapl_dis: bool
    ciphertext_hiding: bool
    page_swap_disable: bool

    @classmethod
    def from_int(cls, v: int) -> GuestPolicy:
        return cls(
            abi_minor=v & 0xFF,
            abi_major=(v >> 8) & 0xFF,
            smt=bool(v >> 16 & 1),
            migrate_ma=bool(v >> 18 & 1),
            debug=bool(v >> 19 & 1),
            single_socket=bool(v >> 20 & 1),
            cxl_allow=bool(v >> 21 & 1),
            mem_aes_256_xts=bool(v >> 22 & 1),
            rapl_dis=bool(v >> 23 & 1),
            ciphertext_hiding=bool(v >> 24 & 1),
            page_swap_disable=bool(v >> 25 & 1),
        )

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _POLICY_FIELDS}


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    """PLATFORM_INFO bits (ABI spec, table "PLATFORM_INFO Field")."""

    smt_enabled: bool
    tsme_enabled: bool
    ecc_enabled: bool
    rapl_disabled: bool
    ciphertext_hiding_enabled: bool
    alias_check_complete: bool
    tio_enabled: bool

    @classmethod
    def from_int(cls, v: int) -> PlatformInfo:
        return cls(
            bool(v & 1),
            bool(v >> 1 & 1),
            bool(v >> 2 & 1),
            bool(v >> 3 & 1),
            bool(v >> 4 & 1),
            bool(v >> 5 & 1),
            bool(v >> 7 & 1),
        )

    def as_dict(self) -> dict[str, bool]:
        return {name: bool(getattr(self, name)) for name in _PLATFORM_INFO_FIELDS}


_POLICY_FIELDS = tuple(f.name for f in fields(GuestPolicy))
_PLATFORM_INFO_FIELDS = tuple(f.name for f in fields(PlatformInfo))


@dataclass(frozen=True, slots=True)
class AttestationReport:
    """ATTESTATION_REPORT (ABI spec doc. 56860, table "ATTESTATION_REPORT Structure").

    TCB fields hold the raw 64-bit TCB_VERSION; decode them with :meth:`tcb` once the product
    is known (from the chain, or from CPUID in v3+ reports).
    """

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    author_key_en: bool
    mask_chip_key: bool
    signing_key: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: int
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: int
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int
    signed: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> AttestationReport:
        """Parse exactly 0x4A0 bytes; raise :class:`MalformedError` naming field and offset."""
        n = len(data)
        if n < REPORT_SIZE:
            raise MalformedError(
                f"truncated SEV-SNP report: {n} of {REPORT_SIZE} bytes",
                field=_field_at(n),
                offset=n,
                code="truncated",
            )
        if n > REPORT_SIZE:
            raise MalformedError(
                f"SEV-SNP report has {n - REPORT_SIZE} trailing bytes",
                field="end",
                offset=REPORT_SIZE,
                code="trailing_bytes",
            )
        (
            version,
            svn,
            policy,
            family_id,
            image_id,
            vmpl,
            algo,
            cur_tcb,
            pinfo,
            signer,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            fam,
            mod,
            step,
            chip_id,
            committed_tcb,
            cur_build,
            cur_minor,
            cur_major,
            com_build,
            com_minor,
            com_major,
            launch_tcb,
            launch_mit,
            current_mit,
            r,
            s,
            sig_reserved,
        ) = _LAYOUT.unpack(data)
        if version not in SUPPORTED_VERSIONS:
            raise MalformedError(
                f"unsupported report version {version} (supported: 2, 3, 5)",
                field="version",
                offset=OFF_VERSION,
                code="version_unsupported",
            )
        if algo != SIG_ALGO_ECDSA_P384_SHA384:
            raise MalformedError(
                f"unsupported signature algorithm {algo} (1 = ECDSA P-384/SHA-384)",
                field="signature_algo",
                offset=OFF_SIGNATURE_ALGO,
                code="algorithm_unsupported",
            )
        signing_key = (signer >> 2) & 0x7
        if signing_key not in (SIGNING_KEY_VCEK, SIGNING_KEY_VLEK):
            raise MalformedError(
                f"SIGNING_KEY {signing_key} is neither VCEK (0) nor VLEK (1)",
                field="signer_info",
                offset=OFF_SIGNER_INFO,
                code="signing_key_unsupported",
            )
        for name, value, off in (
            ("signature.r", r, OFF_SIGNATURE_R),
            ("signature.s", s, OFF_SIGNATURE_S),
        ):
            if value[P384_SIZE:] != _ZERO_PAD:
                raise MalformedError(
                    f"{name} has non-zero bytes beyond the 48-byte P-384 scalar",
                    field=name,
                    offset=off + P384_SIZE,
                    code="signature_malformed",
                )
        if sig_reserved != _ZERO_SIG_RESERVED:
            raise MalformedError(
                "reserved bytes of the signature are not zero",
                field="signature.reserved",
                offset=OFF_SIGNATURE_RESERVED,
                code="signature_malformed",
            )
        has_cpuid = version >= 3
        has_mit = version >= 5
        return cls(
            version,
            svn,
            policy,
            family_id,
            image_id,
            vmpl,
            algo,
            cur_tcb,
            pinfo,
            bool(signer & 1),
            bool(signer >> 1 & 1),
            signing_key,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            fam if has_cpuid else None,
            mod if has_cpuid else None,
            step if has_cpuid else None,
            chip_id,
            committed_tcb,
            cur_build,
            cur_minor,
            cur_major,
            com_build,
            com_minor,
            com_major,
            launch_tcb,
            launch_mit if has_mit else None,
            current_mit if has_mit else None,
            int.from_bytes(r[:P384_SIZE], "little"),
            int.from_bytes(s[:P384_SIZE], "little"),
            bytes(data[:SIGNED_SIZE]),
        )

    @property
    def signing_key_name(self) -> str:
        return "vlek" if self.signing_key == SIGNING_KEY_VLEK else "vcek"

    @property
    def chip_id_masked(self) -> bool:
        return self.chip_id == _ZERO_CHIP_ID

    @property
    def cpuid_product(self) -> Product | None:
        if self.cpuid_fam_id is None or self.cpuid_mod_id is None:
            return None
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    def tcb(self, raw: int, product: Product | None) -> TcbVersion:
        return TcbVersion.from_raw(raw, product)

    def der_signature(self) -> bytes:
        return encode_dss_signature(self.signature_r, self.signature_s)

    def claims(self, product: Product | None) -> dict[str, Any]:
        """Normalized claims (DESIGN.md "Normalized claims"); TCBs decoded for ``product``."""
        policy_bits = _policy_bits(self.policy)
        cpuid = None
        if self.cpuid_fam_id is not None:
            cpuid = {
                "family": self.cpuid_fam_id,
                "model": self.cpuid_mod_id,
                "stepping": self.cpuid_step,
            }
        return {
            "platform": "sev-snp",
            "version": self.version,
            "measurement": self.measurement.hex(),
            "report_data": self.report_data.hex(),
            "debug": policy_bits["debug"],
            "tcb_status": None,
            "policy": self.policy,
            "policy_bits": dict(policy_bits),
            "platform_info": self.platform_info,
            "platform_info_bits": dict(_platform_info_bits(self.platform_info)),
            "chip_id": self.chip_id.hex(),
            "chip_id_masked": self.chip_id_masked,
            "signing_key": self.signing_key_name,
            "author_key_en": self.author_key_en,
            "mask_chip_key": self.mask_chip_key,
            "vmpl": self.vmpl,
            "guest_svn": self.guest_svn,
            "host_data": self.host_data.hex(),
            "id_key_digest": self.id_key_digest.hex(),
            "author_key_digest": self.author_key_digest.hex(),
            "family_id": self.family_id.hex(),
            "image_id": self.image_id.hex(),
            "report_id": self.report_id.hex(),
            "report_id_ma": self.report_id_ma.hex(),
            "reported_tcb": tcb_dict(self.reported_tcb, product),
            "current_tcb": tcb_dict(self.current_tcb, product),
            "committed_tcb": tcb_dict(self.committed_tcb, product),
            "launch_tcb": tcb_dict(self.launch_tcb, product),
            "current_firmware": f"{self.current_major}.{self.current_minor}.{self.current_build}",
            "committed_firmware": f"{self.committed_major}.{self.committed_minor}.{self.committed_build}",
            "cpuid": cpuid,
            "launch_mit_vector": self.launch_mit_vector,
            "current_mit_vector": self.current_mit_vector,
            "product": product.value if product is not None else None,
        }


@functools.lru_cache(maxsize=1024)
def _policy_bits(policy: int) -> dict[str, Any]:
    """Decoded guest policy bits (a pure function of the 64-bit value: a fleet has few)."""
    return GuestPolicy.from_int(policy).as_dict()


@functools.lru_cache(maxsize=1024)
def _platform_info_bits(info: int) -> dict[str, Any]:
    return PlatformInfo.from_int(info).as_dict()


def detect(data: bytes) -> bool:
    """An SEV-SNP report is exactly 0x4A0 bytes with a small VERSION and SIGNATURE_ALGO 1."""
    if len(data) != REPORT_SIZE:
        return False
    version = int.from_bytes(data[OFF_VERSION : OFF_VERSION + 4], "little")
    algo = int.from_bytes(data[OFF_SIGNATURE_ALGO : OFF_SIGNATURE_ALGO + 4], "little")
    return 2 <= version <= 0xFF and algo == SIG_ALGO_ECDSA_P384_SHA384


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims for display (product from CPUID in v3+ reports, else unknown)."""
    report = AttestationReport.from_bytes(data)
    return report.claims(report.cpuid_product)


def _trust(trust: object) -> AmdTrust:
    if trust is None:
        return AmdTrust()
    if isinstance(trust, AmdTrust):
        return trust
    if isinstance(trust, ChainCache):
        return AmdTrust(cache=trust)
    raise UsageError("SEV-SNP trust must be an AmdTrust, a ChainCache or None")


def _ecdsa_ok(key: ec.EllipticCurvePublicKey, report: AttestationReport, sig: bytes) -> bool:
    try:
        key.verify(sig, report.signed, _ECDSA_SHA384)
    except InvalidSignature:
        return False
    return True


def _hwid_matches(hwid: bytes | None, chip_id: bytes) -> bool:
    if hwid is None:
        return False
    n = len(hwid)
    return chip_id[:n] == hwid and not any(chip_id[n:])


def _chip_ok(chain: VerifiedChain, report: AttestationReport) -> bool:
    if chain.info.kind == "vlek" or report.chip_id_masked:
        return True
    return _hwid_matches(chain.info.hwid, report.chip_id)


def _endorsement(
    report: AttestationReport, collateral: Collateral, at: datetime, trust: AmdTrust
) -> VerifiedChain:
    """Find the VCEK/VLEK in ``collateral`` that signed ``report``; verify (or reuse) its chain.

    Raises :class:`VerificationError` when no certificate's key verifies the report signature,
    :class:`CollateralError` when no VCEK/VLEK is supplied.
    """
    certs = collateral.path_candidates  # the relying party's and the attester's: a path, no trust
    crls = collateral.crl_candidates
    want = report.signing_key_name
    sig = report.der_signature()
    cache = trust.cache
    crl_key = tuple(c.signature for c in crls)
    tried: set[bytes] = set()
    if cache is not None:
        present = {c.signature for c in certs}
        for cert in certs:
            entry = cache.get((trust.roots, cert.signature, crl_key), at)
            if (
                entry is None
                or entry.info.kind != want
                or not _chip_ok(entry, report)
                or not all(s in present for s in entry.issuer_signatures)
            ):
                continue
            if _ecdsa_ok(entry.public_key, report, sig):
                return entry
            tried.add(cert.signature)
    cn = "SEV-VLEK" if want == "vlek" else "SEV-VCEK"
    leaves = [c for c in certs if amd.subject_cn(c) == cn]
    if not leaves:
        raise CollateralError(
            f"collateral has no {want.upper()} certificate for this report",
            code="collateral_missing",
        )
    leaves.sort(key=lambda c: not _hwid_matches(_raw_hwid(c), report.chip_id))
    _cheap_checks([c for c in leaves if c.signature not in tried], certs, crls, at)
    for leaf in leaves:
        if leaf.signature in tried:
            continue
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP384R1
        ):
            continue
        if not _ecdsa_ok(key, report, sig):
            continue
        chain = amd.verify_chain(leaf, certs, crls, at, trust)
        if cache is not None:
            cache.put((trust.roots, leaf.signature, crl_key), chain)
        return chain
    raise VerificationError(
        f"report signature does not verify with any of the {len(leaves)} {want.upper()} "
        "certificate(s) in collateral",
        code="signature_invalid",
    )


#: The costly checks a cheap refusal skips (``checks_not_reached``), in the order they run.
NOT_REACHED = ("report_signature", "chain_signatures", "crl_signatures")


def _window_failure(cert: x509.Certificate, role: str, at: datetime) -> CollateralError | None:
    if cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        return None
    return CollateralError(
        f"{role} certificate is not valid at {at.isoformat()} (valid "
        f"{cert.not_valid_before_utc.isoformat()} .. {cert.not_valid_after_utc.isoformat()})",
        code="certificate_expired",
    )


def _issuer_failures(
    cert: x509.Certificate, pool: Sequence[x509.Certificate], role: str, at: datetime
) -> tuple[list[x509.Certificate], list[VerificationError]]:
    """The candidates for ``cert``'s issuer that are open at ``at``, or why there is none."""
    named = [c for c in pool if amd.issued_by(cert, c) and c is not cert]
    if not named:
        return [], [CollateralError(f"collateral lacks the {role} certificate {amd.issuer_cn(cert)!r}",
                                    code="collateral_missing")]  # fmt: skip
    open_ = [c for c in named if _window_failure(c, role, at) is None]
    if open_:
        return open_, []
    failure = _window_failure(named[0], role, at)
    return [], [failure] if failure is not None else []


def _leaf_failures(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
) -> list[VerificationError]:
    """What refuses ``leaf`` without a signature: its window, its issuers' (every candidate of
    the name closed, or none), the ARK's CRLs' windows; each one is a check :func:`amd.verify_chain`
    makes too. Fields of the report (REPORTED_TCB, CHIP_ID) are left to the checks after its
    signature: a changed field is refused for its signature, as before."""
    try:
        info = amd.endorsement_key_info(leaf)
    except VeriteeError:
        return []  # the full check names it
    role = info.kind.upper()
    found: list[VerificationError] = []
    if (w := _window_failure(leaf, role, at)) is not None:
        found.append(w)
    asks, missing = _issuer_failures(leaf, pool, "ASVK" if info.kind == "vlek" else "ASK", at)
    found += missing
    ark_names = {amd.issuer_key(a) for a in asks}
    for ask in asks[:1]:
        arks, missing = _issuer_failures(ask, pool, "ARK", at)
        found += missing
        ark_names = {amd.subject_key(a) for a in arks} or ark_names
    for crl in crls:
        if amd.name_key(crl.issuer) not in ark_names:
            continue
        last, nxt = crl.last_update_utc, crl.next_update_utc
        if at < last or (nxt is not None and at > nxt):
            found.append(CollateralError(
                f"CRL of {amd.common_name(crl.issuer)!r} is not current at {at.isoformat()} (this update "
                f"{last.isoformat()}, next update {nxt.isoformat() if nxt else 'none'})",
                code="crl_expired",
            ))  # fmt: skip
    return found


def _cheap_checks(
    leaves: Sequence[x509.Certificate],
    pool: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
) -> None:
    """Refuse, before any signature, when every candidate VCEK/VLEK fails a cheap check (with
    every failure found; :mod:`veritee.evidence._cheap`). One that passes them all goes on to
    the signatures, which decide as before."""
    if not leaves:
        return
    checks = CheapChecks()
    for leaf in leaves:
        found = _leaf_failures(leaf, pool, crls, at)
        if not found:
            return
        for f in found:
            checks.add(f)
    checks.refuse(NOT_REACHED)


def _raw_hwid(cert: x509.Certificate) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(amd.OID_HW_ID).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    return ext.value if isinstance(ext, x509.UnrecognizedExtension) else None


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: object = None
) -> VerifiedEvidence:
    """Verify an SEV-SNP report at ``at``; return its claims or raise.

    Steps: (1) parse (:class:`MalformedError`); (2) find the VCEK/VLEK whose P-384 key verifies
    the ECDSA/SHA-384 signature over bytes [0:0x2A0] and verify its chain to a pinned ARK with
    CRLs (or reuse a cached verified chain); (3) CPUID (v3+) names the same product as the
    chain; (4) the certificate's TCB equals REPORTED_TCB; (5) a VCEK's hwID equals CHIP_ID
    unless the chip id is masked. ``trust`` is an :class:`AmdTrust`, a :class:`ChainCache`
    or None (AMD's pinned ARKs and the process-wide cache).
    """
    if at.tzinfo is None:
        raise UsageError("verification time must be timezone-aware")
    report = AttestationReport.from_bytes(data)
    anchors = _trust(trust)
    chain = _endorsement(report, collateral, at, anchors)
    product = chain.product
    cpuid_product = report.cpuid_product
    if cpuid_product is not None and cpuid_product is not product:
        raise VerificationError(
            f"report CPUID names {cpuid_product.value} but the chain is {product.value}",
            code="product_mismatch",
        )
    claims = report.claims(product)
    reported = claims["reported_tcb"]
    if reported != chain.info.tcb:
        raise VerificationError(
            f"{chain.info.kind.upper()} TCB {chain.info.tcb} differs from REPORTED_TCB {reported}",
            code="tcb_mismatch",
        )
    findings: list[Reason] = []
    if chain.info.kind == "vcek":
        if report.chip_id_masked:
            findings.append(Reason("chip_id_masked", "CHIP_ID is masked; hwID not compared"))
        elif not _hwid_matches(chain.info.hwid, report.chip_id):
            raise VerificationError(
                "VCEK hwID differs from the report's CHIP_ID", code="chip_id_mismatch"
            )
    if not chain.revocation_checked:  # (as NVIDIA's verifier says when it checks none)
        findings.append(Reason("revocation_not_checked",
                               f"no CRL of the {product.value} ARK was given: the "
                               f"{'ASVK' if chain.info.kind == 'vlek' else 'ASK'}'s revocation "
                               "was not checked"))  # fmt: skip
    claims["vcek_tcb"] = dict(chain.info.tcb)
    claims["vcek_sha256"] = chain.leaf_sha256
    return VerifiedEvidence(
        format="sev-snp", claims=claims, verified_at=at, findings=tuple(findings)
    )
