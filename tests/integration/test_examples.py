"""The examples of examples/ run end to end against a real service over TLS (issue 18).

The notes service (a stateful web service) starts, serves an admitted client, restarts on its
store with its notes and its log, is upgraded (``veritee admit``) and the new version opens the
notes the old one sealed; the tenant reads every run of the log. The two-party join runs, runs
again on its store, and a changed job gets the parties' keys only once admitted; each party
reads its own copy of the signed result."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from tests.fakes.sdk_service import domain_ca_context, running_service

from veritee.appraisal import load_policy, sign_policy
from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.keybroker.cleanroom import decrypt_dataset, release_policy_for, synthetic_csv
from veritee.logs import decrypt_log, open_log_key, verify_log
from veritee.logs.runs import KEY_FILE, runs_in
from veritee.logs.signer import ADMISSION_FILE, admitted_signer, load_certificate
from veritee.platforms.measure import measure
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.runner import RunningServer, _free_port

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "examples" / "notes_service"
JOIN = ROOT / "examples" / "two_party_join"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


@pytest.fixture
def tls_service(tmp_path: Path) -> Iterator[tuple[RunningServer, Domain, Path]]:
    """The service over HTTPS in a thread, policy "sdk" installed (tests.fakes.sdk_service)."""
    with running_service(tmp_path, tls=True) as s:
        yield s


def _admin(server: RunningServer, domain: Domain, method: str, path: str, **kw: Any) -> None:
    httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {domain.admin_token()}"},
                  verify=domain_ca_context(domain), **kw).raise_for_status()  # fmt: skip


class NotesDeployment:
    """One domain, the notes service's processes and its client's, on the simulated platform."""

    def __init__(self, server: RunningServer, domain: Domain, sim: Path, tmp: Path) -> None:
        self.server, self.domain, self.sim, self.tmp = server, domain, sim, tmp
        self.ca = tmp / "ca.pem"
        self.ca.write_bytes(domain.ca_pem)
        self.store = tmp / "notes-state"
        self.port = _free_port("127.0.0.1")
        self.server_measurements = [measure([NOTES / "notes.py"])]

    def common(self) -> list[str]:
        return ["--url", self.server.url, "--ca", str(self.ca), "--platform", "simulated",
                "--platform-dir", str(self.sim)]  # fmt: skip

    def start(self, program: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(program), *self.common(), "--store", str(self.store), "--port", str(self.port),
             "--client-measurement", measure([NOTES / "client.py"])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:  # it certifies, then listens
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return proc
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    _out, err = proc.communicate()
                    raise AssertionError(
                        f"the notes service did not start: {err[-3000:]}"
                    ) from None
                time.sleep(0.1)

    def client(self, *command: str) -> dict[str, Any]:
        pinned = [a for m in self.server_measurements for a in ("--server-measurement", m)]
        res = subprocess.run(
            [sys.executable, str(NOTES / "client.py"), *self.common(), "--store", str(self.tmp / "client"),
             "--service", f"https://127.0.0.1:{self.port}", *pinned, *command],
            capture_output=True, text=True, env=ENV, timeout=60,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        out: dict[str, Any] = json.loads(res.stdout)
        return out

    @staticmethod
    def stop(proc: subprocess.Popen[str]) -> str:
        proc.terminate()  # SIGTERM: uvicorn stops, the program closes its Trust
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        return err


def test_notes_service_restarts_and_upgrades(tls_service: Any, tmp_path: Path) -> None:
    server, domain, sim = tls_service
    d = NotesDeployment(server, domain, sim, tmp_path)
    (m1,) = d.server_measurements
    key_id = SimulatedPlatform(sim, measurement=m1).key_id
    doc = {"version": 1, "name": "notes", "platforms": {"simulated": {
        "measurements": [m1, measure([NOTES / "client.py"])], "platform_keys": [key_id],
        "allow_debug": True}}}  # fmt: skip
    _admin(
        server,
        domain,
        "PUT",
        "/v1/admin/policy",
        content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key),
    )
    receipt_key, tenant = os.urandom(32), x25519.X25519PrivateKey.generate()
    tenant_pem = tenant.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    pin = {"allOf": [{"claim": "measurement", "equals": m1}]}
    for name, value in (("notes/receipt-key", receipt_key), ("notes/log-tenant", tenant_pem)):
        _admin(server, domain, "PUT", f"/v1/admin/secrets/{name}",
               json={"value": base64.b64encode(value).decode(), "policy": pin})  # fmt: skip

    # version 1: a note, with a receipt signed by the released key
    stderr = []
    proc = d.start(NOTES / "notes.py")
    added = d.client("add", "buy milk")
    note = added["note"]
    assert note == {"id": 1, "text": "buy milk", "version": "1"}
    expected = hmac.new(
        receipt_key, json.dumps(note, sort_keys=True).encode(), hashlib.sha256
    ).hexdigest()
    assert added["receipt"] == expected
    stderr.append(d.stop(proc))
    assert b"buy milk" not in (d.store / "notes.sealed").read_bytes()

    # a restart: the same store, the note is still there, the log continues
    proc = d.start(NOTES / "notes.py")
    assert [n["text"] for n in d.client("list")["notes"]] == ["buy milk"]
    d.client("add", "call the bank")
    stderr.append(d.stop(proc))

    # version 2, not admitted yet: it gets no certificate, and says what would admit it
    v2 = tmp_path / "v2" / "notes.py"
    v2.parent.mkdir()
    v2.write_text((NOTES / "notes.py").read_text().replace('VERSION = "1"', 'VERSION = "2"'))
    m2 = measure([v2])
    assert m2 != m1
    refused = subprocess.run([sys.executable, str(v2), *d.common(), "--store", str(d.store), "--port", str(d.port),
                              "--client-measurement", "00" * 48], capture_output=True, text=True, env=ENV,
                             timeout=60)  # fmt: skip
    assert refused.returncode != 0
    lines = refused.stderr.splitlines()  # production: the why is in its log, the host gets codes
    assert lines and all(ln.startswith("veritee: VT-") for ln in lines), refused.stderr[-3000:]

    # the operator admits it in one command; the new version opens the notes version 1 sealed
    _register()
    res = CliRunner().invoke(cli, ["admit", "--policy", "notes", "--measurement", m2, "--yes",
                                   "--url", server.url, "--data", str(domain.path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    d.server_measurements.append(m2)
    proc = d.start(v2)
    listed = d.client("list")
    assert listed["version"] == "2"
    assert [(n["text"], n["version"]) for n in listed["notes"]] == [
        ("buy milk", "1"),
        ("call the bank", "1"),
    ]
    assert d.client("add", "upgraded")["note"] == {"id": 3, "text": "upgraded", "version": "2"}
    stderr.append(d.stop(proc))

    # the host saw catalogue codes only; the tenant reads every run, per version
    for err in stderr:
        assert "buy milk" not in err and "note 1 added" not in err
    logs: list[list[list[str]]] = []  # per log folder (one per measurement), per run
    for folder in (d.store / "trust" / "logs").iterdir():
        logs.append([])
        for run in runs_in(folder):
            cert = load_certificate((run.path / ADMISSION_FILE).read_bytes(), "signer")
            signer = admitted_signer(cert, domain.ca_certificate, measurements=[m1, m2])
            assert verify_log(run.path, signer.public_key, admitted=signer).ok
            key = open_log_key((run.path / KEY_FILE).read_bytes(), tenant)
            records = [r.text for r in decrypt_log(run.path, key, signer.public_key)]
            logs[-1].append([t.split(": ", 1)[1] for t in records if " veritee.workload: " in t])
    assert sorted(logs) == [
        [
            ["notes service version 1: 0 notes", "note 1 added"],
            ["notes service version 1: 1 notes", "note 2 added"],
        ],
        [["notes service version 2: 2 notes", "note 3 added"]],
    ]


def _new_version(program: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of ``program`` with one change: another measurement."""
    changed = tmp_path / "v2" / program.name
    changed.parent.mkdir(exist_ok=True)
    text = program.read_text()
    assert old in text
    changed.write_text(text.replace(old, new))
    return changed


def test_two_party_join_reruns_and_upgrades(tls_service: Any, tmp_path: Path, capsys: Any) -> None:
    server, domain, sim = tls_service
    spec = importlib.util.spec_from_file_location("two_party_join_party", JOIN / "party.py")
    assert spec is not None and spec.loader is not None
    party = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(party)
    m1 = measure([JOIN / "join.py"])
    key_id = SimulatedPlatform(sim, measurement=m1).key_id
    doc = {"version": 1, "name": "join", "platforms": {"simulated": {
        "measurements": [m1], "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip
    _admin(
        server,
        domain,
        "PUT",
        "/v1/admin/policy",
        content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key),
    )
    enc, out = tmp_path / "encrypted", tmp_path / "results"
    ids = {}
    for p in ("shop", "bank"):  # each party, on its own machine
        csv = tmp_path / f"{p}.csv"
        csv.write_bytes(synthetic_csv(p))
        ids[p] = {line.split(",")[0] for line in csv.read_text().splitlines()[1:]}
        assert party.main(["encrypt", p, str(csv), "--out", str(enc)]) == 0
        _admin(server, domain, "PUT", f"/v1/admin/secrets/join/{p}",
               json={"value": base64.b64encode((enc / f"{p}.key").read_bytes()).decode(),
                     "policy": release_policy_for(m1)})  # fmt: skip
    ca = tmp_path / "ca.pem"
    ca.write_bytes(domain.ca_pem)

    def run(program: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(program), "--url", server.url, "--ca", str(ca), "--platform", "simulated",
             "--platform-dir", str(sim), "--store", str(tmp_path / "job"), "--inputs", str(enc), "--out", str(out)],
            capture_output=True, text=True, env=ENV, timeout=60,
        )  # fmt: skip

    def read(p: str, m: str) -> tuple[int, dict[str, Any] | None]:
        capsys.readouterr()
        code = party.main(["read", p, str(out / f"{p}.result.enc"), "--key", str(enc / f"{p}.key"),
                           "--input", str(enc / f"{p}.csv.enc"), "--ca", str(ca), "--measurement", m])  # fmt: skip
        text = capsys.readouterr().out
        return code, json.loads(text) if code == 0 else None

    first = run(JOIN / "join.py")
    assert first.returncode == 0, first.stderr[-3000:]
    results = {p: read(p, m1) for p in ("shop", "bank")}
    assert results["shop"] == results["bank"]
    code, result = results["shop"]
    assert code == 0 and result is not None
    assert result["shared_customers"] == len(ids["shop"] & ids["bank"]) > 0
    assert b"shared_customers" not in (out / "shop.result.enc").read_bytes()

    def signer() -> str:  # the certificate the job signed with, from the shop's copy
        blob = (out / "shop.result.enc").read_bytes()
        signed = json.loads(
            decrypt_dataset(blob, (enc / "shop.key").read_bytes(), name="join-result/shop")
        )
        return str(signed["certificate"])

    # a second run on the same store: the same key store and admission certificate, same figures
    certificate = signer()
    assert run(JOIN / "join.py").returncode == 0
    assert read("bank", m1) == (0, result) and signer() == certificate

    # a changed job: another measurement, no keys until the operator admits it
    v2 = _new_version(JOIN / "join.py", tmp_path, "MIN_GROUP_SIZE = 3", "MIN_GROUP_SIZE = 4")
    m2 = measure([v2])
    refused = run(v2)
    assert refused.returncode == 1, refused.stderr[-3000:]
    _register()
    res = CliRunner().invoke(cli, ["admit", "--policy", "join", "--measurement", m2, "--yes",
                                   "--url", server.url, "--data", str(domain.path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "secret 'join/shop'" in res.output and "secret 'join/bank'" in res.output
    second = run(v2)
    assert second.returncode == 0, second.stderr[-3000:]
    code, upgraded = read("shop", m2)
    assert code == 0 and upgraded is not None and upgraded["measurement"] == m2
    assert upgraded["shared_customers"] == result["shared_customers"] and signer() != certificate
    assert read("bank", m1)[0] == 1  # the bank pinned version 1: result_measurement_mismatch
