"""The console's session cookie behind `veritee serve` (issue 16): ``Secure`` when a trusted
proxy (``--trusted-proxy``) says the client came over https, and only then; a cookie made by
another process holding the domain (another worker or replica) opens the console too: the key
is derived from the domain, not made at start."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
from tests.fakes.service import run_cli, serving

from veritee.domain import Domain
from veritee.service.console import session


def _sign_in(url: str, token: str, **headers: str) -> httpx.Response:
    return httpx.post(
        url + "/ui/login", data={"token": token}, headers=headers, follow_redirects=False
    )


def _secure(r: httpx.Response) -> bool:
    return "secure" in [a.strip().lower() for a in r.headers["set-cookie"].split(";")]


def test_secure_when_a_trusted_proxy_says_https_and_any_replicas_cookie_opens_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    token = (data / "admin_token").read_text().strip()
    with serving(data, "--trusted-proxy", "127.0.0.0/8") as url:
        r = _sign_in(url, token, **{"X-Forwarded-Proto": "https"})
        assert r.status_code == 303 and _secure(r)
        r = _sign_in(url, token)
        assert r.status_code == 303 and not _secure(r)
        assert _sign_in(url, "wrong", **{"X-Forwarded-Proto": "https"}).status_code == 401
        elsewhere, _ = session.issue(Domain.open(data), dt.datetime.now(dt.UTC))
        page = httpx.get(url + "/ui/audit", headers={"Cookie": f"{session.COOKIE_NAME}={elsewhere}"},
                         follow_redirects=False)  # fmt: skip
        assert page.status_code == 200 and "Audit chain" in page.text
        assert (
            httpx.get(url + "/ui/audit", follow_redirects=False).headers["location"] == "/ui/login"
        )
