"""The command line: verify (JSON shape, exit codes, bad flags/files), measure, init, policy sign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from veritee.binding import report_data_for
from veritee.cli.main import _register, cli
from veritee.platforms.simulated import SimulatedPlatform

_register()
M = "ab" * 48


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def sim_evidence(tmp_path: Path) -> Path:
    p = SimulatedPlatform(tmp_path / "sim", measurement=M, debug=False)
    f = tmp_path / "ev.bin"
    f.write_bytes(p.evidence(report_data_for(b"\x01\x02", b"", profile=p.profile)))
    return f


def _platform_key(tmp_path: Path) -> Path:
    """What the simulated platform writes: its PEM private key (only the public half is used)."""
    return tmp_path / "sim" / "platform_key.pem"


def test_verify_json_shape_and_exit_zero(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path
) -> None:
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--json", "--nonce", "0102",
                            "--platform-key", str(_platform_key(tmp_path))])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out) >= {"format", "authentic", "accepted", "claims", "reasons", "verified_at"}
    assert out["format"] == "simulated" and out["authentic"] and out["accepted"]
    assert out["claims"]["measurement"] == M
    assert out["claims"]["platform_key_trusted"] is True
    assert "simulated_platform" in {w["code"] for w in out["warnings"]}


def test_baseline_refuses_simulated_evidence_whose_key_vouches_for_itself(
    runner: CliRunner, sim_evidence: Path
) -> None:
    """Issue 11 item 1: a key that signs its own evidence is no root of trust."""
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--json"])
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert out["authentic"] is True and out["accepted"] is False
    assert [x["code"] for x in out["reasons"]] == ["platform_key_not_trusted"]
    assert out["claims"]["platform_key_trusted"] is False
    assert out["status"] == "contraindicated"


def test_platform_key_as_pem_public_key(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    priv = serialization.load_pem_private_key(_platform_key(tmp_path).read_bytes(), None)
    pub = tmp_path / "platform.pub.pem"
    pub.write_bytes(priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--json", "--platform-key", str(pub)])
    assert r.exit_code == 0, r.output


def test_another_platform_key_does_not_make_it_trusted(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path
) -> None:
    SimulatedPlatform(tmp_path / "other", measurement=M)
    args = [
        "verify",
        str(sim_evidence),
        "--json",
        "--platform-key",
        str(tmp_path / "other" / "platform_key.pem"),
    ]
    r = runner.invoke(cli, args)
    assert r.exit_code == 1
    assert [x["code"] for x in json.loads(r.output)["reasons"]] == ["platform_key_not_trusted"]


def test_with_a_policy_its_platform_keys_decide(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path
) -> None:
    from veritee.platforms.simulated import platform_key_id

    key_id = platform_key_id(SimulatedPlatform(tmp_path / "sim", measurement=M)._key)
    pol = tmp_path / "p.yaml"
    pol.write_text(
        f"version: 1\nname: t\nplatforms:\n  simulated: {{platform_keys: ['{key_id}']}}\n"
    )
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--json", "--policy", str(pol)])
    assert r.exit_code == 0, r.output
    pol.write_text("version: 1\nname: t\nplatforms:\n  simulated: {}\n")
    args = [
        "verify",
        str(sim_evidence),
        "--json",
        "--policy",
        str(pol),
        "--platform-key",
        str(_platform_key(tmp_path)),
    ]
    r = runner.invoke(cli, args)
    assert r.exit_code == 1 and "platform_key_not_trusted" in r.output


@pytest.mark.parametrize("content", [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                                     b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
                                     b"-----BEGIN PUBLIC KEY-----" + b"A" * (70 * 1024)])  # fmt: skip
def test_bad_platform_key_files_are_usage_errors(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path, content: bytes
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    for path in (bad, tmp_path / "missing.pem"):
        r = runner.invoke(cli, ["verify", str(sim_evidence), "--platform-key", str(path)])
        assert r.exit_code == 2, r.output
        assert "platform-key" in r.output and "AAAA" not in r.output


def test_verify_wrong_nonce_is_not_accepted(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path
) -> None:
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--json", "--nonce", "ffff",
                            "--platform-key", str(_platform_key(tmp_path))])  # fmt: skip
    assert r.exit_code == 1
    assert [x["code"] for x in json.loads(r.output)["reasons"]] == ["nonce_mismatch"]


def test_verify_refuses_a_prefix_of_the_report_data_as_nonce(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path
) -> None:
    """Issue 11 item 7: `--nonce` once matched any prefix of the report data (one byte passed
    one report in 256). Only the whole binding the caller names counts."""
    key = ["--platform-key", str(_platform_key(tmp_path))]
    rd = json.loads(runner.invoke(cli, ["verify", str(sim_evidence), "--json", *key]).output)[
        "claims"
    ]["report_data"]
    assert len(rd) == 128
    for prefix in (rd[:2], rd[:64], rd[:-2]):
        r = runner.invoke(cli, ["verify", str(sim_evidence), "--json", "--nonce", prefix, *key])
        assert r.exit_code == 1, (prefix, r.output)
        assert [x["code"] for x in json.loads(r.output)["reasons"]] == ["nonce_mismatch"]
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--json", "--nonce", rd.upper(), *key])
    assert r.exit_code == 0, r.output  # the entire report data, named by the caller
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--json", "--nonce", "", *key])
    assert r.exit_code == 2 and "at least one byte" in r.output


def test_verify_with_policy(runner: CliRunner, sim_evidence: Path, tmp_path: Path) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text(
        f"version: 1\nname: t\nplatforms:\n  simulated: {{measurements: ['{'cd' * 48}']}}\n"
    )
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--json", "--policy", str(pol)])
    assert r.exit_code == 1
    codes = {x["code"] for x in json.loads(r.output)["reasons"]}
    assert codes == {"platform_key_not_trusted", "measurement_not_allowed"}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:50],
        lambda b: b"\0" * 10,
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),
        lambda b: b"x" * 300,
    ],
)
def test_verify_bad_evidence_exit_one(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path, mutate
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.bin"
    bad.write_bytes(mutate(sim_evidence.read_bytes()))
    r = runner.invoke(cli, ["verify", str(bad), "--json"])
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert out["accepted"] is False and out["reasons"]


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "/nonexistent/file"],
        ["verify", "{ev}", "--at", "yesterday"],
        ["verify", "{ev}", "--format", "bogus"],
        ["verify", "{ev}", "--nonce", "xyz"],
        ["verify", "{ev}", "--collateral", "/nonexistent"],
        ["verify", "{ev}", "--policy", "/nonexistent.yaml"],
        ["measure", "/nonexistent"],
        ["serve", "--port", "99999"],
    ],
)
def test_usage_errors_exit_two(runner: CliRunner, sim_evidence: Path, args: list[str]) -> None:
    r = runner.invoke(cli, [a.replace("{ev}", str(sim_evidence)) for a in args])
    assert r.exit_code == 2, r.output


def test_verify_garbage_collateral_and_policy_exit_two(
    runner: CliRunner, sim_evidence: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--collateral", str(junk)])
    assert r.exit_code == 2
    pol = tmp_path / "p.yaml"
    pol.write_text("version: 1\nname: t\nplatforms: {simulatd: {}}\n")
    r = runner.invoke(cli, ["verify", str(sim_evidence), "--policy", str(pol)])
    assert r.exit_code == 2 and "simulatd" in r.output


def test_verify_oversized_file(runner: CliRunner, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (300 * 1024))
    r = runner.invoke(cli, ["verify", str(big), "--json"])
    assert r.exit_code == 1 and "limit" in json.loads(r.output)["reasons"][0]["message"]


def test_measure(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "app.py"
    f.write_text("print(1)\n")
    r = runner.invoke(cli, ["measure", str(f)])
    assert r.exit_code == 0 and len(r.output.strip()) == 96


def test_init_and_policy_sign(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "dom"
    r = runner.invoke(cli, ["init", "--data", str(data)])
    assert r.exit_code == 0, r.output
    for name in ("policy_key.pem", "token_key.pem", "admin_token"):
        assert (data / name).stat().st_mode & 0o077 == 0
    assert runner.invoke(cli, ["init", "--data", str(data)]).exit_code == 2  # no overwrite
    pol = Path(__file__).resolve().parents[3] / "examples" / "policies" / "development.yaml"
    out = tmp_path / "signed.json"
    r = runner.invoke(cli, ["policy", "sign", str(pol), "--data", str(data), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["alg"] == "ES384"
    r = runner.invoke(cli, ["audit", "verify", "--data", str(data)])
    assert r.exit_code == 0 and "intact: 0 entries" in r.output
    assert (
        runner.invoke(cli, ["policy", "sign", str(pol), "--data", str(tmp_path / "none")]).exit_code
        == 2
    )
