"""examples/deploy/two-replicas as shipped: two `veritee serve --config replica-?.toml` on one
PostgreSQL database behind the example's round-robin load balancer (lb.py). Workloads certify
and attest through the balancer and reach both replicas (their access logs say so); a policy
installed through the balancer is enforced by both."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.fakes.service import VERITEE, free_port, run_cli, stop, wait_ready
from tests.pgutil import temporary_database

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.sdk.trust import Trust

pytestmark = pytest.mark.postgres

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "deploy" / "two-replicas"
M, M2 = "ab" * 48, "ef" * 48


def _policy(key_id: str, measurement: str) -> dict[str, object]:
    return {"version": 1, "name": "app", "platforms": {"simulated": {
        "measurements": [measurement], "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip


def _access(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "veritee.access":
                out.append(entry)
    return out


def _attest(url: str, tls: ssl.SSLContext, platform: SimulatedPlatform) -> dict[str, object]:
    """One attestation straight to ``url`` (challenge and evidence on one connection)."""
    with httpx.Client(base_url=url, verify=tls, timeout=30) as c:
        nonce = bytes.fromhex(c.post("/v1/challenge").json()["nonce"])
        ev = platform.evidence(report_data_for(nonce, b"", profile=platform.profile))
        r = c.post("/v1/attest", json={"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(),
                                       "format": "simulated"})  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json())


def test_two_replicas_behind_the_load_balancer(tmp_path: Path) -> None:
    with temporary_database() as db_url:
        domain_a = tmp_path / "replica-a"
        run_cli("init", "--data", str(domain_a))
        domain_b = tmp_path / "replica-b"
        shutil.copytree(domain_a, domain_b)  # the domain's keys, as the README says
        (domain_b / "veritee.db").unlink(missing_ok=True)
        ports = {"a": free_port(), "b": free_port()}
        logs = {n: tmp_path / f"replica-{n}.log" for n in ports}
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for n, data in (("a", domain_a), ("b", domain_b)):
                # The shipped file; the flags put it on this machine's folders, database, ports.
                with logs[n].open("wb") as err:
                    procs.append(subprocess.Popen(
                        [*VERITEE, "serve", "--config", str(EXAMPLE / f"replica-{n}.toml"), "--data", str(data),
                         "--db", db_url, "--port", str(ports[n]), "--workers", "1"],
                        stdout=subprocess.DEVNULL, stderr=err))  # fmt: skip
            lb_port = free_port()
            with (tmp_path / "lb.log").open("wb") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, str(EXAMPLE / "lb.py"), "--listen", f"127.0.0.1:{lb_port}",
                     "--backend", f"127.0.0.1:{ports['a']}", "--backend", f"127.0.0.1:{ports['b']}"],
                    stdout=subprocess.DEVNULL, stderr=err))  # fmt: skip
            tls = ssl.create_default_context(cafile=str(domain_a / "domain_ca.pem"))
            direct = {n: f"https://127.0.0.1:{p}" for n, p in ports.items()}
            for n in ports:
                wait_ready(direct[n], procs[0 if n == "a" else 1], verify=tls)
            lb = f"https://127.0.0.1:{lb_port}"
            wait_ready(lb, procs[2], verify=tls)

            platform = SimulatedPlatform(tmp_path / "sim", measurement=M)
            policy = tmp_path / "app.yaml"
            policy.write_text(json.dumps(_policy(platform.key_id, M)))
            signed = tmp_path / "app.signed.json"
            run_cli("policy", "sign", str(policy), "--data", str(domain_a), "-o", str(signed))
            run_cli("policy", "install", str(signed), "--data", str(domain_a), "--url", lb)

            # Workloads through the balancer; an extra request on odd rounds shifts which
            # replica each step meets, so both see certify and attest.
            for i in range(6):
                if i % 2:
                    assert httpx.get(lb + "/healthz", verify=tls).status_code == 200
                trust = Trust(lb, domain_a / "domain_ca.pem", platform="simulated", store=tmp_path / f"s{i}",
                              measurement=M, platform_dir=tmp_path / "sim")  # fmt: skip
                try:
                    trust.certify()
                    assert trust.attest()["accepted"] is True
                finally:
                    trust.close()
            for n in ports:
                seen = {(e["route"], e["status"]) for e in _access(logs[n])}
                assert ("/v1/certify", 200) in seen and ("/v1/attest", 200) in seen, (n, seen)

            # A new version of the policy through the balancer (M out, M2 in): both replicas
            # refuse M and admit M2 within the bound (each re-reads the policies in force).
            envelope = sign_policy(load_policy(json.dumps(_policy(platform.key_id, M2))),
                                   Domain.open(domain_a).policy_key)  # fmt: skip
            admin = {"Authorization": "Bearer " + Domain.open(domain_a).admin_token()}
            r = httpx.put(lb + "/v1/admin/policy", content=envelope, headers=admin, verify=tls)
            assert r.status_code == 200, r.text
            v2 = SimulatedPlatform(tmp_path / "sim", measurement=M2)
            for n in ports:
                deadline = time.monotonic() + 15
                while True:
                    old, new = _attest(direct[n], tls, platform), _attest(direct[n], tls, v2)
                    if (not old["accepted"] and new["accepted"]) or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert old["accepted"] is False and old["reasons"], (n, old)
                assert new["accepted"] is True and new["policy"]["name"] == "app", (n, new)  # type: ignore[index]
            report = httpx.get(lb + "/v1/admin/audit/verify", headers=admin, verify=tls).json()
            assert report["ok"] is True, report
        finally:
            for proc in procs:
                stop(proc)
        for n in ports:
            first = logs[n].read_text().splitlines()[0]
            assert first.startswith(
                f"veritee Certifier Service listening on {direct[n]} (1 process"
            )
            assert "database postgresql" in first
