"""The service is killed (SIGKILL) while releases are in flight: no secret counts as released
without its audit record, the audit chain stays intact, and nothing stored is lost."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import x25519
from tests.fakes.service import free_port, run_cli, wait_ready

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for, spki_der
from veritee.domain import Domain
from veritee.keybroker.release import open_envelope, x25519_jwk
from veritee.platforms.simulated import SimulatedPlatform

M = "ab" * 48
NAME = "crash/key"


def _serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "veritee.cli", "serve", "--data", str(data), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_kill_mid_release(tmp_path: Path) -> None:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    domain = Domain.open(data)
    platform = SimulatedPlatform(tmp_path / "sim", measurement=M)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(data, port)
    wait_ready(url, proc)
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    doc = {
        "version": 1,
        "name": "crash",
        "platforms": {
            "simulated": {
                "measurements": [M],
                "platform_keys": [platform.key_id],
                "allow_debug": True,
            }
        },
    }
    httpx.put(
        url + "/v1/admin/policy",
        content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key),
        headers=admin,
    ).raise_for_status()
    httpx.put(
        f"{url}/v1/admin/secrets/{NAME}",
        headers=admin,
        json={
            "value": base64.b64encode(b"the-secret").decode(),
            "policy": {"allOf": [{"claim": "measurement", "equals": M}]},
        },
    ).raise_for_status()

    received: list[str] = []  # recipient key hashes of releases the client got
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=5) as c:
            while not stop.is_set():
                try:
                    nonce = bytes.fromhex(c.post("/v1/challenge").json()["nonce"])
                    key = x25519.X25519PrivateKey.generate()
                    spki = spki_der(key.public_key())
                    ev = platform.evidence(report_data_for(nonce, spki, profile=platform.profile))
                    r = c.post(
                        f"/v1/secrets/{NAME}/release",
                        json={
                            "evidence": base64.b64encode(ev).decode(),
                            "nonce": nonce.hex(),
                            "format": "simulated",
                            "public_key": x25519_jwk(key.public_key()),
                        },
                    )
                except (httpx.HTTPError, ValueError):
                    return  # the service died under us
                if r.status_code == 200:
                    assert (
                        open_envelope(
                            r.json(),
                            key,
                            name=NAME,
                            nonce=nonce,
                            ca_certificate=domain.ca_certificate,
                            at=dt.datetime.now(dt.UTC),
                        )
                        == b"the-secret"
                    )
                    with lock:
                        received.append(hashlib.sha256(spki).hexdigest())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(received) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-flight: several releases are in progress right now
    proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(received) >= 40

    # Restart on the same data: every release a client got has its audit record.
    port2 = free_port()
    url2 = f"http://127.0.0.1:{port2}"
    proc2 = _serve(data, port2)
    try:
        wait_ready(url2, proc2)
        entries: list[dict] = []
        after = 0
        while True:
            page = httpx.get(
                f"{url2}/v1/admin/audit", params={"after": after, "limit": 1000}, headers=admin
            ).json()
            if not page["entries"]:
                break
            entries += page["entries"]
            after = page["entries"][-1]["seq"]
        audited = {
            e["details"].get("recipient_key_sha256")
            for e in entries
            if e["kind"] == "secret.release"
        }
        missing = [k for k in received if k not in audited]
        assert not missing, f"{len(missing)} releases reached a client without an audit record"
        assert httpx.get(f"{url2}/v1/admin/audit/verify", headers=admin).json()["ok"] is True
        # nothing stored is lost: the secret is still there and releasable
        info = httpx.get(f"{url2}/v1/admin/secrets/{NAME}", headers=admin)
        assert info.status_code == 200
        nonce = bytes.fromhex(httpx.post(url2 + "/v1/challenge").json()["nonce"])
        key = x25519.X25519PrivateKey.generate()
        ev = platform.evidence(
            report_data_for(nonce, spki_der(key.public_key()), profile=platform.profile)
        )
        r = httpx.post(
            f"{url2}/v1/secrets/{NAME}/release",
            json={
                "evidence": base64.b64encode(ev).decode(),
                "nonce": nonce.hex(),
                "format": "simulated",
                "public_key": x25519_jwk(key.public_key()),
            },
        )
        assert (
            r.status_code == 200
            and open_envelope(
                r.json(),
                key,
                name=NAME,
                nonce=nonce,
                ca_certificate=domain.ca_certificate,
                at=dt.datetime.now(dt.UTC),
            )
            == b"the-secret"
        )
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(timeout=10)
