"""/metrics of `veritee serve --workers 2` tells the whole service's totals whichever worker
answers the scrape (prometheus-client's multiprocess mode in a private folder per start)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
from tests.fakes.service import VERITEE, free_port, run_cli, stop, wait_ready

SAMPLE = re.compile(r'^veritee_http_requests_total\{route="/healthz",status="200"\} (\S+)$', re.M)


def _healthz_total(text: str) -> float:
    found = SAMPLE.findall(text)
    assert len(found) <= 1, text
    return float(found[0]) if found else 0.0


def _workers_that_counted(folder: Path) -> set[str]:
    """The pids whose counter file holds values (each worker writes its own file)."""
    return {
        p.name.split("_")[1].split(".")[0] for p in folder.glob("counter_*.db") if p.stat().st_size
    }


def test_every_scrape_reports_the_total_of_both_workers(tmp_path: Path) -> None:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    stale = tmp / "veritee-metrics-stale"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"\0" * 16)  # a folder left behind is never reused
    port = free_port()
    proc = subprocess.Popen(
        [*VERITEE, "serve", "--data", str(data), "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp), "PROMETHEUS_MULTIPROC_DIR": str(stale)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        (folder,) = [p for p in tmp.glob("veritee-metrics-*") if p != stale]
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        # Each request on a new connection, which the kernel hands to either worker: go on
        # until both have counted some (this proves the scrapes below add up two workers).
        sent = 0
        while len(_workers_that_counted(folder)) < 2 or sent < 13:
            assert sent < 400, "the requests never reached the second worker"
            assert httpx.get(url + "/healthz").status_code == 200
            sent += 1
        totals = [_healthz_total(httpx.get(url + "/metrics").text) for _ in range(6)]
        assert totals == [sent] * 6
        text = httpx.get(url + "/metrics").text
        assert "# TYPE veritee_http_requests_total counter" in text
        assert (
            'veritee_request_duration_seconds_count{route="/healthz"} ' + f"{float(sent)}" in text
        )
        assert "veritee_http_requests_in_progress" in text
        # A worker killed outright (no shutdown) is replaced by uvicorn: its counts stay in the
        # totals, its live gauge stops counting at the next scrape.
        victim = int(sorted(_workers_that_counted(folder))[0])
        assert (folder / f"gauge_livesum_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)
        dead_gauge = folder / f"gauge_livesum_{victim}.db"
        deadline = time.monotonic() + 60
        while True:  # the first scrape a live worker answers forgets the dead one's gauge
            try:
                text = httpx.get(url + "/metrics").text
            except httpx.HTTPError:
                text = ""
            if (text and not dead_gauge.exists()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not (folder / f"gauge_livesum_{victim}.db").exists()
        assert _healthz_total(text) == sent
        assert "veritee_http_requests_in_progress 1.0" in text  # this scrape alone
    finally:
        stop(proc, 15)
    assert not folder.exists(), "the metrics folder outlived the service"
    assert (stale / "counter_1.db").exists()  # not ours: untouched
