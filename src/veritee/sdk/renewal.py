"""Renewing the admission certificate in the background, before it expires.

A workload that serves attested channels presents its admission certificate to every peer; once
it expires, every handshake fails. :class:`Renewal` (started by :meth:`veritee.Trust.serve`, or
by :meth:`veritee.Trust.renew_in_background`) renews it at two thirds of what was left of its
validity when this process got it (:func:`renewal_due`): a certificate valid for one hour is
renewed after 40 minutes. The renewed certificate reaches the running servers through
:meth:`veritee.Trust.certify` (new connections get it; open ones keep theirs).

When the renewal fails (the service is down, or refuses), it is retried with exponential backoff
(:data:`FIRST_RETRY` doubling up to :data:`MAX_RETRY`), for as long as the workload runs; each
failure is logged as ``certificate_renewal_failed`` with the error's code and the URL, and kept
in :attr:`Renewal.failures` (the last :data:`KEPT_FAILURES`), with the error that names the URL
and the cause.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from veritee.errors import VeriteeError

__all__ = ["FIRST_RETRY", "KEPT_FAILURES", "MAX_RETRY", "Renewal", "RenewalFailure", "renewal_due"]

_log = logging.getLogger("veritee.sdk")

#: Seconds before the first retry of a failed renewal; doubled after each failure.
FIRST_RETRY = 1.0
#: The longest wait between two retries, in seconds.
MAX_RETRY = 60.0
#: How many failures :attr:`Renewal.failures` keeps.
KEPT_FAILURES = 100


def renewal_due(cert: x509.Certificate, obtained: dt.datetime) -> dt.datetime:
    """When to renew ``cert``, got (or found in the key store) at ``obtained``: two thirds of
    the way from ``obtained`` to its expiry; at once when it has expired already."""
    expiry = cert.not_valid_after_utc
    if obtained >= expiry:
        return obtained
    return obtained + (expiry - obtained) * 2 / 3


@dataclass(frozen=True)
class RenewalFailure:
    """One failed renewal: when, the error (its message names the URL and the cause), and how
    long the renewal waits before the next attempt."""

    at: dt.datetime
    error: VeriteeError
    retry_in: float


class Renewal:
    """A daemon thread that keeps the admission certificate valid (module docstring).

    ``certify`` renews and returns the new certificate (:meth:`veritee.Trust.certify` with
    ``force=True``); ``current`` is the certificate in use now; ``url`` names the service in the
    log.
    """

    def __init__(
        self,
        certify: Callable[[], x509.Certificate],
        current: x509.Certificate,
        *,
        url: str,
        first_retry: float = FIRST_RETRY,
        max_retry: float = MAX_RETRY,
    ) -> None:
        self._certify = certify
        self._cert = current
        self._obtained = dt.datetime.now(dt.UTC)
        self._url = url
        self._first, self._max = first_retry, max_retry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Renewals that succeeded.
        self.renewed = 0
        #: Failed attempts since the last success.
        self.attempts = 0
        #: The last failures, oldest first.
        self.failures: deque[RenewalFailure] = deque(maxlen=KEPT_FAILURES)

    @property
    def certificate(self) -> x509.Certificate:
        """The certificate the renewal last got (or started with)."""
        return self._cert

    @property
    def next_due(self) -> dt.datetime:
        """When the current certificate is due for renewal (:func:`renewal_due`)."""
        return renewal_due(self._cert, self._obtained)

    def start(self) -> Renewal:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="veritee-renewal", daemon=True)
            self._thread.start()
        return self

    def seen(self, cert: x509.Certificate) -> None:
        """A certificate got elsewhere (a :meth:`veritee.Trust.certify` call): schedule from it."""
        if cert.serial_number != self._cert.serial_number:
            self._cert, self._obtained = cert, dt.datetime.now(dt.UTC)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = (self.next_due - dt.datetime.now(dt.UTC)).total_seconds()
            if wait > 0:
                # Wake at least every 60 s: a certify() elsewhere may have moved the date.
                self._stop.wait(min(wait, 60.0))
                continue
            self._attempt()

    def _attempt(self) -> None:
        try:
            cert = self._certify()
        except VeriteeError as e:
            self._failed(e)
            return
        except Exception as e:
            self._failed(
                VeriteeError(f"{type(e).__name__}: {e}", code="certificate_renewal_failed")
            )
            return
        self.seen(cert)
        self.renewed += 1
        self.attempts = 0

    def _failed(self, error: VeriteeError) -> None:
        self.attempts += 1
        delay = min(self._first * 2 ** (self.attempts - 1), self._max)
        now = dt.datetime.now(dt.UTC)
        self.failures.append(RenewalFailure(now, error, delay))
        expired = now >= self._cert.not_valid_after_utc
        _log.warning(
            "certificate_renewal_failed: %s (%s), attempt %d, retry in %.1f s%s",
            error.code,
            self._url,
            self.attempts,
            delay,
            "; the admission certificate has EXPIRED: peers refuse this workload"
            if expired
            else "",
        )
        self._stop.wait(delay)
