"""Confidential logging and debugging (after the Enarx design note; see :mod:`.layers`).

Profiles trade debuggability for secrecy (:class:`veritee.profiles.Profile`); a static error
catalogue (:mod:`.catalogue`) is all that crosses untrusted channels in staging and production;
records are encrypted under a forward-ratcheted key (:mod:`.ratchet`), appended to an RFC 9162
Merkle log whose heads the workload's attested key signs (:mod:`.merkle`, :mod:`.segment`,
:mod:`.writer`), and stored by the host. The tenant verifies and decrypts (:mod:`.tenant`).
"""

from __future__ import annotations

from veritee.logs.catalogue import ErrorState, problem_for, public_message
from veritee.logs.errors import LogIntegrityError
from veritee.logs.export import replay, to_json, to_logging_record
from veritee.logs.handler import ConfidentialLogHandler
from veritee.logs.segment import SignedTreeHead
from veritee.logs.tenant import (
    LogKey,
    LogRecord,
    LogReport,
    decrypt_log,
    open_log_key,
    verify_log,
)
from veritee.logs.workload import WorkloadLog, open_workload_log

__all__ = [
    "ConfidentialLogHandler",
    "ErrorState",
    "LogIntegrityError",
    "LogKey",
    "LogRecord",
    "LogReport",
    "SignedTreeHead",
    "WorkloadLog",
    "decrypt_log",
    "open_log_key",
    "open_workload_log",
    "problem_for",
    "public_message",
    "replay",
    "to_json",
    "to_logging_record",
    "verify_log",
]
