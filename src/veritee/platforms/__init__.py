"""Attester drivers: one module per kernel interface, all meeting :class:`Platform`.

A workload normally reaches them through ``veritee.Trust(platform=...)``. The names below are the
public surface (docs/api.md): the driver contract (:mod:`veritee.platforms.base`),
:func:`open_hardware` (detect and open the hardware platform), and each driver class. The modules themselves (ioctl layouts, request encoders) are implementation.
Imported lazily: a driver's module is loaded only when its name is used. (``detect`` is not
re-exported: ``veritee.platforms.detect`` is the module of that name.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "AzureCvmPlatform",
    "CcaPlatform",
    "MonotonicCounter",
    "NitroPlatform",
    "NoSealingKey",
    "Platform",
    "SealingMode",
    "SevSnpPlatform",
    "SimulatedPlatform",
    "TdxPlatform",
    "TpmPlatform",
    "open_hardware",
]

if TYPE_CHECKING:  # pragma: no cover
    from veritee.platforms.azure import AzureCvmPlatform
    from veritee.platforms.base import MonotonicCounter, NoSealingKey, Platform, SealingMode
    from veritee.platforms.configfs_tsm import CcaPlatform
    from veritee.platforms.detect import open_hardware
    from veritee.platforms.nsm import NitroPlatform
    from veritee.platforms.sev_guest import SevSnpPlatform
    from veritee.platforms.simulated import SimulatedPlatform
    from veritee.platforms.tdx_guest import TdxPlatform
    from veritee.platforms.tpm import TpmPlatform

_HOME = {
    "AzureCvmPlatform": "veritee.platforms.azure",
    "CcaPlatform": "veritee.platforms.configfs_tsm",
    "MonotonicCounter": "veritee.platforms.base",
    "NitroPlatform": "veritee.platforms.nsm",
    "NoSealingKey": "veritee.platforms.base",
    "Platform": "veritee.platforms.base",
    "SealingMode": "veritee.platforms.base",
    "SevSnpPlatform": "veritee.platforms.sev_guest",
    "SimulatedPlatform": "veritee.platforms.simulated",
    "TdxPlatform": "veritee.platforms.tdx_guest",
    "TpmPlatform": "veritee.platforms.tpm",
    "open_hardware": "veritee.platforms.detect",
}


def __getattr__(name: str) -> Any:
    try:
        home = _HOME[name]
    except KeyError:
        raise AttributeError(f"module 'veritee.platforms' has no attribute {name!r}") from None
    return getattr(importlib.import_module(home), name)
