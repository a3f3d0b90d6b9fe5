"""The web console over HTTP, without a browser (issue 16): sign-in, the session cookie (its
attributes, tampering, expiry, another domain's), CSRF on sign-out, every page, escaping of
what the audit log holds, and that no secret value, key or token reaches a page.
On SQLite and PostgreSQL (the ``env`` fixture)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.service.conftest import OTHER, Env

from veritee.anchors import sign_anchor
from veritee.domain import AdminVerifier, Domain
from veritee.service.console import session

PAGES = [
    "/ui/", "/ui/decisions", "/ui/decisions?range=7d", "/ui/decisions?range=30d",
    "/ui/decisions/latest", "/ui/decisions/latest?outcome=refused", "/ui/audit", "/ui/policies",
    "/ui/secrets", "/ui/certificates", "/ui/collateral",
]  # fmt: skip
SECRET_VALUE = b"console-must-never-show-this"


def sign_in(env: Env) -> str:
    r = env.client.post(
        "/ui/login", data={"token": env.domain.admin_token()}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/", r.text
    return str(r.cookies[session.COOKIE_NAME])


def get(env: Env, path: str, cookie: str | None) -> httpx.Response:
    env.client.cookies.clear()
    headers = {"Cookie": f"{session.COOKIE_NAME}={cookie}"} if cookie is not None else {}
    return env.client.get(path, headers=headers, follow_redirects=False)


def test_without_a_session_every_page_sends_to_the_sign_in_page(env: Env) -> None:
    for path in [*PAGES, "/ui/policies/diff?name=test&a=0&b=1"]:
        r = get(env, path, None)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login", path
        assert "<table" not in r.text
    assert get(env, "/ui", None).headers["location"] == "/ui/"
    r = get(env, "/ui/login", None)
    assert r.status_code == 200 and 'name="token"' in r.text and 'type="password"' in r.text
    assert (
        "default-src 'none'" in r.headers["content-security-policy"] and 'name="csrf"' not in r.text
    )
    # signing out without a session is refused, not a redirect that looks like success
    assert (
        env.client.post("/ui/logout", data={"csrf": "x"}, follow_redirects=False).status_code == 401
    )
    # the admin API's bearer credential does not open the console, nor the console's cookie the API
    r = env.client.get("/ui/", headers=env.admin, follow_redirects=False)
    assert r.status_code == 303


def test_sign_in_refuses_wrong_credentials_and_sets_a_strict_cookie(env: Env) -> None:
    token = env.domain.admin_token()
    for wrong in ["", "nope", token + "x", token[:-1], " " * 10, "t\u00e9st", "A" * 3000]:
        r = env.client.post("/ui/login", data={"token": wrong}, follow_redirects=False)
        assert r.status_code == 401, wrong
        assert "set-cookie" not in r.headers and "not this domain" in r.text
        assert wrong.strip() == "" or wrong not in r.text  # never echoed
    r = env.client.post("/ui/login", content=b"token=" + b"A" * 5000,
                        headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 413 and "set-cookie" not in r.headers
    r = env.client.post("/ui/login", content=b"\xff\xfe token", follow_redirects=False)
    assert r.status_code == 401
    r = env.client.post("/ui/login", content=("&".join(f"a{i}=1" for i in range(20)) + f"&token={token}").encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 401  # more fields than a sign-in form has: not a sign-in
    # a form posted from another site is refused even with the right credential
    r = env.client.post("/ui/login", data={"token": token}, headers={"Origin": "https://evil.example"},
                        follow_redirects=False)  # fmt: skip
    assert r.status_code == 403 and "set-cookie" not in r.headers
    for foreign in ({"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://testserver.evil.example"}):  # fmt: skip
        r = env.client.post(
            "/ui/login", data={"token": token}, headers=foreign, follow_redirects=False
        )
        assert r.status_code == 403, foreign
    r = env.client.post("/ui/login", data={"token": token}, follow_redirects=False,
                        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})  # fmt: skip
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= attrs and "secure" not in attrs
    assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower()
    assert f"max-age={int(session.SESSION_LIFETIME.total_seconds())}" in cookie.lower()
    assert token not in cookie and hashlib.sha256(token.encode()).hexdigest() not in cookie


def test_the_cookie_is_secure_over_https(env: Env) -> None:
    with TestClient(env.client.app, base_url="https://testserver") as tls:
        r = tls.post("/ui/login", data={"token": env.domain.admin_token()}, follow_redirects=False)
        assert r.status_code == 303
        assert "secure" in [a.strip().lower() for a in r.headers["set-cookie"].split(";")]


def test_every_page_renders_for_a_signed_in_operator(env: Env) -> None:
    cookie = sign_in(env)
    env.install_policy()
    for path in PAGES:
        r = get(env, path, cookie)
        assert r.status_code == 200, (path, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert (
            "default-src 'none'" in csp
            and "script-src" not in csp
            and "frame-ancestors 'none'" in csp
        )
        assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
        assert "<script" not in r.text.lower() and "http://" not in r.text.replace(
            'xmlns="http://www.w3.org/2000/svg"', ""
        )
        assert 'name="csrf"' in r.text  # the sign-out form
    health = get(env, "/ui/", cookie).text
    assert "ready" in health and "test v1" in health
    # a bad query is a 400 problem or the default view, never an error page
    assert get(env, "/ui/decisions?range=<b>", cookie).status_code == 200
    assert get(env, "/ui/decisions/latest?outcome=%00", cookie).status_code == 200
    assert get(env, "/ui/policies/diff?name=test&a=-1&b=1", cookie).status_code == 400
    assert get(env, "/ui/policies/diff?name=test&a=0&b=99", cookie).status_code == 200
    assert get(env, "/ui/nope", cookie).status_code == 404


def _tampered(value: str) -> list[str]:
    body, tag = value.split(".")
    doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    longer = (
        base64.urlsafe_b64encode(json.dumps({**doc, "exp": doc["exp"] + 3600}).encode())
        .rstrip(b"=")
        .decode()
    )
    flip = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
    return [
        f"{longer}.{tag}",  # a longer session, old tag
        f"{body}.{flip}",  # tag changed
        f"{body}.",  # no tag
        body,  # no separator
        f"{body}.{tag}.x",
        f"{body[:-4]}.{tag}",  # truncated
        value + "A" * 600,  # oversized
        "",
        "%%%.###",
        f"{body}.{base64.urlsafe_b64encode(b'x' * 32).decode()}",
    ]


def test_tampered_forged_expired_and_foreign_cookies_are_refused(env: Env, tmp_path: Path) -> None:
    cookie = sign_in(env)
    assert get(env, "/ui/audit", cookie).status_code == 200
    for bad in _tampered(cookie):
        r = get(env, "/ui/audit", bad)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login", bad
    # another domain's cookie
    other = Domain.create(tmp_path / "other", now=dt.datetime.now(dt.UTC))
    foreign, _ = session.issue(other, dt.datetime.now(dt.UTC))
    assert get(env, "/ui/audit", foreign).status_code == 303
    # expired, and issued in the future
    now = dt.datetime.now(dt.UTC)
    old, _ = session.issue(env.domain, now - session.SESSION_LIFETIME - dt.timedelta(seconds=5))
    assert get(env, "/ui/audit", old).status_code == 303
    future, _ = session.issue(env.domain, now + dt.timedelta(hours=1))
    assert get(env, "/ui/audit", future).status_code == 303
    fresh, _ = session.issue(env.domain, now)
    assert get(env, "/ui/audit", fresh).status_code == 200


def _signed(domain: Domain, doc: object) -> str:
    """A cookie body the domain's key signs (to reach the payload checks behind the tag)."""
    body = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    tag = hmac.digest(session._key(domain), session._LABEL + body.encode(), "sha256")
    return f"{body}.{base64.urlsafe_b64encode(tag).rstrip(b'=').decode()}"


def test_validly_signed_cookies_with_bad_payloads_are_refused(env: Env) -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    good = {"v": 1, "sid": "s", "iat": now, "exp": now + 60}
    assert session.read(env.domain, _signed(env.domain, good), dt.datetime.now(dt.UTC)) is not None
    for doc in [
        [1, 2], "text", {**good, "v": 2}, {**good, "sid": 5}, {**good, "iat": "1"}, {**good, "exp": True},
        {**good, "exp": now + 10 * 86400},  # longer than any session the service issues
        {k: v for k, v in good.items() if k != "exp"}, {**good, "exp": now - 1},
    ]:  # fmt: skip
        assert (
            session.read(env.domain, _signed(env.domain, doc), dt.datetime.now(dt.UTC)) is None
        ), doc
    for garbled in ["\u00e9.\u00e9", "\u00e9" * 10 + ".AAAA", "a.\u2603", "\x00.\x00"]:
        assert session.read(env.domain, garbled, dt.datetime.now(dt.UTC)) is None
    not_json = _signed(env.domain, "x").split(".")
    raw = base64.urlsafe_b64encode(b"\xff{").rstrip(b"=").decode()
    tag = hmac.digest(session._key(env.domain), session._LABEL + raw.encode(), "sha256")
    assert (
        session.read(
            env.domain, f"{raw}.{base64.urlsafe_b64encode(tag).decode()}", dt.datetime.now(dt.UTC)
        )
        is None
    )
    assert not_json


def test_a_new_admin_credential_ends_every_session(env: Env) -> None:
    cookie = sign_in(env)
    assert get(env, "/ui/", cookie).status_code == 200
    # as a service opening a domain whose admin_token.hmac was replaced
    env.client.app.state.ctx.domain.admin_verifier = AdminVerifier.make("a-new-credential")  # type: ignore[attr-defined]
    assert get(env, "/ui/", cookie).status_code == 303
    r = env.client.post("/ui/login", data={"token": "a-new-credential"}, follow_redirects=False)
    assert r.status_code == 303


def test_sign_out_needs_the_sessions_csrf_token(env: Env) -> None:
    cookie = sign_in(env)
    page = get(env, "/ui/", cookie).text
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    jar = {"Cookie": f"{session.COOKIE_NAME}={cookie}"}
    for bad in [
        {},
        {"csrf": ""},
        {"csrf": "x" * 43},
        {"csrf": token.group(1)[:-1]},
        {"csrf": "y" * 500},
    ]:
        r = env.client.post("/ui/logout", data=bad, headers=jar, follow_redirects=False)
        assert r.status_code == 403, bad
    other, _ = session.issue(env.domain, dt.datetime.now(dt.UTC))  # another session's token
    r = env.client.post(
        "/ui/logout",
        data={
            "csrf": session.csrf_token(
                env.domain, session.read(env.domain, other, dt.datetime.now(dt.UTC))
            )
        },
        headers=jar,
        follow_redirects=False,
    )  # type: ignore[arg-type]
    assert r.status_code == 403
    r = env.client.post("/ui/logout", data={"csrf": token.group(1)},
                        headers={**jar, "Origin": "https://evil.example"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 403
    r = env.client.post(
        "/ui/logout", data={"csrf": token.group(1)}, headers=jar, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert (
        'veritee_console=""' in r.headers["set-cookie"]
        and "max-age=0" in r.headers["set-cookie"].lower()
    )


def _inject(env: Env, *, reason: str, claim: str, subject: str) -> None:
    with env.client.app.state.ctx.storage.transaction() as tx:  # type: ignore[attr-defined]
        tx.append_audit(
            kind="attest", actor="workload", subject=subject, decision="reject",
            details={"platform": claim, "measurement": claim, "profile": None, "tcb_status": None,
                     "reasons": [{"code": reason, "message": reason}], "warnings": [reason]},
            now=dt.datetime.now(dt.UTC),
        )  # fmt: skip


def test_what_the_audit_log_holds_is_rendered_inert(env: Env) -> None:
    script = "<script>alert('x')</script>"
    img = '"><img src=x onerror=alert(1)>'
    _inject(env, reason=script, claim=img, subject=script)
    cookie = sign_in(env)
    for path in ["/ui/decisions/latest", "/ui/decisions", "/ui/audit", "/ui/"]:
        text = get(env, path, cookie).text
        assert "<script" not in text.lower() and "<img" not in text.lower(), path
        assert "onerror=alert(1)>" not in text
    latest = get(env, "/ui/decisions/latest", cookie).text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in latest
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in latest
    chart = get(env, "/ui/decisions", cookie).text  # the reason and platform are chart labels too
    assert "&lt;script&gt;" in chart and "<svg" in chart


def test_a_refused_attestation_shows_with_every_reason_and_its_claims(env: Env) -> None:
    env.install_policy()
    assert env.client.post("/v1/attest", json=env.attest_body()).status_code == 200
    refused = env.workload(measurement=OTHER)
    r = env.client.post("/v1/attest", json=env.attest_body(refused))
    assert r.status_code == 200 and r.json()["accepted"] is False  # a token saying so
    codes = {x["code"] for x in r.json()["reasons"]}
    assert "measurement_not_allowed" in codes
    cookie = sign_in(env)
    latest = get(env, "/ui/decisions/latest?outcome=refused", cookie).text
    for code in codes:
        assert code in latest
    assert OTHER in latest and "simulated" in latest and "refused" in latest
    # a refusal keeps the evidence's other claims too (what to amend), shown with the four
    refused_claims = r.json()["claims"]
    assert "report_data" in refused_claims and "debug" in refused_claims
    for name in set(refused_claims) - {"platform", "measurement", "profile", "tcb_status"}:
        assert f"<dt>{name}</dt>" in latest, name
    assert latest.count('class="badge ok">accepted') == 0  # the filter
    everything = get(env, "/ui/decisions/latest", cookie).text
    assert everything.count(">accepted</span>") == 1 and everything.count(">refused</span>") == 1
    charts = get(env, "/ui/decisions", cookie).text
    assert "1 accepted" in charts and "1 refused" in charts and "measurement_not_allowed" in charts
    assert "simulated: 1 accepted" in charts


def test_policies_history_and_diff(env: Env) -> None:
    env.install_policy()
    doc = {"version": 1, "name": "test", "platforms": {"simulated": {
        "measurements": ["ab" * 48, OTHER], "platform_keys": [env.platform.key_id], "allow_debug": False}}}  # fmt: skip
    env.install_policy(doc)
    cookie = sign_in(env)
    page = get(env, "/ui/policies", cookie).text
    assert "diff v1 \u2192 v2" in page and "in force" in page
    assert (
        '<option value="1" selected>v1</option>' in page
        and '<option value="2" selected>v2</option>' in page
    )
    diff = get(env, "/ui/policies/diff?name=test&a=1&b=2", cookie).text
    assert re.search(r'class="add">\+\s+&quot;cd', diff), diff
    assert 'class="del">-' in diff and "allow_debug" in diff
    first = get(env, "/ui/policies/diff?name=test&a=0&b=1", cookie).text
    assert 'class="add">' in first and 'class="del">' not in first
    assert ">superseded<" in page and ">retired<" not in page
    assert env.client.delete("/v1/admin/policy?name=test", headers=env.admin).status_code == 200
    assert ">retired<" in get(env, "/ui/policies", cookie).text
    missing = get(env, "/ui/policies/diff?name=test&a=1&b=7", cookie).text
    assert "has no version 7" in missing


def test_secrets_show_names_versions_policies_and_releases_never_values(env: Env) -> None:
    env.install_policy()
    value = base64.b64encode(SECRET_VALUE).decode()
    for _ in range(2):
        r = env.client.put("/v1/admin/secrets/app/db-key", headers=env.admin, json={
            "value": value, "policy": {"allOf": [{"claim": "measurement", "equals": "ab" * 48}]}})  # fmt: skip
        assert r.status_code == 200, r.text
    cookie = sign_in(env)
    page = get(env, "/ui/secrets", cookie).text
    assert "app/db-key" in page and "2 version(s)" in page and "&quot;equals&quot;" in page
    assert SECRET_VALUE.decode() not in page and value not in page
    assert env.domain.admin_token() not in page
    ctx = env.client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.storage.transaction(readonly=True) as tx:
        stored = tx.secret_version("app/db-key")
    assert stored is not None
    for blob in (stored.ciphertext, stored.wrapped_dek):
        assert blob.hex() not in page and base64.b64encode(blob).decode() not in page


def test_certificates_issued_and_revoked(env: Env) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from veritee.binding import report_data_for, spki_der

    env.install_policy()
    key = ec.generate_private_key(ec.SECP256R1())
    spki = spki_der(key.public_key())
    nonce = env.nonce()
    ev = env.platform.evidence(report_data_for(nonce, spki, profile=env.platform.profile))
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    r = env.client.post("/v1/certify", json={"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(),
                                             "format": "simulated", "public_key": pem.decode()})  # fmt: skip
    assert r.status_code == 200, r.text
    cookie = sign_in(env)
    page = get(env, "/ui/certificates", cookie).text
    assert ">valid<" in page and "ab" * 48 in page
    from cryptography import x509

    serial = format(
        x509.load_pem_x509_certificate(r.json()["certificate"].encode()).serial_number, "x"
    )
    assert serial in page
    r = env.client.post(
        "/v1/admin/revocations", headers=env.admin, json={"serial": serial, "reason": "<b>lost</b>"}
    )
    assert r.status_code == 200, r.text
    page = get(env, "/ui/certificates", cookie).text
    assert ">revoked<" in page and "&lt;b&gt;lost&lt;/b&gt;" in page and "<b>lost" not in page
    assert "BEGIN CERTIFICATE" not in page


def test_audit_chain_state_and_anchors(env: Env) -> None:
    env.install_policy()
    cookie = sign_in(env)
    page = get(env, "/ui/audit", cookie).text
    assert ">intact<" in page and "policy.put" in page
    anchor = re.search(r"<textarea rows=\"4\" readonly>([^<]+)</textarea>", page)
    assert anchor is not None
    ok = get(
        env, "/ui/audit?" + httpx.QueryParams({"anchor": anchor.group(1)}).__str__(), cookie
    ).text
    assert "still holds entry 1" in ok
    d = env.domain
    ahead = sign_anchor(d.token_key, kid=d.token_kid, issuer=d.name, seq=50, entry_hash=b"\1" * 32,
                        now=dt.datetime.now(dt.UTC))  # fmt: skip
    assert (
        "audit_truncated"
        in get(env, "/ui/audit?" + str(httpx.QueryParams({"anchor": ahead})), cookie).text
    )
    other = sign_anchor(d.token_key, kid=d.token_kid, issuer=d.name, seq=1, entry_hash=b"\1" * 32,
                        now=dt.datetime.now(dt.UTC))  # fmt: skip
    assert (
        "audit_rewritten"
        in get(env, "/ui/audit?" + str(httpx.QueryParams({"anchor": other})), cookie).text
    )
    forged = anchor.group(1)[:-4] + ("AAAA" if not anchor.group(1).endswith("AAAA") else "BBBB")
    text = get(env, "/ui/audit?" + str(httpx.QueryParams({"anchor": forged})), cookie).text
    assert "anchor_signature" in text or "malformed" in text
    text = get(
        env, "/ui/audit?" + str(httpx.QueryParams({"anchor": "<script>x</script>"})), cookie
    ).text
    assert "<script>x" not in text and "malformed" in text
    assert (
        get(env, "/ui/audit?" + str(httpx.QueryParams({"anchor": "x" * 5000})), cookie).status_code
        == 400
    )


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_collateral_freshness_of_the_test_vectors(env: Env, testvectors: Path) -> None:
    import shutil

    for name in ("tdx/dcapqvl_tdx_quote_v4_collateral.json", "sev-snp/amd_milan_vcek_ask_ark.pem"):
        shutil.copy(testvectors / name, env.domain.collateral_dir / Path(name).name)
    assert env.client.post("/v1/admin/collateral/reload", headers=env.admin).status_code == 200
    cookie = sign_in(env)
    page = get(env, "/ui/collateral", cookie).text
    assert "TDX FMSPC B0C06F000000" in page and "TD_QE" in page
    # the vectors' TCB info ran out in 2025: stale, its row red
    assert re.search(
        r'<tr class="stale"><td>Intel</td><td>TDX FMSPC B0C06F000000</td><td>TCB info</td>', page
    )
    assert "stale for" in page and "failing" in page
    health = get(env, "/ui/", cookie).text
    assert re.search(r'stale</dt><dd><span class="bad">[1-9]', health)


def test_collateral_fetching_state_and_its_errors_as_text(env: Env) -> None:
    cookie = sign_in(env)
    page = get(env, "/ui/collateral", cookie).text
    assert "Fetching is off" in page and "no collateral loaded" in page
    now = dt.datetime.now(dt.UTC)
    with env.client.app.state.ctx.storage.transaction() as tx:  # type: ignore[attr-defined]
        tx.record_fetch_failure("intel/tdx/B0C06F000000-processor.json", error="fetch_failed: <b>502</b> from PCS",
                                now=now, next_try=now + dt.timedelta(minutes=5))  # fmt: skip
    page = get(env, "/ui/collateral", cookie).text
    assert "intel/tdx/B0C06F000000-processor.json" in page
    assert "fetch_failed: &lt;b&gt;502&lt;/b&gt; from PCS" in page and "<b>502" not in page
    assert re.search(r"<td>1</td>", page)  # one failure
