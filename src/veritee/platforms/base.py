"""The attester side: what a workload asks of the platform it runs on.

This is the contract every platform driver meets (the simulated platform here; the hardware
drivers under ``veritee.platforms``). ``tests/platform_contract.py`` checks a driver against it.

Identity, all attested
    ``name``, ``measurement``, ``profile`` and ``debug`` are what the platform's own evidence
    says, never configuration. A hardware driver reads its profile from what the hardware binds
    at launch (:func:`veritee.binding.attested_profile` over its own report's claims: SEV-SNP
    HOSTDATA, TDX MRCONFIGID, ...) and its debug state from the report (SNP guest policy DEBUG,
    ``TD_ATTRIBUTES.DEBUG``, ...). A debug launch never has a profile that forbids a debugger
    (staging, production): it is development. The verifier computes the same profile from the
    same evidence, and the report data binds the profile the workload runs as
    (:mod:`veritee.binding` holds the rules), so a workload told another profile than the one
    its launch attests is refused.

Evidence
    ``evidence(report_data)`` returns the platform's signed evidence binding those 64 bytes.

Sealing keys (``sealing_mode`` says where they come from)
    ``SealingMode.PLATFORM``: ``sealing_key(context)`` returns 32 bytes that only this platform
    instance (chip, install) can derive, and that differ whenever any of these differ:

    1. the measurement;
    2. the debug state. Where the hardware has a key-derivation request, the debug state must
       be part of what the *hardware* mixes in, because the software of a debug launch is the
       host's to change. SEV-SNP: ``MSG_KEY_REQ`` (SNP firmware ABI, "Key Derivation") with
       ``GUEST_FIELD_SELECT`` = guest policy (bit 0, which carries DEBUG) | measurement
       (bit 3) | TCB version (bit 5), root key VCEK;
    3. the profile (the attested one). SEV-SNP cannot select HOSTDATA in the key request, so
       the driver mixes the profile into the derived key with HKDF (``info`` naming it); the
       profile came from its own report, so a driver that is not debug cannot be told another;
    4. ``context`` (separates uses; sealing uses ``b"veritee-seal-v2"``).

    The simulated platform does all four with HKDF over its per-install secret.

    ``SealingMode.DOMAIN_RELEASED``: the platform has no sealing key (TDX, Arm CCA, Nitro).
    The sealing key is the one the key broker releases per workload name and profile to every
    measurement the release policy admits (DESIGN.md, "Sealing that survives upgrades"), so it
    survives upgrades. The driver itself raises :class:`~veritee.errors.SealingError`
    ``sealing_key_unavailable`` from ``sealing_key``; the SDK wraps it in
    :class:`veritee.sdk.domain_sealing.DomainReleasedPlatform`, whose ``sealing_key(context)``
    derives from the released key (HKDF with ``context``). Sealed blobs record the mode, and in
    this mode bind no measurement (:mod:`veritee.sdk.sealing`).

Rollback (``monotonic_counter(label)``)
    A counter that only ever increases and that the host cannot reset, held by the platform
    (a TPM NV counter, ``TPM2_NV_Increment`` on an index with ``TPMA_NV_COUNTER``), or ``None``
    where the platform has none (the simulated platform, SEV-SNP, TDX, Nitro without a TPM).
    ``label`` names the counter (one per key store). Sealed data alone can always be replaced
    by an older copy; see ``docs/sealing.md`` for what each platform can protect.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

from veritee.errors import SealingError
from veritee.profiles import Profile

__all__ = ["MonotonicCounter", "NoSealingKey", "Platform", "SealingMode"]


class SealingMode(enum.StrEnum):
    """Where a platform's sealing keys come from (module docstring)."""

    PLATFORM = "platform"
    DOMAIN_RELEASED = "domain-released"


@runtime_checkable
class MonotonicCounter(Protocol):
    """A counter the host cannot roll back (a TPM NV counter, a service-held counter)."""

    def read(self) -> int:
        """The current value."""
        ...

    def increment(self) -> int:
        """Add one and return the new value (durably, before returning)."""
        ...


@runtime_checkable
class Platform(Protocol):
    """A TEE platform driver as seen from inside the workload (module docstring)."""

    name: str

    @property
    def measurement(self) -> str:
        """The workload's measurement, hex."""
        ...

    @property
    def profile(self) -> Profile:
        """The attested profile (never configuration; a debug launch is development)."""
        ...

    @property
    def debug(self) -> bool:
        """The attested debug state (the host can inspect and change a debug launch)."""
        ...

    @property
    def sealing_mode(self) -> SealingMode: ...

    def evidence(self, report_data: bytes) -> bytes: ...

    def sealing_key(self, context: bytes) -> bytes:
        """32 bytes bound to this instance, measurement, debug state, profile and ``context``."""
        ...

    def monotonic_counter(self, label: str) -> MonotonicCounter | None:
        """The platform's rollback counter named ``label``, or None where it has none."""
        ...


class NoSealingKey:
    """What a driver on a platform without a sealing key or counter (TDX, Arm CCA, Nitro) says
    of both: its blobs and key store are sealed with the key broker's domain-released key, and
    :meth:`sealing_key` refuses with ``sealing_key_unavailable``. ``platform_title`` names the
    platform in that error."""

    platform_title = "this platform"

    @property
    def sealing_mode(self) -> SealingMode:
        return SealingMode.DOMAIN_RELEASED

    def sealing_key(self, context: bytes) -> bytes:
        raise SealingError(
            f"{self.platform_title} has no sealing key: seal with the key broker's domain-released "
            "key (Trust(sealing='domain'), the default here; docs/sealing.md)",
            code="sealing_key_unavailable",
        )

    def monotonic_counter(self, label: str) -> MonotonicCounter | None:
        return None
