"""Run every benchmark in turn (`make bench`) and print their figures. Takes several minutes.

Each script prints medians and ratios measured within its own run; see docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS = [
    ["bench_sev_snp.py"],
    ["bench_dcap.py"],
    ["bench_tpm.py"],
    ["bench_keystone.py"],
    ["bench_logs.py", "--records", "20000", "--runs", "5"],
    ["bench_storage.py"],
    ["bench_service.py", "--workers", "2"],
    ["bench_release.py", "--workers", "2"],
]


def main() -> int:
    failed = 0
    for args in RUNS:
        print(f"\n=== {' '.join(args)}", flush=True)
        r = subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]], cwd=HERE)
        failed += r.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
