"""Domain-released sealing keys: one per (domain, workload name, profile), kept by the key broker.

DESIGN.md, "Sealing that survives upgrades": on platforms without a sealing key (TDX, Arm CCA,
Nitro), and wherever sealed state must outlive a code change, a workload seals under a key the
key broker releases to every measurement the domain's policy admits under that workload name and
profile. The key is never stored; it is derived, on every release, from the domain's **sealing
root**:

* the root is 32 random bytes, made once per domain (generation 1) and stored in the database
  only wrapped by the key-encryption key (:mod:`veritee.keybroker.kek`), with associated data
  ``b"veritee-sealing-root-v1|" + generation``, so a wrapped secret DEK moved into its place
  does not unwrap as a root, nor the reverse;
* ``key = HKDF-SHA-256(ikm=root, salt=SALT, info=INFO_TAG || lp(domain id) || lp(workload) ||
  lp(profile))`` (RFC 5869; ``lp`` is a 2-byte big-endian length prefix), where the domain id is
  SHA-256 of the domain CA's SubjectPublicKeyInfo, the workload name is the name of the signed
  appraisal policy that admitted the evidence, and the profile is the one the evidence attests
  (:func:`veritee.binding.attested_profile`: a debug launch is never above development).

So every measurement a policy admits gets the same key for its profile, a development or debug
instance never gets the production key, and another policy name (another workload) gets another
key. The released key travels like every release: encrypted to the workload's attested
ephemeral key in an envelope signed by the key broker (:mod:`veritee.keybroker.release`), whose
name is :func:`envelope_name`.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.errors import UsageError, VerificationError
from veritee.keybroker.kek import KeyEncryptionKey
from veritee.keybroker.vault import SecretBytes
from veritee.profiles import Profile

__all__ = [
    "ENVELOPE_PREFIX",
    "KEY_SIZE",
    "POSSESSION_NAME",
    "SealingRoot",
    "domain_id",
    "envelope_name",
    "new_wrapped_root",
    "open_root",
]

KEY_SIZE = 32
ROOT_SIZE = 32
_ROOT_AAD = b"veritee-sealing-root-v1|"
SALT = b"veritee-domain-sealing-salt-v1"
INFO_TAG = b"veritee-domain-sealing-key-v1"
#: Release envelopes of sealing keys are named ``<prefix><profile>/<workload name>``.
ENVELOPE_PREFIX = "veritee.sealing-key/"
#: The name a certified workload's proof of possession signs for the sealing key
#: (:func:`veritee.keybroker.release.possession_message`); never a valid secret name.
POSSESSION_NAME = "veritee:sealing-key"


def _root_aad(generation: int) -> bytes:
    return _ROOT_AAD + str(generation).encode("ascii")


def _lp(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise UsageError("sealing-key input longer than 65535 bytes")
    return struct.pack(">H", len(value)) + value


@dataclass(frozen=True)
class SealingRoot:
    """The domain's sealing root, unwrapped, in memory only (its ``repr`` shows no bytes)."""

    generation: int
    _root: bytes = field(repr=False)

    def derive(self, *, domain_id: bytes, workload: str, profile: Profile) -> SecretBytes:
        """The sealing key of ``workload`` in ``profile`` (module docstring)."""
        if not workload:
            raise UsageError("a domain sealing key needs a workload name")
        info = (
            INFO_TAG
            + _lp(domain_id)
            + _lp(workload.encode("utf-8"))
            + _lp(Profile(profile).value.encode("ascii"))
        )
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=SALT, info=info)
        return SecretBytes(hkdf.derive(self._root))


def new_wrapped_root(kek: KeyEncryptionKey, generation: int = 1) -> bytes:
    """Make a fresh sealing root and return it wrapped by ``kek`` (the only form ever stored)."""
    return kek.wrap(secrets.token_bytes(ROOT_SIZE), _root_aad(generation))


def open_root(kek: KeyEncryptionKey, generation: int, kek_id: str, wrapped: bytes) -> SealingRoot:
    """Unwrap a stored sealing root; :class:`VerificationError` ``sealing_root_unavailable``
    if it was wrapped by another KEK, moved or tampered with."""
    if kek_id != kek.kek_id:
        raise VerificationError(
            f"the sealing root is wrapped by KEK {kek_id[:12]}..., this service holds "
            f"{kek.kek_id[:12]}...: start it with the domain's KEK",
            code="sealing_root_unavailable",
        )
    try:
        root = kek.unwrap(wrapped, _root_aad(generation))
    except VerificationError:
        raise VerificationError(
            "the sealing root does not unwrap (tampered or moved)", code="sealing_root_unavailable"
        ) from None
    if len(root) != ROOT_SIZE:
        raise VerificationError(
            "the sealing root has a wrong size", code="sealing_root_unavailable"
        )
    return SealingRoot(generation, root)


def domain_id(ca_spki_der: bytes) -> bytes:
    """The domain's identifier in key derivation: SHA-256 of the domain CA's SPKI (DER)."""
    return hashlib.sha256(ca_spki_der).digest()


def envelope_name(profile: Profile, workload: str) -> str:
    """The name a sealing key's release envelope carries (and the broker signs)."""
    return f"{ENVELOPE_PREFIX}{Profile(profile).value}/{workload}"
