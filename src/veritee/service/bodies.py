"""JSON request bodies read with veritee's bounded loader (:mod:`veritee._json`).

FastAPI parses a JSON body with ``json.loads``: a body nested thousands of levels deep, or an
integer of thousands of digits, then fails inside the parser (``RecursionError``,
``ValueError``) and was a 400 without a code, or a 500 where a route parsed the body itself
(issue 12 item 10). Routes whose routers use :class:`JsonRoute` get their body parsed by
:func:`veritee._json.loads` first: a body it refuses is a 400 problem with its code
(``json_too_deep``, ``integer_too_long``, ``malformed``), and FastAPI validates the parsed
document it leaves on the request (Starlette's ``Request.json`` cache), so nothing is parsed twice.
Routes that read the raw body themselves (KBS, signed policies) call the same loader.
"""

from __future__ import annotations

import email.message
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from veritee import _json

__all__ = ["JsonRoute", "is_json"]


@functools.lru_cache(maxsize=64)  # clients send a few content types: parsed once each
def is_json(content_type: str | None) -> bool:
    """What FastAPI reads as JSON: ``application/json`` or ``application/*+json`` (a body without
    a content type is not parsed: FastAPI's strict content type)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class JsonRoute(APIRoute):
    """An APIRoute whose JSON body (if it takes one) is parsed by the bounded loader."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def bounded(request: Request) -> Response:
            body = await request.body()
            if body and is_json(request.headers.get("content-type")):
                # MalformedError -> 400 problem (veritee.service.problems); the size is bounded
                # before (BodyLimit), so the limit here is the body itself.
                request._json = _json.loads(body, what="request body", limit=len(body))
            return await handler(request)

        return bounded
