"""Reference values from their sources: CoRIM/CoMID reading (:mod:`veritee.refvalues.corim`) and
the per-scheme profile rules (:mod:`veritee.refvalues.profiles`)."""

from __future__ import annotations

__all__: list[str] = []
