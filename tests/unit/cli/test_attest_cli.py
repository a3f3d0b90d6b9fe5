"""`veritee attest`: what it writes, `veritee verify` accepts, binding the nonce and key as the
service does; bad flags are usage errors (exit 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.cli.main import _register, cli
from veritee.platforms.simulated import SimulatedPlatform

pytestmark = pytest.mark.attester
M = "ab" * 48
_register()


def _key(path: Path) -> Path:
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.write_bytes(
        pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def setup(tmp_path: Path) -> tuple[CliRunner, Path, Path]:
    key_id = SimulatedPlatform(tmp_path / "state" / "simulated", measurement=M).key_id
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "name": "p", "platforms": {"simulated": {
        "measurements": [M], "platform_keys": [key_id], "allow_debug": True}}}))  # fmt: skip
    return CliRunner(), tmp_path, policy


def _attest(runner: CliRunner, tmp: Path, *extra: str) -> tuple[int, str]:
    r = runner.invoke(cli, ["attest", "--platform", "simulated", "--measurement", M, "--state", str(tmp / "state"),
                            *extra])  # fmt: skip
    return r.exit_code, r.output


def _verify(runner: CliRunner, *args: str) -> dict[str, object]:
    r = runner.invoke(cli, ["verify", *args, "--json"])
    out: dict[str, object] = json.loads(r.output)
    return out


def test_attest_output_verifies_with_nonce_and_key(setup: tuple[CliRunner, Path, Path]) -> None:
    runner, tmp, policy = setup
    key, other = _key(tmp / "k.pem"), _key(tmp / "other.pem")
    nonce = os.urandom(32).hex()
    code, _ = _attest(
        runner, tmp, "--nonce", nonce, "--public-key", str(key), "-o", str(tmp / "ev.bin")
    )
    assert code == 0
    ok = _verify(
        runner,
        str(tmp / "ev.bin"),
        "--policy",
        str(policy),
        "--nonce",
        nonce,
        "--public-key",
        str(key),
    )
    assert ok["accepted"] is True
    for args in (["--public-key", str(other)], []):  # another key, or none: not this binding
        bad = _verify(runner, str(tmp / "ev.bin"), "--policy", str(policy), "--nonce", nonce, *args)
        assert bad["accepted"] is False
        assert "nonce_mismatch" in [r["code"] for r in bad["reasons"]]  # type: ignore[union-attr]


def test_attest_show_prints_the_platform(setup: tuple[CliRunner, Path, Path]) -> None:
    runner, tmp, _ = setup
    code, out = _attest(runner, tmp, "--show", "--json")
    assert code == 0 and json.loads(out)["measurement"] == M


@pytest.mark.parametrize("args", [
    [],                                              # neither --nonce/-o nor --show
    ["--nonce", "zz", "-o", "x.bin"],                # not hex
    ["--nonce", "00" * 65, "-o", "x.bin"],           # too long
])  # fmt: skip
def test_bad_flags_are_usage_errors(setup: tuple[CliRunner, Path, Path], args: list[str]) -> None:
    runner, tmp, _ = setup
    code, _ = _attest(runner, tmp, *args)
    assert code == 2


def test_not_a_public_key_and_no_measurement(setup: tuple[CliRunner, Path, Path]) -> None:
    runner, tmp, _ = setup
    (tmp / "junk.pem").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    code, _ = _attest(
        runner, tmp, "--nonce", "00", "-o", str(tmp / "e"), "--public-key", str(tmp / "junk.pem")
    )
    assert code == 2
    r = runner.invoke(
        cli, ["attest", "--platform", "simulated", "--nonce", "00", "-o", str(tmp / "e")]
    )
    assert r.exit_code == 2


def test_hardware_that_is_absent_is_a_clear_error(tmp_path: Path) -> None:
    for platform in ("sev-snp", "tdx", "nitro", "cca"):
        r = CliRunner().invoke(
            cli, ["attest", "--platform", platform, "--nonce", "00", "-o", str(tmp_path / "e")]
        )
        assert r.exit_code == 2 and "platform_absent" in r.output, r.output
