"""Run every benchmark in turn (`make bench`) and print their figures. Takes several minutes.

Each script prints medians and ratios measured within its own run; see docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS = [
    ["bench_sev_snp.py"],
    ["bench_dcap.py"],
    ["bench_tpm.py"],
    ["bench_peers.py"],
    ["bench_keystone.py"],
    ["bench_logs.py", "--records", "20000", "--runs", "5"],
    ["bench_storage.py"],
    ["bench_refvalues.py"],
    ["bench_service.py", "--workers", "2"],
    ["bench_release.py", "--workers", "2"],
    ["bench_console.py"],
]


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def main() -> int:
    """Each benchmark in turn, announced with its place in the run and the time so far (the
    scripts print their own figures as they go); a summary line at the end."""
    failed: list[str] = []
    start = time.monotonic()
    for i, args in enumerate(RUNS, 1):
        print(
            f"\n=== [{i}/{len(RUNS)}] {' '.join(args)}   ({_clock(time.monotonic() - start)} elapsed)",
            flush=True,
        )
        r = subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]], cwd=HERE)
        if r.returncode != 0:
            failed.append(args[0])
    done = len(RUNS) - len(failed)
    print(f"\n=== {done}/{len(RUNS)} benchmarks ran in {_clock(time.monotonic() - start)}"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
