"""Generate the three parties' synthetic CSV files (deterministic; no real data).

python examples/cleanroom/make_data.py OUTDIR      # writes bank.csv, retailer.csv, insurer.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

from veritee.keybroker.cleanroom import PARTIES, synthetic_csv


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    for party in PARTIES:
        path = out / f"{party}.csv"
        path.write_bytes(synthetic_csv(party))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
