"""`veritee serve --workers 2 --pccs URL --kds URL` end to end (issue 16, collateral that stays
fresh): the workers fetch from the PCCS named (a stand-in serving the real test-vector
collateral), on the wall clock. Every test-vector set has expired by now, so what the PCCS
serves is refused (`collateral_expired`), nothing is stored, the refusal says why, the failure
backs off and shows in /metrics and the admin status.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import httpx
from tests.collateral_standin import PCCS_ROOT_CRL_PATH, StandIn, intel_set, serve_intel
from tests.conftest import TESTVECTORS
from tests.fakes.service import VERITEE, free_port, run_cli, stop, wait_ready

V4_QUOTE = "tdx/dcapqvl_tdx_quote_v4.bin"
V4_PATH = "intel/tdx/B0C06F000000-platform.json"


def test_serve_fetches_from_the_pccs_named_and_refuses_an_expired_set(tmp_path: Path) -> None:
    coll = intel_set("tdx/dcapqvl_tdx_quote_v4_collateral.json")  # skips without the vectors
    pccs = StandIn()
    try:
        serve_intel(pccs, "tdx", "B0C06F000000", "platform", coll, pccs=True)
        data = tmp_path / "domain"
        run_cli("init", "--data", str(data))
        port = free_port()
        proc = subprocess.Popen([*VERITEE, "serve", "--data", str(data), "--port", str(port), "--workers", "2",
                                 "--pccs", pccs.url, "--kds", pccs.url, "--collateral-warn-hours", "72"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            admin = {"Authorization": f"Bearer {(data / 'admin_token').read_text().strip()}"}
            quote = (TESTVECTORS / V4_QUOTE).read_bytes()
            r = httpx.post(url + "/v1/admin/policy/dry-run", headers=admin, timeout=60, json={
                "policy": json.dumps({"version": 1, "name": "tdx", "platforms": {"tdx": {}}}),
                "evidence": base64.b64encode(quote).decode(), "format": "tdx",
                "at": "2025-06-20T00:00:00Z"})  # fmt: skip
            assert r.status_code == 200, r.text
            out = r.json()
            assert "collateral_missing" in {x["code"] for x in out["reasons"]}
            (warning,) = [w for w in out["warnings"] if w["code"] == "collateral_fetch_failed"]
            assert "collateral_expired" in warning["message"]
            assert (
                PCCS_ROOT_CRL_PATH in pccs.requests and pccs.count("/tdx/certification/v4/tcb") == 1
            )
            status = httpx.get(url + "/v1/admin/collateral", headers=admin, timeout=30).json()
            (row,) = status["fetched"]
            assert row["path"] == V4_PATH and row["failures"] == 1 and row["sha256"] is None
            assert row["last_error"].startswith("collateral_expired") and row["next_try"]
            assert status["fetching"]["pccs"] == pccs.url
            metrics = httpx.get(url + "/metrics", timeout=30).text
            assert f'veritee_collateral_fetch_failures{{path="{V4_PATH}"}} 1.0' in metrics
            ready = httpx.get(url + "/readyz", timeout=30)
            assert (
                ready.status_code == 200 and ready.json()["collateral"]["status"] == "ok"
            )  # nothing held
        finally:
            stop(proc)
    finally:
        pccs.close()
