"""A real ``veritee`` command line and a real ``veritee serve`` as subprocesses, for the tests
that speak to the service over HTTP(S) (``tests/integration``).

Nothing here is a stand-in: :data:`VERITEE` runs this checkout's ``python -m veritee.cli``,
:func:`serving` / :func:`start_service` start ``veritee serve`` on a free loopback port and
wait for ``/readyz``, and :func:`stop` ends it (SIGTERM, then SIGKILL).

Example::

    run_cli("init", "--data", str(data))
    with serving(data, tls=True) as url:
        signed = signed_policy(tmp_path, data, key_id, MEASUREMENT)
        run_cli("policy", "install", str(signed), "--data", str(data), "--url", url)
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from veritee.tls import client_context

__all__ = [
    "MEASUREMENT",
    "POLICY_CACHE_SECONDS",
    "VERITEE",
    "free_port",
    "run_cli",
    "serving",
    "signed_policy",
    "start_service",
    "stop",
    "wait_ready",
]

#: The command line of this checkout, as a subprocess.
VERITEE = [sys.executable, "-m", "veritee.cli"]
#: A simulated-platform measurement (SHA-384 size) the tests admit.
MEASUREMENT = "ab" * 48
#: ServiceContext caches the active policy for Settings.policy_cache_seconds (1 s): a change
#: through one worker or replica is seen by the others after at most this long.
POLICY_CACHE_SECONDS = 1.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``veritee ARGS...`` to completion (60 s at most); with ``check``, an AssertionError with
    its output unless it exits 0."""
    r = subprocess.run([*VERITEE, *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"veritee {' '.join(args)} failed: {r.stdout}\n{r.stderr}")
    return r


def wait_ready(url: str, proc: subprocess.Popen[bytes], verify: object = True) -> None:
    """Wait until ``url``'s ``/readyz`` answers 200; an AssertionError (with the server's stderr)
    if the server exits first, or after 120 s."""
    deadline = (
        time.monotonic() + 120
    )  # several workers each import the app; slow on a loaded machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''!r}")
        try:
            if httpx.get(url + "/readyz", timeout=1, verify=verify).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if the server has not exited within ``timeout`` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_service(data: Path, *extra: str) -> tuple[str, subprocess.Popen[bytes]]:
    """``veritee serve --data DATA EXTRA...`` over HTTP on a free port, once ready: its URL and
    process (the caller stops it with :func:`stop`)."""
    port = free_port()
    proc = subprocess.Popen(
        [*VERITEE, "serve", "--data", str(data), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return url, proc


@contextmanager
def serving(data: Path, *args: str, tls: bool = False) -> Iterator[str]:
    """``veritee serve --data DATA ARGS...`` (``--tls``: HTTPS, waited for with the domain CA)
    while the block runs; yields its URL and stops it after."""
    port = free_port()
    proc = subprocess.Popen(
        [*VERITEE, "serve", "--data", str(data), "--port", str(port), *(["--tls"] if tls else []), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        verify: ssl.SSLContext | bool = (
            client_context(cafile=str(data / "domain_ca.pem")) if tls else True
        )
        wait_ready(url, proc, verify=verify)
        yield url
    finally:
        stop(proc)


def signed_policy(tmp_path: Path, data: Path, key_id: str, measurement: str) -> Path:
    """A policy admitting one simulated measurement, signed with `veritee policy sign`."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nname: it\nplatforms:\n  simulated:\n    measurements: ['{measurement}']\n"
        f"    platform_keys: ['{key_id}']\n    allow_debug: true\n"
    )
    signed = tmp_path / "signed.json"
    run_cli("policy", "sign", str(policy), "--data", str(data), "-o", str(signed))
    return signed
