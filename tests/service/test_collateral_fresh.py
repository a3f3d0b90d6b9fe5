"""Issue 16, "Collateral that stays fresh": the service fetches what it lacks and refreshes what it
holds from stand-in Intel PCS / PCCS / AMD KDS servers (real HTTP, tests.collateral_standin) that
serve the real test-vector collateral, and never replaces good collateral with worse.

Time is the service's explicit clock (Settings.clock) and ``run_once(now)``: no test sleeps
for a refresh. Only the slowness case waits, for a client timeout of a fraction of a second.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.collateral_standin import (
    PCCS_ROOT_CRL_PATH,
    ROOT_CRL_PATH,
    StandIn,
    intel_paths,
    intel_set,
    serve_amd,
    serve_intel,
)
from tests.conftest import TESTVECTORS
from tests.conftest import testvectors_dir as _vectors

from veritee.collateral.fetch import raw_json_member
from veritee.collateral.freshness import Backoff
from veritee.collateral.marks import Mark
from veritee.domain import Domain
from veritee.service.app import create_app
from veritee.service.collateral_refresh import CollateralRefresher, Outcome
from veritee.service.context import ServiceContext
from veritee.service.settings import CollateralFetch, Settings

UTC = dt.UTC
V4_QUOTE = "tdx/dcapqvl_tdx_quote_v4.bin"  # FMSPC B0C06F000000, platform CA: UpToDate
V4_SET = "tdx/dcapqvl_tdx_quote_v4_collateral.json"  # 2025-06-19 .. 2025-07-19
V4_AT = dt.datetime(2025, 6, 20, tzinfo=UTC)
V4_PATH = "intel/tdx/B0C06F000000-platform.json"
V5_QUOTE = "tdx/dcapqvl_tdx_quote_v5_outdated.bin"  # FMSPC 90C06F000000, platform CA
V5_SET = "tdx/dcapqvl_tdx_quote_v5_outdated_collateral.json"  # TCB info issued 2026-02-18
V5_PATH = "intel/tdx/90C06F000000-platform.json"
V5_AT = dt.datetime(2026, 2, 19, 12, tzinfo=UTC)
COLLATERAL_CODES = {"collateral_missing", "collateral_expired", "crl_expired", "tcb_info_mismatch",
                    "collateral_signature_invalid", "collateral_rolled_back"}  # fmt: skip


def v5_older_set() -> dict[str, str]:
    """The same FMSPC's real TCB info of 2026-02-01 (go-tdx-guest's PCS response, signed by the
    same TCB Signing key) with the 2026-02-18 set's other parts: an older, authentic set."""
    new = intel_set(V5_SET)
    resp = (TESTVECTORS / "tdx" / "gotdxguest_tcbinfo_response_for_v5.json").read_text()
    return {**new, "tcb_info": raw_json_member(resp, "tcbInfo"),
            "tcb_info_signature": json.loads(raw_json_member(resp, "signature"))}  # fmt: skip


@dataclass
class Clock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Service:
    client: TestClient
    ctx: ServiceContext
    refresher: CollateralRefresher
    domain: Domain
    clock: Clock
    standin: StandIn
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.domain.admin_token()}"}

    def run(self, at: dt.datetime) -> list[Outcome]:
        self.clock.now = at
        out = self.refresher.run_once(at)
        self.outcomes += out
        return out

    def dry_run(self, evidence: str, at: dt.datetime) -> dict[str, Any]:
        self.clock.now = at
        data = (TESTVECTORS / evidence).read_bytes()
        r = self.client.post("/v1/admin/policy/dry-run", headers=self.admin, json={
            "policy": json.dumps({"version": 1, "name": "tdx", "platforms": {"tdx": {}}}),
            "evidence": base64.b64encode(data).decode(), "format": "tdx", "at": at.isoformat()})  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json())

    def row(self, path: str) -> Any:
        with self.ctx.storage.transaction(readonly=True) as tx:
            return tx.fetched_item(path)

    def held(self) -> dict[tuple[str, str, str], Any]:
        return {i.key: i for i in self.ctx.collateral_items()}


@pytest.fixture
def standin() -> Iterator[StandIn]:
    s = StandIn()
    yield s
    s.close()


def _fetch(standin: StandIn, **kw: Any) -> CollateralFetch:
    base = {"kds": standin.url, "pcs": standin.url, "intel_root_crl": standin.url + ROOT_CRL_PATH,
            "timeout": 1.0, "check_seconds": 0, "backoff": Backoff(base=dt.timedelta(seconds=30),
                                                                  cap=dt.timedelta(hours=1), jitter=0.5)}  # fmt: skip
    return CollateralFetch(**(base | kw))


@pytest.fixture
def service(
    tmp_path: Path, standin: StandIn, service_db: str | None, request: pytest.FixtureRequest
) -> Iterator[Service]:
    _vectors()
    fetch: CollateralFetch = getattr(request, "param", None) or _fetch(standin)
    clock = Clock(V5_AT)
    domain = Domain.create(tmp_path / "domain", name="t", now=dt.datetime(2025, 1, 1, tzinfo=UTC))
    settings = Settings(data_dir=domain.path, database_url=service_db, policy_cache_seconds=0,
                        collateral_fetch=fetch, clock=clock)  # fmt: skip
    app = create_app(settings)
    with TestClient(app) as client:
        ctx: ServiceContext = app.state.ctx
        assert ctx.refresher is not None
        ctx.refresher._rng = random.Random(7)
        yield Service(client, ctx, ctx.refresher, domain, clock, standin)


# --- lazy fetch ----------------------------------------------------------------------------------


def test_an_attestation_for_an_fmspc_without_collateral_fetches_it(service: Service) -> None:
    serve_intel(service.standin, "tdx", "B0C06F000000", "platform", intel_set(V4_SET))
    out = service.dry_run(V4_QUOTE, V4_AT)
    assert out["claims"]["tcb_status"] == "UpToDate", out
    assert not {r["code"] for r in out["reasons"]} & COLLATERAL_CODES
    assert service.standin.count() == 4  # PCK CRL, TCB info, QE identity, root CA CRL: once
    row = service.row(V4_PATH)
    assert row.data is not None and row.failures == 0
    # In force for every later request without another fetch.
    assert service.dry_run(V4_QUOTE, V4_AT)["claims"]["tcb_status"] == "UpToDate"
    assert service.standin.count() == 4
    audit = service.client.get("/v1/admin/audit", headers=service.admin).json()["entries"]
    assert [e["subject"] for e in audit if e["kind"] == "collateral.fetch"] == [V4_PATH]


def test_concurrent_attestations_share_one_fetch(service: Service) -> None:
    serve_intel(service.standin, "tdx", "B0C06F000000", "platform", intel_set(V4_SET))
    for path in intel_paths("tdx", "B0C06F000000", "platform").values():
        service.standin.set(path, delay=0.3)
    quote = (TESTVECTORS / V4_QUOTE).read_bytes()
    results: list[Outcome] = []
    threads = [threading.Thread(target=lambda: results.append(service.refresher.fetch_for(quote, V4_AT)))
               for _ in range(6)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.result for r in results] == ["stored"] * 6
    assert service.standin.count() == 4


def test_a_failed_lazy_fetch_is_a_warning_and_backs_off(service: Service) -> None:
    serve_intel(service.standin, "tdx", "B0C06F000000", "platform", intel_set(V4_SET))
    service.standin.set(intel_paths("tdx", "B0C06F000000", "platform")["tcb_info"], status=500)
    out = service.dry_run(V4_QUOTE, V4_AT)
    assert "collateral_missing" in {r["code"] for r in out["reasons"]}
    (warning,) = [w for w in out["warnings"] if w["code"] == "collateral_fetch_failed"]
    assert "fetch_http_status" in warning["message"] and "500" in warning["message"]
    asked = service.standin.count()
    row = service.row(V4_PATH)
    assert row.failures == 1 and row.data is None and row.next_try > V4_AT
    # Within the backoff the next attestation does not ask again; it says when it will.
    again = service.dry_run(V4_QUOTE, V4_AT + dt.timedelta(seconds=5))
    assert service.standin.count() == asked
    assert any(
        "retried from" in w["message"] or "fetch_http_status" in w["message"]
        for w in again["warnings"]
    )
    # After it, the vendor is back: fetched, decided.
    service.standin.set(intel_paths("tdx", "B0C06F000000", "platform")["tcb_info"], status=200)
    assert (
        service.dry_run(V4_QUOTE, row.next_try + dt.timedelta(seconds=1))["claims"]["tcb_status"]
        == "UpToDate"
    )


# --- refresh: newer replaces, worse never does ---------------------------------------------------


def _install_folder(service: Service, name: str, doc: dict[str, str]) -> None:
    service.domain.collateral_dir.mkdir(parents=True, exist_ok=True)
    (service.domain.collateral_dir / name).write_text(json.dumps(doc))
    r = service.client.post("/v1/admin/collateral/reload", headers=service.admin)
    assert r.status_code == 200, r.text


def _tcb_issued(service: Service) -> dt.datetime:
    return service.held()[("intel", "tcb_info", "TDX:90C06F000000")].issued  # type: ignore[no-any-return]


def test_installed_collateral_is_refreshed_and_never_replaced_by_worse(service: Service) -> None:
    """The folder holds the older set; the refresh takes the newer one the PCS serves; then a
    tampered, an expired, an older and a replayed set, garbage, 500s and slowness each leave the
    newer set in force."""
    std = service.standin
    _install_folder(service, "installed.json", v5_older_set())
    assert _tcb_issued(service) == dt.datetime(2026, 2, 1, 14, 49, 26, tzinfo=UTC)
    serve_intel(std, "tdx", "90C06F000000", "platform", intel_set(V5_SET))
    (out,) = service.run(V5_AT)  # a target because the folder holds a set for it
    assert (out.path, out.result) == (V5_PATH, "stored")
    assert _tcb_issued(service) == dt.datetime(2026, 2, 18, 10, 58, 51, tzinfo=UTC)
    assert (
        service.dry_run(V5_QUOTE, V5_AT)["reasons"][0]["code"] == "tcb_level_not_found"
    )  # decided on it
    # Not due again before the minimum interval: nothing is asked.
    asked = std.count()
    assert service.run(V5_AT + dt.timedelta(minutes=5)) == [] and std.count() == asked

    tcb = intel_paths("tdx", "90C06F000000", "platform")["tcb_info"]
    good_body = std.routes[tcb].body
    tampered = re.sub(
        rb'"signature":"(.)',
        lambda m: b'"signature":"' + (b"0" if m[1] != b"0" else b"1"),
        good_body,
    )
    older = v5_older_set()
    replayed = (
        '{"tcbInfo":' + older["tcb_info"] + ',"signature":"' + older["tcb_info_signature"] + '"}'
    ).encode()
    t = V5_AT
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("500", {"status": 500}, "fetch_http_status"),
        ("garbage", {"body": b"<html>try later</html>"}, "fetch_malformed"),
        ("slow", {"delay": 1.5}, "fetch_unreachable"),
        ("tampered", {"body": tampered}, "collateral_signature_invalid"),
        ("older", {"body": replayed}, "collateral_rolled_back"),
    ]
    failures = 0
    for name, change, code in cases:
        std.set(tcb, **change)
        t = max(
            t + dt.timedelta(hours=1),
            (service.row(V5_PATH).next_try or t) + dt.timedelta(seconds=1),
        )
        outs = service.run(t)
        assert [(o.result, o.code) for o in outs] == [("failed", code)], name
        failures += 1
        row = service.row(V5_PATH)
        assert row.failures == failures and row.last_error.startswith(code), name
        # Exponential backoff with jitter: 30 s * 2^(n-1), up to half of it taken off.
        full = min(30 * 2 ** (failures - 1), 3600)
        assert full / 2 <= (row.next_try - t).total_seconds() <= full, name
        assert _tcb_issued(service) == dt.datetime(2026, 2, 18, 10, 58, 51, tzinfo=UTC), name
        std.set(tcb, status=200, body=good_body, delay=0.0)
    # An item past its nextUpdate, even authentic, is not taken either.
    late = dt.datetime(2026, 3, 21, tzinfo=UTC)
    (out,) = service.run(late)
    assert (out.result, out.code) == ("failed", "collateral_expired")
    metrics = _gauges(service.client.get("/metrics").text)
    assert metrics[("veritee_collateral_fetch_failures", f'path="{V5_PATH}"')] == failures + 1


def test_an_older_tcb_evaluation_data_number_is_refused(service: Service) -> None:
    """The domain accepted TCB info of tcbEvaluationDataNumber 19 for this FMSPC before (its
    mark): the PCS serving 18 is a rollback, refused, and nothing is stored."""
    with service.ctx.storage.transaction() as tx:
        tx.raise_collateral_marks([Mark("tcb_info", "TDX:90C06F000000", 19, "earlier")], now=V5_AT)
    serve_intel(service.standin, "tdx", "90C06F000000", "platform", intel_set(V5_SET))
    outcome = service.refresher.refresh(V5_PATH, V5_AT)
    assert (outcome.result, outcome.code) == ("failed", "collateral_rolled_back")
    assert "tcbEvaluationDataNumber 18" in outcome.message and "19" in outcome.message
    assert service.row(V5_PATH).data is None


def test_a_lease_lets_one_fetcher_fetch(service: Service) -> None:
    serve_intel(service.standin, "tdx", "90C06F000000", "platform", intel_set(V5_SET))
    with service.ctx.storage.transaction() as tx:
        assert tx.take_fetch_lease(
            V5_PATH, holder="replica-2", until=V5_AT + dt.timedelta(minutes=1), now=V5_AT
        )
    assert service.refresher.refresh(V5_PATH, V5_AT).result == "busy"
    assert service.standin.count() == 0
    # A lease that ran out (its holder crashed) is taken over.
    assert service.refresher.refresh(V5_PATH, V5_AT + dt.timedelta(minutes=2)).result == "stored"


# --- readiness and metrics -----------------------------------------------------------------------


def test_readiness_warns_before_expiry_and_fails_after(service: Service) -> None:
    serve_intel(service.standin, "tdx", "90C06F000000", "platform", intel_set(V5_SET))
    assert service.refresher.refresh(V5_PATH, V5_AT).result == "stored"
    # Earliest nextUpdate of the set: the PCK CRL, 2026-03-20T10:41:15Z.
    first = dt.datetime(2026, 3, 20, 10, 41, 15, tzinfo=UTC)
    service.clock.now = V5_AT
    r = service.client.get("/readyz")
    assert (
        r.status_code == 200
        and r.json()["status"] == "ready"
        and r.json()["collateral"]["status"] == "ok"
    )
    service.clock.now = first - dt.timedelta(hours=47)
    r = service.client.get("/readyz")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "degraded"
    assert (
        body["collateral"]["status"] == "warning"
        and body["collateral"]["code"] == "collateral_expiring"
    )
    assert {(i["kind"], i["subject"]) for i in body["collateral"]["expiring"]} >= {
        ("pck_crl", "platform")
    }
    service.clock.now = first + dt.timedelta(seconds=1)
    body = service.client.get("/readyz").json()
    assert (
        body["collateral"]["status"] == "failing"
        and body["collateral"]["code"] == "collateral_expired"
    )
    assert [i["kind"] for i in body["collateral"]["expired"]] == ["pck_crl"]


def test_metrics_give_every_items_age_and_time_to_next_update(service: Service) -> None:
    serve_intel(service.standin, "tdx", "90C06F000000", "platform", intel_set(V5_SET))
    assert service.refresher.refresh(V5_PATH, V5_AT).result == "stored"
    service.clock.now = V5_AT
    text = service.client.get("/metrics").text
    gauges = _gauges(text)
    tcb_next = dt.datetime(2026, 3, 20, 10, 58, 51, tzinfo=UTC)
    tcb_issued = dt.datetime(2026, 2, 18, 10, 58, 51, tzinfo=UTC)
    labels = 'kind="tcb_info",subject="TDX:90C06F000000",vendor="intel"'
    assert (
        gauges[("veritee_collateral_next_update_seconds", labels)]
        == (tcb_next - V5_AT).total_seconds()
    )
    assert (
        gauges[("veritee_collateral_age_seconds", labels)] == (V5_AT - tcb_issued).total_seconds()
    )
    for kind, subject in (
        ("qe_identity", "TD_QE"),
        ("pck_crl", "platform"),
        ("root_crl", "Intel SGX Root CA"),
    ):
        assert (
            "veritee_collateral_next_update_seconds",
            f'kind="{kind}",subject="{subject}",vendor="intel"',
        ) in gauges
    assert gauges[("veritee_collateral_fetch_failures", f'path="{V5_PATH}"')] == 0
    assert "# TYPE veritee_collateral_age_seconds gauge" in text
    status = service.client.get("/v1/admin/collateral", headers=service.admin).json()
    assert status["readiness"] == "ok" and [f["path"] for f in status["fetched"]] == [V5_PATH]
    assert {i["kind"] for i in status["items"]} == {
        "tcb_info",
        "qe_identity",
        "pck_crl",
        "root_crl",
    }


def _gauges(text: str) -> dict[tuple[str, str], float]:
    """Every sample of a Prometheus text exposition by (name, labels sorted by name)."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m:
            labels = ",".join(sorted(re.findall(r'[a-z_]+="[^"]*"', m[2] or "")))
            out[(m[1], labels)] = float(m[3])
    return out


# --- a PCCS ----------------------------------------------------------------------------------------


def test_a_pccs_serves_the_intel_collateral(tmp_path: Path, standin: StandIn) -> None:
    _vectors()
    serve_intel(standin, "tdx", "B0C06F000000", "platform", intel_set(V4_SET), pccs=True)
    fetch = CollateralFetch(
        pccs=standin.url, pcs="http://127.0.0.1:9", kds="http://127.0.0.1:9", check_seconds=0
    )
    assert fetch.fetch_config().intel_root_crl == standin.url + PCCS_ROOT_CRL_PATH
    domain = Domain.create(tmp_path / "domain", name="t", now=dt.datetime(2025, 1, 1, tzinfo=UTC))
    app = create_app(Settings(data_dir=domain.path, collateral_fetch=fetch, clock=lambda: V4_AT))
    with TestClient(app):
        outcome = app.state.ctx.refresher.refresh(V4_PATH, V4_AT)
        assert outcome.result == "stored", outcome
        assert PCCS_ROOT_CRL_PATH in standin.requests


# --- AMD -------------------------------------------------------------------------------------------

SNP_REPORT = "sev-snp/azure_milan_v3_report.bin"
SNP_VCEK = "sev-snp/azure_milan_v3_vcek.der"
SNP_AT = dt.datetime(2026, 1, 15, tzinfo=UTC)


def test_a_chip_without_its_vcek_gets_it_fetched_and_a_forged_crl_is_refused(
    service: Service,
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.serialization import Encoding

    serve_amd(service.standin, SNP_VCEK)
    # A CRL naming the ARK but signed by another key: never taken.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    chain = x509.load_pem_x509_certificates(
        (TESTVECTORS / "sev-snp" / "amd_milan_vcek_ask_ark.pem").read_bytes()
    )
    forged = (x509.CertificateRevocationListBuilder().issuer_name(chain[1].subject)
              .last_update(SNP_AT - dt.timedelta(days=1)).next_update(SNP_AT + dt.timedelta(days=7))
              .sign(key, hashes.SHA384(), rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)))  # fmt: skip
    service.standin.add("/vcek/v1/Milan/crl", forged.public_bytes(Encoding.DER))
    service.clock.now = SNP_AT
    data = (TESTVECTORS / SNP_REPORT).read_bytes()
    r = service.client.post("/v1/admin/policy/dry-run", headers=service.admin, json={
        "policy": json.dumps({"version": 1, "name": "snp", "platforms": {"sev-snp": {}}}),
        "evidence": base64.b64encode(data).decode(), "format": "sev-snp", "at": SNP_AT.isoformat()})  # fmt: skip
    out = r.json()
    assert not {x["code"] for x in out["reasons"]} & COLLATERAL_CODES, out["reasons"]
    assert out["claims"]["chip_id"]
    with service.ctx.storage.transaction(readonly=True) as tx:
        rows = {i.path: i for i in tx.fetched_collateral()}
    assert rows["amd/Milan/vcek_cert_chain.pem"].data is not None
    vcek_rows = [p for p in rows if p.startswith("amd/Milan/vcek/")]
    assert len(vcek_rows) == 1 and rows[vcek_rows[0]].data == (TESTVECTORS / SNP_VCEK).read_bytes()
    crl = rows["amd/Milan/vcek_crl.der"]
    assert (
        crl.data is None and crl.failures == 1 and (crl.last_error or "").startswith("crl_invalid")
    )
    # The forged CRL was never held: the chip is still decided.
    assert not any(i.vendor == "amd" for i in service.ctx.collateral_items())


def test_a_chain_to_an_unpinned_or_other_ark_is_refused(service: Service) -> None:
    genoa = (TESTVECTORS / "sev-snp" / "amd_genoa_vcek_ask_ark.pem").read_bytes()
    service.standin.add("/vcek/v1/Milan/cert_chain", genoa)  # Genoa's chain at Milan's path
    out = service.refresher.refresh("amd/Milan/vcek_cert_chain.pem", SNP_AT)
    assert (out.result, out.code) == ("failed", "product_mismatch")
    service.standin.add("/vcek/v1/Milan/cert_chain", genoa.split(b"-----END CERTIFICATE-----")[0][:-40]
                        + b"\n-----END CERTIFICATE-----\n")  # fmt: skip
    out = service.refresher.refresh("amd/Milan/vcek_cert_chain.pem", SNP_AT + dt.timedelta(hours=2))
    assert out.result == "failed" and out.code in ("fetch_malformed", "collateral_invalid")
    assert service.row("amd/Milan/vcek_cert_chain.pem").data is None


# --- veritee serve's settings --------------------------------------------------------------------


def test_serve_flags_make_the_fetch_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from veritee.cli.main import _register, cli
    from veritee.errors import UsageError
    from veritee.service.app import app_from_env
    from veritee.service.settings import fetch_settings

    assert fetch_settings(False, pccs="https://pccs:8081") is None
    s = fetch_settings(True, pccs="https://pccs:8081/", kds="http://127.0.0.1:1")
    assert s is not None and s.kds == "http://127.0.0.1:1"
    cfg = s.fetch_config()
    assert (
        cfg.intel_pcs == "https://pccs:8081"
        and cfg.intel_root_crl == "https://pccs:8081/sgx/certification/v4/rootcacrl"
    )
    default = fetch_settings(True)
    assert (
        default is not None and default.fetch_config().intel_root_crl is None
    )  # the root's CRL DP
    for bad in ("file:///etc/passwd", "pccs:8081", "ftp://x"):
        with pytest.raises(UsageError, match="http"):
            fetch_settings(True, pccs=bad)
    _register()
    helptext = CliRunner().invoke(cli, ["serve", "--help"]).output
    for flag in ("--pccs", "--kds", "--pcs", "--no-collateral-fetch", "--collateral-warn-hours"):
        assert flag in helptext
    # Workers (veritee serve --workers N) read the same settings from the environment.
    domain = Domain.create(tmp_path / "d", name="t", now=dt.datetime(2025, 1, 1, tzinfo=UTC))
    monkeypatch.setenv("VERITEE_DATA_DIR", str(domain.path))
    monkeypatch.setenv("VERITEE_COLLATERAL_FETCH", json.dumps(
        {"on": True, "pccs": "https://pccs:8081", "kds": None, "pcs": None, "warn_hours": 72}))  # fmt: skip
    ctx = app_from_env().state.ctx
    assert ctx.settings.collateral_fetch.pccs == "https://pccs:8081" and ctx.refresher is not None
    assert ctx.settings.collateral_warn_before == dt.timedelta(hours=72)
    monkeypatch.setenv("VERITEE_COLLATERAL_FETCH", json.dumps({"on": False}))
    assert app_from_env().state.ctx.refresher is None


# --- shared by replicas ----------------------------------------------------------------------------


def _replica(
    tmp_path: Path, name: str, src: Domain, db_url: str, fetch: CollateralFetch, clock: Clock
) -> Any:
    import shutil

    folder = tmp_path / name
    shutil.copytree(src.path, folder, ignore=shutil.ignore_patterns("*.db", "*.db-*"))
    settings = Settings(data_dir=folder, database_url=db_url, policy_cache_seconds=0, collateral_fetch=fetch,
                        clock=clock)  # fmt: skip
    return create_app(settings)


def test_replicas_share_fetched_collateral_and_one_fetch(
    tmp_path: Path, service_db: str | None
) -> None:
    """Two replicas (own data folders, one database): what one fetched decides on the other
    without a fetch of its own; while one holds an item's lease the other waits for its result
    instead of asking the vendor too."""
    from veritee.service.storage import default_sqlite_url

    _vectors()
    url = service_db or default_sqlite_url(tmp_path / "shared")
    (tmp_path / "shared").mkdir()
    from veritee.keybroker.kek import FileKek

    domain = Domain.create(tmp_path / "origin", name="t", now=dt.datetime(2025, 1, 1, tzinfo=UTC))
    FileKek.in_data_dir(domain.path)  # as `veritee init` makes it: copied to every replica
    a_vendor, b_vendor = StandIn(), StandIn()
    try:
        serve_intel(a_vendor, "tdx", "B0C06F000000", "platform", intel_set(V4_SET))
        for path in intel_paths("tdx", "B0C06F000000", "platform").values():
            a_vendor.set(path, delay=0.4)
        clock = Clock(V4_AT)
        app_a = _replica(tmp_path, "a", domain, url, _fetch(a_vendor), clock)
        app_b = _replica(
            tmp_path, "b", domain, url, _fetch(b_vendor), clock
        )  # its vendor serves nothing
        with TestClient(app_a), TestClient(app_b) as client_b:
            quote = (TESTVECTORS / V4_QUOTE).read_bytes()
            a, b = app_a.state.ctx.refresher, app_b.state.ctx.refresher
            results: dict[str, Outcome] = {}
            thread = threading.Thread(target=lambda: results.update(a=a.fetch_for(quote, V4_AT)))
            thread.start()
            while a_vendor.count() == 0:  # A holds the lease and is fetching (slowly)
                threading.Event().wait(0.02)
            results["b"] = b.fetch_for(quote, V4_AT)
            thread.join()
            assert results["a"].result == "stored" and results["b"].result == "stored", results
            assert b_vendor.count() == 0 and a_vendor.count() == 4
            admin = {"Authorization": f"Bearer {domain.admin_token()}"}
            r = client_b.post("/v1/admin/policy/dry-run", headers=admin, json={
                "policy": json.dumps({"version": 1, "name": "tdx", "platforms": {"tdx": {}}}),
                "evidence": base64.b64encode(quote).decode(), "format": "tdx", "at": V4_AT.isoformat()})  # fmt: skip
            assert r.json()["claims"]["tcb_status"] == "UpToDate" and b_vendor.count() == 0
    finally:
        a_vendor.close()
        b_vendor.close()


# --- malformed, truncated, oversized answers -------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["truncated-crl", "truncated-json", "oversized", "wrong-fmspc", "no-chain"]
)
def test_malformed_answers_are_refused_and_nothing_is_stored(service: Service, fault: str) -> None:
    std = service.standin
    serve_intel(std, "tdx", "90C06F000000", "platform", intel_set(V5_SET))
    paths = intel_paths("tdx", "90C06F000000", "platform")
    if fault == "truncated-crl":
        std.set(paths["pck_crl"], body=std.routes[paths["pck_crl"]].body[:-20])
    elif fault == "truncated-json":
        std.set(paths["tcb_info"], body=std.routes[paths["tcb_info"]].body[:-30])
    elif fault == "oversized":
        std.set(paths["qe_identity"], body=b" " * (1024 * 1024 + 1))
    elif fault == "wrong-fmspc":  # another FMSPC's (authentic) TCB info at this FMSPC's path
        v4 = intel_set(V4_SET)
        std.set(paths["tcb_info"], body=('{"tcbInfo":' + v4["tcb_info"] + ',"signature":"' + v4["tcb_info_signature"]
                                         + '"}').encode())  # fmt: skip
    else:
        std.set(paths["tcb_info"], headers={})
    out = service.refresher.refresh(V5_PATH, V5_AT)
    expected = {"oversized": "fetch_oversized"}.get(fault, "fetch_malformed")
    assert (out.result, out.code) == ("failed", expected), out
    assert service.row(V5_PATH).data is None and not service.held()


# --- the pure parts ----------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    b = Backoff(base=dt.timedelta(seconds=30), cap=dt.timedelta(hours=1), jitter=0.5)
    rng = random.Random(1)
    for n in range(1, 12):
        full = min(30 * 2 ** (n - 1), 3600)
        delays = {b.delay(n, rng).total_seconds() for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays) and len(delays) > 1, n
    assert b.delay(10_000, rng) <= dt.timedelta(hours=1)
    assert Backoff(jitter=0).delay(0, rng) == dt.timedelta(seconds=30)


def test_items_skip_what_does_not_parse_and_take_the_newest() -> None:
    from veritee.collateral import Collateral
    from veritee.collateral.freshness import items, refresh_after

    _vectors()
    new, old = intel_set(V5_SET), v5_older_set()
    both = Collateral.from_blobs(
        [("old", json.dumps(old).encode()), ("new", json.dumps(new).encode())]
    )
    (tcb,) = [i for i in items(both) if i.kind == "tcb_info"]
    assert tcb.issued == dt.datetime(2026, 2, 18, 10, 58, 51, tzinfo=UTC) and tcb.source == "new"
    bad = [{**new, "tcb_info": "{not json"}, {**new, "pck_crl": "zz"}, {**new, "qe_identity": '{"id": "TD_QE"}'},
           {**new, "tcb_info": json.dumps({"issueDate": 5, "nextUpdate": []})}, {"tcbInfo": []}]  # fmt: skip
    for doc in bad:
        found = items(Collateral.from_blobs([("bad", json.dumps(doc).encode())]))
        assert len(found) < 4 and all(i.next_update > i.issued for i in found)
    found = items(Collateral.from_blobs([("new", json.dumps(new).encode())]))
    now = V5_AT
    due = refresh_after(
        found, now, interval=dt.timedelta(hours=24), minimum=dt.timedelta(minutes=10)
    )
    assert due == now + dt.timedelta(minutes=10)  # past half of the root CRL's window already
    later = refresh_after([i for i in found if i.kind == "tcb_info"], now, interval=dt.timedelta(days=90),
                          minimum=dt.timedelta(minutes=10))  # fmt: skip
    assert later == tcb.issued + (tcb.next_update - tcb.issued) / 2


def test_a_set_for_another_fmspc_only_makes_the_right_one_fetched(service: Service) -> None:
    """The domain holds TCB info for FMSPC B0C06F000000 only (an older, expired set); a quote
    of 90C06F000000 is refused for it, which makes its own set fetched and decide."""
    _install_folder(service, "other.json", intel_set(V4_SET))
    serve_intel(service.standin, "tdx", "90C06F000000", "platform", intel_set(V5_SET))
    out = service.dry_run(V5_QUOTE, V5_AT)
    assert [r["code"] for r in out["reasons"]] == ["tcb_level_not_found"], out[
        "reasons"
    ]  # decided on 90C06F
    assert service.row(V5_PATH).data is not None


def test_a_set_not_yet_valid_is_refused(service: Service) -> None:
    serve_intel(service.standin, "tdx", "90C06F000000", "platform", intel_set(V5_SET))
    early = dt.datetime(2026, 2, 10, tzinfo=UTC)  # before the PCK CRL's thisUpdate (2026-02-18)
    out = service.refresher.refresh(V5_PATH, early)
    assert (out.result, out.code) == ("failed", "collateral_not_yet_valid")
    assert service.row(V5_PATH).data is None


def test_the_background_refresh_runs_in_the_service(tmp_path: Path, standin: StandIn) -> None:
    """With check_seconds set, the service's own loop fetches what is due (here: the folder's
    set for an FMSPC, found at start); the test waits for it, asserting no timing."""
    import time

    _vectors()
    domain = Domain.create(tmp_path / "domain", name="t", now=dt.datetime(2025, 1, 1, tzinfo=UTC))
    domain.collateral_dir.mkdir(parents=True, exist_ok=True)
    (domain.collateral_dir / "installed.json").write_text(json.dumps(v5_older_set()))
    serve_intel(standin, "tdx", "90C06F000000", "platform", intel_set(V5_SET))
    app = create_app(Settings(data_dir=domain.path, collateral_fetch=_fetch(standin, check_seconds=0.05),
                              clock=lambda: V5_AT))  # fmt: skip
    with TestClient(app):
        ctx: ServiceContext = app.state.ctx
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with ctx.storage.transaction(readonly=True) as tx:
                row = tx.fetched_item(V5_PATH)
            if row is not None and row.data is not None:
                break
            time.sleep(0.05)
        assert row is not None and row.data is not None
        tcb = next(i for i in ctx.collateral_items() if i.kind == "tcb_info")
        assert tcb.issued == dt.datetime(2026, 2, 18, 10, 58, 51, tzinfo=UTC)
