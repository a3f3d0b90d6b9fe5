"""The key broker: secrets at rest, release policies, envelopes to attested keys, Trustee KBS.

Modules: :mod:`.kek` (key-encryption keys), :mod:`.vault` (envelope encryption of versions),
:mod:`.policy` (release policy grammar and evaluation), :mod:`.wrap` (HPKE and JWE envelopes),
:mod:`.kbs` (pure Trustee KBS protocol messages).
"""

from __future__ import annotations

__all__: list[str] = []
