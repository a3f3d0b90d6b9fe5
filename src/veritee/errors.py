"""The one error tree of veritee.

::

    VeriteeError
    ├── MalformedError          input bytes/JSON do not parse (names the field or offset)
    │   └── OversizedError      input larger than the limit for its kind
    ├── VerificationError       input parsed, but a check failed (signature, chain, collateral, binding)
    │   └── CollateralError     collateral needed for a check is missing, unusable or out of date
    ├── PolicyError             a policy is malformed, unsigned or signed by the wrong key
    ├── NonceError              a nonce is unknown, expired or already used
    ├── AuthenticationError     an admin or peer credential is missing or wrong
    ├── NotFoundError           a named object (secret, policy, certificate) does not exist
    ├── StorageError            the database failed or went away
    ├── SealingError            a sealed blob does not unseal (other measurement, tampered)
    ├── PlatformError           the TEE device or TPM is absent, refuses or fails (attester side)
    └── UsageError              the API or command line was used wrongly

Every error carries a short machine-readable ``code`` (snake_case) besides its message. Its HTTP
status is :func:`http_status`, the one table the service's problem details (RFC 9457,
:mod:`veritee.service.problems`) and the static catalogue of untrusted channels
(:mod:`veritee.logs.catalogue`) both use; the command line maps the tree to exit codes in one
place (:mod:`veritee.cli.exits`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "CollateralError",
    "MalformedError",
    "NonceError",
    "NotFoundError",
    "OversizedError",
    "PlatformError",
    "PolicyError",
    "SealingError",
    "StorageError",
    "UsageError",
    "VerificationError",
    "VeriteeError",
    "http_status",
]


class VeriteeError(Exception):
    """Base of every error veritee raises on purpose."""

    default_code = "error"
    #: The decision's reasons a refusal carries (``{"code", "message"}`` each) into the
    #: service's problem details and back to the SDK; None when it carries none.
    reasons: list[dict[str, Any]] | None = None
    #: The appraisal policy that came closest to admitting refused evidence, where one did.
    policy: str | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def __str__(self) -> str:
        return self.message


class MalformedError(VeriteeError):
    """Input does not parse. ``field`` / ``offset`` say where, when known."""

    default_code = "malformed"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        offset: int | None = None,
    ) -> None:
        where = []
        if field is not None:
            where.append(f"field {field}")
        if offset is not None:
            where.append(f"offset {offset}")
        full = f"{message} ({', '.join(where)})" if where else message
        super().__init__(full, code=code)
        self.field = field
        self.offset = offset


class OversizedError(MalformedError):
    """Input larger than the limit for its kind."""

    default_code = "oversized"


class VerificationError(VeriteeError):
    """A check on well-formed input failed.

    A verifier runs its cheap checks (validity windows, identities, sizes) before any signature
    work and refuses on them without the costly checks (a refusal must never cost more than an
    acceptance). Such an error lists every cheap check that failed in ``refusals`` (its own
    ``code``/``message`` first, as ``(code, message)`` pairs) and names the costly checks it did
    not run in ``not_reached`` (empty when every check ran). (``reasons``, where set, is another
    thing: the decision's reasons a service refusal carries into its problem details.)
    """

    default_code = "verification_failed"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        refusals: tuple[tuple[str, str], ...] = (),
        not_reached: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, code=code)
        self.refusals: tuple[tuple[str, str], ...] = refusals or ((self.code, message),)
        self.not_reached: tuple[str, ...] = not_reached


class CollateralError(VerificationError):
    """Collateral needed for a check is missing, unusable or out of date."""

    default_code = "collateral"


class PolicyError(VeriteeError):
    """A policy is malformed, unsigned or signed by the wrong key."""

    default_code = "policy_invalid"


class NonceError(VeriteeError):
    """A nonce is unknown, expired or already used."""

    default_code = "nonce_invalid"


class AuthenticationError(VeriteeError):
    """An admin or peer credential is missing or wrong."""

    default_code = "unauthenticated"


class NotFoundError(VeriteeError):
    """A named object (secret, policy, certificate) does not exist."""

    default_code = "not_found"


class StorageError(VeriteeError):
    """The database failed or went away."""

    default_code = "storage_unavailable"


class SealingError(VeriteeError):
    """A sealed blob does not unseal (other measurement, tampered)."""

    default_code = "unseal_failed"


class PlatformError(VeriteeError):
    """The platform interface (``/dev/sev-guest``, configfs-tsm, ``/dev/nsm``, a TPM) is absent,
    not accessible, or refused the request; ``code`` says which (``platform_absent``,
    ``platform_permission_denied``, ``platform_busy``, ``platform_refused``, ...)."""

    default_code = "platform_failed"


class UsageError(VeriteeError):
    """The API or command line was used wrongly."""

    default_code = "usage"


def http_status(error: BaseException) -> int:
    """The HTTP status of an error: 413 oversized, 400 malformed / usage / policy / nonce (409
    for a nonce already used), 401, 404, 403 a failed check, 503 storage, else 500."""
    if isinstance(error, OversizedError):
        return 413
    if isinstance(error, MalformedError | UsageError | PolicyError):
        return 400
    if isinstance(error, NonceError):
        return 409 if error.code == "nonce_reused" else 400
    if isinstance(error, AuthenticationError):
        return 401
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, VerificationError):
        return 403
    if isinstance(error, StorageError):
        return 503
    return 500
