"""Helpers for the confidential log tests: a real log written by the real handler."""

from __future__ import annotations

import datetime as dt
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.cli.main import _register, cli
from veritee.domain import Domain, issue_admission_certificate
from veritee.logs import SignedTreeHead, WorkloadLog, open_workload_log
from veritee.profiles import Profile


class Sealer:
    """A stand-in for a platform sealing key: AES-256-GCM under a key only this object holds."""

    def __init__(self) -> None:
        self._aead = AESGCM(os.urandom(32))

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, b"sealed")

    def unseal(self, blob: bytes) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], b"sealed")


@dataclass
class WrittenLog:
    directory: Path  # the run folder (what verify_log reads)
    signing_key: ec.EllipticCurvePrivateKey
    tenant_key: x25519.X25519PrivateKey
    key_blob: bytes
    heads: list[SignedTreeHead] = field(default_factory=list)
    host_stream: io.StringIO = field(default_factory=io.StringIO)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.signing_key.public_key()

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("segment-*.vtlog"))


def open_log(
    directory: Path,
    profile: Profile = Profile.PRODUCTION,
    *,
    log_id: str = "test-log",
    **kw: object,
) -> tuple[WorkloadLog, ec.EllipticCurvePrivateKey, x25519.X25519PrivateKey, io.StringIO]:
    sk = ec.generate_private_key(ec.SECP256R1())
    tk = x25519.X25519PrivateKey.generate()
    host = io.StringIO()
    kw.setdefault("flush_seconds", None)  # no timer heads unless a test asks: heads where written
    log = open_workload_log(
        profile=profile,
        directory=directory,
        signing_key=sk,
        tenant_public_key=tk.public_key(),
        seal=None,
        log_id=log_id,
        host_stream=host,
        durable=False,
        **kw,  # type: ignore[arg-type]
    )
    return log, sk, tk, host


def write_log(
    directory: Path,
    *,
    records: int = 100,
    per_head: int = 10,
    per_segment_rotation: int | None = None,
    close: bool = True,
    log_id: str = "test-log",
) -> WrittenLog:
    log, sk, tk, host = open_log(
        directory, records_per_head=per_head, records_per_epoch=16, log_id=log_id
    )
    if per_segment_rotation is not None:
        assert log.handler.writer is not None
        log.handler.writer._per_segment = per_segment_rotation
    assert log.run_directory is not None
    out = WrittenLog(log.run_directory, sk, tk, log.export_key_for_tenant(), host_stream=host)
    lg = log.logger(f"app.{directory.parent.name}.{directory.name}")
    for i in range(records):
        lg.info("record %d", i)
        if (i + 1) % per_head == 0:
            out.heads.append(log.tree_head())
    if close:
        head = log.close()
        assert head is not None
        out.heads.append(head)
    return out


# -- the tenant's command line on a written log ------------------------------------------------


#: The measurement the test workloads' admission certificates carry.
MEASUREMENT = "ab" * 48


def admission_certificate(
    domain_dir: Path,
    public_key: ec.EllipticCurvePublicKey,
    *,
    profile: Profile = Profile.PRODUCTION,
    measurement: str = MEASUREMENT,
    now: dt.datetime | None = None,
    lifetime: dt.timedelta = dt.timedelta(hours=1),
) -> tuple[x509.Certificate, x509.Certificate]:
    """A real domain (``Domain.create``) and an admission certificate it issues for ``public_key``:
    returns (certificate, domain CA certificate)."""
    now = now or dt.datetime.now(dt.UTC)
    domain = (Domain.open(domain_dir) if (domain_dir / "domain.json").exists()
              else Domain.create(domain_dir, now=now))  # fmt: skip
    claims = {"measurement": measurement, "platform": "simulated", "profile": profile.value}
    cert = issue_admission_certificate(
        domain, public_key, claims=claims, now=now, lifetime=lifetime
    )
    return cert, domain.ca_certificate


def tenant_files(w: WrittenLog, tmp: Path) -> dict[str, Path]:
    """What the tenant holds: the workload's admission certificate and the domain CA (both as
    the workload and the domain publish them), the sealed log key and its own private key."""
    cert, ca = admission_certificate(tmp / "domain", w.public_key)
    signer = tmp / "admission.pem"
    signer.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca_file = tmp / "domain_ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tenant = tmp / "tenant.pem"
    tenant.write_bytes(
        w.tenant_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key = tmp / "logkey.json"
    key.write_bytes(w.key_blob)
    return {"signer": signer, "ca": ca_file, "tenant": tenant, "key": key}


def signer_args(f: dict[str, Path]) -> list[str]:
    """``--signer`` and what checks it: the domain CA and the expected measurement."""
    return ["--signer", str(f["signer"]), "--ca", str(f["ca"]), "--measurement", MEASUREMENT]


def run_cli(*args: str) -> tuple[int, str]:
    _register()
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.output


def run_cli3(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr apart."""
    _register()
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.stdout, res.stderr


def cli_verify(w: WrittenLog, f: dict[str, Path], *extra: str) -> tuple[int, str, str]:
    return run_cli3("logs", "verify", str(w.directory), *signer_args(f), *extra)


def cli_decrypt(w: WrittenLog, f: dict[str, Path], *extra: str) -> tuple[int, str, str]:
    return run_cli3("logs", "decrypt", str(w.directory), *signer_args(f),
                    "--key", str(f["key"]), "--tenant-key", str(f["tenant"]), *extra)  # fmt: skip


def run_in_child(body: Callable[[], object]) -> None:
    """Run ``body()`` in a process made by ``os.fork()`` that then dies without any cleanup
    (``os._exit``: no close, no atexit, its locks released by the kernel, as after kill -9);
    the caller waits and checks it exited 0."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            body()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
