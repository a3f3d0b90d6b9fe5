"""What ``veritee serve`` says: its start line, its logs in JSON lines, its access log.

* :func:`start_line`: one line at start: where it listens, the policies in force (name and
  version), the collateral loaded (counted).
* :class:`AccessLog`: one JSON object per request on the ``veritee.access`` logger (method, path,
  query string, route, status, duration, bytes sent, client address, worker pid). Never a header
  (so never an ``Authorization`` credential or a cookie), never a body (evidence, secrets,
  tokens).
* :func:`log_config`: the logging set-up handed to uvicorn (applied in every worker): uvicorn's
  and veritee's messages at ``--log-level`` and the access log with ``--access-log``, all as JSON
  lines on stderr (the journal, under systemd).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from veritee.service.context import ServiceContext

__all__ = ["ACCESS_LOGGER", "LOG_LEVELS", "AccessLog", "JsonFormatter", "log_config", "start_line"]

ACCESS_LOGGER = "veritee.access"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
#: Longest path and query string written to the access log (the rest is cut, marked "...").
MAX_LOGGED_URL = 1024
MAX_LOGGED_AGENT = 200

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger(ACCESS_LOGGER)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class AccessLog:
    """One JSON line per HTTP request (see the module's documentation for what it holds)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, sent = 500, 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request", extra={"fields": self._entry(scope, status, sent, start)}
                )

    @staticmethod
    def _entry(scope: Scope, status: int, sent: int, start: float) -> dict[str, Any]:
        query = scope.get("query_string", b"").decode("latin-1")
        agent = next((v for k, v in scope.get("headers", []) if k == b"user-agent"), b"")
        client = scope.get("client")
        entry: dict[str, Any] = {
            "method": scope.get("method", ""),
            "path": _cut(scope.get("path", ""), MAX_LOGGED_URL),
            "query": _cut(query, MAX_LOGGED_URL),
            "route": getattr(scope.get("route"), "path", None),
            "status": status,
            "duration_ms": round((time.perf_counter() - start) * 1000, 3),
            "bytes": sent,
            "client": client[0] if client else None,
            "scheme": scope.get("scheme", "http"),
            "user_agent": _cut(agent.decode("latin-1"), MAX_LOGGED_AGENT),
            "worker": os.getpid(),
        }
        return entry


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: ``ts`` (UTC), ``level``, ``logger``, ``message`` (or an
    access entry's fields). An exception is named with the place it was raised, without its
    message or traceback text (which may quote request data)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            tb = record.exc_info[2]
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
            out["exception"] = {"type": record.exc_info[0].__name__, "at": where}
        return json.dumps(out, ensure_ascii=False, default=str)


def log_config(level: str, access: bool) -> dict[str, Any]:
    """uvicorn's ``log_config``: everything as JSON lines on stderr; uvicorn's own access log
    off (it writes the full URL in text), veritee's on with ``access``."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    formatter = {"()": f"{__name__}.JsonFormatter"}
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn sets use_colors on these two names when asked; both are the JSON formatter.
        "formatters": {"default": formatter, "access": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "veritee": {"handlers": ["stderr"], "level": upper, "propagate": False},
            ACCESS_LOGGER: {
                "handlers": ["stderr"],
                "level": "INFO" if access else "CRITICAL",
                "propagate": False,
            },
        },
    }


def start_line(ctx: ServiceContext, url: str, workers: int) -> str:
    """``veritee serve``'s line at start: where, under which policies, with what collateral."""
    from veritee.errors import VeriteeError

    with ctx.storage.transaction(readonly=True) as tx:
        rows = tx.policies_in_force()
    policies = (
        ", ".join(f"{r.name} v{r.version}" for r in rows) or "none (every attestation is refused)"
    )
    try:
        c = ctx.collateral()
    except (VeriteeError, OSError) as e:
        collateral = f"not readable ({type(e).__name__}: {getattr(e, 'code', '')})"
    else:
        files = len(set(c.sources))
        collateral = (f"{files} file{'s' * (files != 1)} from {ctx.domain.collateral_dir}: "
                      f"{len(c.certificates)} certificates, {len(c.crls)} CRLs, "
                      f"{len(c.documents)} DCAP documents, {len(c.public_keys)} public keys")  # fmt: skip
        if ctx.rolled_back:
            collateral += f"; {len(ctx.rolled_back)} older than the domain's marks (not deciding)"
        if ctx.unverified:
            collateral += f"; {len(ctx.unverified)} DCAP sets that do not verify"
    database = ctx.storage.dialect
    procs = f"{workers} workers" if workers > 1 else "1 process"
    attester = ctx.service_attester
    attested = "" if attester is None else (
        f"; attested on {attester.platform.name} (measurement {attester.platform.measurement[:16]}..., "
        "evidence at /v1/domain/evidence)")  # fmt: skip
    return (f"veritee Certifier Service listening on {url} ({procs}, data {ctx.settings.data_dir}, "
            f"database {database}); policies in force: {policies}; collateral: {collateral}{attested}")  # fmt: skip
