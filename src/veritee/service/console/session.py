"""Console sign-in sessions: a signed, expiring cookie, and a CSRF token bound to it.

Signing in takes the domain's admin credential once (checked like the admin API's bearer
credential: :meth:`veritee.domain.Domain.check_admin`); the browser then holds a cookie
``<body>.<tag>``: ``body`` is base64url JSON ``{"v": 1, "sid", "iat", "exp"}`` and ``tag`` its
HMAC-SHA256 under a key derived from the domain (HKDF of the token key,
:meth:`~veritee.domain.Domain.derive_key`) and from the admin credential's verifier: every
replica accepts the cookie, and a new admin credential (a new ``admin_token.hmac``) ends every
session. The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui``, and ``Secure`` when the
request came over TLS (directly, or as a trusted proxy says); it expires after
:data:`SESSION_LIFETIME`. The admin credential itself is never kept in it.

State-changing requests (only signing out) carry a CSRF token in the form: an HMAC of the
session id under the same key, compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import TypeGuard

from veritee._codec import b64url, b64url_decode
from veritee.domain import Domain
from veritee.errors import MalformedError

__all__ = ["COOKIE_NAME", "SESSION_LIFETIME", "Session", "csrf_ok", "csrf_token", "issue", "read"]

COOKIE_NAME = "veritee_console"
SESSION_LIFETIME = dt.timedelta(hours=8)
MAX_COOKIE = 512
_LABEL = b"veritee-console-session-v1."
_CSRF_LABEL = b"veritee-console-csrf-v1."
#: Clock skew allowed between replicas for a cookie's issue time.
_SKEW = 60


@dataclass(frozen=True)
class Session:
    sid: str
    issued_at: dt.datetime
    expires_at: dt.datetime


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _key(domain: Domain) -> bytes:
    base = domain.derive_key("console session")
    v = domain.admin_verifier
    return hmac.digest(base, b"admin verifier " + v.salt + v.mac, "sha256")


def _tag(domain: Domain, body: str) -> bytes:
    return hmac.digest(_key(domain), _LABEL + body.encode("ascii"), "sha256")


def issue(domain: Domain, now: dt.datetime) -> tuple[str, Session]:
    """A new session and its cookie value."""
    iat = int(now.timestamp())
    exp = iat + int(SESSION_LIFETIME.total_seconds())
    sid = secrets.token_urlsafe(16)
    body = b64url(
        json.dumps({"v": 1, "sid": sid, "iat": iat, "exp": exp}, separators=(",", ":")).encode()
    )
    session = Session(
        sid, dt.datetime.fromtimestamp(iat, dt.UTC), dt.datetime.fromtimestamp(exp, dt.UTC)
    )
    return f"{body}.{b64url(_tag(domain, body))}", session


def read(domain: Domain, value: str | None, now: dt.datetime) -> Session | None:
    """The session of a cookie this domain issued that has not expired; None otherwise
    (absent, oversized, garbled, tampered with, signed by another domain or credential, expired)."""
    if not value or len(value) > MAX_COOKIE or value.count(".") != 1:
        return None
    body, tag = value.split(".")
    try:
        given = b64url_decode(tag, "cookie")
        if not hmac.compare_digest(given, _tag(domain, body)):
            return None
        doc = json.loads(b64url_decode(body, "cookie"))
    except (ValueError, UnicodeError, MalformedError):
        return None
    if not isinstance(doc, dict) or doc.get("v") != 1:
        return None
    sid, iat, exp = doc.get("sid"), doc.get("iat"), doc.get("exp")
    if not isinstance(sid, str) or not _is_int(iat) or not _is_int(exp):
        return None
    t = int(now.timestamp())
    if not (iat - _SKEW <= t < exp) or exp - iat > SESSION_LIFETIME.total_seconds():
        return None
    return Session(
        sid, dt.datetime.fromtimestamp(iat, dt.UTC), dt.datetime.fromtimestamp(exp, dt.UTC)
    )


def csrf_token(domain: Domain, session: Session) -> str:
    """The CSRF token of forms that change something in ``session``."""
    return b64url(hmac.digest(_key(domain), _CSRF_LABEL + session.sid.encode(), "sha256"))


def csrf_ok(domain: Domain, session: Session, given: str | None) -> bool:
    if not given or len(given) > 100:
        return False
    return hmac.compare_digest(given.encode(), csrf_token(domain, session).encode())
