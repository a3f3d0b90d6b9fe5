"""Cheap checks first: refuse on validity windows, identities and sizes before signature work.

A verifier that checks every signature before it looks at dates lets a refusal cost more than an
acceptance (the costly checks run, then a window closes), which is also a denial-of-service
lever. Each verifier therefore runs its cheap checks on the parsed, not yet authenticated input
first and collects every one that fails here; :meth:`CheapChecks.refuse` then raises one error
that lists them all and names the costly checks it skipped (``not_reached``; the appraisal turns
that into the warning ``checks_not_reached``).

Refusing on unauthenticated data is safe: it can only refuse, never accept. The same checks run
again, on authenticated data, after the signatures, so an acceptance is decided exactly as before.
"""

from __future__ import annotations

from datetime import datetime

from veritee.errors import CollateralError, VerificationError
from veritee.reasons import Code

__all__ = ["CheapChecks"]


class CheapChecks:
    """Failures of cheap checks, collected in the order found."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: list[VerificationError] = []

    def add(self, error: VerificationError) -> None:
        self.found.append(error)

    def window(
        self,
        name: str,
        not_before: datetime,
        not_after: datetime,
        at: datetime,
        *,
        collateral: bool = False,
    ) -> None:
        """Record ``name`` as not yet valid / expired when ``at`` is outside its window."""
        if not_before <= at <= not_after:
            return
        err: type[VerificationError] = CollateralError if collateral else VerificationError
        if at < not_before:
            code = Code.COLLATERAL_NOT_YET_VALID if collateral else Code.CERTIFICATE_NOT_YET_VALID
            self.add(err(f"{name} is not valid before {not_before.isoformat()}", code=code))
        else:
            code = Code.COLLATERAL_EXPIRED if collateral else Code.CERTIFICATE_EXPIRED
            self.add(err(f"{name} expired at {not_after.isoformat()}", code=code))

    def refuse(self, not_reached: tuple[str, ...]) -> None:
        """Raise one error listing every failure found (the first one's kind and code), naming
        the costly checks ``not_reached``; return when nothing failed."""
        if not self.found:
            return
        first = self.found[0]
        raise type(first)(
            first.message,
            code=first.code,
            refusals=tuple(r for e in self.found for r in e.refusals),
            not_reached=not_reached,
        )
