"""What a staging or production workload lets its host see: catalogue codes, nothing else.

:class:`veritee.Trust` calls :func:`contain` as it starts in a profile without free-form text to
the host (:attr:`veritee.profiles.Profile.free_form_to_host`). From then on:

* the root logger writes into the encrypted log, and with it everything that propagates there:
  the SDK's own loggers (``veritee.*``: addresses, ports and codes of refused peers, key store
  notes, exceptions of application callbacks), the application's loggers, and Python warnings
  (through ``py.warnings``);
* an uncaught exception, in the main thread or any other, goes into the encrypted log with its
  traceback; stderr gets its catalogue code only (``veritee: VT-0000 internal error``);
* the host's stderr is the notice stream: records at WARNING and above show their catalogue
  code there, never their text, and the log's own states (VT-0104, VT-0105) appear.

What it cannot reach: handlers the application adds itself to a host-visible stream, and
``print``. Do not add them in staging or production.

The tenant key, whose holder reads the log, should come from somewhere the host cannot
substitute: a secret the domain's key broker releases only to this attested workload (its
envelope signed by the broker), read with :func:`parse_tenant_key`. A key passed as an argument
is what the launcher or host put there, and is announced as VT-0104.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from veritee.errors import UsageError

if TYPE_CHECKING:
    from veritee.logs import WorkloadLog
    from veritee.logs.tenant import TenantPublicKey

__all__ = ["CONTAINED_LOGGERS", "HOST_STDERR", "Containment", "contain", "parse_tenant_key"]

#: The loggers routed into the encrypted log: the root logger, which the SDK's own (``veritee.*``)
#: and the application's propagate to; their propagation is left as it is (``caplog`` and any
#: handler the application puts on the root see them too).
CONTAINED_LOGGERS = ("",)


class _HostStderr(io.TextIOBase):
    """The process's stderr as it is when written to (``sys.stderr`` may be replaced later)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


#: The notice stream of a workload's log: whatever ``sys.stderr`` is at the time of writing.
HOST_STDERR = cast(TextIO, _HostStderr())  # a write/flush stream is all the log needs


class Containment:
    """What :func:`contain` changed, to put back with :meth:`release` (``Trust.close`` does)."""

    def __init__(self) -> None:
        self._loggers = [(lg, lg.propagate, lg.level)
                         for lg in (logging.getLogger(n) for n in CONTAINED_LOGGERS)]  # fmt: skip
        self._hooks = (sys.excepthook, threading.excepthook)
        self._warnings = logging._warnings_showwarning is None  # type: ignore[attr-defined]

    def release(self) -> None:
        for lg, propagate, level in self._loggers:
            lg.propagate, lg.level = propagate, level
        sys.excepthook, threading.excepthook = self._hooks
        if self._warnings:
            logging.captureWarnings(False)


def contain(log: WorkloadLog) -> Containment:
    """Route the SDK's loggers, the root logger, warnings and uncaught exceptions into ``log``
    (module docstring). ``log`` must write its notices to the host's stderr. Closing ``log``
    removes its handler; :meth:`Containment.release` puts back the rest."""
    before = Containment()
    for name in CONTAINED_LOGGERS:
        log.logger(name)
    logging.captureWarnings(True)
    log.install_excepthook()
    return before


def parse_tenant_key(value: Any) -> TenantPublicKey:
    """A tenant public key object, or its PEM / DER SubjectPublicKeyInfo (X25519, P-256, P-384)."""
    key: object = value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        try:
            key = (serialization.load_pem_public_key(value) if b"-----BEGIN" in value
                   else serialization.load_der_public_key(value))  # fmt: skip
        except (ValueError, TypeError):
            raise UsageError("the tenant key is not a PEM or DER public key",
                             code="tenant_key_type") from None  # fmt: skip
    if isinstance(key, x25519.X25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1 | ec.SECP384R1
    ):
        return key
    raise UsageError("the tenant key must be an X25519, P-256 or P-384 public key",
                     code="tenant_key_type")  # fmt: skip
