"""veritee: a confidential-computing trust framework.

The public surface is small: :class:`veritee.Trust` for workloads (the SDK, with
:class:`veritee.ChannelPolicy` for its attested channels and :class:`veritee.AdmissionContext`,
the TLS context of its HTTP adapters), the
:mod:`veritee.evidence` verifiers for relying parties, and the ``veritee`` command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["AdmissionContext", "ChannelPolicy", "Trust", "__version__"]

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from veritee.sdk.adapters import AdmissionContext
    from veritee.sdk.channel import ChannelPolicy
    from veritee.sdk.trust import Trust


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import veritee` stays cheap for the pure verifiers.
    if name == "Trust":
        from veritee.sdk.trust import Trust

        return Trust
    if name == "ChannelPolicy":
        from veritee.sdk.channel import ChannelPolicy

        return ChannelPolicy
    if name == "AdmissionContext":
        from veritee.sdk.adapters import AdmissionContext

        return AdmissionContext
    raise AttributeError(name)
