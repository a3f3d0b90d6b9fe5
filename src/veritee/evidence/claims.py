"""The result of verifying evidence: normalized claims plus non-fatal findings.

Every verifier fills at least the claims named in DESIGN.md: ``platform``, ``measurement``
(hex), ``report_data`` (hex), ``debug`` (bool) and ``tcb_status`` (Intel's status name where
Intel collateral decides it, else ``None``), plus the platform's own fields in snake_case.
:func:`veritee.evidence.verify` adds ``profile``, the profile the evidence attests
(:func:`veritee.binding.attested_profile`). Claim values are JSON types only (str, int, bool, None, list, dict), so claims can be put in
tokens, audit records and CLI output unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from veritee.reasons import Reason
from veritee.tee import Tee

__all__ = ["PLATFORMS", "Reason", "VerifiedEvidence"]

#: Every platform a verified evidence can name (the claim ``platform``): :class:`veritee.tee.Tee`.
PLATFORMS = tuple(t.value for t in Tee)


@dataclass(frozen=True)
class VerifiedEvidence:
    """Evidence whose signatures, chains and collateral all checked out at ``verified_at``.

    ``claims`` are normalized (see module docstring). ``findings`` are facts a policy may care
    about that are not failures of authenticity (for example an Intel TCB status other than
    ``UpToDate``); the appraisal decides what they mean.
    """

    format: str
    claims: dict[str, Any]
    verified_at: datetime
    findings: tuple[Reason, ...] = field(default=())
