"""Shared fixtures: where the test vectors are, and a fixed verification time helper."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Property tests measure correctness, not speed: no per-example deadline (this machine is shared
# and noisy). In CI the examples are derandomized so a run is reproducible.
settings.register_profile("veritee", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("veritee"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "veritee")


def _stay_off_the_network() -> None:
    """Tests reach nothing beyond this machine: a connection to a non-loopback address raises
    (as python-tuf and sigstore keep their suites offline). Local stand-ins (PostgreSQL on
    127.0.0.1, swtpm, a served ``veritee serve``) are loopback and unaffected. Set
    ``VERITEE_TESTS_ALLOW_NETWORK=1`` to lift the guard for a manual run."""
    if os.environ.get("VERITEE_TESTS_ALLOW_NETWORK") == "1":
        return
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return  # Unix sockets and the like stay on this machine
        host = address[0] if isinstance(address, tuple) else address
        try:
            local = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
        except ValueError:
            local = host == "localhost"
        if not local:
            raise OSError(
                errno.ENETUNREACH,
                f"tests stay off the network: connection to {host!r} refused "
                "by tests/conftest.py (VERITEE_TESTS_ALLOW_NETWORK=1 lifts this)",
            )

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


_stay_off_the_network()

ROOT = Path(__file__).resolve().parents[1]
TESTVECTORS = ROOT.parent / "shared" / "testvectors"


def testvectors_dir() -> Path:
    """The shared test vectors folder, or skip the test with a clear message."""
    if not (TESTVECTORS / "manifest.json").is_file():
        pytest.skip(f"test vectors not found at {TESTVECTORS} (../shared/testvectors is absent)")
    return TESTVECTORS


# Imported by test modules under its own name: not a test, though its name starts with "test".
testvectors_dir.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def testvectors() -> Path:
    return testvectors_dir()


def manifest_cases(fmt: str | None = None) -> list[dict[str, Any]]:
    """Cases of the manifest (for parametrize); empty where the vectors are absent."""
    path = TESTVECTORS / "manifest.json"
    if not path.is_file():
        return []
    cases: list[dict[str, Any]] = json.loads(path.read_text())["cases"]
    return [c for c in cases if fmt is None or c["format"] == fmt]
