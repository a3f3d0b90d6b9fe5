"""A real `veritee serve --config FILE`: the file's settings apply, a flag wins over it, the
start line and the JSON access log on stderr, no credential or secret in them."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
from tests.fakes.service import VERITEE, free_port, run_cli, stop, wait_ready

from veritee.domain import Domain

SECRET = b"never in a log 7f3a"


def test_serve_from_a_config_file_logs_json_lines(tmp_path: Path) -> None:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    (data / "collateral").mkdir(exist_ok=True)
    shutil.copy(data / "domain_ca.pem", data / "collateral" / "other_ca.pem")
    cfg = tmp_path / "etc" / "veritee.toml"
    cfg.parent.mkdir()
    # data relative to the file; port 1 would fail to bind: the flag below must win
    cfg.write_text(
        'data = "../domain"\nport = 1\ntls = true\naccess-log = true\nlog-level = "info"\n'
    )
    port = free_port()
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([*VERITEE, "serve", "--config", str(cfg), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    tls = ssl.create_default_context(cafile=str(data / "domain_ca.pem"))
    token = Domain.open(data).admin_token()
    admin = {"Authorization": f"Bearer {token}"}
    try:
        wait_ready(url, proc, verify=tls)
        body = {"value": base64.b64encode(SECRET).decode(),
                "policy": {"allOf": [{"claim": "measurement", "equals": "ab" * 48}]}}  # fmt: skip
        with httpx.Client(base_url=url, verify=tls) as c:
            assert (
                c.put("/v1/admin/secrets/default/key/k1", json=body, headers=admin).status_code
                == 200
            )
            assert c.get("/v1/admin/audit?limit=7", headers=admin).status_code == 200
            assert (
                c.get(
                    "/v1/admin/policy", headers={"Authorization": "Bearer not-the-token"}
                ).status_code
                == 401
            )
    finally:
        stop(proc)
    lines = log.read_text().splitlines()
    assert lines[0].startswith(f"veritee Certifier Service listening on {url} (1 process, data ")
    assert "policies in force: none" in lines[0]
    assert "collateral: 1 file from" in lines[0] and "1 certificates" in lines[0]
    entries = [json.loads(line) for line in lines[1:]]  # every later line is JSON
    access = [e for e in entries if e["logger"] == "veritee.access"]
    assert {"uvicorn.error", "veritee.access"} <= {e["logger"] for e in entries}
    audit = next(e for e in access if e["path"] == "/v1/admin/audit")
    assert (audit["query"], audit["status"], audit["scheme"], audit["method"]) == (
        "limit=7",
        200,
        "https",
        "GET",
    )
    assert any(e["path"] == "/v1/admin/policy" and e["status"] == 401 for e in access)
    assert any(e["path"] == "/readyz" for e in access)
    text = log.read_text()
    for never in (token, "not-the-token", "Authorization", "Bearer", SECRET.decode(),
                  base64.b64encode(SECRET).decode()):  # fmt: skip
        assert never not in text
