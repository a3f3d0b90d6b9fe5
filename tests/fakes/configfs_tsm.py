"""A configfs-tsm report directory that behaves like the kernel's, mounted with FUSE.

The driver under test (:mod:`veritee.platforms.configfs_tsm`) runs unchanged against it: real
``mkdir``/``open``/``write``/``read``/``rmdir`` on a mounted file system. What it emulates, from
``drivers/virt/coco/tsm.c`` (configfs-tsm-report ABI):

* ``mkdir NAME`` makes an entry with ``inblob`` (write-only, <= 64 bytes), ``outblob``,
  ``provider``, ``generation`` and, for the ``sev_guest`` provider, ``auxblob``, ``privlevel``
  and ``privlevel_floor``; ``rmdir`` removes it;
* a binary attribute's write is committed when the file is closed (configfs buffers it), and
  every committed write to ``inblob`` or an option increments ``generation``;
* reading ``outblob`` or ``auxblob`` generates the report for the current options (``EINVAL``
  before any ``inblob``) and caches it until the next write.

``interfere`` simulates a concurrent writer: after each of our ``inblob`` commits it may change
the entry as another process would (new ``inblob``, ``generation`` + 1).

Example::

    with mounted(provider="sev_guest", generate=lambda inblob, priv: (report, table)) as fs:
        configfs_tsm.get_report(b"x" * 64, root=fs.root)
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mfusepy as fuse

Generate = Callable[[bytes, int], tuple[bytes, bytes]]

_WO, _RO = stat.S_IFREG | 0o200, stat.S_IFREG | 0o444


@dataclass
class Entry:
    inblob: bytes = b""
    privlevel: int = 0
    write_generation: int = 0
    read_generation: int = 0
    outblob: bytes | None = None
    auxblob: bytes = b""


@dataclass
class TsmFs(fuse.Operations):  # type: ignore[misc]
    provider: str
    generate: Generate
    root: Path = Path()
    entries: dict[str, Entry] = field(default_factory=dict)
    interfere: Callable[[Entry], bool] | None = None
    reports_made: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _pending: dict[int, tuple[str, str, bytearray]] = field(default_factory=dict)
    _next_fh: int = 1
    use_ns = True

    def _files(self) -> dict[str, int]:
        files = {"inblob": _WO, "outblob": _RO, "provider": _RO, "generation": _RO}
        if self.provider == "sev_guest":
            files.update({"auxblob": _RO, "privlevel": _WO, "privlevel_floor": _RO})
        return files

    def _split(self, path: str) -> tuple[str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return None, None
        if len(parts) > 2:
            raise fuse.FuseOSError(errno.ENOENT)
        with self._lock:
            if parts[0] not in self.entries:
                raise fuse.FuseOSError(errno.ENOENT)
        if len(parts) == 2 and parts[1] not in self._files():
            raise fuse.FuseOSError(errno.ENOENT)
        return parts[0], (parts[1] if len(parts) == 2 else None)

    # --- the tree ---------------------------------------------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        _name, attr = self._split(path)
        now = time.time_ns()
        base = {"st_uid": os.getuid(), "st_gid": os.getgid(), "st_atime": now, "st_mtime": now,
                "st_ctime": now}  # fmt: skip
        if attr is None:
            return {**base, "st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        return {**base, "st_mode": self._files()[attr], "st_nlink": 1, "st_size": 4096}

    def readdir(self, path: str, fh: int) -> list[str]:
        name, _ = self._split(path)
        with self._lock:
            names = list(self.entries) if name is None else list(self._files())
        return [".", "..", *names]

    def mkdir(self, path: str, mode: int) -> int:
        parts = [p for p in path.split("/") if p]
        if len(parts) != 1:
            raise fuse.FuseOSError(errno.EPERM)
        with self._lock:
            if parts[0] in self.entries:
                raise fuse.FuseOSError(errno.EEXIST)
            self.entries[parts[0]] = Entry()
        return 0

    def rmdir(self, path: str) -> int:
        name, attr = self._split(path)
        if name is None or attr is not None:
            raise fuse.FuseOSError(errno.EPERM)
        with self._lock:
            del self.entries[name]
        return 0

    # --- attributes -------------------------------------------------------------------------
    def open(self, path: str, flags: int) -> int:
        name, attr = self._split(path)
        if name is None or attr is None:
            raise fuse.FuseOSError(errno.EISDIR)
        writing = flags & (os.O_WRONLY | os.O_RDWR)
        if (writing and self._files()[attr] == _RO) or (not writing and self._files()[attr] == _WO):
            raise fuse.FuseOSError(errno.EACCES)
        with self._lock:
            fh, self._next_fh = self._next_fh, self._next_fh + 1
            self._pending[fh] = (name, attr, bytearray())
        return fh

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        return 0

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._lock:
            _name, attr, buf = self._pending[fh]
            if attr == "inblob" and offset + len(data) > 64:
                raise fuse.FuseOSError(errno.EFBIG)
            buf[offset : offset + len(data)] = data
        return len(data)

    def flush(self, path: str, fh: int) -> int:
        # close() waits for FLUSH but not for RELEASE, which FUSE sends in the background: the
        # kernel's configfs commits a binary attribute before close() returns, so the commit is
        # made here (a reader right after close() must see it, as on the real file system).
        with self._lock:
            self._commit(fh)
        return 0

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            self._commit(fh)
            self._pending.pop(fh, None)
        return 0

    def _commit(self, fh: int) -> None:
        """Commit what was written through ``fh`` since its last commit (under the lock)."""
        pending = self._pending.get(fh)
        if pending is None:
            return
        name, attr, buf = pending
        self._pending[fh] = (name, attr, bytearray())
        entry = self.entries.get(name)
        if entry is None or not buf:  # configfs commits nothing for a file closed unwritten
            return
        if attr == "inblob":
            entry.inblob = bytes(buf)
            entry.write_generation += 1
            if self.interfere is not None and self.interfere(entry):
                entry.inblob = os.urandom(64)  # what another process wrote
                entry.write_generation += 1
        elif attr == "privlevel":
            try:
                value = int(bytes(buf).strip())
            except ValueError:
                return
            if 0 <= value <= 3:
                entry.privlevel = value
                entry.write_generation += 1

    def _report(self, entry: Entry) -> Entry:
        if not entry.inblob:
            raise fuse.FuseOSError(errno.EINVAL)
        if entry.outblob is None or entry.read_generation != entry.write_generation:
            inblob = entry.inblob + bytes(64 - len(entry.inblob))
            entry.outblob, entry.auxblob = self.generate(inblob, entry.privlevel)
            entry.read_generation = entry.write_generation
            self.reports_made += 1
        return entry

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._lock:
            name, attr, _ = self._pending[fh]
            entry = self.entries[name]
            if attr == "outblob":
                data = self._report(entry).outblob or b""
            elif attr == "auxblob":
                data = self._report(entry).auxblob
            elif attr == "provider":
                data = (self.provider + "\n").encode()
            elif attr == "generation":
                data = f"{entry.write_generation}\n".encode()
            elif attr == "privlevel_floor":
                data = b"0\n"
            else:
                raise fuse.FuseOSError(errno.EACCES)
        return data[offset : offset + size]


@contextlib.contextmanager
def mounted(provider: str, generate: Generate) -> Iterator[TsmFs]:
    """Mount a fresh report directory (``fs.root``) for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="tsm-") as tmp:
        root = Path(tmp) / "report"
        root.mkdir()
        fs = TsmFs(provider=provider, generate=generate, root=root)
        thread = threading.Thread(
            target=fuse.FUSE, args=(fs, str(root)),
            kwargs={"foreground": True, "nothreads": False, "direct_io": True}, daemon=True,
        )  # fmt: skip
        thread.start()
        deadline = time.monotonic() + 10
        while not os.path.ismount(root):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the configfs-tsm FUSE fixture did not mount")
            time.sleep(0.01)
        try:
            yield fs
        finally:
            subprocess.run(["fusermount3", "-u", str(root)], check=False, capture_output=True)
            thread.join(timeout=10)


def fuse_available() -> str | None:
    """None when FUSE mounts work here, else why not (for a skip message)."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is absent"
    if subprocess.run(["which", "fusermount3"], capture_output=True).returncode:
        return "fusermount3 is missing (Debian package fuse3)"
    return None
