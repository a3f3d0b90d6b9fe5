"""High-water marks of the relying party's own endorsements: newest wins, never rolled back
(issue 11 item 3, "Fix at the cause"; the way python-tuf's trusted metadata set never accepts a
lower version than the one it holds).

A :class:`Mark` says how new the newest authentic part of DCAP collateral the relying party has
accepted is, per part and subject:

=============== =================================== ==========================================
kind            subject                             value
=============== =================================== ==========================================
``tcb_info``    ``<id>:<FMSPC>`` (``TDX:00806F050000``) its ``tcbEvaluationDataNumber``
``qe_identity`` its ``id`` (``QE``, ``TD_QE``)      its ``tcbEvaluationDataNumber``
``pck_crl``     the issuer's RFC 4514 name          its ``thisUpdate`` (seconds since 1970)
``root_crl``    the issuer's RFC 4514 name          its ``thisUpdate`` (seconds since 1970)
=============== =================================== ==========================================

The service records the marks of its collateral folder in the database (table
``collateral_marks``, only ever raised) and hands them to the verifier with the collateral
(:attr:`veritee.collateral.Collateral.marks`): a set older than a mark for the same subject does
not decide (reason ``collateral_rolled_back``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["KINDS", "Mark", "Marks", "subject"]

#: The parts of collateral that carry a mark.
KINDS = ("tcb_info", "qe_identity", "pck_crl", "root_crl")
#: Stored subjects are at most this long (longer CRL issuer names are cut; they stay distinct
#: in practice: Intel's are ~80 characters).
MAX_SUBJECT = 200


@dataclass(frozen=True)
class Mark:
    """How new one part of collateral is (module docstring)."""

    kind: str
    subject: str
    value: int
    #: Where it came from (a file name), for messages only.
    source: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.subject

    def describe(self) -> str:
        """``tcb_info TDX:00806F050000 tcbEvaluationDataNumber 17``, ``pck_crl ... thisUpdate <time>``."""
        if self.kind in ("pck_crl", "root_crl"):
            when = dt.datetime.fromtimestamp(self.value, dt.UTC).isoformat()
            return f"{self.kind} of {self.subject} thisUpdate {when}"
        return f"{self.kind} {self.subject} tcbEvaluationDataNumber {self.value}"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "value": self.value,
            "source": self.source,
        }


def subject(text: str) -> str:
    """A subject as stored (cut to :data:`MAX_SUBJECT` characters)."""
    return text[:MAX_SUBJECT]


@dataclass(frozen=True, eq=False)
class Marks:
    """The highest mark per (kind, subject)."""

    by_key: Mapping[tuple[str, str], Mark] = field(default_factory=dict)

    @classmethod
    def of(cls, marks: Iterable[Mark]) -> Marks:
        """The highest of ``marks`` per (kind, subject)."""
        best: dict[tuple[str, str], Mark] = {}
        for m in marks:
            held = best.get(m.key)
            if held is None or m.value > held.value:
                best[m.key] = m
        return cls(best)

    def get(self, key: tuple[str, str]) -> Mark | None:
        return self.by_key.get(key)

    def values(self) -> Iterator[Mark]:
        return iter(self.by_key.values())

    def __len__(self) -> int:
        return len(self.by_key)

    def joined(self, other: Marks) -> Marks:
        return Marks.of([*self.values(), *other.values()])

    def rolled_back(self, found: Iterable[Mark]) -> list[tuple[Mark, Mark]]:
        """Each of ``found`` (the newest per subject) that is older than the mark held here, with
        that mark."""
        out = []
        for m in Marks.of(found).values():
            held = self.by_key.get(m.key)
            if held is not None and m.value < held.value:
                out.append((m, held))
        return out
