"""Every worker and replica decides under the policy in force (issue 12.1).

A soak of two replicas on PostgreSQL found replica B deciding for 20 minutes under the policy
replica A had replaced: the cache compared version numbers, which are numbered per policy name,
so ``strict`` v1 looked like no change to a replica holding ``open`` v1. Here: two replicas on
one PostgreSQL database, and one replica with ``--workers 2``, each told apart only by name.
"""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import httpx
import pytest
from tests.fakes.service import (
    MEASUREMENT,
    POLICY_CACHE_SECONDS,
    run_cli,
    start_service,
    stop,
)

from veritee.binding import report_data_for
from veritee.platforms.simulated import SimulatedPlatform


def _named_policy(tmp_path: Path, data: Path, name: str, key_id: str, measurement: str) -> Path:
    src = tmp_path / f"{name}.yaml"
    src.write_text(
        f"version: 1\nname: {name}\nplatforms:\n  simulated:\n    measurements: ['{measurement}']\n"
        f"    platform_keys: ['{key_id}']\n    allow_debug: true\n"
    )
    out = tmp_path / f"{name}.signed.json"
    run_cli("policy", "sign", str(src), "--data", str(data), "-o", str(out))
    return out


def _accepted(url: str, platform: SimulatedPlatform) -> bool:
    """One attestation, challenge and evidence each on a new connection (any worker)."""
    nonce = bytes.fromhex(httpx.post(url + "/v1/challenge", timeout=10).json()["nonce"])
    ev = platform.evidence(report_data_for(nonce, b"", profile=platform.profile))
    body = {"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(), "format": "simulated"}
    r = httpx.post(url + "/v1/attest", json=body, timeout=10)
    assert r.status_code in (200, 403), r.text
    return bool(r.json().get("accepted"))


def _replace_open_by_strict(
    tmp_path: Path, data: Path, install_url: str, deciders: list[str]
) -> None:
    """Install ``open`` (admits MEASUREMENT), let every decider cache it, install ``strict`` (admits only
    another measurement, also v1) and retire ``open`` through ``install_url``; after the bound,
    nobody admits MEASUREMENT."""
    platform = SimulatedPlatform(tmp_path / "sim", measurement=MEASUREMENT)
    open_ = _named_policy(tmp_path, data, "open", platform.key_id, MEASUREMENT)
    strict = _named_policy(tmp_path, data, "strict", platform.key_id, "ef" * 48)
    run_cli("policy", "install", str(open_), "--data", str(data), "--url", install_url)
    time.sleep(POLICY_CACHE_SECONDS + 0.5)
    for url in deciders:
        for _ in range(8):  # on several connections: every worker caches `open` v1
            assert _accepted(url, platform)
    # Several named policies are in force at once (installing one never replaces another):
    # `strict` comes into force and `open` leaves it, both through `install_url`.
    run_cli("policy", "install", str(strict), "--data", str(data), "--url", install_url)
    run_cli("policy", "retire", "open", "--yes", "--data", str(data), "--url", install_url)
    time.sleep(POLICY_CACHE_SECONDS + 0.5)
    outcomes = [_accepted(url, platform) for url in deciders for _ in range(12)]
    assert not any(outcomes), f"{outcomes.count(True)} of {len(outcomes)} decided under `open`"


@pytest.mark.postgres
def test_two_replicas_decide_under_the_policy_installed_through_either(tmp_path: Path) -> None:
    from tests.pgutil import temporary_database

    with temporary_database() as db_url:
        first = tmp_path / "replica-a"
        run_cli("init", "--data", str(first))
        second = tmp_path / "replica-b"
        shutil.copytree(first, second)
        procs = []
        try:
            a, proc = start_service(first, "--db", db_url)
            procs.append(proc)
            b, proc = start_service(second, "--db", db_url)
            procs.append(proc)
            _replace_open_by_strict(tmp_path, first, a, [b, a])
        finally:
            for proc in procs:
                stop(proc)


def test_two_workers_decide_under_the_policy_installed_through_either(tmp_path: Path) -> None:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    url, proc = start_service(data, "--workers", "2")
    try:
        _replace_open_by_strict(tmp_path, data, url, [url])
    finally:
        stop(proc)
