"""A production workload restarts on its store as a non-event (issue 9 item 2, issue 18 item 1).

Real workload processes (subprocesses using ``veritee.Trust``) against a real service over TLS,
on one store: the first start logs before certification and is killed with SIGKILL (its held
records stay sealed on the host); the second certifies, logs and is killed with SIGKILL; the
third stops cleanly; the fourth starts once more. The tenant then reads every run's records,
including the ones the first start held, and the signed run starts tell it where each run
begins and what the run before it left.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from veritee.appraisal import load_policy, sign_policy
from veritee.domain import Domain
from veritee.logs import decrypt_log, open_log_key, verify_log
from veritee.logs.runs import KEY_FILE, read_run_start, runs_in
from veritee.logs.segment import RunCause
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings
from veritee.service.tls import server_certificate_files

ROOT = Path(__file__).resolve().parents[2]
M = "ab" * 48

WORKLOAD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cryptography.hazmat.primitives import serialization
    from veritee.sdk.trust import Trust

    url, ca, store, sim, tenant_pem, phase = sys.argv[1:7]
    tenant = serialization.load_pem_public_key(tenant_pem.encode())
    trust = Trust(url, Path(ca).read_bytes(), platform="simulated", store=store,
                  measurement=sys.argv[7], platform_dir=sim, profile="production",
                  tenant_key=tenant)
    log = trust.logger
    if phase == "held":  # dies before the control plane is up
        for i in range(3):
            log.warning("held %d", i)
        print("ready", flush=True)
        time.sleep(120)
    cert = trust.certify()
    for i in range(20):
        log.info("%s %d", phase, i)
    trust.workload_log.tree_head()
    from cryptography.hazmat.primitives.serialization import Encoding
    print(cert.public_bytes(Encoding.PEM).decode().replace("\\n", "|"), flush=True)
    if phase == "killed":
        print("ready", flush=True)
        time.sleep(120)
    trust.close()
    """
)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[RunningServer, Domain, Path]]:
    domain = Domain.create(tmp_path / "domain", now=dt.datetime.now(dt.UTC))
    sim = tmp_path / "sim"
    key_id = SimulatedPlatform(sim, measurement=M).key_id
    cert, key = server_certificate_files(domain.path, "127.0.0.1")
    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)),
                             ssl_certfile=str(cert), ssl_keyfile=str(key))  # fmt: skip
    try:
        doc = {"version": 1, "name": "restart", "platforms": {"simulated": {
            "measurements": [M], "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip
        import ssl

        httpx.put(server.url + "/v1/admin/policy",
                  content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key),
                  headers={"Authorization": f"Bearer {domain.admin_token()}"},
                  verify=ssl.create_default_context(cadata=domain.ca_pem.decode()),
                  ).raise_for_status()  # fmt: skip
        yield server, domain, sim
    finally:
        server.stop()


def _start(
    service: tuple[RunningServer, Domain, Path],
    tmp_path: Path,
    tenant: x25519.X25519PrivateKey,
    phase: str,
) -> subprocess.Popen[str]:
    server, domain, sim = service
    ca = tmp_path / "ca.pem"
    ca.write_bytes(domain.ca_pem)
    pem = (
        tenant.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", WORKLOAD, server.url, str(ca), str(tmp_path / "store"), str(sim),
         pem, phase, M],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def _kill_when_ready(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        if line.strip() == "ready":
            break
        lines.append(line.strip())
    else:
        raise AssertionError(f"workload ended early: {proc.stderr.read() if proc.stderr else ''}")
    proc.kill()  # SIGKILL: no handler, no atexit, no flush
    proc.wait(timeout=60)
    return lines


def _signer(lines: list[str]) -> ec.EllipticCurvePublicKey:
    cert = x509.load_pem_x509_certificate(lines[-1].replace("|", "\n").encode())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def test_restarts_continue_the_log_and_held_records_reach_the_tenant(
    service: tuple[RunningServer, Domain, Path], tmp_path: Path
) -> None:
    tenant = x25519.X25519PrivateKey.generate()
    _kill_when_ready(_start(service, tmp_path, tenant, "held"))
    held = list((tmp_path / "store" / "logs").rglob("pending*.sealed"))
    assert held and b"held 0" not in held[0].read_bytes()

    signer = _signer(_kill_when_ready(_start(service, tmp_path, tenant, "killed")))
    for phase in ("clean", "again"):
        proc = _start(service, tmp_path, tenant, phase)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]

    (folder,) = (tmp_path / "store" / "logs").iterdir()
    assert not list(folder.glob("pending*"))  # delivered, then removed
    runs = runs_in(folder)
    assert [r.run for r in runs] == [1, 2, 3]
    texts: list[list[str]] = []
    for r in runs:
        assert verify_log(r.path, signer).ok
        key = open_log_key((r.path / KEY_FILE).read_bytes(), tenant)
        records = [x.text for x in decrypt_log(r.path, key, signer)]
        texts.append([t.split(": ", 1)[1] for t in records if " veritee.workload: " in t])
        # the tenant key was a constructor argument: each run says so (VT-0104, issue 9.6)
        assert sum(" veritee.sdk: the log's tenant key is a constructor argument" in t
                   for t in records) == 1  # fmt: skip
    assert texts[0] == [f"held {i}" for i in range(3)] + [f"killed {i}" for i in range(20)]
    assert texts[1] == [f"clean {i}" for i in range(20)]
    assert texts[2] == [f"again {i}" for i in range(20)]

    # the run boundaries, signed by the workload: what each start found of the run before it
    starts = [read_run_start(r.path) for r in runs]
    assert all(s is not None and s.verify(signer) for s in starts)
    first, second, third = starts
    assert first is not None and second is not None and third is not None
    assert first.cause is RunCause.START and first.previous is None
    assert (first.replayed, first.recovered, first.lost) == (3, 3, 0)
    assert second.cause is RunCause.RESTART and second.previous is not None
    assert second.previous.log_id == first.log_id and not second.previous.final
    # killed after its last head: 3 held + the VT-0104 record + 20
    assert second.previous.stored == second.previous.signed == 24
    assert third.previous is not None and third.previous.final and third.previous.signed == 21
