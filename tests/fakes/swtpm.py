"""Real TPM 2.0 simulators (Debian's swtpm) with EK certificates from a local CA.

``swtpm_setup`` manufactures the TPM: an RSA and an ECC EK, their certificates signed by
``swtpm_localca`` (a root CA and an intermediate, created in the CA folder on first use), stored
at the TCG NV indices. Two TPMs made with the same CA folder share an EK root; another folder
is another manufacturer. ``swtpm socket`` then serves the TPM on two loopback ports (command,
control), spelled as a TCTI ``swtpm:host=127.0.0.1,port=P``.

Example::

    with running_tpm(tmp_path / "tpm1", ca=tmp_path / "ca") as tpm:
        TpmPlatform(tcti=tpm.tcti, state_dir=...)
        tpm.ek_root_sha256   # what a policy's tpm.ek_roots lists
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


@dataclass(frozen=True)
class Tpm:
    tcti: str
    ca_dir: Path
    ctrl_port: int

    @property
    def ek_root(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(
            (self.ca_dir / "swtpm-localca-rootca-cert.pem").read_bytes()
        )

    @property
    def ek_root_sha256(self) -> str:
        return hashlib.sha256(self.ek_root.public_bytes(serialization.Encoding.DER)).hexdigest()

    @property
    def ek_intermediate_pem(self) -> bytes:
        return (self.ca_dir / "issuercert.pem").read_bytes()


def swtpm_missing() -> str | None:
    """None when swtpm and swtpm_setup are installed, else a skip message."""
    for tool in ("swtpm", "swtpm_setup", "swtpm_localca"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages swtpm, swtpm-tools)"
    return None


def _free_ports() -> tuple[int, int]:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65535:
            with socket.socket() as a, socket.socket() as b:
                try:
                    a.bind(("127.0.0.1", port))
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port, port + 1


def manufacture(state: Path, ca: Path) -> None:
    """swtpm_setup: a TPM 2.0 with EKs and EK certificates from the local CA in ``ca``."""
    state.mkdir(parents=True, exist_ok=True)
    ca.mkdir(parents=True, exist_ok=True)
    conf = state.parent / f"{state.name}-setup.conf"
    localca = state.parent / f"{state.name}-localca.conf"
    options = state.parent / f"{state.name}-localca.options"
    localca.write_text(
        f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\n"
        f"certserial = {ca}/certserial\n"
    )
    options.write_text(
        "--platform-manufacturer veritee-tests\n--platform-version 2.1\n--platform-model swtpm\n"
    )
    conf.write_text(
        f"create_certs_tool = {shutil.which('swtpm_localca')}\ncreate_certs_tool_config = {localca}\n"
        f"create_certs_tool_options = {options}\nactive_pcr_banks = sha256,sha384\n"
    )
    subprocess.run(
        ["swtpm_setup", "--tpm2", "--tpm-state", str(state), "--create-ek-cert", "--config", str(conf),
         "--overwrite"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


@contextlib.contextmanager
def running_tpm(state: Path, ca: Path) -> Iterator[Tpm]:
    """Manufacture (first time) and run a TPM; stopped (by its own process id) at the end."""
    if not (state / "tpm2-00.permall").exists():
        manufacture(state, ca)
    port, ctrl = _free_ports()
    proc = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
         "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
         "--ctrl", f"type=tcp,port={ctrl},bindaddr=127.0.0.1",
         "--flags", "not-need-init,startup-clear"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"swtpm did not start: {proc.stderr.read() if proc.stderr else b''!r}"
                )
            time.sleep(0.02)
        yield Tpm(f"swtpm:host=127.0.0.1,port={port}", ca, ctrl)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
