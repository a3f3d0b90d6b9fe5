"""TLS settings shared by the service and its clients: TLS 1.2 or 1.3, AEAD cipher suites only.

With OpenSSL's defaults a TLS 1.2 handshake could still settle on a CBC suite
(``ECDHE-ECDSA-AES256-SHA384`` and the like, with their padding-oracle history; issue 12 item
15). :data:`AEAD_CIPHERS` leaves ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2 (TLS 1.3
suites are AEAD by definition and are not affected by the string). ``veritee serve --tls`` uses
it for the service; :func:`client_context` makes the SDK's and the CLI's client contexts; the
SDK's attested channels are TLS 1.3 only.
"""

from __future__ import annotations

import ssl

__all__ = ["AEAD_CIPHERS", "client_context", "harden"]

#: OpenSSL cipher string for TLS 1.2: forward-secret key exchange and AEAD only.
AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"


def harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """TLS 1.2 at least, and only :data:`AEAD_CIPHERS` for TLS 1.2; returns ``ctx``."""
    if ctx.minimum_version < ssl.TLSVersion.TLSv1_2:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(AEAD_CIPHERS)
    return ctx


def client_context(*, cafile: str | None = None, cadata: str | None = None) -> ssl.SSLContext:
    """A verifying client context (system roots, or ``cafile``/``cadata``), hardened."""
    return harden(ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, cadata=cadata))
