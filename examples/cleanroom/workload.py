"""The clean-room analytics workload. THIS FILE is what gets measured:

    veritee measure examples/cleanroom/workload.py

It certifies itself (simulated platform), asks the key broker for each party's data key
(``Trust.get_secret``), decrypts the three datasets, computes the joint aggregate and writes it
signed with its admission-certified key. Change one byte and the measurement changes: the key
broker then releases nothing and says why.

    python examples/cleanroom/workload.py --url https://127.0.0.1:8400 --ca DATA/domain_ca.pem \\
        --inputs encrypted/ --out result.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from veritee.errors import VeriteeError
from veritee.keybroker.cleanroom import PARTIES, EncryptedDataset, run_workload
from veritee.platforms.simulated import load_or_create_platform_key, measure, platform_key_id
from veritee.sdk.trust import Trust

# Groups with fewer rows than this are withheld from the result.
MIN_GROUP_SIZE = 5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", default="https://127.0.0.1:8400")
    ap.add_argument("--ca", type=Path, help="the domain CA certificate (domain_ca.pem)")
    ap.add_argument("--inputs", type=Path, help="folder with PARTY.csv.enc files")
    ap.add_argument("--out", type=Path, help="where to write the signed result (JSON)")
    ap.add_argument(
        "--store",
        type=Path,
        default=None,
        help="workload key store (default: .cleanroom-workload/<measurement prefix>)",
    )
    ap.add_argument("--platform-dir", type=Path, default=None, help="simulated platform folder")
    ap.add_argument("--parties", nargs="+", default=list(PARTIES))
    ap.add_argument(
        "--show-platform-key",
        action="store_true",
        help="print the simulated platform key id (for the appraisal policy) and exit",
    )
    args = ap.parse_args(argv)
    if args.show_platform_key:
        from veritee.sdk.trust import _default_platform_dir

        print(
            platform_key_id(
                load_or_create_platform_key(args.platform_dir or _default_platform_dir())
            )
        )
        return 0
    if args.ca is None or args.inputs is None or args.out is None:
        ap.error("--ca, --inputs and --out are required")
    try:
        datasets = [
            EncryptedDataset(p, f"cleanroom/{p}", (args.inputs / f"{p}.csv.enc").read_bytes())
            for p in args.parties
        ]
        me = measure([Path(__file__)])  # what the platform reports for this program
        store = args.store or Path(".cleanroom-workload") / me[:16]
        with Trust(
            args.url,
            args.ca,
            platform="simulated",
            store=store,
            measurement=me,
            platform_dir=args.platform_dir,
        ) as trust:
            signed = run_workload(trust, datasets, min_group_size=MIN_GROUP_SIZE)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except VeriteeError as e:
        print(f"refused [{e.code}]: {e.message}", file=sys.stderr)
        for r in getattr(e, "reasons", []):
            print(f"  - [{r['code']}] {r['message']}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(signed, indent=2) + "\n")
    print(f"signed result written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
