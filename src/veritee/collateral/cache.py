"""A folder of fetched collateral that :meth:`Collateral.from_paths` reads as it is.

Layout (every file is DER, PEM or JSON, so ``Collateral.from_paths([cache.root])`` loads it)::

    <root>/amd/<product>/vcek_cert_chain.pem        ASK + ARK          (KDS /vcek/v1/<p>/cert_chain)
    <root>/amd/<product>/vcek_crl.der               ARK-signed CRL     (KDS /vcek/v1/<p>/crl)
    <root>/amd/<product>/vlek_cert_chain.pem        ASVK + ARK         (KDS /vlek/v1/<p>/cert_chain)
    <root>/amd/<product>/vlek_crl.der
    <root>/amd/<product>/vcek/<hwid>-<tcb>.der      the VCEK of one chip at one TCB
    <root>/intel/<tdx|sgx>/<FMSPC>-<ca>.json        DCAP collateral in the test-vector layout

Writes are atomic (a temporary file in the same folder, flushed, then renamed), so a reader
never sees a partial file and a failed fetch leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from veritee.collateral import Collateral
from veritee.errors import UsageError

__all__ = ["CollateralCache", "default_cache_dir"]


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/veritee/collateral``, else ``~/.cache/veritee/collateral``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "veritee" / "collateral"


class CollateralCache:
    """A collateral folder: atomic writes of named files, and loading as a :class:`Collateral`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path_for(self, relative: str) -> Path:
        """The file ``relative`` (POSIX-style, no ``..``, not absolute) inside the cache."""
        parts = relative.split("/")
        if "\\" in relative or any(p in ("", ".", "..") for p in parts):
            raise UsageError(f"bad cache path {relative!r}")
        return self.root.joinpath(*parts)

    def write(self, relative: str, data: bytes) -> Path:
        """Write ``data`` to ``relative`` atomically; return the final path."""
        target = self.path_for(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def write_all(self, files: Mapping[str, bytes]) -> list[Path]:
        """Write several files; each is atomic, and paths are all checked before any write."""
        for relative in files:
            self.path_for(relative)
        return [self.write(relative, data) for relative, data in files.items()]

    def files(self) -> list[Path]:
        """Every file of the cache (temporary files excluded), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
        )

    def load(self) -> Collateral:
        """Everything in the cache as one :class:`Collateral` (empty if the folder is absent)."""
        if not self.root.is_dir():
            return Collateral.empty()
        return Collateral.from_paths([self.root])
