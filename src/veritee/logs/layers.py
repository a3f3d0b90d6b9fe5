"""Where an error or log record comes from, after the Enarx design note.

M. Bursell, "Confidential Computing: logging and debugging" (Enarx blog) splits the places that
can produce errors and log messages into four layers, each of which can sit inside the TEE (its
output is secret and must be protected from the host) or outside it (the host sees it anyway):

=================  ====================================================  ==========
layer              what                                                  side
=================  ====================================================  ==========
application        the tenant's program (its own ``logging`` calls)      inside
runtime            veritee SDK inside the workload (attestation, keys)   inside
tee-loading        the launcher / host side that loads the workload      outside
tee-execution      platform faults seen while running (exits, #VC, AEX)  either
=================  ====================================================  ==========

Records from an *inside* site are encrypted in staging/production; records from an *outside*
site are seen by the host whatever we do, so they may carry catalogue codes only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Layer", "Side", "Site"]


class Layer(enum.StrEnum):
    APPLICATION = "application"
    RUNTIME = "runtime"
    TEE_LOADING = "tee-loading"
    TEE_EXECUTION = "tee-execution"


class Side(enum.StrEnum):
    INTERNAL = "internal"
    EXTERNAL = "external"


@dataclass(frozen=True)
class Site:
    """A layer together with the side of the TEE boundary the output originates on."""

    layer: Layer
    side: Side

    @property
    def host_visible(self) -> bool:
        """Output from this site reaches the host unless the workload encrypts it."""
        return self.side is Side.EXTERNAL

    def __str__(self) -> str:
        return f"{self.layer.value}/{self.side.value}"
