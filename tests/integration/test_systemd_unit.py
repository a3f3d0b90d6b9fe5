"""The shipped systemd unit (examples/deploy/veritee.service) passes `systemd-analyze verify`
without a warning, and is hardened as the README says (its own user, read-only system, no
capabilities, ...), with systemd's own exposure score to confirm it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "examples" / "deploy" / "veritee.service"


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "systemd-analyze is missing: .ci/system-packages.sh installs Debian's systemd"
            )
        pytest.skip(
            "systemd-analyze not installed (Debian package systemd; .ci/system-packages.sh)"
        )
    return tool


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _installed_copy(tmp_path: Path) -> Path:
    """The unit as installed here: ExecStart= names this machine's veritee (the shipped unit
    says /opt/veritee, which verify checks for an executable)."""
    veritee = Path(sys.executable).parent / "veritee"
    if not veritee.is_file():
        found = shutil.which("veritee")
        assert found, "the veritee command is not installed (pip install -e .)"
        veritee = Path(found)
    unit = tmp_path / "veritee.service"
    unit.write_text(UNIT.read_text().replace("/opt/veritee/bin/veritee", str(veritee)))
    return unit


def test_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    tool = _analyze()
    r = subprocess.run([tool, "verify", str(_installed_copy(tmp_path))], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", (
        r.stdout + r.stderr
    )


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive and a bad value are reported."""
    tool = _analyze()
    unit = _installed_copy(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=stric")
                    .replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))  # fmt: skip
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert "protect system value" in r.stderr and "NoNewPrivilege" in r.stderr


def test_unit_is_hardened(tmp_path: Path) -> None:
    s = _settings(UNIT.read_text())
    assert s["DynamicUser"] == ["yes"] and s["StateDirectory"] == ["veritee"]
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "", "PrivateDevices": "yes",
                       "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "UMask": "0077",
                       "SystemCallArchitectures": "native"}.items():  # fmt: skip
        assert s[key] == [value], key
    assert "@system-service" in s["SystemCallFilter"]
    assert any(v.startswith("~@privileged") for v in s["SystemCallFilter"])
    assert "--config ${CREDENTIALS_DIRECTORY}/veritee.toml" in s["ExecStart"][0]
    assert s["LoadCredential"] == ["veritee.toml:/etc/veritee/veritee.toml"]
    tool = _analyze()
    r = subprocess.run([tool, "security", "--offline=true", "--no-pager", str(_installed_copy(tmp_path))],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    m = re.search(r"Overall exposure level for veritee\.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout  # systemd rates <= 2.0 "OK" (10 = unprotected)
