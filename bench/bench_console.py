"""How long the web console's pages take to render over a full audit log (issue 16).

Fills a domain's SQLite database with N audit entries (decisions on three platforms, a quarter
refused with a reason and recorded claims), signs in, and prints the median time of each page
over several runs, in-process (no network): what an operator waits for on a busy domain. The
decision pages read at most the newest 10,000 entries; the audit page checks the whole chain
(as ``GET /v1/admin/audit/verify``).

    .venv/bin/python bench/bench_console.py [--entries 12000] [--runs 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from veritee.domain import Domain
from veritee.service.app import create_app
from veritee.service.settings import Settings

PAGES = ["/ui/", "/ui/decisions", "/ui/decisions?range=30d", "/ui/decisions/latest",
         "/ui/decisions/latest?outcome=refused", "/ui/audit", "/ui/secrets", "/ui/policies"]  # fmt: skip


def fill(app: object, entries: int) -> None:
    ctx = app.state.ctx  # type: ignore[attr-defined]
    now = dt.datetime.now(dt.UTC)
    with ctx.storage.transaction() as tx:
        for i in range(entries):
            accepted = i % 4 != 0
            details = {
                "evidence_sha256": f"{i:064x}", "platform": ("tdx", "sev-snp", "simulated")[i % 3],
                "measurement": "ab" * 48, "profile": "production", "tcb_status": "UpToDate", "status": "x",
                "policy": "shop", "policy_digest": "11" * 32, "warnings": [],
                "reasons": [] if accepted else [{"code": "measurement_not_allowed", "message": "m" * 120}],
            }  # fmt: skip
            if not accepted:
                details["claims"] = {f"rtmr{j}": "cd" * 48 for j in range(12)}
            tx.append_audit(kind="attest", actor="workload", subject="ab" * 48,
                            decision="accept" if accepted else "reject", details=details,
                            now=now - dt.timedelta(seconds=(entries - i) * 30))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=12_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        domain = Domain.create(Path(tmp) / "domain", now=dt.datetime.now(dt.UTC))
        app = create_app(Settings(data_dir=domain.path))
        fill(app, args.entries)
        with TestClient(app) as client:
            client.post("/ui/login", data={"token": domain.admin_token()}).raise_for_status()
            print(
                f"console pages over {args.entries} audit entries (SQLite, in-process), median of {args.runs}:"
            )
            for page in PAGES:
                times = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    client.get(page).raise_for_status()
                    times.append(time.perf_counter() - start)
                print(f"  {page:<40} {statistics.median(times) * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
