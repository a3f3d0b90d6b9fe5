"""The static error catalogue: the only error text that may cross an untrusted channel.

In staging and production (``Profile.free_form_to_host`` is false) nothing but a catalogue code
and its fixed title reaches stderr, files on the host or error bodies sent to parties other than
the tenant. A free-form message (an exception's text, a formatted log record) never does: those go
into the encrypted log only. In development and testing the free-form text is appended.

Every state is numbered, documented and tied to the layer it comes from (:mod:`.layers`).

=======  ===================================  ======  ==========================
code     title                                status  site
=======  ===================================  ======  ==========================
VT-0000  internal error                       500     runtime/internal
VT-0001  malformed input                      400     runtime/internal
VT-0002  input too large                      413     runtime/internal
VT-0003  verification failed                  403     runtime/internal
VT-0004  collateral unavailable               403     runtime/internal
VT-0005  policy invalid                       400     runtime/internal
VT-0006  nonce invalid                        400     runtime/internal
VT-0007  authentication failed                401     runtime/internal
VT-0008  not found                            404     runtime/internal
VT-0009  storage unavailable                  503     runtime/external
VT-0010  sealed data does not unseal          500     runtime/internal
VT-0011  invalid request                      400     runtime/internal
VT-0100  log store write failed               503     runtime/external
VT-0101  log records buffered                 503     runtime/internal
VT-0102  log buffer full                      503     runtime/internal
VT-0103  log integrity check failed           403     runtime/internal
VT-0104  log tenant key not attested          500     runtime/internal
VT-0105  log has no tenant key                500     runtime/internal
VT-0200  application error                    500     application/internal
VT-0201  application warning                  500     application/internal
VT-0300  workload image not loadable          500     tee-loading/external
VT-0301  platform device unavailable          503     tee-loading/external
VT-0400  platform report request failed       500     tee-execution/internal
VT-0401  platform key derivation failed       500     tee-execution/internal
=======  ===================================  ======  ==========================

An exception picks its state by (1) a ``catalogue_code`` attribute naming a known code, else
(2) its class in the :mod:`veritee.errors` tree, else (3) VT-0000. The status of a veritee
error is :func:`veritee.errors.http_status`, as the service's problem details have it (a nonce
already used is 409); the column above is that status for the class each state comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from veritee.errors import (
    AuthenticationError,
    CollateralError,
    MalformedError,
    NonceError,
    NotFoundError,
    OversizedError,
    PolicyError,
    SealingError,
    StorageError,
    UsageError,
    VerificationError,
    VeriteeError,
    http_status,
)
from veritee.logs.layers import Layer, Side, Site
from veritee.profiles import Profile

__all__ = [
    "CATALOGUE",
    "PROBLEM_TYPE_PREFIX",
    "ErrorState",
    "classify",
    "lookup",
    "problem_for",
    "public_message",
]

PROBLEM_TYPE_PREFIX = "urn:veritee:error:"


@dataclass(frozen=True)
class ErrorState:
    """One numbered, documented error state."""

    number: int
    title: str
    status: int
    site: Site
    description: str

    @property
    def code(self) -> str:
        return f"VT-{self.number:04d}"

    @property
    def type_uri(self) -> str:
        return PROBLEM_TYPE_PREFIX + self.code

    def public_text(self) -> str:
        return f"{self.code} {self.title}"


_RI = Site(Layer.RUNTIME, Side.INTERNAL)
_RE = Site(Layer.RUNTIME, Side.EXTERNAL)
_AI = Site(Layer.APPLICATION, Side.INTERNAL)
_LE = Site(Layer.TEE_LOADING, Side.EXTERNAL)
_XI = Site(Layer.TEE_EXECUTION, Side.INTERNAL)

CATALOGUE: tuple[ErrorState, ...] = (
    ErrorState(0, "internal error", 500, _RI, "An error with no more specific state."),
    ErrorState(1, "malformed input", 400, _RI, "Input bytes or JSON did not parse."),
    ErrorState(2, "input too large", 413, _RI, "Input exceeded the size limit for its kind."),
    ErrorState(3, "verification failed", 403, _RI,
               "Input parsed, but a signature, chain, binding or collateral check failed."),
    ErrorState(4, "collateral unavailable", 403, _RI,
               "Collateral needed for a check is missing, unusable or out of date."),
    ErrorState(5, "policy invalid", 400, _RI, "A policy is malformed or wrongly signed."),
    ErrorState(6, "nonce invalid", 400, _RI, "A nonce is unknown, expired or already used."),
    ErrorState(7, "authentication failed", 401, _RI, "A credential is missing or wrong."),
    ErrorState(8, "not found", 404, _RI, "A named object does not exist."),
    ErrorState(9, "storage unavailable", 503, _RE, "The database failed or went away."),
    ErrorState(10, "sealed data does not unseal", 500, _RI,
               "A sealed blob was made by another measurement or was tampered with."),
    ErrorState(11, "invalid request", 400, _RI, "The API or command line was used wrongly."),
    ErrorState(100, "log store write failed", 503, _RE,
               "The host-side segment store refused a write; records stay buffered."),
    ErrorState(101, "log records buffered", 503, _RI,
               "The control plane is not attached yet; records are held sealed."),
    ErrorState(102, "log buffer full", 503, _RI,
               "The pre-control-plane buffer is full; further records are dropped."),
    ErrorState(103, "log integrity check failed", 403, _RI,
               "A stored log was truncated, rolled back, reordered or tampered with."),
    ErrorState(104, "log tenant key not attested", 500, _RI,
               "The log key is sealed to a tenant key given as an argument, which the host "
               "may have chosen; take it from a released secret (tenant_key_secret)."),
    ErrorState(105, "log has no tenant key", 500, _RI,
               "The encrypted log is sealed to no tenant key: nobody can ever read it."),
    ErrorState(200, "application error", 500, _AI,
               "The application logged an error; details are in the encrypted log only."),
    ErrorState(201, "application warning", 500, _AI,
               "The application logged a warning; details are in the encrypted log only."),
    ErrorState(300, "workload image not loadable", 500, _LE,
               "The launcher could not load or measure the workload image."),
    ErrorState(301, "platform device unavailable", 503, _LE,
               "The TEE guest device or configfs-tsm interface is absent."),
    ErrorState(400, "platform report request failed", 500, _XI,
               "The platform refused or failed a report request."),
    ErrorState(401, "platform key derivation failed", 500, _XI,
               "The platform refused or failed a sealing-key request."),
)  # fmt: skip

_BY_CODE = {s.code: s for s in CATALOGUE}

# Most specific classes first: the first isinstance match wins.
_BY_CLASS: tuple[tuple[type[BaseException], str], ...] = (
    (OversizedError, "VT-0002"),
    (MalformedError, "VT-0001"),
    (CollateralError, "VT-0004"),
    (VerificationError, "VT-0003"),
    (PolicyError, "VT-0005"),
    (NonceError, "VT-0006"),
    (AuthenticationError, "VT-0007"),
    (NotFoundError, "VT-0008"),
    (StorageError, "VT-0009"),
    (SealingError, "VT-0010"),
    (UsageError, "VT-0011"),
)


def lookup(code: str) -> ErrorState:
    """The state for ``code`` (``VT-nnnn``); raises ``KeyError`` for an unknown code."""
    return _BY_CODE[code]


def classify(exc: BaseException) -> ErrorState:
    """The catalogue state of an exception (see the module docstring for the order)."""
    named = getattr(exc, "catalogue_code", None)
    if isinstance(named, str) and named in _BY_CODE:
        return _BY_CODE[named]
    for cls, code in _BY_CLASS:
        if isinstance(exc, cls):
            return _BY_CODE[code]
    return _BY_CODE["VT-0000"]


def public_message(exc: BaseException, profile: Profile) -> str:
    """Text about ``exc`` that may go to the host: code and title, plus the message in dev/test."""
    state = classify(exc)
    if profile.free_form_to_host:
        return f"{state.public_text()}: {exc}"
    return state.public_text()


def problem_for(exc: BaseException, profile: Profile) -> dict[str, Any]:
    """An RFC 9457 problem-details body for ``exc`` that is safe for the host in ``profile``.

    Fields ``type``, ``title``, ``status`` and ``code`` come from the catalogue only; ``detail``
    (the exception's free-form text) is present only when the profile allows free-form text.
    """
    state = classify(exc)
    body: dict[str, Any] = {
        "type": state.type_uri,
        "title": state.title,
        "status": http_status(exc) if isinstance(exc, VeriteeError) else state.status,
        "code": state.code,
    }
    if profile.free_form_to_host:
        body["detail"] = str(exc)
    return body
