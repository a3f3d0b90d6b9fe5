"""`veritee admit` against a real service (uvicorn in a thread, embedded SQLite), with two named
appraisal policies in force and secrets whose release policies pin measurements (issue 18.7)."""

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
SHOP_V1 = "ab" * 48
SHOP_V2 = "ef" * 48
BATCH = "cd" * 48


@dataclass
class Svc:
    domain: Domain
    server: RunningServer
    sim: Path

    def args(self, *extra: str) -> list[str]:
        return [*extra, "--url", self.server.url, "--data", str(self.domain.path)]

    def get(self, path: str, **params: str) -> dict[str, Any]:
        h = {"Authorization": f"Bearer {self.domain.admin_token()}"}
        r = httpx.get(self.server.url + path, params=params, headers=h)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

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


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Svc]:
    domain = Domain.create(tmp_path / "domain", name="admit", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)))
    s = Svc(domain, server, tmp_path / "sim")
    key = [SimulatedPlatform(s.sim, measurement=SHOP_V1).key_id]
    h = {"Authorization": f"Bearer {domain.admin_token()}"}
    try:
        for name, m in (("shop", SHOP_V1), ("batch", BATCH)):
            doc = {"version": 1, "name": name, "platforms": {"simulated": {
                "measurements": [m], "platform_keys": key, "allow_debug": True}}}  # fmt: skip
            env = sign_policy(load_policy(json.dumps(doc)), domain.policy_key)
            assert (
                httpx.put(server.url + "/v1/admin/policy", content=env, headers=h).status_code
                == 200
            )
        for secret, rp in (("shop/db", {"allOf": [{"claim": "platform", "equals": "simulated"},
                                                  {"claim": "measurement", "equals": SHOP_V1}]}),
                           ("batch/key", {"allOf": [{"claim": "measurement", "in": [BATCH]}]})):  # fmt: skip
            r = httpx.put(
                server.url + f"/v1/admin/secrets/{secret}",
                headers=h,
                json={"value": base64.b64encode(b"v-" + secret.encode()).decode(), "policy": rp},
            )
            assert r.status_code == 200, r.text
        yield s
    finally:
        server.stop()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    return CliRunner()


def _dry_run(svc: Svc, runner: CliRunner, secret: str, measurement: str, tmp: Path) -> int:
    plat = SimulatedPlatform(svc.sim, measurement=measurement)
    ev = tmp / f"{measurement[:4]}.bin"
    ev.write_bytes(plat.evidence(report_data_for(b"\x01" * 32, b"", profile=plat.profile)))
    return runner.invoke(
        cli, ["secret", "dry-run", secret, "--evidence", str(ev), *svc.args()]
    ).exit_code


def test_admit_adds_the_measurement_to_its_policy_and_release_policies_only(
    svc: Svc, runner: CliRunner, tmp_path: Path
) -> None:
    refused = svc.attest(SHOP_V2)
    assert refused["accepted"] is False
    assert [r["code"] for r in refused["reasons"]] == ["measurement_not_allowed"]
    assert _dry_run(svc, runner, "shop/db", SHOP_V2, tmp_path) == 1

    r = runner.invoke(
        cli, ["admit", "--policy", "shop", "--measurement", SHOP_V2.upper(), "--yes", *svc.args()]
    )
    assert r.exit_code == 0, r.output
    assert f'+        "{SHOP_V2}"' in r.output  # the policy's diff
    assert (
        f'+        "{SHOP_V2}"' in r.output.split("+++ secret shop/db")[1]
    )  # the release policy's
    assert "installed policy 'shop' version 2" in r.output
    assert "secret 'shop/db': release policy stored as version 2" in r.output
    assert "batch/key" not in r.output

    shop = svc.get("/v1/admin/policy", name="shop")
    assert (shop["version"], shop["policy"]["platforms"]["simulated"]["measurements"]) == (
        2,
        [SHOP_V1, SHOP_V2],
    )
    batch = svc.get("/v1/admin/policy", name="batch")  # the other workload's policy: untouched
    assert (batch["version"], batch["policy"]["platforms"]["simulated"]["measurements"]) == (
        1,
        [BATCH],
    )
    db = svc.get("/v1/admin/secrets/shop/db")
    assert db["version"] == 2
    assert db["policy"]["allOf"][1] == {"claim": "measurement", "in": [SHOP_V1, SHOP_V2]}
    assert svc.get("/v1/admin/secrets/batch/key")["version"] == 1

    for m, name in ((SHOP_V2, "shop"), (SHOP_V1, "shop"), (BATCH, "batch")):
        out = svc.attest(m)
        assert out["accepted"] is True, out["reasons"]
        assert out["policy"]["name"] == name
    assert (
        _dry_run(svc, runner, "shop/db", SHOP_V2, tmp_path) == 0
    )  # the refused version now gets its secret
    assert _dry_run(svc, runner, "shop/db", SHOP_V1, tmp_path) == 0
    assert _dry_run(svc, runner, "batch/key", SHOP_V2, tmp_path) == 1

    again = runner.invoke(
        cli, ["admit", "--policy", "shop", "--measurement", SHOP_V2, "--yes", *svc.args()]
    )
    assert again.exit_code == 0, again.output
    assert f"policy 'shop' version 2 already admits {SHOP_V2}" in again.output
    assert "stored" not in again.output
    assert svc.get("/v1/admin/policy", name="shop")["version"] == 2
    assert svc.get("/v1/admin/secrets/shop/db")["version"] == 2


def test_admit_asks_first_and_declining_installs_nothing(svc: Svc, runner: CliRunner) -> None:
    r = runner.invoke(
        cli, ["admit", "--policy", "shop", "--measurement", SHOP_V2, *svc.args()], input="n\n"
    )
    assert r.exit_code == 1, r.output
    assert f'+        "{SHOP_V2}"' in r.output and "nothing installed" in r.output
    assert svc.get("/v1/admin/policy", name="shop")["version"] == 1


def test_admit_bad_input(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(
        cli, ["admit", "--policy", "shop", "--measurement", "xyz", "--yes", *svc.args()]
    )
    assert r.exit_code == 2 and "is not hex" in r.output
    r = runner.invoke(
        cli, ["admit", "--policy", "shop", "--measurement", "abcd", "--yes", *svc.args()]
    )
    assert (
        r.exit_code == 2 and "48 bytes" in r.output
    )  # the policy's own size check, before signing
    r = runner.invoke(cli, ["admit", "--measurement", SHOP_V2, "--yes", *svc.args()])
    assert (
        r.exit_code == 2
        and "2 appraisal policies are in force (batch, shop): name the workload's" in r.output
    )
    r = runner.invoke(
        cli, ["admit", "--policy", "nope", "--measurement", SHOP_V2, "--yes", *svc.args()]
    )
    assert r.exit_code == 1 and "no appraisal policy named 'nope'" in r.output
    r = runner.invoke(cli, ["admit", "--policy", "shop", "--measurement", SHOP_V2, "--platform", "tdx",
                            "--yes", *svc.args()])  # fmt: skip
    assert r.exit_code == 2 and "no section for platform 'tdx'" in r.output
    empty = tmp_path / "no-domain"
    empty.mkdir()
    r = runner.invoke(cli, ["admit", "--policy", "shop", "--measurement", SHOP_V2, "--yes", "--url", svc.server.url,
                            "--data", str(empty), "--admin-token", svc.domain.admin_token()])  # fmt: skip
    assert r.exit_code == 2 and "no domain policy key" in r.output
    assert svc.get("/v1/admin/policy", name="shop")["version"] == 1


def test_admit_from_evidence_takes_the_measurement_of_authentic_evidence_only(
    svc: Svc, runner: CliRunner, tmp_path: Path
) -> None:
    plat = SimulatedPlatform(svc.sim, measurement=SHOP_V2)
    good = tmp_path / "v2.bin"
    good.write_bytes(plat.evidence(report_data_for(b"\x02" * 32, b"", profile=plat.profile)))
    bad = tmp_path / "tampered.bin"
    raw = bytearray(good.read_bytes())
    raw[-5] ^= 1
    bad.write_bytes(bytes(raw))
    r = runner.invoke(
        cli, ["admit", "--policy", "shop", "--from-evidence", str(bad), "--yes", *svc.args()]
    )
    assert r.exit_code == 1 and "could not be verified" in r.output, r.output
    assert svc.get("/v1/admin/policy", name="shop")["version"] == 1
    r = runner.invoke(cli, ["admit", "--policy", "shop", "--from-evidence", str(good), "--measurement", SHOP_V2,
                            "--yes", *svc.args()])  # fmt: skip
    assert r.exit_code == 2 and "exactly one of" in r.output

    r = runner.invoke(cli, ["admit", "--policy", "shop", "--from-evidence", str(good), "--secrets", "none",
                            "--yes", *svc.args()])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "installed policy 'shop' version 2" in r.output
    shop = svc.get("/v1/admin/policy", name="shop")["policy"]["platforms"]["simulated"][
        "measurements"
    ]
    assert shop == [SHOP_V1, SHOP_V2]
    assert svc.get("/v1/admin/secrets/shop/db")["version"] == 1  # --secrets none
    assert svc.attest(SHOP_V2)["accepted"] is True


def test_policy_list_and_retire_take_one_named_policy_out_of_force(
    svc: Svc, runner: CliRunner
) -> None:
    """Installing never replaces another name's policy, so retiring is how one leaves force."""
    r = runner.invoke(cli, ["policy", "list", *svc.args()])
    assert r.exit_code == 0, r.output
    assert [line.split("\t")[:2] for line in r.output.splitlines()] == [
        ["batch", "version 1"],
        ["shop", "version 1"],
    ]
    assert svc.attest(BATCH)["accepted"] is True
    r = runner.invoke(cli, ["policy", "retire", "batch", *svc.args()], input="n\n")
    assert r.exit_code == 1 and svc.attest(BATCH)["accepted"] is True
    r = runner.invoke(cli, ["policy", "retire", "batch", "--yes", *svc.args()])
    assert r.exit_code == 0 and "retired policy 'batch' (version 1 was in force)" in r.output, (
        r.output
    )
    refused = svc.attest(BATCH)
    assert refused["accepted"] is False and [x["code"] for x in refused["reasons"]] == [
        "measurement_not_allowed"
    ]
    assert svc.attest(SHOP_V1)["accepted"] is True  # the other policy: still in force
    assert [p["name"] for p in svc.get("/v1/admin/policies")["policies"]] == ["shop"]
    r = runner.invoke(cli, ["policy", "retire", "batch", "--yes", *svc.args()])
    assert r.exit_code == 1 and "no appraisal policy named 'batch' is in force" in r.output
    # one policy in force: admit finds it without --policy
    r = runner.invoke(
        cli, ["admit", "--measurement", SHOP_V2, "--secrets", "none", "--yes", *svc.args()]
    )
    assert r.exit_code == 0 and "installed policy 'shop' version 2" in r.output, r.output
    audit = svc.get("/v1/admin/audit", limit="1000")["entries"]
    assert [e["subject"] for e in audit if e["kind"] == "policy.retire"] == ["batch"]
    # admit reads a retired policy's newest version and installs the next one: in force again
    r = runner.invoke(cli, ["admit", "--policy", "batch", "--measurement", SHOP_V2, "--secrets", "none", "--yes",
                            *svc.args()])  # fmt: skip
    assert r.exit_code == 0 and "installed policy 'batch' version 2" in r.output, r.output
    assert svc.attest(BATCH)["accepted"] is True
