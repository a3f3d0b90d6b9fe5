"""Appraisal decisions: every reason, and the EAR trustworthiness vector (AR4SI).

Trustworthiness values follow draft-ietf-rats-ar4si: 0 no claim, 2 affirming,
32..95 warning, 96..127 contraindicated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from veritee.evidence.claims import Reason

__all__ = ["TRUST_CLAIMS", "Decision", "ear_status"]

TRUST_CLAIMS = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)

AFFIRMING = 2
WARNING = 32
UNRECOGNIZED_RUNTIME = 33
CONTRAINDICATED = 96
UNRECOGNIZED = 97


def ear_status(vector: dict[str, int]) -> str:
    """The EAR status tier of a trustworthiness vector: the worst of its values."""
    values = [v for v in vector.values() if v]
    if not values:
        return "none"
    worst = max(values)
    if worst >= CONTRAINDICATED:
        return "contraindicated"
    if worst >= WARNING:
        return "warning"
    return "affirming"


class RefValueMatch(NamedTuple):
    """``what`` (a claim's check, e.g. ``measurement``) with ``value`` is in reference-value set
    ``set_name``, from ``source`` (its ``describe()`` names the registered CoRIM)."""

    what: str
    value: str
    set_name: str
    source: Any

    def reason(self) -> Reason:
        shown = self.value if len(self.value) <= 200 else self.value[:200] + "..."
        return Reason(
            "refvalue_matched",
            f"{self.what} {shown} is in reference-value set {self.set_name!r}, from CoRIM {self.source.describe()}",
        )


@dataclass
class Decision:
    """The outcome of appraising claims: ``accepted`` iff no reason refuses them.

    ``reasons`` lists every refusal (code, message); ``warnings`` lists what passed only
    because a policy said so (e.g. ``insecure_allow_debug``); ``passed`` names passed checks;
    ``notes`` says where a passed check's reference came from (``refvalue_matched``: the set
    and the CoRIM), and never changes the outcome.
    """

    accepted: bool = True
    reasons: list[Reason] = field(default_factory=list)
    warnings: list[Reason] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    vector: dict[str, int] = field(default_factory=dict)
    policy_name: str | None = None
    policy_digest: str | None = None
    #: Refused under several policies in force: the names of those that came equally close
    #: (``policy_name`` is the first of them), so no single one is the workload's.
    closest: tuple[str, ...] = ()
    #: Measurements that matched a reference-value set (rendered as ``notes`` when asked: a
    #: decision is made on every appraisal, its notes are read far less often).
    matches: list[RefValueMatch] = field(default_factory=list)

    def refuse(
        self, code: str, message: str, *, claim: str | None = None, value: int = CONTRAINDICATED
    ) -> None:
        self.accepted = False
        self.reasons.append(Reason(code, message))
        if claim is not None:
            self.vector[claim] = max(self.vector.get(claim, 0), value)

    def warn(self, code: str, message: str, *, claim: str | None = None) -> None:
        self.warnings.append(Reason(code, message))
        if claim is not None:
            self.vector[claim] = max(self.vector.get(claim, 0), WARNING)

    @property
    def notes(self) -> list[Reason]:
        """Where a passed check's reference came from: one ``refvalue_matched`` per match."""
        return [m.reason() for m in self.matches]

    def affirm(self, check: str, *, claim: str | None = None) -> None:
        self.passed.append(check)
        if claim is not None and self.vector.get(claim, 0) == 0:
            self.vector[claim] = AFFIRMING

    @property
    def status(self) -> str:
        if not self.accepted:
            return "contraindicated"
        return ear_status(self.vector)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "status": self.status,
            "reasons": [r.to_json() for r in self.reasons],
            "warnings": [r.to_json() for r in self.warnings],
            "passed": list(self.passed),
            "trustworthiness_vector": dict(self.vector),
            "policy": {"name": self.policy_name, "digest": self.policy_digest},
        } | ({"notes": [r.to_json() for r in self.notes]} if self.matches else {})
