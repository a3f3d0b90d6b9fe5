"""The ioctl structures and numbers of the /dev drivers, checked against the kernel's UAPI.

SEV-SNP: a C program compiled against the system's ``linux/sev-guest.h`` (Debian
``linux-libc-dev``) prints each structure's size and field offsets and each ioctl number; they
must equal the ctypes layouts the driver uses. TDX: Debian 12's 6.1 headers have no
``linux/tdx-guest.h``; the facts the kernel's UAPI states are checked instead. Then the response
parsers on real report bytes, and the error paths on a device that is not a TEE (/dev/null).
"""

from __future__ import annotations

import ctypes
import errno
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from tests.conftest import TESTVECTORS

from veritee.errors import PlatformError, UsageError
from veritee.platforms import nsm, sev_guest, tdx_guest
from veritee.platforms._ioctl import errno_error, iowr

pytestmark = pytest.mark.attester
HEADER = Path("/usr/include/linux/sev-guest.h")

_C = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/ioctl.h>
#include <linux/sev-guest.h>
#define S(t) printf("sizeof %s %zu\n", #t, sizeof(struct t))
#define O(t, f) printf("offset %s.%s %zu\n", #t, #f, offsetof(struct t, f))
int main(void) {
    S(snp_report_req); O(snp_report_req, user_data); O(snp_report_req, vmpl); O(snp_report_req, rsvd);
    S(snp_report_resp); O(snp_report_resp, data);
    S(snp_derived_key_req); O(snp_derived_key_req, root_key_select); O(snp_derived_key_req, rsvd);
    O(snp_derived_key_req, guest_field_select); O(snp_derived_key_req, vmpl);
    O(snp_derived_key_req, guest_svn); O(snp_derived_key_req, tcb_version);
    S(snp_derived_key_resp); O(snp_derived_key_resp, data);
    S(snp_guest_request_ioctl); O(snp_guest_request_ioctl, msg_version);
    O(snp_guest_request_ioctl, req_data); O(snp_guest_request_ioctl, resp_data);
    O(snp_guest_request_ioctl, exitinfo2); O(snp_guest_request_ioctl, fw_error);
    O(snp_guest_request_ioctl, vmm_error);
    S(snp_ext_report_req); O(snp_ext_report_req, data); O(snp_ext_report_req, certs_address);
    O(snp_ext_report_req, certs_len);
    printf("ioctl SNP_GET_REPORT %lu\n", (unsigned long)SNP_GET_REPORT);
    printf("ioctl SNP_GET_DERIVED_KEY %lu\n", (unsigned long)SNP_GET_DERIVED_KEY);
    printf("ioctl SNP_GET_EXT_REPORT %lu\n", (unsigned long)SNP_GET_EXT_REPORT);
    return 0;
}
"""


@pytest.fixture(scope="module")
def kernel_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    if not HEADER.is_file():
        pytest.skip(f"{HEADER} is absent (Debian package linux-libc-dev)")
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc) to compile the UAPI check")
    d = tmp_path_factory.mktemp("uapi")
    (d / "abi.c").write_text(_C)
    subprocess.run([gcc, "-o", str(d / "abi"), str(d / "abi.c")], check=True, capture_output=True)
    out = subprocess.run([str(d / "abi")], check=True, capture_output=True, text=True).stdout
    facts = {}
    for line in out.splitlines():
        _kind, name, value = line.split()
        facts[name] = int(value)
    return facts


STRUCTS = {
    "snp_report_req": sev_guest.SnpReportReq,
    "snp_report_resp": sev_guest.SnpReportResp,
    "snp_derived_key_req": sev_guest.SnpDerivedKeyReq,
    "snp_derived_key_resp": sev_guest.SnpDerivedKeyResp,
    "snp_guest_request_ioctl": sev_guest.SnpGuestRequestIoctl,
    "snp_ext_report_req": sev_guest.SnpExtReportReq,
}


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_sev_guest_structures_match_the_kernel_header(
    kernel_facts: dict[str, int], name: str
) -> None:
    cls = STRUCTS[name]
    assert ctypes.sizeof(cls) == kernel_facts[name]
    for field, *_ in cls._fields_:
        assert getattr(cls, field).offset == kernel_facts[f"{name}.{field}"], field


def test_sev_guest_union_halves_match(kernel_facts: dict[str, int]) -> None:
    """fw_error is the low and vmm_error the high half of exitinfo2 (little-endian)."""
    exitinfo2 = sev_guest.SnpGuestRequestIoctl.exitinfo2.offset
    assert kernel_facts["snp_guest_request_ioctl.fw_error"] == exitinfo2
    assert kernel_facts["snp_guest_request_ioctl.vmm_error"] == exitinfo2 + 4
    req = sev_guest.SnpGuestRequestIoctl(exitinfo2=(2 << 32) | 0x16)
    assert (req.fw_error, req.vmm_error) == (0x16, sev_guest.VMM_ERR_BUSY)


def test_sev_guest_ioctl_numbers_match_the_kernel_header(kernel_facts: dict[str, int]) -> None:
    assert sev_guest.SNP_GET_REPORT == kernel_facts["SNP_GET_REPORT"]
    assert sev_guest.SNP_GET_DERIVED_KEY == kernel_facts["SNP_GET_DERIVED_KEY"]
    assert sev_guest.SNP_GET_EXT_REPORT == kernel_facts["SNP_GET_EXT_REPORT"]


def test_tdx_guest_facts_as_the_kernel_uapi_states_them() -> None:
    """``TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req {__u8 reportdata[64];
    __u8 tdreport[1024];})`` (include/uapi/linux/tdx-guest.h, Linux 6.2+)."""
    assert ctypes.sizeof(tdx_guest.TdxReportReq) == 64 + 1024
    assert tdx_guest.TdxReportReq.reportdata.offset == 0
    assert tdx_guest.TdxReportReq.tdreport.offset == 64
    assert tdx_guest.TDX_CMD_GET_REPORT0 == 3 << 30 | 1088 << 16 | ord("T") << 8 | 1 == 0xC4405401


def test_nsm_ioctl_number_and_message_layout() -> None:
    """nsm-api: ``request_code_readwrite!(0x0A, 0, size_of::<NsmMessage>())``, NsmMessage being
    two iovecs."""
    assert ctypes.sizeof(nsm.NsmMessage) == 32
    assert nsm.NsmMessage.response.offset == 16
    assert nsm.NSM_IOCTL == 0xC0200A00
    assert iowr("S", 0, 32) == 0xC0205300


def test_tdreport_fields_are_read_at_their_offsets() -> None:
    raw = bytearray(1024)
    raw[128:192] = b"\x01" * 64
    raw[512:520] = (1).to_bytes(8, "little")  # ATTRIBUTES.DEBUG
    raw[528:576] = b"\x02" * 48  # MRTD
    raw[576:624] = b"\x03" * 48  # MRCONFIGID
    raw[720 + 48 * 3 : 720 + 48 * 4] = b"\x04" * 48  # RTMR3
    r = tdx_guest.TdReport.from_bytes(bytes(raw))
    assert r.report_data == b"\x01" * 64 and r.debug
    assert (r.mrtd, r.mrconfigid, r.rtmrs[3]) == (b"\x02" * 48, b"\x03" * 48, b"\x04" * 48)


# --- the firmware responses, on a real report --------------------------------------------------


def _report() -> bytes:
    path = TESTVECTORS / "sev-snp" / "gosevguest_milan_report.bin"
    if not path.is_file():
        pytest.skip("test vectors absent (../shared/testvectors)")
    return path.read_bytes()


def test_msg_report_rsp_gives_the_report() -> None:
    report = _report()
    resp = struct.pack("<II", 0, len(report)) + bytes(24) + report
    resp += bytes(sev_guest.REPORT_RESP_SIZE - len(resp))
    assert sev_guest.report_from_response(resp) == report


@pytest.mark.parametrize(("status", "size", "code"), [(0x16, 0x4A0, "platform_refused"),
                                                      (0, 0x4A1, "platform_failed"),
                                                      (0, 0, "platform_failed")])  # fmt: skip
def test_bad_msg_report_rsp(status: int, size: int, code: str) -> None:
    resp = struct.pack("<II", status, size) + bytes(24) + _report()
    with pytest.raises(PlatformError) as e:
        sev_guest.report_from_response(resp + bytes(4000 - len(resp)))
    assert e.value.code == code


def test_msg_key_rsp() -> None:
    key = bytes(range(32))
    assert sev_guest.key_from_response(bytes(32) + key) == key
    with pytest.raises(PlatformError):
        sev_guest.key_from_response(b"\x16" + bytes(31) + key)


def test_request_builders_refuse_bad_arguments() -> None:
    with pytest.raises(UsageError):
        sev_guest.report_request(bytes(63), 0)
    with pytest.raises(UsageError):
        sev_guest.report_request(bytes(64), 4)
    with pytest.raises(UsageError):
        sev_guest.derived_key_request(fields=1 << 9, vmpl=0, guest_svn=0, tcb_version=0)
    req = sev_guest.derived_key_request(
        fields=sev_guest.SEALING_FIELDS, vmpl=1, guest_svn=0, tcb_version=7
    )
    assert (req.guest_field_select, req.vmpl, req.tcb_version) == (0b101001, 1, 7)


# --- devices that are absent or not a TEE ------------------------------------------------------


def test_absent_devices_say_so() -> None:
    with pytest.raises(PlatformError) as e:
        sev_guest.SevGuestDevice(Path("/nonexistent/sev-guest")).report(bytes(64))
    assert e.value.code == "platform_absent"
    with pytest.raises(PlatformError) as e:
        tdx_guest.get_tdreport(bytes(64), Path("/nonexistent/tdx_guest"))
    assert e.value.code == "platform_absent"
    with pytest.raises(PlatformError) as e:
        nsm.NitroPlatform(device=Path("/nonexistent/nsm"))
    assert e.value.code == "platform_absent"


def test_a_device_that_is_not_the_tee_refuses_cleanly() -> None:
    """/dev/null answers every ioctl with ENOTTY: a PlatformError, not an OSError."""
    with pytest.raises(PlatformError) as e:
        sev_guest.SevGuestDevice(Path("/dev/null")).report(bytes(64))
    assert e.value.code == "platform_refused"
    with pytest.raises(PlatformError) as e:
        sev_guest.SevGuestDevice(Path("/dev/null")).derived_key(fields=sev_guest.SEALING_FIELDS)
    assert e.value.code == "platform_refused"
    with pytest.raises(PlatformError) as e:
        tdx_guest.get_tdreport(bytes(64), Path("/dev/null"))
    assert e.value.code == "platform_refused"
    with pytest.raises(PlatformError) as e:
        nsm.NsmDevice(Path("/dev/null")).get_random()
    assert e.value.code == "platform_refused"


@pytest.mark.parametrize(("number", "code"), [(errno.EACCES, "platform_permission_denied"),
                                              (errno.ENOENT, "platform_absent"),
                                              (errno.EBUSY, "platform_busy"),
                                              (errno.EIO, "platform_refused"),
                                              (errno.ENOMEM, "platform_failed")])  # fmt: skip
def test_errno_mapping(number: int, code: str) -> None:
    assert errno_error(number, "/dev/x").code == code
