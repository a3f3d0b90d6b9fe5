"""Log errors, placed in the one error tree of :mod:`veritee.errors`.

* :class:`LogIntegrityError` (a :class:`~veritee.errors.VerificationError`): the stored log
  failed verification; ``report`` holds every finding (truncation, rollback, ...).
* a log key blob that does not parse is a :class:`~veritee.errors.MalformedError`; one that does
  not open with the tenant's key is a :class:`~veritee.errors.SealingError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from veritee.errors import VerificationError

if TYPE_CHECKING:
    from veritee.logs.tenant import LogReport

__all__ = ["LogIntegrityError"]


class LogIntegrityError(VerificationError):
    """The stored log failed verification; ``report`` holds every finding."""

    default_code = "log_integrity"
    catalogue_code = "VT-0103"

    def __init__(self, message: str, *, report: LogReport | None = None) -> None:
        super().__init__(message)
        self.report = report
