"""The attester side: what a workload asks of the platform it runs on."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from veritee.profiles import Profile

__all__ = ["Platform"]


@runtime_checkable
class Platform(Protocol):
    """A TEE platform driver as seen from inside the workload.

    ``evidence(report_data)`` returns the platform's signed evidence binding those 64 bytes.
    ``sealing_key(context)`` returns 32 bytes that only this platform, running this very
    measurement, can derive (SNP: MSG_KEY_REQ with the measurement mixed in; simulated: HKDF
    over the per-install platform secret and the measurement). ``context`` separates uses.
    """

    name: str

    @property
    def measurement(self) -> str:
        """The workload's measurement, hex."""
        ...

    @property
    def profile(self) -> Profile: ...

    def evidence(self, report_data: bytes) -> bytes: ...

    def sealing_key(self, context: bytes) -> bytes: ...
