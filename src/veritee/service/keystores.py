"""Workloads' key stores as the service knows them (issue 13, rollback of the key store).

A workload's key store has a random 16-byte id and a key generation, which the workload binds in
its report data when it certifies a key (:class:`veritee.binding.KeyStoreProof`). The service
keeps, per store, the highest generation it has certified (table ``key_stores``) and refuses to
certify a lower one: that key was superseded by :meth:`KeyStore.rotate_key`, and the host put
back an older copy of the store.

A store is named by :func:`store_identity`: SHA-256 over the platform, the attested profile and
the store id. The measurement is left out on purpose, so that a store that survives upgrades
(domain-released sealing) keeps its record; the profile is in, so that a development instance can
never advance (or be refused by) the record of a production store.
"""

from __future__ import annotations

import hashlib
from typing import Any

from veritee.binding import KeyStoreProof

__all__ = ["store_identity"]

_TAG = b"veritee-key-store-v1"


def store_identity(claims: dict[str, Any], proof: KeyStoreProof) -> str:
    """SHA-256 (hex) naming a key store: tag, platform, attested profile, store id."""
    platform = str(claims.get("platform") or "").encode()
    profile = str(claims.get("profile") or "").encode()
    h = hashlib.sha256(_TAG)
    for part in (platform, profile, proof.store_id):
        h.update(len(part).to_bytes(2, "big") + part)
    return h.hexdigest()
