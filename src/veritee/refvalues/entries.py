"""The reference values a CoRIM contributes to a set: one entry per digest or raw value.

Pure. An entry is what a policy's set matches a measurement claim against: the value (lowercase
hex), its algorithm (``sha-384``, ``raw``), the measurement's key and the environment it belongs
to (JSON), so a decision can say which CoRIM, which environment and which mkey it matched.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass

from veritee.refvalues.corim import Inspection

__all__ = ["SET_NAME", "Entry", "entries_of", "expiry_of", "valid_set_name"]

#: A set's name: lowercase letters, digits, ``.``, ``_`` and ``-``, at most 64 characters.
SET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_VALUE_BYTES = 128


def valid_set_name(name: object) -> bool:
    return isinstance(name, str) and SET_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Entry:
    value: str
    alg: str
    mkey: str
    environment: str


def entries_of(result: Inspection) -> list[Entry]:
    """Every digest (also of integrity registers) and raw value of the reference-value triples,
    once each per (value, mkey, environment)."""
    out: dict[tuple[str, str, str], Entry] = {}
    for _comid, triple in result.reference_values:
        env = json.dumps(triple.environment.to_json(), sort_keys=True, separators=(",", ":"))
        for m in triple.measurements:
            mkey = json.dumps(
                m.key.to_json() if m.key else None, sort_keys=True, separators=(",", ":")
            )
            found = [(d.value, d.alg_name) for d in m.all_digests()]
            if m.raw_value is not None:
                found.append((m.raw_value, "raw"))
            for value, alg in found:
                if not value or len(value) > MAX_VALUE_BYTES:
                    continue
                entry = Entry(value.hex(), alg, mkey[:400], env)
                out.setdefault((entry.value, entry.mkey, entry.environment), entry)
    return list(out.values())


def expiry_of(result: Inspection, requested: dt.datetime | None = None) -> dt.datetime | None:
    """When the reference values stop counting: the earliest of the CoRIM's validity, its
    signature's validity and the one an admin asked for."""
    ends = [v.not_after for v in (result.validity, result.signer_validity) if v is not None]
    if requested is not None:
        ends.append(requested)
    return min(ends) if ends else None


def not_before_of(result: Inspection) -> dt.datetime | None:
    starts = [v.not_before for v in (result.validity, result.signer_validity) if v and v.not_before]
    return max(starts) if starts else None
