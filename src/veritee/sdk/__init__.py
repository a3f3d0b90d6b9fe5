"""The workload SDK: :class:`Trust` and what its methods hand back.

Most users need only :class:`veritee.Trust` (certify, seal, connect, serve, get secrets, HTTP and
TLS adapters). The names below are the SDK's public surface (docs/api.md); the modules under
``veritee.sdk`` are its implementation. Imported lazily, so ``import veritee.sdk.X`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "AdmissionContext",
    "AdmissionRefused",
    "AttestedConnection",
    "AttestedServer",
    "ChannelPolicy",
    "Trust",
    "admit_peer",
    "contain",
    "fetch_sealing_key",
    "fetch_sealing_key_certified",
    "fetch_secret",
    "fetch_secret_certified",
    "peer_of",
]

if TYPE_CHECKING:  # pragma: no cover
    from veritee.sdk.adapters import AdmissionContext, AdmissionRefused, peer_of
    from veritee.sdk.channel import AttestedConnection, AttestedServer, ChannelPolicy, admit_peer
    from veritee.sdk.confidential import contain
    from veritee.sdk.secrets import (
        fetch_sealing_key,
        fetch_sealing_key_certified,
        fetch_secret,
        fetch_secret_certified,
    )
    from veritee.sdk.trust import Trust

_HOME = {
    "AdmissionContext": "veritee.sdk.adapters",
    "AdmissionRefused": "veritee.sdk.adapters",
    "peer_of": "veritee.sdk.adapters",
    "AttestedConnection": "veritee.sdk.channel",
    "AttestedServer": "veritee.sdk.channel",
    "ChannelPolicy": "veritee.sdk.channel",
    "admit_peer": "veritee.sdk.channel",
    "contain": "veritee.sdk.confidential",
    "fetch_sealing_key": "veritee.sdk.secrets",
    "fetch_sealing_key_certified": "veritee.sdk.secrets",
    "fetch_secret": "veritee.sdk.secrets",
    "fetch_secret_certified": "veritee.sdk.secrets",
    "Trust": "veritee.sdk.trust",
}


def __getattr__(name: str) -> Any:
    try:
        home = _HOME[name]
    except KeyError:
        raise AttributeError(f"module 'veritee.sdk' has no attribute {name!r}") from None
    return getattr(importlib.import_module(home), name)
