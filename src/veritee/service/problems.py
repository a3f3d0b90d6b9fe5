"""Errors as RFC 9457 problem details: the one place that maps the error tree to HTTP."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from veritee.errors import (
    StorageError,
    VeriteeError,
    http_status,
)

__all__ = [
    "PROBLEM_BASE",
    "http_problem",
    "install_handlers",
    "problem",
    "status_for",
    "unexpected_problem",
    "veritee_problem",
]

log = logging.getLogger("veritee.service")

PROBLEM_BASE = "https://veritee.dev/problems/"
MEDIA_TYPE = "application/problem+json"


def status_for(error: VeriteeError) -> int:
    """The HTTP status of ``error``: :func:`veritee.errors.http_status` (one table)."""
    return http_status(error)


def problem(
    status: int, code: str, title: str, detail: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def veritee_problem(exc: VeriteeError) -> JSONResponse:
    """The answer to a :class:`VeriteeError` raised while handling a request."""
    status = status_for(exc)
    if isinstance(exc, StorageError):  # a lost or failing database: say so in the log
        log.warning("database unavailable (%s): %s", exc.code, exc.message)
    extra: dict[str, Any] = {}
    reasons = exc.reasons
    if reasons:
        extra["reasons"] = reasons
    policy = exc.policy
    if isinstance(policy, str):
        extra["policy"] = policy
    return problem(status, exc.code, type(exc).__name__, exc.message, **extra)


def http_problem(exc: StarletteHTTPException) -> JSONResponse:
    """The answer to Starlette's ``HTTPException`` (no route, wrong method, ...)."""
    code = {404: "not_found", 405: "method_not_allowed", 413: "oversized"}.get(
        exc.status_code, "http_error"
    )
    return problem(exc.status_code, code, str(exc.detail))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(VeriteeError)
    async def _veritee(_: Request, exc: VeriteeError) -> JSONResponse:
        return veritee_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": ".".join(str(p) for p in e.get("loc", ())), "msg": str(e.get("msg", ""))}
            for e in exc.errors()[:10]
        ]
        return problem(
            400, "malformed_request", "Malformed request", "the request is not valid", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_problem(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected_problem(exc)


def unexpected_problem(exc: Exception) -> JSONResponse:
    """The answer to any other exception (the server-error handler's)."""
    # Never echo the exception text: it may quote input. The log has the type only.
    log.error("unexpected error: %s", type(exc).__name__)
    return problem(500, "internal", "Internal error")
