"""Diagnostics that point the right way (issue 16): a wrong CA, the wrong scheme, nothing
listening, bad policy YAML, absent claims, a release policy naming an unknown claim, no admin
credential, ``audit verify`` on a folder without a domain. Against real services (uvicorn in a
thread, one with TLS from the domain CA, one plain)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from veritee.binding import report_data_for
from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings
from veritee.service.tls import server_certificate_files

_register()
M = "ab" * 48


@dataclass
class Services:
    domain: Domain
    other: Domain
    tls: RunningServer
    plain: RunningServer


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    tmp = tmp_path_factory.mktemp("diagnostics")
    domain = Domain.create(tmp / "domain", name="diag", now=dt.datetime.now(dt.UTC))
    other = Domain.create(tmp / "other", name="other", now=dt.datetime.now(dt.UTC))
    cert, key = server_certificate_files(domain.path, "127.0.0.1")
    tls = start_in_thread(
        create_app(Settings(data_dir=domain.path)), ssl_certfile=str(cert), ssl_keyfile=str(key)
    )
    plain = start_in_thread(create_app(Settings(data_dir=other.path)))
    try:
        yield Services(domain, other, tls, plain)
    finally:
        tls.stop()
        plain.stop()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    return CliRunner()


def test_a_wrong_ca_names_the_ca_not_a_connect_error(
    services: Services, runner: CliRunner, tmp_path: Path
) -> None:
    wrong = services.other.path / "domain_ca.pem"
    signed = tmp_path / "signed.json"
    signed.write_bytes(b"{}")
    for args in (["secret", "list"], ["policy", "list"], ["policy", "install", str(signed)]):
        r = runner.invoke(cli, [*args, "--url", services.tls.url, "--data", str(services.domain.path),
                                "--ca", str(wrong)])  # fmt: skip
        assert r.exit_code == 2, (args, r.output)
        assert f"the service's TLS certificate did not verify against CA {wrong}" in r.output, (
            r.output
        )
        assert "ConnectError" not in r.output and "Traceback" not in r.output
    # the right CA (the data folder's, by default) works
    r = runner.invoke(
        cli, ["policy", "list", "--url", services.tls.url, "--data", str(services.domain.path)]
    )
    assert r.exit_code == 0, r.output


def test_the_sdk_names_the_ca_too(services: Services) -> None:
    from veritee.errors import StorageError
    from veritee.sdk.http import post_json

    wrong = services.other.path / "domain_ca.pem"
    import ssl

    with httpx.Client(verify=ssl.create_default_context(cafile=str(wrong))) as client, \
            pytest.raises(StorageError) as e:  # fmt: skip
        post_json(client, services.tls.url + "/v1/challenge", {})
    assert e.value.code == "tls_untrusted" and "did not verify" in e.value.message


def test_the_scheme_mismatch_gets_a_hint(services: Services, runner: CliRunner) -> None:
    # http:// (the clients' default scheme) to a service started with --tls
    http_url = services.tls.url.replace("https://", "http://")
    r = runner.invoke(
        cli, ["policy", "list", "--url", http_url, "--data", str(services.domain.path)]
    )
    assert r.exit_code == 2
    assert f"if it runs with --tls, use --url {services.tls.url}" in r.output, r.output
    # https:// to a plain-HTTP service
    https_url = services.plain.url.replace("http://", "https://")
    r = runner.invoke(
        cli, ["policy", "list", "--url", https_url, "--data", str(services.other.path)]
    )
    assert r.exit_code == 2
    assert (
        f"does not speak TLS (it was started without --tls): use --url {services.plain.url}"
        in r.output
    )


def test_nothing_listening_says_so(services: Services, runner: CliRunner) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = runner.invoke(
        cli,
        [
            "secret",
            "list",
            "--url",
            f"http://127.0.0.1:{port}",
            "--data",
            str(services.domain.path),
        ],
    )
    assert r.exit_code == 2
    assert "is `veritee serve` running there?" in r.output and "Connection refused" in r.output


@pytest.fixture
def sim_evidence(tmp_path: Path) -> Path:
    p = SimulatedPlatform(tmp_path / "sim", measurement=M, debug=False)
    f = tmp_path / "ev.bin"
    f.write_bytes(p.evidence(report_data_for(b"\x01\x02", b"", profile=p.profile)))
    return f


@pytest.mark.parametrize("text", [
    "a: [1,\n b",                  # unclosed flow sequence
    "version: 1\n\tname: x\n",     # a tab where YAML wants spaces
    "{\"format\": \"veritee-signed-policy/1\", \"policy\": \"{not json\"}",  # a broken envelope
    "key: 'unterminated\n",
])  # fmt: skip
def test_verify_with_bad_policy_yaml_is_a_clear_usage_error(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path, text: str
) -> None:
    from veritee.appraisal.policy import ENVELOPE_FORMAT

    pol = tmp_path / "bad.yaml"
    pol.write_text(text.replace("veritee-signed-policy/1", ENVELOPE_FORMAT))
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--policy", str(pol)])
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert "Traceback" not in r.output and "error [policy_malformed]" in r.output
    assert str(pol) in r.output


def test_absent_claims_say_not_reported(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path
) -> None:
    r = runner.invoke(
        cli,
        ["verify", str(sim_evidence), "--platform-key", str(tmp_path / "sim" / "platform_key.pem")],
    )
    assert r.exit_code == 0, r.output
    assert "tcb_status: not reported" in r.output
    assert "None" not in r.output


def test_a_release_policy_naming_an_unknown_claim_is_refused(
    services: Services, runner: CliRunner, tmp_path: Path
) -> None:
    policy = {
        "allOf": [{"claim": "mesurement", "equals": M}, {"claim": "platform", "equals": "tdx"}]
    }
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps(policy))
    value = tmp_path / "value"
    value.write_bytes(b"v")
    r = runner.invoke(cli, ["secret", "put", "app/key", "--policy", str(pol), "--value-file", str(value),
                            "--url", services.tls.url, "--data", str(services.domain.path)])  # fmt: skip
    assert r.exit_code == 2
    assert "claim 'mesurement' is emitted by no verifier (did you mean 'measurement'?)" in r.output
    assert (
        "Known claims:" in r.output
        and "reported_tcb" in r.output
        and "admission_serial" in r.output
    )
    # the service refuses it too (a client that skips the local check)
    import ssl

    ctx = ssl.create_default_context(cafile=str(services.domain.path / "domain_ca.pem"))
    h = {"Authorization": f"Bearer {services.domain.admin_token()}"}
    r2 = httpx.put(services.tls.url + "/v1/admin/secrets/app/key", headers=h, verify=ctx,
                   json={"value": "dg==", "policy": policy})  # fmt: skip
    assert r2.status_code == 400 and r2.json()["code"] == "release_claim_unknown"
    assert (
        httpx.get(services.tls.url + "/v1/admin/secrets/app/key", headers=h, verify=ctx).status_code
        == 404
    )
    # nested claims of a known root and every common claim are fine
    good = {
        "allOf": [{"claim": "reported_tcb.snp", ">=": 1}, {"claim": "tcb_status", "exists": False}]
    }
    r3 = httpx.put(services.tls.url + "/v1/admin/secrets/app/key", headers=h, verify=ctx,
                   json={"value": "dg==", "policy": good})  # fmt: skip
    assert r3.status_code == 200, r3.text


def test_no_admin_credential_says_where_it_was_looked_for(services: Services, runner: CliRunner,
                                                          tmp_path: Path) -> None:  # fmt: skip
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    signed = tmp_path / "signed.json"
    signed.write_bytes(b"{}")
    for args in (
        ["policy", "install", str(signed)],
        ["secret", "list"],
        ["certificate", "revocations"],
    ):
        r = runner.invoke(cli, [*args, "--url", services.tls.url, "--data", str(empty)])
        assert r.exit_code == 2, r.output
        assert "no admin credential" in r.output and str(empty / "admin_token") in r.output
        assert "VERITEE_ADMIN_TOKEN" in r.output and "--admin-token" in r.output
        assert "Errno" not in r.output
    # a credential file that cannot be read: the path and why, not an errno alone
    folder = tmp_path / "unreadable"
    (folder / "admin_token").mkdir(parents=True)  # a folder where the file should be
    r = runner.invoke(cli, ["secret", "list", "--url", services.tls.url, "--data", str(folder)])
    assert r.exit_code == 2
    assert f"cannot read the admin credential {folder / 'admin_token'}" in r.output
    assert "Errno" not in r.output
    empty_token = tmp_path / "emptytoken"
    empty_token.mkdir()
    (empty_token / "admin_token").write_text("\n")
    r = runner.invoke(
        cli, ["secret", "list", "--url", services.tls.url, "--data", str(empty_token)]
    )
    assert r.exit_code == 2 and "is empty" in r.output


def test_audit_verify_on_a_folder_without_a_domain(runner: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-domain"
    empty.mkdir()
    r = runner.invoke(cli, ["audit", "verify", "--data", str(empty)])
    assert r.exit_code == 2
    assert f"no domain here: {empty} holds no veritee domain" in r.output
    assert "database error" not in r.output and "OperationalError" not in r.output
    assert os.listdir(empty) == []  # and no empty database left behind
    # a database that is not a domain's (no audit log)
    other = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(other).execute("CREATE TABLE t (x INTEGER)").connection.commit()
    r = runner.invoke(cli, ["audit", "verify", "--data", str(empty), "--db", f"sqlite:///{other}"])
    assert r.exit_code == 2 and "no domain here" in r.output and "has no audit log" in r.output, (
        r.output
    )
    # a real domain still verifies
    domain = Domain.create(tmp_path / "d", name="d", now=dt.datetime.now(dt.UTC))
    from veritee.service.storage import Storage

    store = Storage(domain.database_url)
    store.migrate()
    store.close()
    r = runner.invoke(cli, ["audit", "verify", "--data", str(domain.path)])
    assert r.exit_code == 0 and "audit chain intact" in r.output
