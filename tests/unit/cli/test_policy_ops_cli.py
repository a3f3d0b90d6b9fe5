"""`veritee policy show|history|diff|rollback|dry-run` against a real service (uvicorn in a
thread, embedded SQLite), and dry-run offline on real evidence (simulated, and the SGX test
vector with its collateral)."""

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
import yaml
from click.testing import CliRunner
from tests.conftest import manifest_cases, testvectors_dir

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for
from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings

_register()
V1 = "ab" * 48
V2 = "cd" * 48


@dataclass
class Svc:
    domain: Domain
    server: RunningServer
    sim: Path

    def args(self, *extra: str) -> list[str]:
        return [*extra, "--url", self.server.url, "--data", str(self.domain.path)]

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.domain.admin_token()}"}

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


def _doc(name: str, key_id: str, *measurements: str) -> dict[str, Any]:
    return {"version": 1, "name": name, "platforms": {"simulated": {
        "measurements": list(measurements), "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip


def _install(svc: Svc, doc: dict[str, Any]) -> int:
    envelope = sign_policy(load_policy(json.dumps(doc)), svc.domain.policy_key)
    r = httpx.put(svc.server.url + "/v1/admin/policy", content=envelope, headers=svc.admin())
    assert r.status_code == 200, r.text
    version: int = r.json()["version"]
    return version


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Svc]:
    domain = Domain.create(tmp_path / "domain", name="ops", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)))
    sim = tmp_path / "sim"
    SimulatedPlatform(sim, measurement=V1)
    try:
        yield Svc(domain, server, sim)
    finally:
        server.stop()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    return CliRunner()


def test_show_history_diff_rollback(svc: Svc, runner: CliRunner) -> None:
    key = SimulatedPlatform(svc.sim, measurement=V1).key_id
    assert _install(svc, _doc("shop", key, V1)) == 1
    assert _install(svc, _doc("shop", key, V2)) == 2
    assert _install(svc, _doc("batch", key, V2)) == 1

    # show: canonical YAML, the newest version; --version an older one; no name: every policy
    r = runner.invoke(cli, ["policy", "show", "shop", *svc.args()])
    assert r.exit_code == 0, r.output
    assert "# policy 'shop' version 2 (in force;" in r.output
    shown = yaml.safe_load(r.output)
    assert shown["platforms"]["simulated"]["measurements"] == [V2] and shown["name"] == "shop"
    r = runner.invoke(
        cli, ["policy", "show", "shop", "--version", "1", "--format", "json", *svc.args()]
    )
    assert (
        r.exit_code == 0
        and "version 1 (not in force;" in r.output
        and V1 in r.output
        and V2 not in r.output
    )
    r = runner.invoke(cli, ["policy", "show", *svc.args()])
    assert r.exit_code == 0 and "'shop' version 2" in r.output and "'batch' version 1" in r.output
    r = runner.invoke(cli, ["policy", "show", "shop", "--json", *svc.args()])
    assert json.loads(r.output)["version"] == 2
    for bad in (["policy", "show", "nope"], ["policy", "show", "shop", "--version", "9"]):
        r = runner.invoke(cli, [*bad, *svc.args()])
        assert r.exit_code == 1 and "no_policy" in r.output, r.output

    # history: a rich table with every version, its digest, who and when
    r = runner.invoke(cli, ["policy", "history", "shop", *svc.args()])
    assert r.exit_code == 0, r.output
    hist = runner.invoke(cli, ["policy", "history", "shop", "--json", *svc.args()])
    versions = json.loads(hist.output)["versions"]
    assert [v["version"] for v in versions] == [1, 2] and [v["in_force"] for v in versions] == [
        False,
        True,
    ]
    for v in versions:
        assert v["digest"] in r.output and v["actor"] == "admin"
    assert runner.invoke(cli, ["policy", "history", "nope", *svc.args()]).exit_code == 1

    # diff: a unified diff of the canonical YAML
    r = runner.invoke(cli, ["policy", "diff", "shop", "1", "2", *svc.args()])
    assert r.exit_code == 0
    assert "--- shop version 1" in r.output and "+++ shop version 2" in r.output
    assert f"-    - {V1}" in r.output and f"+    - {V2}" in r.output
    r = runner.invoke(cli, ["policy", "diff", "shop", "2", "2", *svc.args()])
    assert r.exit_code == 0 and "are the same policy" in r.output

    # V1 is refused under version 2 ...
    refused = svc.attest(V1)
    assert refused["accepted"] is False and "measurement_not_allowed" in {
        x["code"] for x in refused["reasons"]
    }
    # rollback: shows the diff, asks; declining installs nothing
    r = runner.invoke(cli, ["policy", "rollback", "shop", "1", *svc.args()], input="n\n")
    assert r.exit_code == 1 and "nothing installed" in r.output and f"+    - {V1}" in r.output
    r = runner.invoke(cli, ["policy", "rollback", "shop", "1", "--yes", *svc.args()])
    assert r.exit_code == 0, r.output
    assert "version 1 installed again as version 3 (in force)" in r.output
    versions = json.loads(
        runner.invoke(cli, ["policy", "history", "shop", "--json", *svc.args()]).output
    )["versions"]
    assert versions[-1] == {
        **versions[-1],
        "version": 3,
        "in_force": True,
        "same_as": 1,
        "digest": versions[0]["digest"],
    }
    # ... and admitted after the rollback; batch (another name) is untouched
    assert svc.attest(V1)["accepted"] is True
    policies = httpx.get(svc.server.url + "/v1/admin/policies", headers=svc.admin()).json()[
        "policies"
    ]
    assert {(p["name"], p["version"]) for p in policies} == {("shop", 3), ("batch", 1)}
    # audited
    entries = httpx.get(
        svc.server.url + "/v1/admin/audit", params={"limit": 1000}, headers=svc.admin()
    ).json()["entries"]
    rollback = [e for e in entries if e["kind"] == "policy.rollback"]
    assert len(rollback) == 1 and rollback[0]["subject"] == "shop"
    assert rollback[0]["details"]["version"] == 3 and rollback[0]["details"]["rollback_of"] == 1
    # an unknown version
    r = runner.invoke(cli, ["policy", "rollback", "shop", "7", "--yes", *svc.args()])
    assert r.exit_code == 1 and "has no version 7" in r.output


def test_rollback_api_refuses_bad_bodies(svc: Svc) -> None:
    url = svc.server.url + "/v1/admin/policy/rollback"
    for body in ({"name": "x"}, {"name": "", "version": 1}, {"name": "x", "version": 0},
                 {"name": "x", "version": 2**64}, {"name": "x", "version": "1", "extra": True}):  # fmt: skip
        r = httpx.post(url, json=body, headers=svc.admin())
        assert r.status_code == 400, (body, r.text)
    r = httpx.post(url, content=b"{", headers=svc.admin() | {"Content-Type": "application/json"})
    assert r.status_code == 400
    assert (
        httpx.post(url, json={"name": "x", "version": 1}).status_code == 401
    )  # the admin credential
    r = httpx.get(svc.server.url + "/v1/admin/policy", params={"version": "1"}, headers=svc.admin())
    assert r.status_code == 400  # version needs name


def _sim_evidence(tmp_path: Path, measurement: str, name: str) -> Path:
    plat = SimulatedPlatform(tmp_path / "sim", measurement=measurement)
    f = tmp_path / name
    f.write_bytes(plat.evidence(report_data_for(b"n", b"", profile=plat.profile)))
    return f


def test_dry_run_offline(runner: CliRunner, tmp_path: Path) -> None:
    good, bad = _sim_evidence(tmp_path, V1, "good.bin"), _sim_evidence(tmp_path, V2, "bad.bin")
    key = SimulatedPlatform(tmp_path / "sim", measurement=V1).key_id
    pol = tmp_path / "draft.yaml"
    pol.write_text(yaml.safe_dump(_doc("draft", key, V1)))
    r = runner.invoke(cli, ["policy", "dry-run", str(pol), str(good)])
    assert r.exit_code == 0, r.output
    assert "accepted" in r.output and "nothing installed" in r.output
    r = runner.invoke(cli, ["policy", "dry-run", str(pol), str(good), str(bad), "--json"])
    assert r.exit_code == 1
    out = json.loads(r.output)
    assert out["dry_run"] is True and out["accepted"] is False
    assert [x["accepted"] for x in out["results"]] == [True, False]
    assert "measurement_not_allowed" in {x["code"] for x in out["results"][1]["reasons"]}
    r = runner.invoke(cli, ["policy", "dry-run", str(pol), str(bad)])
    assert r.exit_code == 1 and "measurement_not_allowed" in r.output
    # a signed envelope is read too
    domain = Domain.create(tmp_path / "d", name="d", now=dt.datetime.now(dt.UTC))
    signed = tmp_path / "signed.json"
    signed.write_bytes(sign_policy(load_policy(pol.read_bytes()), domain.policy_key))
    assert runner.invoke(cli, ["policy", "dry-run", str(signed), str(good)]).exit_code == 0


@pytest.mark.parametrize(
    "content",
    [b"a: [1,\n b", b"version: 1\nname: t\nplatforms: {simulatd: {}}\n", b"", b"x" * 2_000_000],
)
def test_dry_run_bad_policy_files(runner: CliRunner, tmp_path: Path, content: bytes) -> None:
    ev = _sim_evidence(tmp_path, V1, "ev.bin")
    pol = tmp_path / "p.yaml"
    pol.write_bytes(content)
    r = runner.invoke(cli, ["policy", "dry-run", str(pol), str(ev)])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "error" in r.output


def test_dry_run_bad_evidence(runner: CliRunner, tmp_path: Path) -> None:
    ev = _sim_evidence(tmp_path, V1, "ev.bin")
    key = SimulatedPlatform(tmp_path / "sim", measurement=V1).key_id
    pol = tmp_path / "p.yaml"
    pol.write_text(yaml.safe_dump(_doc("p", key, V1)))
    data = ev.read_bytes()
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[: len(data) // 2])
    huge = tmp_path / "huge.bin"
    huge.write_bytes(data + b"\0" * 2_000_000)
    for f in (tampered, truncated, huge):
        r = runner.invoke(cli, ["policy", "dry-run", str(pol), str(f), "--json"])
        assert r.exit_code == 1, (f, r.output)
        assert json.loads(r.output)["results"][0]["reasons"], f
    r = runner.invoke(cli, ["policy", "dry-run", str(pol), str(tmp_path / "absent.bin")])
    assert r.exit_code == 2 and "not found" in r.output
    r = runner.invoke(cli, ["policy", "dry-run", str(pol), str(ev), "--format", "nope"])
    assert r.exit_code == 2


def test_dry_run_on_real_sgx_evidence(runner: CliRunner, tmp_path: Path) -> None:
    root = testvectors_dir()
    case = next((c for c in manifest_cases("sgx")), None)
    if case is None:
        pytest.skip("no SGX case in the test vectors' manifest")
    pol = tmp_path / "sgx.yaml"
    pol.write_text(yaml.safe_dump({"version": 1, "name": "sgx", "platforms": {"sgx": {
        "mr_enclave": [case["claims"]["measurement"]], "tcb_status": ["UpToDate", "SWHardeningNeeded",
        "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDate"], "allow_debug": True,
        "allowed_advisories": ["INTEL-SA-00289", "INTEL-SA-00615"]}}}))  # fmt: skip
    args = [
        "policy",
        "dry-run",
        str(pol),
        str(root / case["evidence"]),
        "--at",
        case["verify_at"],
        "--json",
    ]
    for c in case["collateral"]:
        args += ["--collateral", str(root / c)]
    r = runner.invoke(cli, args)
    result = json.loads(r.output)["results"][0]
    assert result["authentic"] is True and result["accepted"] is True, result["reasons"]
    assert r.exit_code == 0
    assert result["claims"]["measurement"] == case["claims"]["measurement"]


def test_install_shows_what_it_replaces(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    key = SimulatedPlatform(svc.sim, measurement=V1).key_id
    f1, f2, other = tmp_path / "v1.json", tmp_path / "v2.json", tmp_path / "other.json"
    f1.write_bytes(
        sign_policy(load_policy(json.dumps(_doc("shop", key, V1))), svc.domain.policy_key)
    )
    f2.write_bytes(
        sign_policy(load_policy(json.dumps(_doc("shop", key, V1, V2))), svc.domain.policy_key)
    )
    other.write_bytes(
        sign_policy(load_policy(json.dumps(_doc("batch", key, V2))), svc.domain.policy_key)
    )
    r = runner.invoke(cli, ["policy", "install", str(f1), *svc.args()])
    assert r.exit_code == 0 and "policy 'shop' is new" in r.output and "version 1" in r.output
    r = runner.invoke(cli, ["policy", "install", str(f2), *svc.args()])
    assert r.exit_code == 0, r.output
    assert "replacing policy 'shop' version 1 (in force)" in r.output
    assert "--- shop version 1 (installed)" in r.output and f"+    - {V2}" in r.output
    assert "installed policy 'shop' version 2" in r.output
    r = runner.invoke(cli, ["policy", "install", str(other), *svc.args()])
    assert (
        r.exit_code == 0
        and "policy 'batch' is new (the other policies in force stay as they are)" in r.output
    )
    r = runner.invoke(cli, ["policy", "install", str(f2), *svc.args()])
    assert "(the same policy as the installed version)" in r.output
    # an envelope that does not parse: no diff, the service's refusal
    junk = tmp_path / "junk.json"
    junk.write_bytes(b'{"format": 3, "policy": [')
    r = runner.invoke(cli, ["policy", "install", str(junk), *svc.args()])
    assert (
        r.exit_code == 2
        and "service refused the policy" in r.output
        and "Traceback" not in r.output
    )
