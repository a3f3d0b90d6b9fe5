"""Domain-released sealing on the workload side: a platform whose sealing key the key broker gives.

:class:`DomainReleasedPlatform` wraps the workload's platform driver: identity, evidence and
counters are the driver's, but its sealing mode is ``SealingMode.DOMAIN_RELEASED`` and its
sealing key comes from the key broker (:func:`veritee.sdk.secrets.fetch_sealing_key`, fetched
with fresh evidence on first use and then kept in this object's memory only, never on disk).
:mod:`veritee.sdk.sealing` then seals as always (a fresh HKDF key per blob, purpose, context,
profile and debug state bound), but with no measurement in the key: every measurement the
domain's policy admits under this workload's name and profile gets the same released key, so a
blob survives an upgrade (docs/sealing.md).

The key's bytes never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.errors import SealingError
from veritee.platforms.base import MonotonicCounter, Platform, SealingMode
from veritee.profiles import Profile
from veritee.sdk.secrets import DomainSealingKey

__all__ = ["DomainReleasedPlatform"]

_INFO_TAG = b"veritee-domain-released-v1|"


class DomainReleasedPlatform:
    """``platform`` with the domain-released sealing key (module docstring).

    ``fetch`` returns the released key (it proves fresh evidence to the key broker); it is called
    once, at the first :meth:`sealing_key`, and its failure (the broker's refusal,
    ``service_unreachable``) reaches the caller unchanged.
    """

    def __init__(self, platform: Platform, fetch: Callable[[], DomainSealingKey]) -> None:
        self._platform = platform
        self._fetch = fetch
        self._lock = threading.Lock()
        self._released: DomainSealingKey | None = None
        self.name = platform.name

    def __repr__(self) -> str:
        return f"DomainReleasedPlatform({self._platform.name!r}, workload={self.workload!r})"

    @property
    def platform(self) -> Platform:
        """The wrapped driver."""
        return self._platform

    @property
    def measurement(self) -> str:
        return self._platform.measurement

    @property
    def profile(self) -> Profile:
        return self._platform.profile

    @property
    def debug(self) -> bool:
        return self._platform.debug

    @property
    def sealing_mode(self) -> SealingMode:
        return SealingMode.DOMAIN_RELEASED

    @property
    def workload(self) -> str | None:
        """The workload name the key broker released the key for (None before the first use)."""
        released = self._released
        return None if released is None else released.workload

    def evidence(self, report_data: bytes) -> bytes:
        return self._platform.evidence(report_data)

    def monotonic_counter(self, label: str) -> MonotonicCounter | None:
        return self._platform.monotonic_counter(label)

    def released_key(self) -> DomainSealingKey:
        """The released key, fetched on first use and kept in memory."""
        with self._lock:
            if self._released is None:
                released = self._fetch()
                if released.profile is not self._platform.profile:
                    raise SealingError(
                        f"the key broker released a {released.profile.value} sealing key to a "
                        f"{self._platform.profile.value} workload",
                        code="sealing_key_unavailable",
                    )
                self._released = released
            return self._released

    def sealing_key(self, context: bytes) -> bytes:
        """HKDF-SHA-256 over the released key, ``info`` naming ``context``."""
        key = self.released_key().key.reveal()
        info = _INFO_TAG + context
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)
