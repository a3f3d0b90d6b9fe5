"""The web console in a real browser (issue 16): Playwright drives Debian's Chromium
(``/usr/bin/chromium``, never a browser Playwright downloads) against a real ``veritee serve
--tls`` subprocess. It signs in (a wrong credential refused, the right one accepted), opens
every page, finds a refused attestation with its reasons, checks that a ``<script>`` the audit
log holds stays text (no dialog opens), signs out, and saves a screenshot of each page under
``test-artifacts/ui/`` (git-ignored; the README links them).

Playwright is in the ``test`` extra and Chromium in ``.ci/system-packages.sh`` (``make test``
installs both). Without them the module is skipped, except in CI (``CI=true``), where either
missing is an error: the browser test cannot silently stop running.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import ROOT, TESTVECTORS
from tests.fakes.service import VERITEE, free_port, run_cli, stop, wait_ready

from veritee.appraisal import load_policy, sign_policy
from veritee.domain import Domain
from veritee.errors import VerificationError
from veritee.platforms.simulated import SimulatedPlatform
from veritee.sdk.trust import Trust
from veritee.service.storage import Storage
from veritee.tls import client_context

#: Debian's Chromium (``VERITEE_CHROMIUM`` names another build of it).
CHROMIUM = Path(os.environ.get("VERITEE_CHROMIUM") or "/usr/bin/chromium")
#: Where the screenshots go (one PNG per page).
ARTIFACTS = ROOT / "test-artifacts" / "ui"
GOOD = "ab" * 48
OTHER = "cd" * 48

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:
    if os.environ.get("CI") == "true":
        raise ImportError(
            "playwright (the 'test' extra) must be installed in CI: pip install -e '.[test]'"
        ) from None
    pytest.skip("playwright (the 'test' extra) is not installed", allow_module_level=True)
if not CHROMIUM.is_file():
    if os.environ.get("CI") == "true":
        raise RuntimeError(
            f"{CHROMIUM} is missing in CI: .ci/system-packages.sh installs Debian's chromium"
        )
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


def _policy(data: Path, url: str, key_id: str, measurements: list[str], debug: bool) -> None:
    domain = Domain.open(data)
    doc = {"version": 1, "name": "shop", "platforms": {"simulated": {
        "measurements": measurements, "platform_keys": [key_id], "allow_debug": debug}}}  # fmt: skip
    env = sign_policy(load_policy(json.dumps(doc)), domain.policy_key)
    r = httpx.put(url + "/v1/admin/policy", content=env, headers=_admin(data), verify=_tls(data))
    r.raise_for_status()


def _admin(data: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {(data / 'admin_token').read_text().strip()}"}


def _tls(data: Path) -> object:
    return client_context(cafile=str(data / "domain_ca.pem"))


@pytest.fixture
def domain_served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    for vector in (
        "tdx/dcapqvl_tdx_quote_v4_collateral.json",
        "sev-snp/amd_milan_vcek_ask_ark.pem",
    ):
        if (
            TESTVECTORS / vector
        ).is_file():  # collateral to show fresh or stale, when the vectors are here
            shutil.copy(TESTVECTORS / vector, data / "collateral" / Path(vector).name)
    # What the audit log holds is shown as text: a reason that is markup must stay text.
    store = Storage(f"sqlite:///{data / 'veritee.db'}")
    store.migrate()
    with store.transaction() as tx:
        tx.append_audit(kind="attest", actor="workload", subject="-", decision="reject", details={
            "platform": "simulated", "reasons": [{"code": "x<script>alert('xss')</script>",
                                                  "message": "<img src=x onerror=alert(1)>"}]},
            now=dt.datetime.now(dt.UTC))  # fmt: skip
    store.close()
    port = free_port()
    proc = subprocess.Popen([*VERITEE, "serve", "--data", str(data), "--port", str(port), "--tls"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, verify=_tls(data))
        yield url, data, tmp_path
    finally:
        stop(proc)


def _workloads(url: str, data: Path, tmp_path: Path) -> str:
    """A policy in two versions, an admitted workload with a secret and a certificate, and a
    refused one; returns the refused measurement's reason codes joined."""
    sim = tmp_path / "sim"
    key_id = SimulatedPlatform(sim, measurement=GOOD).key_id
    _policy(data, url, key_id, [GOOD], True)
    _policy(data, url, key_id, [GOOD, "ef" * 48], True)  # a second version: a diff to show
    r = httpx.put(url + "/v1/admin/secrets/shop/db-key", headers=_admin(data), verify=_tls(data), json={
        "value": "c2VjcmV0LXZhbHVlLW5ldmVyLXNob3du", "policy": {"allOf": [{"claim": "measurement", "equals": GOOD}]}})  # fmt: skip
    r.raise_for_status()
    ca = data / "domain_ca.pem"
    good = Trust(
        url, ca, platform="simulated", store=tmp_path / "s1", measurement=GOOD, platform_dir=sim
    )
    good.certify()
    assert good.get_secret("shop/db-key") == b"secret-value-never-shown"
    good.close()
    bad = Trust(
        url, ca, platform="simulated", store=tmp_path / "s2", measurement=OTHER, platform_dir=sim
    )
    with pytest.raises(VerificationError) as e:
        bad.certify()
    bad.close()
    codes = [r["code"] for r in e.value.reasons or []]
    assert "measurement_not_allowed" in codes
    return " ".join(codes)


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_console_in_chromium(domain_served: tuple[str, Path, Path]) -> None:
    url, data, tmp_path = domain_served
    _workloads(url, data, tmp_path)
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            context = browser.new_context(
                ignore_https_errors=True, viewport={"width": 1280, "height": 900}
            )
            page = context.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            # not signed in: any page leads to the sign-in form
            page.goto(url + "/ui/decisions")
            assert page.url == url + "/ui/login"
            _shot(page, "01-sign-in")
            page.fill("#token", "not-the-credential")
            with page.expect_response(url + "/ui/login") as answer:
                page.click("button[type=submit]")
            assert answer.value.status == 401
            assert "not this domain's admin credential" in page.inner_text("p.error")
            assert context.cookies() == []
            _shot(page, "02-sign-in-refused")

            page.fill("#token", (data / "admin_token").read_text().strip())
            page.click("button[type=submit]")
            page.wait_for_url(url + "/ui/")
            (cookie,) = context.cookies()
            assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
            assert cookie["path"] == "/ui"
            assert page.inner_text("h1") == "Health" and "ready" in page.inner_text("main")
            _shot(page, "03-health")

            pages = [
                ("Decisions", "Decisions over time", "04-decisions"),
                ("Latest decisions", "Latest decisions", "05-latest-decisions"),
                ("Audit chain", "Audit chain", "06-audit"),
                ("Policies", "Policies", "07-policies"),
                ("Secrets", "Secrets", "09-secrets"),
                ("Certificates", "Admission certificates", "10-certificates"),
                ("Collateral", "Collateral freshness", "11-collateral"),
            ]
            for link, title, shot in pages:
                page.click(f"header nav >> text={link}")
                assert page.inner_text("h1") == title, link
                _shot(page, shot)
                text = page.inner_text("main")
                if link == "Decisions":
                    assert page.locator("svg.chart").count() == 5
                    assert "refused" in text
                elif link == "Latest decisions":
                    # the refused attestation, with its reasons and claims
                    row = page.locator("article.decision.refused", has_text=OTHER).first
                    assert (
                        "refused" in row.inner_text()
                        and "measurement_not_allowed" in row.inner_text()
                    )
                    assert "simulated" in row.inner_text()
                    # the audit log's markup is text on the page, and ran nothing
                    assert (
                        "x<script>alert('xss')</script>" in text
                        and "<img src=x onerror=alert(1)>" in text
                    )
                    assert page.locator("main script, main img").count() == 0
                elif link == "Audit chain":
                    assert "intact" in text
                    anchor = page.input_value("textarea[readonly]")
                    page.fill("textarea[name=anchor]", anchor)
                    page.click("text=Check this anchor")
                    assert "still holds entry" in page.inner_text("main")
                elif link == "Policies":
                    page.click("text=diff v1 \u2192 v2")
                    assert page.inner_text("h1") == "Policy diff"
                    assert any(
                        "ef" * 48 in t for t in page.locator("pre.diff .add").all_inner_texts()
                    )
                    _shot(page, "08-policy-diff")
                elif link == "Secrets":
                    assert (
                        "shop/db-key" in text and "secret-value-never-shown" not in page.content()
                    )
                    assert "c2VjcmV0LXZhbHVlLW5ldmVyLXNob3du" not in page.content()
                elif link == "Certificates":
                    assert "valid" in text and GOOD in text
                elif link == "Collateral" and (TESTVECTORS / "tdx").is_dir():
                    assert (
                        page.locator("tr.stale").count() >= 1
                    )  # the 2025 vectors are past nextUpdate
                    assert "B0C06F000000" in text
            assert dialogs == []

            page.click("text=Sign out")
            page.wait_for_url(url + "/ui/login")
            assert context.cookies() == []
            page.goto(url + "/ui/secrets")
            assert page.url == url + "/ui/login"
        finally:
            browser.close()
