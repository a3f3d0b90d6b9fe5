"""`veritee audit list|show` against a real service (uvicorn in a thread, embedded SQLite) with
accepted and refused attestations of the simulated platform recorded in its audit log."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for
from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings

_register()
GOOD = "ab" * 48
BAD = "cd" * 48


@dataclass
class Svc:
    domain: Domain
    server: RunningServer
    sim: Path

    def args(self, *extra: str) -> list[str]:
        return [*extra, "--url", self.server.url, "--data", str(self.domain.path)]

    def attest(self, measurement: str) -> dict[str, Any]:
        plat = SimulatedPlatform(self.sim, measurement=measurement)
        nonce = bytes.fromhex(httpx.post(self.server.url + "/v1/challenge").json()["nonce"])
        ev = plat.evidence(report_data_for(nonce, b"", profile=plat.profile))
        body = {
            "evidence": base64.b64encode(ev).decode(),
            "nonce": nonce.hex(),
            "format": "simulated",
        }
        out: dict[str, Any] = httpx.post(self.server.url + "/v1/attest", json=body).json()
        return out


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    tmp = tmp_path_factory.mktemp("audit-cli")
    domain = Domain.create(tmp / "domain", name="audit", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)))
    sim = tmp / "sim"
    key = SimulatedPlatform(sim, measurement=GOOD).key_id
    doc = {"version": 1, "name": "p", "platforms": {"simulated": {
        "measurements": [GOOD], "platform_keys": [key], "allow_debug": True}}}  # fmt: skip
    envelope = sign_policy(load_policy(json.dumps(doc)), domain.policy_key)
    h = {"Authorization": f"Bearer {domain.admin_token()}"}
    assert (
        httpx.put(server.url + "/v1/admin/policy", content=envelope, headers=h).status_code == 200
    )
    s = Svc(domain, server, sim)
    try:
        assert s.attest(GOOD)["accepted"] is True
        assert s.attest(BAD)["accepted"] is False
        assert s.attest(GOOD)["accepted"] is True
        yield s
    finally:
        server.stop()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    return CliRunner()


def _list(runner: CliRunner, svc: Svc, *extra: str) -> list[dict[str, Any]]:
    r = runner.invoke(cli, ["audit", "list", "--json", *extra, *svc.args()])
    assert r.exit_code == 0, r.output
    entries: list[dict[str, Any]] = json.loads(r.output)["entries"]
    return entries


def test_list_filters_and_table(svc: Svc, runner: CliRunner) -> None:
    every = _list(runner, svc, "--limit", "100")
    assert [e["kind"] for e in every] == ["policy.put", "attest", "attest", "attest"]
    assert [e["seq"] for e in every] == sorted(e["seq"] for e in every)
    refused = _list(runner, svc, "--refused")
    assert len(refused) == 1 and refused[0]["decision"] == "reject" and refused[0]["subject"] == BAD
    accepted = _list(runner, svc, "--accepted", "--platform", "simulated")
    assert [e["subject"] for e in accepted] == [GOOD, GOOD]
    assert _list(runner, svc, "--platform", "tdx") == []
    newest = _list(runner, svc, "--limit", "1")
    assert newest == [every[-1]]
    assert [e["kind"] for e in _list(runner, svc, "--kind", "policy")] == ["policy.put"]
    # the table: every entry's seq, kind, decision, platform and the refusal's first reason
    r = runner.invoke(cli, ["audit", "list", *svc.args()])
    assert r.exit_code == 0
    for e in every:
        assert f"│ {e['seq']} " in r.output
    assert (
        "refused" in r.output and "accepted" in r.output and "measurement_not_allowed" in r.output
    )
    assert "None" not in r.output
    r = runner.invoke(cli, ["audit", "list", "--platform", "tdx", *svc.args()])
    assert r.exit_code == 0 and "no audit entries match" in r.output


def test_show_one_entry(svc: Svc, runner: CliRunner) -> None:
    refused = _list(runner, svc, "--refused")[0]
    r = runner.invoke(cli, ["audit", "show", str(refused["seq"]), "--json", *svc.args()])
    assert r.exit_code == 0 and json.loads(r.output) == refused
    r = runner.invoke(cli, ["audit", "show", str(refused["seq"]), *svc.args()])
    assert r.exit_code == 0
    assert f"audit entry {refused['seq']}" in r.output and "measurement_not_allowed" in r.output
    assert refused["entry_hash"] in r.output and BAD in r.output and "refused" in r.output
    r = runner.invoke(cli, ["audit", "show", "999999", *svc.args()])
    assert r.exit_code == 1 and "no entry 999999" in r.output
    for bad in ("0", "-3", "x", str(2**64)):
        assert runner.invoke(cli, ["audit", "show", bad, *svc.args()]).exit_code == 2


def test_list_pages_back_over_more_than_one_page(
    svc: Svc, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from veritee.cli import audit_ops

    monkeypatch.setattr(audit_ops, "PAGE", 2)  # the same walk with pages of two entries
    every = _list(runner, svc, "--limit", "100")
    assert [e["kind"] for e in every] == ["policy.put", "attest", "attest", "attest"]
    assert len(_list(runner, svc, "--accepted", "--limit", "5")) == 2


def test_scan_bounds_the_walk(svc: Svc, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from veritee.cli import audit_ops

    monkeypatch.setattr(audit_ops, "PAGE", 2)
    r = runner.invoke(
        cli, ["audit", "list", "--kind", "policy", "--scan", "2", "--json", *svc.args()]
    )
    out = json.loads(r.output)
    assert out["entries"] == [] and out["scanned"] == 2 and out["head"] == 4
    r = runner.invoke(cli, ["audit", "list", "--kind", "policy", "--scan", "3", *svc.args()])
    assert r.exit_code == 0 and "no audit entries match (read the newest 3 of 4 entries" in r.output
    r = runner.invoke(
        cli, ["audit", "list", "--kind", "policy", "--scan", "4", "--json", *svc.args()]
    )
    assert [e["kind"] for e in json.loads(r.output)["entries"]] == ["policy.put"]


def test_bad_options(svc: Svc, runner: CliRunner) -> None:
    for args in (["--limit", "0"], ["--limit", "x"], ["--accepted", "--bogus"]):
        assert runner.invoke(cli, ["audit", "list", *args, *svc.args()]).exit_code == 2
