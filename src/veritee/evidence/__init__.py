"""Verifiers for TEE evidence: bytes in, normalized claims out. Pure: no network, clock or env.

Each format lives in its own module and exposes the same three functions::

    detect(data: bytes) -> bool                      # cheap sniff for --format auto
    parse_claims(data: bytes) -> dict[str, Any]      # UNVERIFIED claims, for display; MalformedError
    verify(data: bytes, *, collateral: Collateral, at: datetime,
           trust: <the vendor's pins> | None = None) -> VerifiedEvidence
                                                      # raises MalformedError / VerificationError

:func:`verify` here picks the module by ``format`` (or detects it) and forwards.
"""

from __future__ import annotations

import dataclasses
import importlib
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from veritee.binding import attested_profile
from veritee.collateral import Collateral
from veritee.errors import MalformedError, OversizedError, UsageError
from veritee.evidence.claims import PLATFORMS, Reason, VerifiedEvidence

__all__ = [
    "FORMATS",
    "MAX_EVIDENCE_BYTES",
    "PLATFORMS",
    "Reason",
    "TrustRoot",
    "VerifiedEvidence",
    "detect_format",
    "parse_claims",
    "verify",
]

if TYPE_CHECKING:  # pragma: no cover
    from veritee.evidence.trust import TrustRoot


def __getattr__(name: str) -> Any:
    # TrustRoot pulls in every vendor's pins; loaded only when asked for.
    if name == "TrustRoot":
        from veritee.evidence.trust import TrustRoot

        return TrustRoot
    raise AttributeError(f"module 'veritee.evidence' has no attribute {name!r}")


#: The largest evidence accepted in any format (a TDX quote with its cert chain is ~5 KiB,
#: a Nitro document ~8 KiB, a simulated report < 1 KiB).
MAX_EVIDENCE_BYTES = 256 * 1024

#: Format name -> module, in the order ``auto`` tries them (most specific sniff first).
FORMATS: dict[str, str] = {
    "simulated": "veritee.evidence.simulated",
    "nitro": "veritee.evidence.nitro",
    "tdx": "veritee.evidence.tdx",
    "sev-snp": "veritee.evidence.sev_snp",
    "sgx": "veritee.evidence.sgx",
    "tpm": "veritee.evidence.tpm",
    "az-snp-vtpm": "veritee.evidence.azure_vtpm",
    "az-tdx-vtpm": "veritee.evidence.azure_tdx_vtpm",
    "cca": "veritee.evidence.cca",
    "nvidia-gpu": "veritee.evidence.nvidia",
    "keystone": "veritee.evidence.keystone",  # no magic: sniffed last
}


#: The modules of the formats imported so far (an import by name costs more than a look-up).
_IMPORTED: dict[str, ModuleType] = {}


def _module(fmt: str) -> ModuleType:
    mod = _IMPORTED.get(fmt)
    if mod is not None:
        return mod
    try:
        name = FORMATS[fmt]
    except KeyError:
        raise UsageError(
            f"unknown evidence format {fmt!r}; known: {', '.join(sorted(FORMATS))}",
            code="format_unknown",
        ) from None
    try:
        mod = _IMPORTED[fmt] = importlib.import_module(name)
    except ModuleNotFoundError as e:  # say which dependency is missing, never drop the format
        raise UsageError(
            f"evidence format {fmt!r} needs the module {e.name!r}, which is not installed"
        ) from e
    return mod


def _check_size(data: bytes) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageError("evidence must be bytes")
    if len(data) == 0:
        raise MalformedError("evidence is empty", code="empty")
    if len(data) > MAX_EVIDENCE_BYTES:
        raise OversizedError(f"evidence is {len(data)} bytes; the limit is {MAX_EVIDENCE_BYTES}")


def detect_format(data: bytes) -> str:
    """Return the format name of ``data`` or raise :class:`MalformedError`."""
    _check_size(data)
    for fmt in FORMATS:
        try:
            mod = _module(fmt)
        except UsageError:
            continue
        if mod.detect(bytes(data)):
            return fmt
    raise MalformedError("evidence format not recognised", code="format_unknown")


def parse_claims(data: bytes, *, format: str = "auto") -> dict[str, Any]:
    """Parse ``data`` and return its claims WITHOUT verifying anything (for display only).

    Like :func:`verify`, the claims include the ``profile`` the evidence would attest.
    """
    fmt = detect_format(data) if format == "auto" else format
    _check_size(data)
    claims: dict[str, Any] = _module(fmt).parse_claims(bytes(data))
    claims["profile"] = attested_profile(claims).value
    return claims


def verify(
    data: bytes,
    *,
    collateral: Collateral | None = None,
    at: datetime,
    format: str = "auto",
    trust: Any = None,
) -> VerifiedEvidence:
    """Verify ``data`` at time ``at`` with ``collateral``; return its claims or raise.

    The claims include ``profile``: the profile the evidence attests
    (:func:`veritee.binding.attested_profile`), whatever the format.

    ``trust``: a :class:`~veritee.evidence.trust.TrustRoot` (the format's pins are taken from
    it), the format's own pins (``AmdTrust``, ``DcapTrust``, ...), or None for the genuine
    vendor roots. ``collateral``: the relying party's endorsements and the attester's
    certificates, by provenance (:mod:`veritee.collateral`).

    Raises :class:`~veritee.errors.MalformedError` when the bytes do not parse and
    :class:`~veritee.errors.VerificationError` when a check fails. ``at`` must be timezone-aware.
    """
    if at.tzinfo is None:
        raise UsageError("verification time must be timezone-aware")
    _check_size(data)
    fmt = detect_format(data) if format == "auto" else format
    mod = _module(fmt)
    from veritee.evidence.trust import TrustRoot

    if isinstance(trust, TrustRoot):
        trust = trust.for_format(fmt)
    result: VerifiedEvidence = mod.verify(
        bytes(data), collateral=collateral or Collateral.empty(), at=at, trust=trust
    )
    profile = attested_profile(result.claims).value
    if result.claims.get("profile") == profile:
        return result
    return dataclasses.replace(result, claims={**result.claims, "profile": profile})
