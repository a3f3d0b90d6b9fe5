"""Decrypted records in the shapes other tools read: JSON lines, and stdlib ``logging`` records.

A workload's record text is what its handler formatted (:data:`veritee.logs.handler.DEFAULT_FORMAT`,
``"%(asctime)s %(levelname)s %(name)s: %(message)s"``). :func:`to_logging_record` reads the
time, level and logger name back out of it (the text is kept whole when it has another shape),
so a replayed record keeps its severity and origin in any stdlib handler, and through them in
structlog (``structlog.stdlib.ProcessorFormatter``) or OpenTelemetry (the SDK's
``LoggingHandler``), which both consume stdlib records.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from typing import Any

from veritee.logs.tenant import LogRecord

__all__ = ["replay", "to_json", "to_logging_record"]

_FORMATTED = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2}),(?P<ms>\d{3}) "
    r"(?P<level>[A-Z]+) (?P<name>[^\s:]+): (?P<message>.*)$",
    re.DOTALL,
)


def to_json(record: LogRecord, *, run: int | None = None) -> dict[str, Any]:
    """One JSON-lines object (``veritee logs decrypt --json``): run, leaf, epoch, signed, text."""
    doc: dict[str, Any] = {"run": run} if run is not None else {}
    doc.update({"leaf": record.leaf_index, "epoch": record.epoch, "signed": record.signed,
                "text": record.text})  # fmt: skip
    return doc


def to_logging_record(
    record: LogRecord, *, run: int | None = None, prefix: str = "workload"
) -> logging.LogRecord:
    """A stdlib record for a decrypted one: logger ``<prefix>.<workload logger name>``, its level
    and time as the workload wrote them (the time of the workload's local clock), the message;
    ``veritee_run``, ``veritee_leaf`` and ``veritee_signed`` as extra attributes."""
    m = _FORMATTED.match(record.text)
    name, level, message, created = prefix, logging.INFO, record.text, None
    if m is not None:
        name = f"{prefix}.{m['name']}"
        named = logging.getLevelName(m["level"])  # an int for a known level name
        level = named if isinstance(named, int) else logging.INFO
        message = m["message"]
        try:
            when = dt.datetime.fromisoformat(f"{m['date']}T{m['time']}.{m['ms']}")
            created = when.timestamp()  # asctime is the workload's local time
        except ValueError:
            created = None
    rec = logging.makeLogRecord({
        "name": name, "levelno": level, "levelname": logging.getLevelName(level),
        "msg": message, "args": None, "veritee_run": run, "veritee_leaf": record.leaf_index,
        "veritee_signed": record.signed,
    })  # fmt: skip
    if created is not None:
        rec.created, rec.msecs = created, (created % 1) * 1000
    return rec


def replay(records: Iterable[LogRecord], logger: logging.Logger, *, run: int | None = None) -> int:
    """Hand every decrypted record to ``logger``'s handlers (as :meth:`logging.Logger.handle`
    does, so its level and filters apply); returns how many were handled."""
    n = 0
    for r in records:
        rec = to_logging_record(r, run=run, prefix=logger.name)
        if logger.isEnabledFor(rec.levelno):
            logger.handle(rec)
            n += 1
    return n
