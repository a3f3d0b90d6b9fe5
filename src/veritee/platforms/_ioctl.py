"""Linux ioctl numbers and device access shared by the ``/dev`` drivers.

``_IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr`` (``asm-generic/ioctl.h``;
x86-64 and arm64 use the generic layout), with ``dir`` 1 for write, 2 for read, 3 for both.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from pathlib import Path

from veritee.errors import PlatformError

__all__ = ["IOC_READ", "IOC_WRITE", "Device", "iowr"]

IOC_WRITE, IOC_READ = 1, 2
_SIZE_BITS = 14


def iowr(kind: str, nr: int, size: int) -> int:
    """``_IOWR(kind, nr, size)``."""
    if not 0 <= size < 1 << _SIZE_BITS:
        raise ValueError("ioctl argument too large")
    return (IOC_READ | IOC_WRITE) << 30 | size << 16 | ord(kind) << 8 | nr


def errno_error(code: int, what: str) -> PlatformError:
    """A :class:`PlatformError` for an errno from ``open``/``ioctl`` on a TEE device."""
    if code in (errno.EACCES, errno.EPERM):
        return PlatformError(
            f"no permission for {what} (see docs/platforms.md: group and udev rule)",
            code="platform_permission_denied",
        )
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return PlatformError(f"{what} is not present", code="platform_absent")
    if code in (errno.EBUSY, errno.EAGAIN):
        return PlatformError(f"{what} is busy; try again", code="platform_busy")
    if code in (errno.EINVAL, errno.ENOTTY):
        return PlatformError(f"{what}: the driver refused the request", code="platform_refused")
    if code == errno.EIO:
        return PlatformError(
            f"{what}: the firmware or host returned an error", code="platform_refused"
        )
    return PlatformError(f"{what} failed: {os.strerror(code)}", code="platform_failed")


class Device:
    """An open character device; :meth:`ioctl` passes a ctypes structure in and out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise errno_error(e.errno or 0, str(path)) from None

    def ioctl(self, request: int, arg: ctypes.Structure, what: str, *, check: bool = True) -> int:
        """Run the ioctl on ``arg`` (updated in place); returns 0, or the errno when
        ``check`` is false, else raises :class:`PlatformError`."""
        try:
            fcntl.ioctl(self._fd, request, arg, True)
        except OSError as e:
            if check:
                raise errno_error(e.errno or 0, f"{self.path} {what}") from None
            return e.errno or errno.EIO
        return 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
