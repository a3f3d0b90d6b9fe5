"""Admin authentication: a bearer credential created by `veritee init`."""

from __future__ import annotations

from fastapi import Request

from veritee.errors import AuthenticationError

__all__ = ["require_admin"]


def require_admin(request: Request) -> str:
    """FastAPI dependency: the caller must present the domain's admin bearer token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "admin credential required (Authorization: Bearer ...)", code="admin_required"
        )
    ctx = request.app.state.ctx
    if not ctx.domain.check_admin(token.strip()):
        raise AuthenticationError("admin credential is not valid", code="admin_invalid")
    return "admin"
