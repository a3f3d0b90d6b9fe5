"""Two replicas, as the README says to run them: separate processes, each with its own copy of
the domain folder (keys, KEK), one PostgreSQL database. A nonce from one is spent on the other
and then refused everywhere; secrets put through one are released by the other; one audit
chain."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from tests.fakes.service import (
    MEASUREMENT,
    VERITEE,
    free_port,
    run_cli,
    signed_policy,
    stop,
    wait_ready,
)

from veritee.binding import report_data_for
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.sdk.trust import Trust

pytestmark = pytest.mark.postgres


def test_two_replicas_share_nonces_secrets_and_the_audit_chain(tmp_path: Path) -> None:
    from tests.pgutil import temporary_database

    with temporary_database() as db_url:
        first = tmp_path / "replica-a"
        run_cli("init", "--data", str(first))
        second = tmp_path / "replica-b"
        shutil.copytree(first, second)  # the domain's keys, as an operator would copy them
        (second / "veritee.db").unlink(missing_ok=True)
        platform = SimulatedPlatform(tmp_path / "sim", measurement=MEASUREMENT)
        procs, urls = [], []
        for data in (first, second):
            port = free_port()
            procs.append(subprocess.Popen(
                [*VERITEE, "serve", "--data", str(data), "--port", str(port), "--db", db_url],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            ))  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}")
        try:
            for url, proc in zip(urls, procs, strict=True):
                wait_ready(url, proc)
            a, b = (httpx.Client(base_url=u, timeout=10) for u in urls)
            admin = {"Authorization": "Bearer " + Domain.open(first).admin_token()}
            signed = signed_policy(tmp_path, first, platform.key_id, MEASUREMENT)
            run_cli("policy", "install", str(signed), "--data", str(first), "--url", urls[0])

            nonce = bytes.fromhex(a.post("/v1/challenge").json()["nonce"])
            ev = platform.evidence(report_data_for(nonce, b"", profile=platform.profile))
            body = {"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(),
                    "format": "simulated"}  # fmt: skip
            r = b.post("/v1/attest", json=body)  # issued by a, spent on b
            assert r.status_code == 200 and r.json()["accepted"], r.text
            for client in (a, b):
                r = client.post("/v1/attest", json=body)
                assert (r.status_code, r.json()["code"]) == (409, "nonce_reused"), r.text

            secret = {"value": base64.b64encode(b"shared").decode(),
                      "policy": {"allOf": [{"claim": "measurement", "equals": MEASUREMENT}]}}  # fmt: skip
            assert a.put("/v1/admin/secrets/app/key", json=secret, headers=admin).status_code == 200
            listed = b.get("/v1/admin/secrets", headers=admin)
            assert listed.status_code == 200 and "app/key" in listed.text
            # Released by b: the copied folder carries the KEK `veritee init` made.
            trust = Trust(urls[1], first / "domain_ca.pem", platform="simulated",
                          store=tmp_path / "store", measurement=MEASUREMENT,
                          platform_dir=tmp_path / "sim")  # fmt: skip
            assert trust.get_secret("app/key") == b"shared"
            trust.close()

            # A new version admitted through b (`veritee admit`, issue 18.7) next to another
            # named policy installed through a: both in force on a within the bound, and the
            # secret's release policy now admits the new version there too.
            from veritee.appraisal import load_policy, sign_policy

            other = {"version": 1, "name": "other", "platforms": {"simulated": {
                "measurements": ["cd" * 48], "platform_keys": [platform.key_id], "allow_debug": True}}}  # fmt: skip
            envelope = sign_policy(load_policy(json.dumps(other)), Domain.open(first).policy_key)
            assert a.put("/v1/admin/policy", content=envelope, headers=admin).status_code == 200
            m2 = "ef" * 48
            run_cli(
                "admit",
                "--policy",
                "it",
                "--measurement",
                m2,
                "--yes",
                "--data",
                str(second),
                "--url",
                urls[1],
            )
            v2 = SimulatedPlatform(tmp_path / "sim", measurement=m2)
            deadline = time.monotonic() + 10
            while True:
                nonce = bytes.fromhex(a.post("/v1/challenge").json()["nonce"])
                ev = v2.evidence(report_data_for(nonce, b"", profile=v2.profile))
                out = a.post("/v1/attest", json={"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(),
                                                 "format": "simulated"}).json()  # fmt: skip
                if out["accepted"] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert out["accepted"] and out["policy"]["name"] == "it", out
            listed = a.get("/v1/admin/policies", headers=admin).json()["policies"]
            assert [(p["name"], p["version"]) for p in listed] == [("it", 2), ("other", 1)]
            trust = Trust(urls[0], first / "domain_ca.pem", platform="simulated",
                          store=tmp_path / "store2", measurement=m2,
                          platform_dir=tmp_path / "sim")  # fmt: skip
            assert trust.get_secret("app/key") == b"shared"
            trust.close()

            report = b.get("/v1/admin/audit/verify", headers=admin).json()
            assert report["ok"] and report["count"] >= 4
            head_a = a.get("/v1/admin/audit/head", headers=admin).json()
            head_b = b.get("/v1/admin/audit/head", headers=admin).json()
            assert head_a["seq"] == head_b["seq"] and head_a["entry_hash"] == head_b["entry_hash"]
            a.close()
            b.close()
        finally:
            for proc in procs:
                stop(proc)


def _refused_start(data: Path, db_url: str, env: dict[str, str] | None = None) -> str:
    """Start `veritee serve` on ``data``; it must exit non-zero at once. Its stderr."""
    import os

    proc = subprocess.Popen(
        [*VERITEE, "serve", "--data", str(data), "--port", str(free_port()), "--db", db_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or {**os.environ},
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError("the replica started instead of refusing") from None
    assert proc.returncode == 2, err
    return err.decode()


def test_a_replica_without_the_domains_kek_refuses_to_start(tmp_path: Path) -> None:
    """Issue 12.4: a replica whose folder lacked secrets.kek silently made a new KEK, and the
    secrets it stored could not be released by the others. The database records the KEK's
    identifier; a replica with no KEK, or another one, refuses to start and says why."""
    import os

    from tests.pgutil import temporary_database

    from veritee.keybroker.kek import KEK_ENV, KEK_FILE, FileKek

    with temporary_database() as db_url:
        first = tmp_path / "replica-a"
        run_cli("init", "--data", str(first))
        kek_id = FileKek.in_data_dir(first).kek_id
        second = tmp_path / "replica-b"
        shutil.copytree(first, second)
        (second / KEK_FILE).unlink()
        port = free_port()
        proc = subprocess.Popen(
            [*VERITEE, "serve", "--data", str(first), "--port", str(port), "--db", db_url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc)  # records its KEK's identifier
        finally:
            stop(proc)
        env = {k: v for k, v in os.environ.items() if k != KEK_ENV}
        err = _refused_start(second, db_url, env)
        assert "has no key-encryption key" in err and kek_id in err and "copy secrets.kek" in err, (
            err
        )
        assert not (second / KEK_FILE).exists()  # no new KEK was made
        other = tmp_path / "other-domain"
        run_cli("init", "--data", str(other))
        shutil.copy(other / KEK_FILE, second / KEK_FILE)
        err = _refused_start(second, db_url, env)
        assert "but the database records KEK " + kek_id in err, err
        assert FileKek.in_data_dir(other).kek_id in err
        # the right KEK given in the environment instead of the file: starts
        raw = (first / KEK_FILE).read_bytes()
        (second / KEK_FILE).unlink()
        proc = subprocess.Popen(
            [*VERITEE, "serve", "--data", str(second), "--port", str(port), "--db", db_url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env | {KEK_ENV: base64.b64encode(raw).decode()},
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc)
        finally:
            stop(proc)
