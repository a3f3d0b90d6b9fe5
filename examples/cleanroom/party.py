"""What one data owner does in the clean room.

    python party.py encrypt bank bank.csv --out encrypted/        # bank.csv.enc + bank.key (0600)
    python party.py policy --measurement HEX > policy.json          # pin the analytics workload
    veritee secret put cleanroom/bank --policy policy.json --value-file encrypted/bank.key
    python party.py verify result.json --ca domain_ca.pem --measurement HEX \\
        --input encrypted/bank.csv.enc                              # exit 0 verified, 1 refused
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
from pathlib import Path

from cryptography import x509

from veritee.errors import VeriteeError
from veritee.keybroker.cleanroom import encrypt_dataset, release_policy_for, verify_result


def _encrypt(args: argparse.Namespace) -> int:
    key, blob = encrypt_dataset(args.csv.read_bytes(), name=args.party)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.party}.csv.enc").write_bytes(blob)
    fd = os.open(args.out / f"{args.party}.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    print(
        f"encrypted {args.csv} -> {args.out / (args.party + '.csv.enc')} "
        f"(sha256 {hashlib.sha256(blob).hexdigest()[:16]}...); data key in {args.party}.key"
    )
    return 0


def _policy(args: argparse.Namespace) -> int:
    print(json.dumps(release_policy_for(args.measurement), indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    signed = json.loads(args.result.read_text())
    ca = x509.load_pem_x509_certificate(args.ca.read_bytes())
    own = hashlib.sha256(args.input.read_bytes()).hexdigest() if args.input else None
    try:
        result = verify_result(
            signed,
            ca_certificate=ca,
            measurement=args.measurement,
            at=dt.datetime.now(dt.UTC),
            own_input_sha256=own,
        )
    except VeriteeError as e:
        print(f"NOT VERIFIED [{e.code}]: {e.message}", file=sys.stderr)
        return 1
    print("VERIFIED: signed by the pinned workload, certified by the domain CA")
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encrypt", help="encrypt a CSV under a fresh data key")
    e.add_argument("party")
    e.add_argument("csv", type=Path)
    e.add_argument("--out", type=Path, default=Path("encrypted"))
    e.set_defaults(fn=_encrypt)
    p = sub.add_parser("policy", help="print the release policy pinning the workload")
    p.add_argument("--measurement", required=True)
    p.set_defaults(fn=_policy)
    v = sub.add_parser("verify", help="verify a signed result")
    v.add_argument("result", type=Path)
    v.add_argument("--ca", type=Path, required=True)
    v.add_argument("--measurement", required=True)
    v.add_argument("--input", type=Path, default=None, help="your encrypted file: must be listed")
    v.set_defaults(fn=_verify)
    args = ap.parse_args(argv)
    try:
        return int(args.fn(args))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
