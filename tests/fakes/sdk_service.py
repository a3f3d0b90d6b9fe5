"""The Certifier Service in a thread of the test process (real uvicorn, real HTTP or HTTPS with
a server certificate from the domain CA), with a signed policy admitting the simulated
platform's two measurements :data:`ADMITTED`: what SDK workloads (``veritee.sdk.Trust``) talk to.

Example::

    with running_service(tmp_path, tls=True) as (server, domain, sim):
        trust = Trust(server.url, domain.ca_pem, platform="simulated", store=tmp_path / "store",
                      measurement=ADMITTED[0], platform_dir=sim)
        httpx.get(server.url + "/readyz", verify=domain_ca_context(domain))
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from veritee.appraisal import load_policy, sign_policy
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings

__all__ = ["ADMITTED", "domain_ca_context", "running_service", "start_service_in_thread"]

#: The two simulated measurements the installed policy ("sdk") admits.
ADMITTED = ("aa" * 48, "bb" * 48)


def domain_ca_context(domain: Domain) -> ssl.SSLContext:
    """A TLS client context trusting only ``domain``'s CA."""
    return ssl.create_default_context(cadata=domain.ca_pem.decode())


def start_service_in_thread(tmp_path: Path, *, tls: bool) -> tuple[RunningServer, Domain, Path]:
    """A new domain in ``tmp_path/domain``, its service started in a thread (the caller stops it)
    and policy "sdk" installed; with the simulated platform's folder ``tmp_path/sim``."""
    domain = Domain.create(tmp_path / "domain", now=dt.datetime.now(dt.UTC))
    sim = tmp_path / "sim"
    key_id = SimulatedPlatform(sim, measurement=ADMITTED[0]).key_id
    tls_files: dict[str, Any] = {}
    if tls:
        from veritee.service.tls import server_certificate_files

        cert, key = server_certificate_files(domain.path, "127.0.0.1")
        tls_files = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    server = start_in_thread(
        create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)), **tls_files
    )
    doc = {"version": 1, "name": "sdk", "platforms": {"simulated": {
        "measurements": list(ADMITTED), "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    httpx.put(server.url + "/v1/admin/policy", content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key),
              headers=admin, verify=domain_ca_context(domain)).raise_for_status()  # fmt: skip
    return server, domain, sim


@contextmanager
def running_service(tmp_path: Path, *, tls: bool) -> Iterator[tuple[RunningServer, Domain, Path]]:
    """:func:`start_service_in_thread` for the block, stopped after."""
    server, domain, sim = start_service_in_thread(tmp_path, tls=tls)
    try:
        yield server, domain, sim
    finally:
        server.stop()
