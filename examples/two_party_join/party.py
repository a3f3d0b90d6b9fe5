"""What each party of the two-party join does on its own machine.

    python party.py encrypt shop shop.csv --out encrypted/     # shop.csv.enc, shop.key (0600)
    python party.py policy --measurement HEX > policy.json      # pin the join job's measurement
    veritee secret put join/shop --policy policy.json --value-file encrypted/shop.key
    python party.py read shop results/shop.result.enc --key encrypted/shop.key \\
        --input encrypted/shop.csv.enc --ca domain_ca.pem --measurement HEX

``read`` opens this party's copy of the result with its own data key, then checks it: signed
by a certificate of the domain CA for the measurement the party pinned, listing its own file.
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
from veritee.keybroker.cleanroom import (
    decrypt_dataset,
    encrypt_dataset,
    release_policy_for,
    verify_result,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    enc = sub.add_parser("encrypt", help="encrypt a CSV under a fresh data key")
    enc.add_argument("party")
    enc.add_argument("csv", type=Path)
    enc.add_argument("--out", type=Path, required=True)
    pol = sub.add_parser("policy", help="print the release policy pinning the job")
    pol.add_argument("--measurement", required=True)
    rd = sub.add_parser("read", help="open and verify this party's copy of the result")
    rd.add_argument("party")
    rd.add_argument("result", type=Path)
    rd.add_argument("--key", type=Path, required=True, help="this party's data key")
    rd.add_argument("--input", type=Path, required=True, help="this party's encrypted input")
    rd.add_argument("--ca", type=Path, required=True)
    rd.add_argument("--measurement", required=True, help="the job measurement this party accepts")
    args = ap.parse_args(argv)

    if args.cmd == "encrypt":
        key, blob = encrypt_dataset(args.csv.read_bytes(), name=args.party)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.party}.csv.enc").write_bytes(blob)
        fd = os.open(args.out / f"{args.party}.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return 0
    if args.cmd == "policy":
        print(json.dumps(release_policy_for(args.measurement), indent=2))
        return 0
    try:
        plain = decrypt_dataset(
            args.result.read_bytes(), args.key.read_bytes(), name=f"join-result/{args.party}"
        )
        result = verify_result(
            json.loads(plain),
            ca_certificate=x509.load_pem_x509_certificate(args.ca.read_bytes()),
            measurement=args.measurement,
            at=dt.datetime.now(dt.UTC),
            own_input_sha256=hashlib.sha256(args.input.read_bytes()).hexdigest(),
        )
    except VeriteeError as e:
        print(f"refused [{e.code}]: {e.message}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
