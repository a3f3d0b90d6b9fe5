"""Intel TDX guests: ``/dev/tdx_guest`` (Linux >= 6.2) for the TDREPORT, configfs-tsm for quotes.

``TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)`` with ``struct tdx_report_req
{__u8 reportdata[64]; __u8 tdreport[1024];}`` (``include/uapi/linux/tdx-guest.h``; Debian 12's
6.1 headers lack that file, so the test checks these facts as the kernel states them).

TDREPORT_STRUCT (Intel TDX Module ABI, 1024 bytes): REPORTMACSTRUCT (256: REPORTTYPE, CPUSVN,
TEE_TCB_INFO and TEE_INFO hashes, REPORTDATA at 128, MAC), TEE_TCB_INFO (239) at 256, then TDINFO
at 512: ATTRIBUTES (8), XFAM (8), MRTD (48), MRCONFIGID (48), MROWNER (48), MROWNERCONFIG (48),
RTMR0..3 (4 x 48). TD_ATTRIBUTES bit 0 is DEBUG.

The TDREPORT is MACed for the local platform only; a remote verifier needs a quote, which the
kernel's configfs-tsm (``tdx_guest`` provider) obtains from the quoting enclave through the host.
TDX has no sealing key: :meth:`TdxPlatform.sealing_key` refuses, and ``veritee.Trust`` seals with
the key broker's domain-released key instead (docs/sealing.md).
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veritee.errors import MalformedError, PlatformError, UsageError
from veritee.evidence import tdx
from veritee.platforms import configfs_tsm
from veritee.platforms._ioctl import Device, iowr
from veritee.platforms._profile import settle_profile
from veritee.platforms.base import NoSealingKey
from veritee.profiles import Profile

__all__ = ["DEFAULT_DEVICE", "TDX_CMD_GET_REPORT0", "TdReport", "TdxPlatform", "TdxReportReq"]

DEFAULT_DEVICE = Path("/dev/tdx_guest")
TDREPORT_SIZE = 1024
OFF_REPORTDATA = 128
OFF_TDINFO = 512
ATTR_DEBUG = 1 << 0


class TdxReportReq(ctypes.Structure):
    _fields_ = [("reportdata", ctypes.c_uint8 * 64), ("tdreport", ctypes.c_uint8 * TDREPORT_SIZE)]


TDX_CMD_GET_REPORT0 = iowr("T", 1, ctypes.sizeof(TdxReportReq))


@dataclass(frozen=True)
class TdReport:
    """The fields of a TDREPORT_STRUCT veritee reads (nothing here is verified)."""

    report_data: bytes
    attributes: int
    xfam: int
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]

    @classmethod
    def from_bytes(cls, data: bytes) -> TdReport:
        if len(data) != TDREPORT_SIZE:
            raise MalformedError(
                f"a TDREPORT is {TDREPORT_SIZE} bytes, not {len(data)}", field="tdreport"
            )
        t = OFF_TDINFO

        def m(i: int) -> bytes:
            return data[t + 16 + 48 * i : t + 16 + 48 * (i + 1)]

        return cls(
            report_data=data[OFF_REPORTDATA : OFF_REPORTDATA + 64],
            attributes=int.from_bytes(data[t : t + 8], "little"),
            xfam=int.from_bytes(data[t + 8 : t + 16], "little"),
            mrtd=m(0), mrconfigid=m(1), mrowner=m(2), mrownerconfig=m(3),
            rtmrs=(m(4), m(5), m(6), m(7)),
        )  # fmt: skip

    @property
    def debug(self) -> bool:
        return bool(self.attributes & ATTR_DEBUG)


def get_tdreport(report_data: bytes, device: Path = DEFAULT_DEVICE) -> bytes:
    """TDX_CMD_GET_REPORT0: the 1024-byte TDREPORT binding ``report_data``."""
    if len(report_data) != 64:
        raise UsageError("TDX report data is exactly 64 bytes")
    req = TdxReportReq()
    ctypes.memmove(req.reportdata, report_data, 64)
    with Device(device) as dev:
        dev.ioctl(TDX_CMD_GET_REPORT0, req, "TDX_CMD_GET_REPORT0")
    return bytes(req.tdreport)


class TdxPlatform(NoSealingKey):
    """The TDX attester: evidence is a TD quote (format ``tdx``) from configfs-tsm."""

    platform_title = "TDX"

    name = "tdx"

    def __init__(
        self,
        *,
        profile: Profile | None = None,
        device: Path = DEFAULT_DEVICE,
        tsm_root: Path = configfs_tsm.DEFAULT_ROOT,
    ) -> None:
        self.device = device
        self.tsm_root = tsm_root
        self._requested = profile
        if not (configfs_tsm.available(tsm_root) or device.exists()):
            raise PlatformError(
                f"no TDX interface ({tsm_root} or {device})", code="platform_absent"
            )

    def evidence(self, report_data: bytes) -> bytes:
        if not configfs_tsm.available(self.tsm_root):
            raise PlatformError(
                "TDX quotes come from configfs-tsm (Linux >= 6.7); only the local TDREPORT is "
                f"available through {self.device}",
                code="platform_absent",
            )
        got = configfs_tsm.get_report(report_data, root=self.tsm_root)
        if got.format != "tdx":
            raise PlatformError(f"configfs-tsm provider is {got.provider}, not tdx_guest",
                                code="platform_unsupported")  # fmt: skip
        return got.outblob

    def collateral(self) -> dict[str, bytes]:
        return {}  # the quote carries its PCK chain; Intel's collateral is the verifier's

    @functools.cached_property
    def own_report(self) -> dict[str, Any]:
        """mrtd, mr_config_id, rtmr0-3, td_attributes, debug: from the TDREPORT where the device
        is present, else from a quote (unverified: this is the workload reading itself)."""
        if self.device.exists():
            r = TdReport.from_bytes(get_tdreport(bytes(64), self.device))
            out: dict[str, Any] = {
                "platform": "tdx", "mrtd": r.mrtd.hex(), "mr_config_id": r.mrconfigid.hex(), "mr_owner": r.mrowner.hex(),
                "mr_owner_config": r.mrownerconfig.hex(),
                "td_attributes": r.attributes.to_bytes(8, "little").hex(), "debug": r.debug,
            }  # fmt: skip
            for i, rtmr in enumerate(r.rtmrs):
                out[f"rtmr{i}"] = rtmr.hex()
            return out
        claims: dict[str, Any] = tdx.parse_claims(self.evidence(bytes(64)))
        return claims

    @property
    def measurement(self) -> str:
        return str(self.own_report["mrtd"])

    @property
    def debug(self) -> bool:
        return bool(self.own_report["debug"])

    @functools.cached_property
    def profile(self) -> Profile:
        """The profile MRCONFIGID binds (development without it, or when debug)."""
        return settle_profile(self._requested, self.own_report)

    def describe(self) -> dict[str, Any]:
        return {"interface": "configfs-tsm" if configfs_tsm.available(self.tsm_root) else str(self.device),
                **self.own_report, "profile": self.profile.value}  # fmt: skip
