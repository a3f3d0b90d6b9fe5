"""Signed audit heads ("anchors"): detect a truncated or rewritten audit log.

The hash chain (:mod:`veritee.service.storage.audit`) shows any change *inside* the log, but
someone who can write the database could drop the newest entries, or rebuild the whole chain
from a point on, and the result would verify. An anchor closes that gap: it is the head of the
log (``seq`` and ``entry_hash``) signed by the domain's token key, kept *outside* the database
(a file, a ticket, a transparency log). Later, :func:`check_anchor` confirms that the log still
holds that entry with that hash: a shorter log is ``audit_truncated``, another hash at that
position is ``audit_rewritten``.

An anchor is a compact JWS (ES256/ES384, ``typ`` ``veritee-audit-head+jwt``) whose payload is
``{"iss", "seq", "entry_hash" (hex), "iat"}``. It holds no secret; it can be published.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.errors import MalformedError, VerificationError

if TYPE_CHECKING:
    from veritee.service.storage import Storage

__all__ = [
    "ANCHOR_TYPE",
    "MAX_ANCHOR_BYTES",
    "Anchor",
    "check_anchor",
    "check_log_against",
    "read_anchor",
    "sign_anchor",
]

ANCHOR_TYPE = "veritee-audit-head+jwt"
MAX_ANCHOR_BYTES = 4096


@dataclass(frozen=True)
class Anchor:
    """A verified anchor: the log had entry ``seq`` with hash ``entry_hash`` at ``signed_at``."""

    issuer: str
    seq: int
    entry_hash: bytes
    signed_at: dt.datetime


def sign_anchor(
    key: ec.EllipticCurvePrivateKey,
    *,
    kid: str,
    issuer: str,
    seq: int,
    entry_hash: bytes,
    now: dt.datetime,
) -> str:
    """The anchor of head ``(seq, entry_hash)``, signed with the domain's token key."""
    alg = "ES256" if key.curve.key_size == 256 else "ES384"
    payload = {
        "iss": issuer,
        "seq": seq,
        "entry_hash": entry_hash.hex(),
        "iat": int(now.timestamp()),
    }
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": ANCHOR_TYPE})


def read_anchor(text: str | bytes, public_key: ec.EllipticCurvePublicKey) -> Anchor:
    """Parse and verify an anchor; MalformedError if it does not parse, VerificationError
    ``anchor_signature`` if it was not signed by this key (another domain, or altered)."""
    if isinstance(text, bytes):
        if len(text) > MAX_ANCHOR_BYTES:
            raise MalformedError(f"anchor is larger than {MAX_ANCHOR_BYTES} bytes", field="anchor")
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedError("anchor is not ASCII text", field="anchor") from None
    token = text.strip()
    if len(token) > MAX_ANCHOR_BYTES:
        raise MalformedError(f"anchor is larger than {MAX_ANCHOR_BYTES} bytes", field="anchor")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise MalformedError("anchor is not a compact JWS", field="anchor") from None
    if header.get("typ") != ANCHOR_TYPE:
        raise MalformedError(f"anchor type is not {ANCHOR_TYPE}", field="anchor.typ")
    try:
        payload: dict[str, Any] = jwt.decode(
            token, public_key, algorithms=["ES256", "ES384"],
            options={"require": ["iss", "iat"], "verify_exp": False, "verify_iat": False},
        )  # fmt: skip
    except jwt.InvalidSignatureError:
        raise VerificationError(
            "anchor signature does not verify with this domain's token key",
            code="anchor_signature",
        ) from None
    except jwt.PyJWTError as e:
        raise MalformedError(f"anchor refused: {type(e).__name__}", field="anchor") from None
    seq, digest = payload.get("seq"), payload.get("entry_hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise MalformedError("anchor seq must be a non-negative integer", field="anchor.seq")
    try:
        entry_hash = bytes.fromhex(digest) if isinstance(digest, str) else b""
    except ValueError:
        entry_hash = b""
    if len(entry_hash) != 32:
        raise MalformedError("anchor entry_hash must be 64 hex digits", field="anchor.entry_hash")
    iat = payload["iat"]
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise MalformedError("anchor iat must be an integer", field="anchor.iat")
    return Anchor(str(payload["iss"]), seq, entry_hash, dt.datetime.fromtimestamp(iat, dt.UTC))


def check_anchor(anchor: Anchor, *, count: int, entry_hash_at: bytes | None) -> None:
    """Hold the log against ``anchor``: ``count`` entries, ``entry_hash_at`` the hash of entry
    ``anchor.seq`` in it (None if absent). Raises VerificationError ``audit_truncated`` or
    ``audit_rewritten``. Entry 0 (an anchor of the empty log) is always present."""
    if anchor.seq == 0:
        return
    if entry_hash_at is None or count < anchor.seq:
        raise VerificationError(
            f"audit log truncated: the anchor signed at {anchor.signed_at.isoformat()} names entry "
            f"{anchor.seq}, the log has {count}",
            code="audit_truncated",
        )
    if not hmac.compare_digest(entry_hash_at, anchor.entry_hash):
        raise VerificationError(
            f"audit log rewritten: entry {anchor.seq} does not have the hash the anchor signed at "
            f"{anchor.signed_at.isoformat()} names",
            code="audit_rewritten",
        )


def check_log_against(storage: Storage, anchors: Sequence[Anchor]) -> None:
    """:func:`check_anchor` for each anchor against the log in ``storage`` (one consistent
    read). Check the chain itself with ``verify_audit_chain`` too: this only looks at the
    anchored positions."""
    with storage.transaction(readonly=True) as tx:
        count, _ = tx.audit_head()
        for anchor in anchors:
            found = tx.audit_entries(after_seq=anchor.seq - 1, limit=1) if anchor.seq else []
            at = found[0].entry_hash if found and found[0].seq == anchor.seq else None
            check_anchor(anchor, count=count, entry_hash_at=at)
