"""SEV-SNP launch digests from the artefacts (sev-snp-measure over Debian's real OVMF build), the
CoRIM that carries one, signed and checked; malformed, truncated and missing artefacts refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from veritee.cli.main import _register, cli
from veritee.errors import UsageError
from veritee.refvalues import corim, entries, snp

OVMF = Path("/usr/share/ovmf/OVMF.fd")  # Debian package ovmf (.ci/system-packages.sh)


@pytest.fixture
def ovmf() -> Path:
    if not OVMF.is_file():
        pytest.skip(f"{OVMF} not found (install Debian's ovmf package: .ci/system-packages.sh)")
    return OVMF


def _package_cli(*args: str) -> str:
    """The digest as sev-snp-measure's own command line computes it."""
    out = subprocess.run([sys.executable, "-c", "import sys; from sevsnpmeasure.cli import main; sys.exit(main())",
                          *args], capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def test_digest_matches_the_packages_own_cli(ovmf: Path) -> None:
    digest = snp.launch_digest(ovmf, vcpus=2, vcpu_type="EPYC-v4")
    assert len(digest) == 48
    expected = _package_cli(
        "--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-v4", "--ovmf", str(ovmf)
    )
    assert digest.hex() == expected
    # every input counts
    assert snp.launch_digest(ovmf, vcpus=4, vcpu_type="EPYC-v4") != digest
    assert snp.launch_digest(ovmf, vcpus=2, vcpu_type="EPYC-Milan") != digest
    assert snp.launch_digest(ovmf, vcpus=2, vcpu_type="EPYC-v4", guest_features=0x21) != digest
    assert snp.launch_digest(ovmf, vcpus=2, vcpu_type="EPYC-v4", vmm="ec2") != digest


def test_bad_artefacts_refused(ovmf: Path, tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\x7fkernel" * 100)
    # Debian's OVMF has SEV metadata but no kernel hashes table (that is the AmdSev build)
    with pytest.raises(UsageError, match="SNP_KERNEL_HASHES"):
        snp.launch_digest(ovmf, vcpus=1, vcpu_type="EPYC-v4", kernel=kernel, append="console=ttyS0")
    data = ovmf.read_bytes()
    for name, blob in (("truncated", data[: len(data) // 2]), ("tail-cut", data[:-4096]),
                       ("garbage", bytes(range(256)) * 64), ("flipped-footer", data[:-40] + b"\xff" * 40)):  # fmt: skip
        bad = tmp_path / f"{name}.fd"
        bad.write_bytes(blob)
        with pytest.raises(UsageError):
            snp.launch_digest(bad, vcpus=1, vcpu_type="EPYC-v4")
    empty = tmp_path / "empty.fd"
    empty.write_bytes(b"")
    for kwargs in ({"vcpus": 0, "vcpu_type": "EPYC-v4"}, {"vcpus": 1, "vcpu_type": "Pentium"},
                   {"vcpus": 1, "vcpu_type": "EPYC-v4", "vmm": "xen"},
                   {"vcpus": 1, "vcpu_type": "EPYC-v4", "append": "x"}):  # fmt: skip
        with pytest.raises(UsageError):
            snp.launch_digest(ovmf, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        snp.launch_digest(empty, vcpus=1, vcpu_type="EPYC-v4")
    with pytest.raises(UsageError):
        snp.launch_digest(tmp_path / "absent.fd", vcpus=1, vcpu_type="EPYC-v4")


def test_the_corim_is_a_valid_snp_reference_value() -> None:
    measurement = bytes(range(48))
    blob = snp.launch_corim(measurement, description="launch measurement: test")
    result = corim.inspect(blob, scheme="sevsnp")
    assert result.valid, result.reasons
    assert result.profile == snp.SNP_PROFILE
    assert [e.value for e in entries.entries_of(result)] == [measurement.hex()]
    for key in (ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()):
        signed = corim.sign(blob, key, signer_name="builder", signer_uri="https://builder.example")
        pub = corim.load_key(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
        checked = corim.inspect(signed, key=pub, scheme="sevsnp")
        assert checked.valid and checked.signer is not None and checked.signer.name == "builder"
    with pytest.raises(UsageError):
        snp.launch_corim(b"\x00" * 32, description="x")


def test_cli_snp_measure_writes_a_signed_corim(ovmf: Path, tmp_path: Path) -> None:
    _register()
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "builder.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    pub_file = tmp_path / "builder.pub.pem"
    pub_file.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    out = tmp_path / "launch.corim"
    runner = CliRunner()
    r = runner.invoke(cli, ["refvalues", "snp-measure", "--ovmf", str(ovmf), "--vcpus", "2", "--vcpu-type",
                            "EPYC-v4", "-o", str(out), "--sign-key", str(key_file), "--signer", "builder",
                            "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    reply = json.loads(r.stdout)
    assert reply["measurement"] == snp.launch_digest(ovmf, vcpus=2, vcpu_type="EPYC-v4").hex()
    r = runner.invoke(
        cli,
        ["refvalues", "inspect", str(out), "--key", str(pub_file), "--scheme", "sevsnp", "--json"],
    )
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    digests = shown["reference_values"][0]["measurements"][0]["mval"]["digests"]
    assert digests == [{"alg": "sha-384", "alg_id": 7, "value": reply["measurement"]}]
    # usage errors: exit 2
    assert runner.invoke(cli, ["refvalues", "snp-measure", "--ovmf", str(ovmf), "--vcpus", "2",
                               "--vcpu-type", "nope"]).exit_code == 2  # fmt: skip
    assert runner.invoke(cli, ["refvalues", "snp-measure", "--ovmf", str(ovmf), "--vcpus", "2", "--vcpu-type",
                               "EPYC-v4", "-o", str(out), "--sign-key", str(key_file)]).exit_code == 2  # fmt: skip
