"""AMD SEV-SNP guests: ``/dev/sev-guest`` (Linux >= 5.19) and configfs-tsm.

The ioctls (``include/uapi/linux/sev-guest.h``; the request and response messages are the SNP
firmware ABI's, AMD doc. 56860, "MSG_REPORT_REQ", "MSG_KEY_REQ"):

* ``SNP_GET_REPORT = _IOWR('S', 0, struct snp_guest_request_ioctl)``: ``req_data`` points at a
  ``snp_report_req {u8 user_data[64]; u32 vmpl; u8 rsvd[28]}``, ``resp_data`` at a 4000-byte
  ``snp_report_resp`` holding MSG_REPORT_RSP: STATUS (u32), REPORT_SIZE (u32), 24 reserved
  bytes, then the ATTESTATION_REPORT at offset 0x20;
* ``SNP_GET_DERIVED_KEY = _IOWR('S', 1, ...)``: ``snp_derived_key_req {u32 root_key_select;
  u32 rsvd; u64 guest_field_select; u32 vmpl; u32 guest_svn; u64 tcb_version}`` and a 64-byte
  MSG_KEY_RSP: STATUS (u32), 28 reserved bytes, the 32-byte key at 0x20;
* ``SNP_GET_EXT_REPORT = _IOWR('S', 2, ...)``: ``snp_ext_report_req {snp_report_req data;
  u64 certs_address; u32 certs_len}``; the host's GHCB certificate table lands at
  ``certs_address``; a too small buffer fails with the VMM error INVALID_LEN and the needed
  length in ``certs_len``.

``snp_guest_request_ioctl {u8 msg_version; u64 req_data; u64 resp_data; u64 exitinfo2}``
(``exitinfo2``: firmware error in bits 31:0, VMM error in 63:32). The structures below are checked
against the kernel header by ``tests/unit/platforms/test_ioctl_abi.py``.

Reports come from configfs-tsm where the kernel has it (it hands the certificate table over as
``auxblob``), else from the ioctl. Sealing keys are always the firmware's derived key
(MSG_KEY_REQ) with GUEST_POLICY, MEASUREMENT and TCB_VERSION selected: a debug launch (policy
bit DEBUG), another measurement or another TCB derive another key.
"""

from __future__ import annotations

import ctypes
import errno
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.errors import PlatformError, UsageError
from veritee.evidence import sev_snp
from veritee.platforms import configfs_tsm
from veritee.platforms._ioctl import Device, iowr
from veritee.platforms._profile import settle_profile
from veritee.platforms.base import MonotonicCounter, SealingMode
from veritee.profiles import Profile

__all__ = [
    "DEFAULT_DEVICE",
    "FIELD_GUEST_POLICY",
    "FIELD_MEASUREMENT",
    "FIELD_TCB_VERSION",
    "SNP_GET_DERIVED_KEY",
    "SNP_GET_EXT_REPORT",
    "SNP_GET_REPORT",
    "SevGuestDevice",
    "SevSnpPlatform",
    "SnpDerivedKeyReq",
    "SnpExtReportReq",
    "SnpGuestRequestIoctl",
    "SnpReportReq",
]

DEFAULT_DEVICE = Path("/dev/sev-guest")
MSG_VERSION = 1
RESPONSE_HEADER = 0x20
REPORT_RESP_SIZE = 4000
KEY_RESP_SIZE = 64
#: VMM error codes in exitinfo2 bits 63:32 (``SNP_GUEST_VMM_ERR_*``).
VMM_ERR_INVALID_LEN, VMM_ERR_BUSY = 1, 2
MAX_CERTS = 64 * 1024
PAGE = 4096

# MSG_KEY_REQ GUEST_FIELD_SELECT bits (SNP ABI, table "MSG_KEY_REQ Message Structure")
FIELD_GUEST_POLICY = 1 << 0
FIELD_IMAGE_ID = 1 << 1
FIELD_FAMILY_ID = 1 << 2
FIELD_MEASUREMENT = 1 << 3
FIELD_GUEST_SVN = 1 << 4
FIELD_TCB_VERSION = 1 << 5
ROOT_KEY_VCEK = 0
SEALING_FIELDS = FIELD_GUEST_POLICY | FIELD_MEASUREMENT | FIELD_TCB_VERSION
POLICY_DEBUG = 1 << 19


class SnpReportReq(ctypes.Structure):
    _fields_ = [("user_data", ctypes.c_uint8 * 64), ("vmpl", ctypes.c_uint32),
                ("rsvd", ctypes.c_uint8 * 28)]  # fmt: skip


class SnpReportResp(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * REPORT_RESP_SIZE)]


class SnpDerivedKeyReq(ctypes.Structure):
    _fields_ = [("root_key_select", ctypes.c_uint32), ("rsvd", ctypes.c_uint32),
                ("guest_field_select", ctypes.c_uint64), ("vmpl", ctypes.c_uint32),
                ("guest_svn", ctypes.c_uint32), ("tcb_version", ctypes.c_uint64)]  # fmt: skip


class SnpDerivedKeyResp(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * KEY_RESP_SIZE)]


class SnpGuestRequestIoctl(ctypes.Structure):
    _fields_ = [("msg_version", ctypes.c_uint8), ("req_data", ctypes.c_uint64),
                ("resp_data", ctypes.c_uint64), ("exitinfo2", ctypes.c_uint64)]  # fmt: skip

    @property
    def fw_error(self) -> int:
        return int(self.exitinfo2) & 0xFFFFFFFF

    @property
    def vmm_error(self) -> int:
        return int(self.exitinfo2) >> 32


class SnpExtReportReq(ctypes.Structure):
    _fields_ = [("data", SnpReportReq), ("certs_address", ctypes.c_uint64),
                ("certs_len", ctypes.c_uint32)]  # fmt: skip


SNP_GET_REPORT = iowr("S", 0x0, ctypes.sizeof(SnpGuestRequestIoctl))
SNP_GET_DERIVED_KEY = iowr("S", 0x1, ctypes.sizeof(SnpGuestRequestIoctl))
SNP_GET_EXT_REPORT = iowr("S", 0x2, ctypes.sizeof(SnpGuestRequestIoctl))


def report_request(user_data: bytes, vmpl: int) -> SnpReportReq:
    if len(user_data) != 64:
        raise UsageError("SNP report data is exactly 64 bytes")
    if not 0 <= vmpl <= 3:
        raise UsageError("VMPL is 0..3")
    req = SnpReportReq()
    ctypes.memmove(req.user_data, user_data, 64)
    req.vmpl = vmpl
    return req


def derived_key_request(
    *, fields: int, vmpl: int, guest_svn: int, tcb_version: int
) -> SnpDerivedKeyReq:
    if fields & ~0x7F:
        raise UsageError("unknown GUEST_FIELD_SELECT bits")
    return SnpDerivedKeyReq(root_key_select=ROOT_KEY_VCEK, rsvd=0, guest_field_select=fields,
                            vmpl=vmpl, guest_svn=guest_svn, tcb_version=tcb_version)  # fmt: skip


def _status(raw: bytes, what: str) -> None:
    status = int.from_bytes(raw[0:4], "little")
    if status != 0:
        raise PlatformError(f"the SNP firmware refused {what} (status 0x{status:x})",
                            code="platform_refused")  # fmt: skip


def report_from_response(raw: bytes) -> bytes:
    """The ATTESTATION_REPORT inside a MSG_REPORT_RSP (checks STATUS and REPORT_SIZE)."""
    _status(raw, "the report request")
    size = int.from_bytes(raw[4:8], "little")
    if size != sev_snp.REPORT_SIZE or RESPONSE_HEADER + size > len(raw):
        raise PlatformError(f"the SNP firmware returned a report of {size} bytes",
                            code="platform_failed")  # fmt: skip
    return raw[RESPONSE_HEADER : RESPONSE_HEADER + size]


def key_from_response(raw: bytes) -> bytes:
    """The 32-byte derived key inside a MSG_KEY_RSP."""
    _status(raw, "the key request")
    return raw[RESPONSE_HEADER : RESPONSE_HEADER + 32]


def _guest_error(req: SnpGuestRequestIoctl, code: int, what: str) -> PlatformError:
    if req.vmm_error == VMM_ERR_BUSY:
        return PlatformError(f"{what}: the host is busy; try again", code="platform_busy")
    return PlatformError(
        f"{what} failed (errno {code}, firmware error 0x{req.fw_error:x}, "
        f"VMM error 0x{req.vmm_error:x})",
        code="platform_refused",
    )


class SevGuestDevice:
    """``/dev/sev-guest``: reports, extended reports and derived keys."""

    def __init__(self, path: Path = DEFAULT_DEVICE) -> None:
        self.path = path

    def _request(self, number: int, req: ctypes.Structure, resp: ctypes.Structure, what: str,
                 dev: Device) -> tuple[int, SnpGuestRequestIoctl]:  # fmt: skip
        guest = SnpGuestRequestIoctl(msg_version=MSG_VERSION, req_data=ctypes.addressof(req),
                                     resp_data=ctypes.addressof(resp), exitinfo2=0)  # fmt: skip
        return dev.ioctl(number, guest, what, check=False), guest

    def report(self, user_data: bytes, *, vmpl: int = 0) -> bytes:
        req, resp = report_request(user_data, vmpl), SnpReportResp()
        with Device(self.path) as dev:
            code, guest = self._request(SNP_GET_REPORT, req, resp, "SNP_GET_REPORT", dev)
        if code:
            raise _guest_error(guest, code, "SNP_GET_REPORT")
        return report_from_response(bytes(resp.data))

    def extended_report(self, user_data: bytes, *, vmpl: int = 0) -> tuple[bytes, bytes]:
        """(report, GHCB certificate table); the table is empty when the host gave none."""
        size = 4 * PAGE
        with Device(self.path) as dev:
            for _ in range(3):
                certs = ctypes.create_string_buffer(size)
                req = SnpExtReportReq(data=report_request(user_data, vmpl),
                                      certs_address=ctypes.addressof(certs), certs_len=size)  # fmt: skip
                resp = SnpReportResp()
                code, guest = self._request(
                    SNP_GET_EXT_REPORT, req, resp, "SNP_GET_EXT_REPORT", dev
                )
                if code == errno.EIO and guest.vmm_error == VMM_ERR_INVALID_LEN:
                    size = int(req.certs_len)
                    if not 0 < size <= MAX_CERTS:
                        break
                    continue
                if code:
                    raise _guest_error(guest, code, "SNP_GET_EXT_REPORT")
                table = bytes(certs.raw[: int(req.certs_len) or size])
                return report_from_response(bytes(resp.data)), table
        raise PlatformError("the host's certificate table is too large", code="platform_failed")

    def derived_key(
        self, *, fields: int, vmpl: int = 0, guest_svn: int = 0, tcb_version: int = 0
    ) -> bytes:
        req = derived_key_request(
            fields=fields, vmpl=vmpl, guest_svn=guest_svn, tcb_version=tcb_version
        )
        resp = SnpDerivedKeyResp()
        with Device(self.path) as dev:
            code, guest = self._request(SNP_GET_DERIVED_KEY, req, resp, "SNP_GET_DERIVED_KEY", dev)
        if code:
            raise _guest_error(guest, code, "SNP_GET_DERIVED_KEY")
        return key_from_response(bytes(resp.data))


@dataclass(frozen=True)
class SnpEvidence:
    report: bytes
    #: certificate file name -> DER (``vcek.der``, ``ask.der``, ...), from the host.
    certificates: dict[str, bytes]


class SevSnpPlatform:
    """The SEV-SNP attester: evidence is the raw ATTESTATION_REPORT (format ``sev-snp``)."""

    name = "sev-snp"

    def __init__(
        self,
        *,
        profile: Profile | None = None,
        vmpl: int | None = None,
        device: Path = DEFAULT_DEVICE,
        tsm_root: Path = configfs_tsm.DEFAULT_ROOT,
        sealing_tcb: int | None = None,
    ) -> None:
        self.device = SevGuestDevice(device)
        self.tsm_root = tsm_root
        self.vmpl = vmpl
        self._sealing_tcb = sealing_tcb
        self._requested = profile
        self.last_certificates: dict[str, bytes] = {}
        if not (configfs_tsm.available(tsm_root) or device.exists()):
            raise PlatformError(
                f"no SEV-SNP interface ({tsm_root} or {device})", code="platform_absent"
            )

    def attest(self, report_data: bytes) -> SnpEvidence:
        """A fresh report binding ``report_data``, and the host's certificates."""
        if configfs_tsm.available(self.tsm_root):
            got = configfs_tsm.get_report(report_data, privlevel=self.vmpl, root=self.tsm_root)
            if got.format != "sev-snp":
                raise PlatformError(f"configfs-tsm provider is {got.provider}, not sev_guest",
                                    code="platform_unsupported")  # fmt: skip
            certs = configfs_tsm.parse_cert_table(got.auxblob) if got.auxblob else {}
            return SnpEvidence(got.outblob, certs)
        report, table = self.device.extended_report(report_data, vmpl=self.vmpl or 0)
        certs = configfs_tsm.parse_cert_table(table) if table.strip(b"\0") else {}
        return SnpEvidence(report, certs)

    def evidence(self, report_data: bytes) -> bytes:
        got = self.attest(report_data)
        self.last_certificates = got.certificates
        return got.report

    def collateral(self) -> dict[str, bytes]:
        """The host's certificates from the last :meth:`evidence` call (file name -> DER)."""
        return dict(self.last_certificates)

    @functools.cached_property
    def own_report(self) -> sev_snp.AttestationReport:
        """This guest's report (zero report data): its measurement, policy and HOST_DATA."""
        return sev_snp.AttestationReport.from_bytes(self.attest(bytes(64)).report)

    @property
    def measurement(self) -> str:
        return self.own_report.measurement.hex()

    @property
    def debug(self) -> bool:
        return bool(self.own_report.policy & POLICY_DEBUG)

    @functools.cached_property
    def _claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = self.own_report.claims(self.own_report.cpuid_product)
        return claims

    @functools.cached_property
    def profile(self) -> Profile:
        """The profile HOST_DATA binds (development without it, or when debug)."""
        return settle_profile(self._requested, self._claims)

    @property
    def sealing_mode(self) -> SealingMode:
        return SealingMode.PLATFORM

    def monotonic_counter(self, label: str) -> MonotonicCounter | None:
        return None  # SEV-SNP has no rollback counter a guest can use

    def sealing_key(self, context: bytes) -> bytes:
        """MSG_KEY_REQ over GUEST_POLICY, MEASUREMENT and TCB_VERSION (the reported TCB unless
        ``sealing_tcb`` was given), then HKDF with ``context`` and the profile."""
        if not self.device.path.exists():
            raise PlatformError(
                f"sealing on SEV-SNP needs {self.device.path} (the derived-key ioctl)",
                code="platform_absent",
            )
        tcb = self.own_report.reported_tcb if self._sealing_tcb is None else self._sealing_tcb
        root = self.device.derived_key(fields=SEALING_FIELDS, vmpl=self.vmpl or 0, tcb_version=tcb)
        info = b"veritee-snp-sealing-v1|" + self.profile.value.encode() + b"|" + context
        return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(root)

    def describe(self) -> dict[str, Any]:
        """What the platform reports about this guest, for ``veritee attest --show``."""
        return {"interface": "configfs-tsm" if configfs_tsm.available(self.tsm_root) else str(self.device.path),
                **self._claims, "profile": self.profile.value}  # fmt: skip
