"""Bad input to a running `veritee serve` is a 4xx problem, never a 500 (issue 12 item 10).

An independent test of `veritee serve` got HTTP 500 for deeply nested JSON and for integers of
thousands of digits at `POST /kbs/v0/auth` and `PUT /v1/admin/policy`, and for
`GET /v1/admin/audit?after=<huge>`. The same inputs go to a real server here, with the bodies
of the other JSON routes.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.service import VERITEE, free_port, run_cli, stop, wait_ready

from veritee.domain import Domain

DEEP_LIST = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
LONG_INT = b'{"version": ' + b"9" * 5000 + b"}"
MODERATE_DEEP = (
    b'{"a":' * 200 + b"1" + b"}" * 200
)  # under the recursion limit, over veritee's bound
BODIES = {"deep list": DEEP_LIST, "deep object": DEEP_OBJECT, "long integer": LONG_INT,
          "200 levels": MODERATE_DEEP}  # fmt: skip
ROUTES = [("POST", "/kbs/v0/auth"), ("PUT", "/v1/admin/policy"), ("POST", "/v1/attest"),
          ("POST", "/v1/certify"), ("POST", "/v1/admin/policy/dry-run"),
          ("PUT", "/v1/admin/secrets/default/key/image")]  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    port = free_port()
    proc = subprocess.Popen(
        [*VERITEE, "serve", "--data", str(data), "--port", str(port), "--tls"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    tls = ssl.create_default_context(cafile=str(data / "domain_ca.pem"))
    admin = {"Authorization": "Bearer " + Domain.open(data).admin_token()}
    try:
        wait_ready(url, proc, verify=tls)
        with httpx.Client(base_url=url, verify=tls, headers=admin, timeout=60) as client:
            yield client, proc
    finally:
        stop(proc)


def test_nested_json_long_integers_and_huge_numbers_are_4xx(
    server: tuple[httpx.Client, subprocess.Popen[bytes]],
) -> None:
    client, proc = server
    for method, path in ROUTES:
        for what, body in BODIES.items():
            r = client.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
            assert 400 <= r.status_code < 500, (method, path, what, r.status_code, r.text)
            doc = r.json()
            if path.startswith("/kbs/"):  # Trustee's error form
                assert doc["type"].endswith("/AttestationError"), doc
            else:
                assert doc["code"] in ("json_too_deep", "integer_too_long"), (
                    method,
                    path,
                    what,
                    doc,
                )
    for after in ("9" * 30, "9223372036854775808", "9" * 5000, "-1"):
        r = client.get("/v1/admin/audit", params={"after": after})
        assert r.status_code == 400, (after, r.status_code, r.text)
    r = client.get("/v1/admin/audit", params={"after": str(2**63 - 1)})
    assert r.status_code == 200 and r.json() == {"entries": []}
    assert client.get("/readyz").status_code == 200
    stop(proc)
    assert proc.stderr is not None
    assert b"unexpected error" not in proc.stderr.read()
