"""A named set of reference values as appraisal uses it: one dict lookup per measurement.

Pure. :class:`RefValueSet` maps each value (lowercase hex) to the source it came from (the
registered CoRIM's id, file name and CoRIM id), so a match costs one hash lookup whatever the
size of the set, and a decision can name the set and the CoRIM a match came from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["RefValueSet", "Source"]


@dataclass(frozen=True)
class Source:
    id: int
    file_name: str
    corim_id: str | None

    def describe(self) -> str:
        ident = f", CoRIM id {self.corim_id}" if self.corim_id else ""
        return f"#{self.id} {self.file_name or '(no file name)'}{ident}"


@dataclass(frozen=True)
class RefValueSet:
    """The values of set ``name`` that count, as read at some time; ``valid_until``: when a
    source of it expires or begins (the set must be read again then), or None."""

    name: str
    values: Mapping[str, Source] = field(default_factory=dict)
    valid_until: dt.datetime | None = None

    @classmethod
    def of(
        cls,
        name: str,
        rows: Iterable[tuple[str, int, str, str | None]],
        valid_until: dt.datetime | None = None,
    ) -> RefValueSet:
        """``rows``: (value as lowercase hex, source id, file name, CoRIM id) each."""
        sources: dict[int, Source] = {}
        values: dict[str, Source] = {}
        for value, sid, file_name, corim_id in rows:
            src = sources.get(sid)
            if src is None:
                src = sources[sid] = Source(sid, file_name, corim_id)
            values[value] = src
        return cls(name, values, valid_until)

    def match(self, value_hex: str) -> Source | None:
        return self.values.get(value_hex.lower())

    def __len__(self) -> int:
        return len(self.values)
