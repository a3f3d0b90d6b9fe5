"""What `veritee serve` says: the start line (policies in force, collateral counted, URL), the
JSON access log (never a header, body or token), the JSON formatter and the logging set-up."""

from __future__ import annotations

import base64
import json
import logging
import logging.config
import shutil
import sys

import pytest
from fastapi.testclient import TestClient
from tests.service.conftest import Env, default_policy

from veritee.service.app import create_app
from veritee.service.serving import ACCESS_LOGGER, JsonFormatter, log_config, start_line
from veritee.service.settings import Settings


def test_start_line_names_policies_collateral_and_url(env: Env) -> None:
    ctx = env.client.app.state.ctx  # type: ignore[attr-defined]
    line = start_line(ctx, "https://127.0.0.1:8400", 2)
    assert line.startswith(
        "veritee Certifier Service listening on https://127.0.0.1:8400 (2 workers"
    )
    assert "policies in force: none" in line
    assert "collateral: 0 files" in line
    env.install_policy()
    env.install_policy(
        {
            **default_policy(env.platform),
            "platforms": {
                "simulated": {
                    "measurements": ["ef" * 48],
                    "platform_keys": [env.platform.key_id],
                    "allow_debug": True,
                }
            },
        }
    )
    env.install_policy({**default_policy(env.platform), "name": "other"})
    folder = env.domain.collateral_dir
    folder.mkdir(exist_ok=True)
    shutil.copy(env.domain.path / "domain_ca.pem", folder / "extra_ca.pem")
    ctx.reload_collateral()
    line = start_line(ctx, "http://[::1]:8400", 1)
    assert "policies in force: other v1, test v2;" in line
    assert "collateral: 1 file from" in line and "1 certificates, 0 CRLs" in line
    assert "(1 process, " in line and f"database {ctx.storage.dialect}" in line
    assert "@" not in line.split("database", 1)[1].split(")")[0]  # no database URL, no password


def _records(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    fmt = JsonFormatter()
    return [json.loads(fmt.format(r)) for r in caplog.records if r.name == ACCESS_LOGGER]


def test_access_log_is_json_and_never_holds_secrets(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(data_dir=env.domain.path, database_url=env.db_url, access_log=True))
    secret = b"the launch codes 0123"
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with TestClient(app) as client:
        body = {"value": base64.b64encode(secret).decode(),
                "policy": {"allOf": [{"claim": "measurement", "equals": "ab" * 48}]}}  # fmt: skip
        r = client.put("/v1/admin/secrets/default/key/launch", json=body, headers=env.admin)
        assert r.status_code == 200, r.text
        assert client.get("/v1/admin/audit?limit=5", headers=env.admin).status_code == 200
        assert (
            client.get(
                "/v1/admin/audit", headers={"Authorization": "Bearer wrong-token"}
            ).status_code
            == 401
        )
        assert client.get("/nowhere").status_code == 404
        assert client.post("/v1/attest", content=b"x" * (2 * 1024 * 1024)).status_code == 413
    entries = _records(caplog)
    by_path = {(e["method"], e["path"]): e for e in entries}
    put = by_path[("PUT", "/v1/admin/secrets/default/key/launch")]
    assert put["status"] == 200 and str(put["route"]).startswith("/v1/admin/secrets/{")
    audit = [e for e in entries if e["path"] == "/v1/admin/audit"]
    assert {e["query"] for e in audit} == {"limit=5", ""} and {e["status"] for e in audit} == {
        200,
        401,
    }
    assert (
        by_path[("GET", "/nowhere")]["status"] == 404
        and by_path[("GET", "/nowhere")]["route"] is None
    )
    assert by_path[("POST", "/v1/attest")]["status"] == 413
    for e in entries:
        assert {
            "ts",
            "level",
            "logger",
            "method",
            "path",
            "query",
            "status",
            "duration_ms",
            "bytes",
            "client",
            "worker",
        } <= set(e)
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    for never in (env.domain.admin_token(), "wrong-token", "Bearer", secret.decode(),
                  base64.b64encode(secret).decode(), "launch codes"):  # fmt: skip
        assert never not in text


def test_no_access_log_unless_asked(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    assert env.client.get("/healthz").status_code == 200
    assert _records(caplog) == []


def test_formatter_names_an_exception_without_its_text() -> None:
    try:
        raise ValueError("evidence bytes deadbeef")
    except ValueError:
        record = logging.LogRecord(
            "veritee.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    out = json.loads(JsonFormatter().format(record))
    assert (
        out["message"] == "failed here" and out["level"] == "error" and out["logger"] == "veritee.x"
    )
    assert out["exception"]["type"] == "ValueError" and __file__ in out["exception"]["at"]
    assert "deadbeef" not in json.dumps(out)


def test_log_config_applies_and_checks_its_level() -> None:
    before = logging.getLogger("veritee").level, logging.getLogger(ACCESS_LOGGER).level
    try:
        logging.config.dictConfig(log_config("info", access=False))
        assert logging.getLogger("veritee").level == logging.INFO
        assert logging.getLogger(ACCESS_LOGGER).level == logging.CRITICAL
        logging.config.dictConfig(log_config("debug", access=True))
        assert logging.getLogger(ACCESS_LOGGER).level == logging.INFO
        assert logging.getLogger("uvicorn.access").level == logging.CRITICAL  # ours replaces it
    finally:
        for name in ("veritee", ACCESS_LOGGER, "uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
        logging.getLogger("veritee").setLevel(before[0])
        logging.getLogger(ACCESS_LOGGER).setLevel(before[1])
    with pytest.raises(ValueError, match="not one of"):
        log_config("verbose", access=True)
