"""The SDK's calls to the Certifier Service: one POST helper and one translation of its answers.

Every failure names the URL it was sent to: an unreachable service is
:class:`~veritee.errors.StorageError` ``service_unreachable`` with the URL and the cause
(``ConnectError: [Errno 111] Connection refused``); an RFC 9457 problem answer becomes the
matching veritee error (:func:`error_from_problem`), a 5xx one with the URL appended.
"""

from __future__ import annotations

from typing import Any

import httpx

from veritee.errors import (
    AuthenticationError,
    MalformedError,
    NonceError,
    NotFoundError,
    StorageError,
    VerificationError,
    VeriteeError,
)

__all__ = ["error_from_problem", "explain_unreachable", "post_json", "unreachable"]


def _where(request: httpx.Request | None) -> str:
    return f"{request.method} {request.url}" if request is not None else "(unknown URL)"


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def explain_unreachable(exc: httpx.HTTPError, url: str, ca: str | None = None) -> tuple[str, str]:
    """(reason code, message) for a request to ``url`` that got no HTTP answer, pointing the
    right way: a server certificate that did not verify against ``ca``; https:// to a service
    serving plain HTTP, or http:// to one serving HTTPS (``veritee serve --tls``); nothing
    listening. Otherwise the exception's type and text."""
    import ssl

    chain = _chain(exc)
    cert_error = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    if cert_error is not None:
        against = f"CA {ca}" if ca else "the system's CAs"
        why = getattr(cert_error, "verify_message", None) or str(cert_error)
        return "tls_untrusted", (
            f"the service's TLS certificate did not verify against {against} ({why}): "
            "pass --ca with the domain's CA certificate (<data>/domain_ca.pem)"
        )
    tls_error = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    if (
        tls_error is not None
        and url.startswith("https://")
        and "WRONG_VERSION_NUMBER" in str(tls_error)
    ):
        plain = "http://" + url.removeprefix("https://")
        return "tls_mismatch", (f"the service at {url} does not speak TLS (it was started without --tls): "
                                f"use --url {plain}")  # fmt: skip
    if url.startswith("http://") and isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        secure = "https://" + url.removeprefix("http://")
        return "tls_mismatch", (f"the service at {url} closed the connection without an answer "
                                f"({type(exc).__name__}): if it runs with --tls, use --url {secure}")  # fmt: skip
    cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "service_unreachable", (f"cannot reach the service at {url} ({cause}): is `veritee serve` "
                                       "running there? (`veritee serve --tls` serves https://)")  # fmt: skip
    return "service_unreachable", f"cannot reach the service at {url}: {cause}"


def unreachable(
    exc: httpx.HTTPError, what: str = "the Certifier Service", ca: str | None = None
) -> StorageError:
    """:class:`StorageError` ``service_unreachable`` naming the request's URL and the cause
    (:func:`explain_unreachable`'s diagnosis where it has one: TLS trust, scheme)."""
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # an error raised outside a request
        request = None
    cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if request is not None:
        code, message = explain_unreachable(exc, str(request.url), ca)
        if code != "service_unreachable":
            return StorageError(f"{_where(request)}: {message}", code=code)
    return StorageError(
        f"cannot reach {what} at {_where(request)}: {cause}", code="service_unreachable"
    )


def error_from_problem(response: httpx.Response) -> VeriteeError:
    """Turn the service's RFC 9457 problem response into the matching veritee error."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or "http_error")
    message = str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
    raw_reasons = body.get("reasons", [])
    reasons = (
        [r for r in raw_reasons if isinstance(r, dict)] if isinstance(raw_reasons, list) else []
    )
    if reasons:
        message = _with_reasons(message, reasons)
    status = response.status_code
    err: VeriteeError
    if status == 401:
        err = AuthenticationError(message, code=code)
    elif status == 404:
        err = NotFoundError(message, code=code)
    elif status == 409 or code.startswith("nonce"):
        err = NonceError(message, code=code)
    elif status in (400, 413):
        err = MalformedError(message, code=code)
    elif status == 403:
        err = VerificationError(message, code=code)
    elif status >= 500:
        err = StorageError(f"{message} (HTTP {status} from {_where(response.request)})", code=code)
    else:
        err = VeriteeError(message, code=code)
    err.reasons = reasons
    policy = body.get("policy")  # the appraisal policy that came closest to admitting it
    err.policy = policy if isinstance(policy, str) else None
    return err


def _with_reasons(detail: str, reasons: list[dict[str, Any]]) -> str:
    """``detail``'s head (the service joins the reasons' messages after ``": "``) and every
    reason, one a line, with its code and whole message."""
    head = detail.split(": ", 1)[0] if ": " in detail else detail
    lines = [f"  - {r.get('code', '?')}: {r.get('message', '')}" for r in reasons]
    return f"{head} ({len(reasons)} reason{'s' if len(reasons) != 1 else ''}):\n" + "\n".join(lines)


def post_json(
    client: httpx.Client,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    what: str = "the Certifier Service",
) -> dict[str, Any]:
    """POST ``body`` as JSON; the answer's JSON object, or the veritee error it stands for."""
    try:
        r = client.post(path, json=body or {})
    except httpx.HTTPError as e:
        raise unreachable(e, what) from None
    if r.status_code != 200:
        raise error_from_problem(r)
    try:
        out = r.json()
    except ValueError:
        out = None
    if not isinstance(out, dict):
        raise MalformedError(
            f"the answer of {_where(r.request)} is not a JSON object", code="malformed"
        )
    return out
