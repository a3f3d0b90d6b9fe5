"""`veritee certificate revoke|revocations|crl` against a real service (uvicorn in a thread)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.service.app import create_app
from veritee.service.runner import start_in_thread
from veritee.service.settings import Settings

_register()


def test_revoke_list_and_fetch_the_crl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    domain = Domain.create(tmp_path / "domain", name="cli", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path)))
    runner = CliRunner()
    args = ["--url", server.url, "--data", str(domain.path)]
    try:
        r = runner.invoke(cli, ["certificate", "revoke", "--serial", "0x1A2b", "--reason", "lost", *args])
        assert r.exit_code == 0 and "revoked: serial 1a2b" in r.output, r.output
        r = runner.invoke(cli, ["certificate", "revoke", "--measurement", "AB" * 48, *args])
        assert r.exit_code == 0 and f"measurement {'ab' * 48}" in r.output, r.output
        r = runner.invoke(cli, ["certificate", "revoke", *args])
        assert r.exit_code == 2 and "exactly one of" in r.output
        r = runner.invoke(cli, ["certificate", "revoke", "--serial", "xyz", *args])
        assert r.exit_code == 2 and "serial is not hex" in r.output
        r = runner.invoke(cli, ["certificate", "revocations", *args])
        assert "serial\t1a2b" in r.output and "lost" in r.output and "measurement\t" in r.output
        r = runner.invoke(cli, ["certificate", "crl", *args])
        assert r.exit_code == 0 and r.output.split() == ["1a2b"], r.output
        out = tmp_path / "domain.crl"
        r = runner.invoke(cli, ["certificate", "crl", "-o", str(out), *args])
        assert r.exit_code == 0, r.output
        crl = x509.load_der_x509_crl(out.read_bytes())
        assert crl.is_signature_valid(domain.ca_certificate.public_key())  # type: ignore[arg-type]
        assert [x.serial_number for x in crl] == [0x1A2B]
        r = runner.invoke(cli, ["certificate", "revocations", "--url", server.url, "--admin-token",
                                "wrong", "--data", str(domain.path)])  # fmt: skip
        assert r.exit_code == 1 and "admin_invalid" in r.output
    finally:
        server.stop()
