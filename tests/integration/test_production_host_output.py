"""In production the host sees catalogue codes only (issue 9, item 3), and the tenant key comes
from a secret the key broker releases to the attested workload (item 6).

A real production workload (a subprocess using ``veritee.Trust``, a real service over TLS) logs
a secret in a message, in arguments and in a logger's name, through its own logger, through
application loggers that propagate to the root and through ``warnings``; it refuses a peer that
runs another measurement, a thread dies with the secret in its exception, and finally the
process dies of an uncaught exception carrying it. The test then scans every byte the host can
see: stdout, stderr, every file of the store and of the platform folder, and the traffic it
relays (to the service, and of the refused peer). Every stderr line
must be a catalogue notice; the tenant, with its own key, reads the secret back from the log.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from veritee.appraisal import load_policy, sign_policy
from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.errors import VerificationError
from veritee.logs import decrypt_log, open_log_key
from veritee.logs.runs import KEY_FILE, runs_in
from veritee.logs.signer import ADMISSION_FILE, admitted_signer, load_certificate
from veritee.logs.tenant import verify_log
from veritee.platforms.simulated import SimulatedPlatform
from veritee.sdk.trust import Trust
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings
from veritee.service.tls import server_certificate_files

ROOT = Path(__file__).resolve().parents[2]
M, PEER = "ab" * 48, "cd" * 48

WORKLOAD = textwrap.dedent(
    """
    import logging, sys, threading, warnings
    from pathlib import Path
    from veritee.sdk.trust import Trust

    url, ca, store, sim, secret, m = sys.argv[1:7]
    trust = Trust(url, Path(ca).read_bytes(), platform="simulated", store=store, measurement=m,
                  platform_dir=sim, profile="production", tenant_key_secret="log-tenant")
    log = trust.logger
    log.warning("held before certification: %s", secret)
    trust.certify()
    log.info("a message with the secret " + secret)
    logging.getLogger("app." + secret).warning("a logger named after the secret")
    logging.getLogger("app.other").error("arguments: %s %r", secret, {"k": secret})
    warnings.warn("a warning about " + secret)
    server = trust.serve("127.0.0.1", 0, lambda conn: None)
    print(server.port, flush=True)
    sys.stdin.readline()  # the parent's peer was refused
    server.stop(30)  # its handler has logged the refusal (on a loaded machine it may lag the peer)
    t = threading.Thread(target=lambda: 1 / 0 if secret == "" else exec("raise KeyError(secret)"))
    t.start(); t.join()
    raise RuntimeError("uncaught " + secret)
    """
)


class Recorder:
    """A TCP relay on the host's path that keeps every byte it relays (both directions)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.seen = upstream, bytearray()
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s_ in (src, dst):
                with contextlib.suppress(OSError):
                    s_.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[RunningServer, Domain, Path]]:
    domain = Domain.create(tmp_path / "domain", now=dt.datetime.now(dt.UTC))
    sim = tmp_path / "sim"
    cert, key = server_certificate_files(domain.path, "127.0.0.1")
    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)),
                             ssl_certfile=str(cert), ssl_keyfile=str(key))  # fmt: skip
    try:
        yield server, domain, sim
    finally:
        server.stop()


def _admin(server: RunningServer, domain: Domain, path: str, **kw: object) -> None:
    httpx.put(server.url + path, headers={"Authorization": f"Bearer {domain.admin_token()}"},
              verify=ssl.create_default_context(cadata=domain.ca_pem.decode()),
              **kw).raise_for_status()  # type: ignore[arg-type]  # fmt: skip


def test_host_sees_catalogue_codes_only(
    service: tuple[RunningServer, Domain, Path], tmp_path: Path
) -> None:
    server, domain, sim = service
    key_id = SimulatedPlatform(sim, measurement=M).key_id
    doc = {"version": 1, "name": "prod", "platforms": {"simulated": {
        "measurements": [M, PEER], "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip
    _admin(server, domain, "/v1/admin/policy",
           content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key))  # fmt: skip
    tenant = x25519.X25519PrivateKey.generate()
    tenant_pem = tenant.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    _admin(server, domain, "/v1/admin/secrets/log-tenant",
           json={"value": base64.b64encode(tenant_pem).decode(),
                 "policy": {"allOf": [{"claim": "measurement", "equals": M}]}})  # fmt: skip
    ca = tmp_path / "ca.pem"
    ca.write_bytes(domain.ca_pem)
    secret = "s3cret-" + os.urandom(12).hex()
    store = tmp_path / "store"
    # the workload reaches the service through the host: record that traffic
    host, service_port = server.url.split("://", 1)[1].split(":")
    to_service = Recorder((host, int(service_port)))
    url = f"https://127.0.0.1:{to_service.port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKLOAD, url, str(ca), str(store), str(sim), secret, M],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline())
    peer = Trust(server.url, domain.ca_pem, platform="simulated", store=tmp_path / "peer",
                 measurement=PEER, platform_dir=sim, profile="development")  # fmt: skip
    to_workload = Recorder(("127.0.0.1", port))  # and the refused peer's traffic
    with pytest.raises(VerificationError):
        peer.connect("127.0.0.1", to_workload.port, allowed_measurements={M})
    peer.close()
    out, err = proc.communicate(b"\n", timeout=120)
    assert proc.returncode == 1, err.decode()[-3000:]  # the uncaught exception

    # 1. every byte the host sees
    to_service.close()
    to_workload.close()
    assert len(to_service.seen) > 1000 and len(to_workload.seen) > 100
    seen = {"<stdout>": out, "<stderr>": err, "<traffic to the service>": bytes(to_service.seen),
            "<traffic of the refused peer>": bytes(to_workload.seen)}  # fmt: skip
    for folder in (store, sim):
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                seen[str(p.relative_to(tmp_path))] = p.read_bytes()
    for variant in {secret.encode(), secret.encode("utf-16-le"), secret[7:].encode()}:
        leaks = [name for name, data in seen.items() if variant in data]
        assert not leaks, f"the secret is visible to the host in {leaks}"
    lines = err.decode().splitlines()
    assert lines and all(ln.startswith("veritee: VT-") for ln in lines), lines
    for code in ("VT-0201 application warning", "VT-0200 application error",
                 "VT-0000 internal error"):  # fmt: skip
        assert code in err.decode()
    assert "VT-0104" not in err.decode() and "VT-0105" not in err.decode()  # a released key

    # 2. the tenant reads it all back: the signer checked against the domain CA
    (log_folder,) = (store / "logs").iterdir()
    (run,) = runs_in(log_folder)
    cert = load_certificate((run.path / ADMISSION_FILE).read_bytes(), "signer")
    admitted = admitted_signer(cert, domain.ca_certificate, measurements=[M])
    rep = verify_log(run.path, admitted.public_key, admitted=admitted)
    assert rep.ok, rep.findings
    key = open_log_key((run.path / KEY_FILE).read_bytes(), tenant)
    texts = "\n".join(r.text for r in decrypt_log(run.path, key, admitted.public_key))
    for expected in (f"held before certification: {secret}", f"a message with the secret {secret}",
                     f"app.{secret}", f"arguments: {secret}", f"a warning about {secret}",
                     "attested channel: refused", f"KeyError: '{secret}'",
                     f"RuntimeError: uncaught {secret}"):  # fmt: skip
        assert expected in texts, expected

    # 3. the same with the commands of docs/logs.md, on the folder as the host keeps it
    tenant_file = tmp_path / "tenant.pem"
    tenant_file.write_bytes(tenant.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    _register()
    checks = ["--ca", str(ca), "--measurement", M]
    res = CliRunner().invoke(cli, ["logs", "verify", str(log_folder), *checks])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == "== all 1 runs: OK"
    res = CliRunner().invoke(cli, ["logs", "decrypt", str(log_folder), *checks,
                                   "--tenant-key", str(tenant_file), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert any(f"RuntimeError: uncaught {secret}" in json.loads(x)["text"]
               for x in res.stdout.splitlines())  # fmt: skip
