"""`veritee secret ...` against a real service (uvicorn in a thread, embedded SQLite)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for
from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.keybroker.vault import MAX_SECRET_BYTES
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings
from veritee.service.tls import server_certificate_files

_register()
GOOD = "ab" * 48
OTHER = "cd" * 48
VALUE = b"s3cr3t-VALUE-never-printed-7f1e"


@dataclass
class Svc:
    domain: Domain
    server: RunningServer
    tmp: Path

    def args(self, *extra: str) -> list[str]:
        return [*extra, "--url", self.server.url, "--data", str(self.domain.path)]

    def audit_text(self) -> str:
        h = {"Authorization": f"Bearer {self.domain.admin_token()}"}
        r = httpx.get(self.server.url + "/v1/admin/audit", params={"limit": 1000}, headers=h)
        return r.text


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    tmp = tmp_path_factory.mktemp("secret-cli")
    domain = Domain.create(tmp / "domain", name="cli", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)))
    try:
        yield Svc(domain, server, tmp)
    finally:
        server.stop()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    return CliRunner()


def _policy(tmp: Path, measurement: str = GOOD, name: str = "policy.json") -> Path:
    p = tmp / name
    p.write_text(json.dumps({"allOf": [{"claim": "measurement", "equals": measurement}]}))
    return p


def _value(tmp: Path, value: bytes = VALUE) -> Path:
    f = tmp / "value.bin"
    f.write_bytes(value)
    return f


def test_put_info_list_rotate_delete(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    pol, val = _policy(tmp_path), _value(tmp_path)
    outputs = []
    r = runner.invoke(cli, ["secret", "put", "app/db", "--policy", str(pol), "--value-file", str(val),
                            *svc.args()])  # fmt: skip
    outputs.append(r.output)
    assert r.exit_code == 0, r.output
    assert "stored secret 'app/db' version 1" in r.output

    r = runner.invoke(cli, ["secret", "info", "app/db", "--json", *svc.args()])
    outputs.append(r.output)
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["version"] == 1 and info["policy"]["allOf"][0]["equals"] == GOOD

    r = runner.invoke(cli, ["secret", "rotate", "app/db", "--value-stdin", *svc.args()],
                      input=VALUE + b"-v2")  # fmt: skip
    outputs.append(r.output)
    assert r.exit_code == 0, r.output
    assert "rotated secret 'app/db' version 2" in r.output
    r = runner.invoke(cli, ["secret", "rotate", "app/db", "--value-stdin", "--keep-old-policies",
                            *svc.args()], input=VALUE + b"-v3")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert '"keep_old_policies":true' in svc.audit_text()

    r = runner.invoke(cli, ["secret", "list", "--json", *svc.args()])
    outputs.append(r.output)
    rows = {s["name"]: s for s in json.loads(r.output)["secrets"]}
    assert rows["app/db"]["latest_version"] == 3 and rows["app/db"]["versions"] == 3

    r = runner.invoke(cli, ["secret", "list", *svc.args()])
    outputs.append(r.output)
    assert "app/db\tlatest 3" in r.output

    r = runner.invoke(cli, ["secret", "delete", "app/db", "--yes", *svc.args()])
    outputs.append(r.output)
    assert r.exit_code == 0 and "3 versions" in r.output
    r = runner.invoke(cli, ["secret", "info", "app/db", *svc.args()])
    outputs.append(r.output)
    assert r.exit_code == 1 and "secret_unknown" in r.output

    text = "".join(outputs)
    assert VALUE.decode() not in text and svc.domain.admin_token() not in text
    audit = svc.audit_text()
    assert '"secret.put"' in audit and '"secret.rotate"' in audit and '"secret.delete"' in audit
    assert VALUE.decode() not in audit


def test_missing_admin_credential(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "nodomain"
    empty.mkdir()
    r = runner.invoke(cli, ["secret", "list", "--url", svc.server.url, "--data", str(empty)])
    assert r.exit_code == 2
    assert "no admin credential" in r.output and str(empty) in r.output


def test_wrong_admin_credential_is_refused(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(cli, ["secret", "list", "--url", svc.server.url, "--admin-token", "nope"])
    assert r.exit_code == 1 and "admin_invalid" in r.output
    # the environment variable is honoured too
    r = runner.invoke(cli, ["secret", "list", "--url", svc.server.url],
                      env={"VERITEE_ADMIN_TOKEN": svc.domain.admin_token()})  # fmt: skip
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ('{"anyOf": [', "not JSON"),
        ('{"anyOf": []}', "empty"),
        ('{"allOf": [{"claim": "measurement", "equalz": "ab"}]}', "unknown key"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_bad_policy_file_names_the_path(
    svc: Svc, runner: CliRunner, tmp_path: Path, content: str, expect: str
) -> None:
    pol = tmp_path / "bad-policy.json"
    pol.write_text(content)
    r = runner.invoke(cli, ["secret", "put", "x", "--policy", str(pol), "--value-file",
                            str(_value(tmp_path)), *svc.args()])  # fmt: skip
    assert r.exit_code == 2, r.output
    assert str(pol) in r.output and expect in r.output
    r = runner.invoke(cli, ["secret", "info", "x", *svc.args()])
    assert r.exit_code == 1  # nothing was stored


def test_missing_policy_file(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    r = runner.invoke(cli, ["secret", "put", "x", "--policy", str(missing), "--value-file",
                            str(_value(tmp_path)), *svc.args()])  # fmt: skip
    assert r.exit_code == 2 and str(missing) in r.output


def test_oversized_value_file(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(MAX_SECRET_BYTES + 1)
    r = runner.invoke(cli, ["secret", "put", "big", "--policy", str(_policy(tmp_path)),
                            "--value-file", str(big), *svc.args()])  # fmt: skip
    assert r.exit_code == 2 and str(big) in r.output and "limit" in r.output
    r = runner.invoke(cli, ["secret", "put", "big", "--policy", str(_policy(tmp_path)),
                            "--value-stdin", *svc.args()], input=b"x" * (MAX_SECRET_BYTES + 1))  # fmt: skip
    assert r.exit_code == 2 and "stdin" in r.output


@pytest.mark.parametrize("how", [[], ["--value-stdin", "--value-file", "v"]])
def test_value_source_exactly_one(
    svc: Svc, runner: CliRunner, tmp_path: Path, how: list[str]
) -> None:
    r = runner.invoke(
        cli, ["secret", "put", "x", "--policy", str(_policy(tmp_path)), *how, *svc.args()]
    )
    assert r.exit_code == 2 and "exactly one" in r.output


def test_empty_value_and_bad_name(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    pol = _policy(tmp_path)
    r = runner.invoke(cli, ["secret", "put", "x", "--policy", str(pol), "--value-file",
                            str(_value(tmp_path, b"")), *svc.args()])  # fmt: skip
    assert r.exit_code == 2 and "empty" in r.output
    r = runner.invoke(cli, ["secret", "put", "../etc", "--policy", str(pol), "--value-file",
                            str(_value(tmp_path)), *svc.args()])  # fmt: skip
    assert r.exit_code == 2 and "invalid secret name" in r.output


def test_unknown_secret_refused(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    for cmd in (["delete", "ghost", "--yes"], ["info", "ghost"]):
        r = runner.invoke(cli, ["secret", *cmd, *svc.args()])
        assert r.exit_code == 1 and "secret_unknown" in r.output
    r = runner.invoke(
        cli, ["secret", "rotate", "ghost", "--value-file", str(_value(tmp_path)), *svc.args()]
    )
    assert r.exit_code == 1 and "secret_unknown" in r.output


def test_service_unreachable(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(cli, ["secret", "list", "--url", "http://127.0.0.1:9", "--admin-token", "t"])
    assert r.exit_code == 2 and "cannot reach" in r.output


def test_dry_run_against_stored_evidence(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    plat = SimulatedPlatform(sim, measurement=GOOD)
    doc = {"version": 1, "name": "t", "platforms": {"simulated": {
        "measurements": [GOOD, OTHER], "platform_keys": [plat.key_id], "allow_debug": True}}}  # fmt: skip
    env = sign_policy(load_policy(json.dumps(doc)), svc.domain.policy_key)
    h = {"Authorization": f"Bearer {svc.domain.admin_token()}"}
    assert httpx.put(svc.server.url + "/v1/admin/policy", content=env, headers=h).status_code == 200
    r = runner.invoke(cli, ["secret", "put", "dry/one", "--policy", str(_policy(tmp_path)),
                            "--value-file", str(_value(tmp_path)), *svc.args()])  # fmt: skip
    assert r.exit_code == 0, r.output
    good_ev, other_ev = tmp_path / "good.bin", tmp_path / "other.bin"
    good_ev.write_bytes(plat.evidence(report_data_for(b"\x01" * 32, b"", profile=plat.profile)))
    other_ev.write_bytes(
        SimulatedPlatform(sim, measurement=OTHER).evidence(
            report_data_for(b"\x01" * 32, b"", profile=plat.profile)
        )
    )

    r = runner.invoke(
        cli, ["secret", "dry-run", "dry/one", "--evidence", str(good_ev), *svc.args()]
    )
    assert r.exit_code == 0, r.output
    assert "WOULD RELEASE" in r.output
    r = runner.invoke(
        cli, ["secret", "dry-run", "dry/one", "--evidence", str(other_ev), "--json", *svc.args()]
    )
    assert r.exit_code == 1
    out = json.loads(r.output)
    assert out["allowed"] is False and out["reasons"][0]["code"] == "release_claim_mismatch"
    # a candidate policy from a file, tested before it is stored
    r = runner.invoke(cli, ["secret", "dry-run", "dry/one", "--evidence", str(other_ev), "--policy",
                            str(_policy(tmp_path, OTHER, "cand.json")), *svc.args()])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert VALUE.decode() not in r.output


def test_https_trusts_the_domain_ca(svc: Svc, runner: CliRunner, tmp_path: Path) -> None:
    cert, key = server_certificate_files(svc.domain.path, "127.0.0.1")
    app = create_app(Settings(data_dir=svc.domain.path))
    with start_in_thread(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as tls:
        assert tls.url.startswith("https://")
        r = runner.invoke(cli, ["secret", "list", "--url", tls.url, "--data", str(svc.domain.path)])
        assert r.exit_code == 0, r.output
        other = Domain.create(tmp_path / "other", name="o", now=dt.datetime.now(dt.UTC))
        r = runner.invoke(cli, ["secret", "list", "--url", tls.url, "--data", str(svc.domain.path),
                                "--ca", str(other.path / "domain_ca.pem")])  # fmt: skip
        assert r.exit_code == 2 and "did not verify against CA" in r.output
