"""A two-party batch job ported to veritee: a shop and a bank join their customer files inside
the TEE. THIS FILE is what gets measured (``veritee measure examples/two_party_join/join.py``).

Each party encrypted its CSV (``customer_id,category,amount``) under its own data key and
registered that key with the key broker behind a release policy that pins this job's
measurement (``party.py``). The job:

1. certifies and asks for both data keys (``trust.get_secret``): the broker releases them only
   to a measurement both parties' release policies and the domain's appraisal policy admit;
2. joins the two files on ``customer_id`` and, per category of the shop's rows, counts the
   shared customers and sums both parties' amounts (groups under ``MIN_GROUP_SIZE`` withheld);
3. signs the result with its admission-certified key and writes one copy per party, encrypted
   under that party's own data key: only the parties (and this job) can read it.

A second run on the same store reuses its key store and admission certificate. A changed job
has another measurement and gets no key until the operator admits it (``veritee admit``, which
widens both parties' release policies).

    python examples/two_party_join/join.py --url https://127.0.0.1:8400 --ca DATA/domain_ca.pem \\
        --store job-state/ --inputs encrypted/ --out results/
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from veritee import Trust
from veritee.errors import VeriteeError
from veritee.keybroker.cleanroom import (
    Row,
    canonical_json,
    decrypt_dataset,
    encrypt_dataset,
    parse_csv,
    sign_result,
)

PARTIES = ("shop", "bank")
MIN_GROUP_SIZE = 3  # categories with fewer shared customers are withheld


def join(shop: list[Row], bank: list[Row]) -> dict[str, object]:
    """Per category of the shop's rows: shared customers, the shop's and the bank's amounts."""
    bank_total: dict[str, Decimal] = defaultdict(Decimal)
    for row in bank:
        bank_total[row.customer_id] += row.amount
    customers: dict[str, set[str]] = defaultdict(set)
    shop_amount: dict[str, Decimal] = defaultdict(Decimal)
    for row in shop:
        if row.customer_id in bank_total:
            customers[row.category].add(row.customer_id)
            shop_amount[row.category] += row.amount
    by_category: dict[str, object] = {}
    for category, ids in sorted(customers.items()):
        if len(ids) < MIN_GROUP_SIZE:
            by_category[category] = {"withheld": True}
        else:
            by_category[category] = {
                "customers": len(ids),
                "shop_amount": str(shop_amount[category]),
                "bank_amount": str(sum((bank_total[c] for c in ids), Decimal())),
            }
    shared = set().union(*customers.values()) if customers else set()
    return {"shared_customers": len(shared), "by_category": by_category}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", required=True, help="the Certifier Service (https://...)")
    ap.add_argument("--ca", required=True, type=Path, help="the domain CA certificate")
    ap.add_argument("--store", required=True, type=Path, help="this job's key store folder")
    ap.add_argument(
        "--inputs", required=True, type=Path, help="folder with shop.csv.enc, bank.csv.enc"
    )
    ap.add_argument(
        "--out", required=True, type=Path, help="folder for shop.result.enc, bank.result.enc"
    )
    ap.add_argument("--platform", default="auto")
    ap.add_argument("--platform-dir", type=Path, default=None)
    ap.add_argument("--profile", default="production")
    args = ap.parse_args(argv)
    try:
        with Trust(args.url, args.ca, platform=args.platform, platform_dir=args.platform_dir,
                   profile=args.profile, store=args.store, measure=[Path(__file__)],
                   appraisal_policy="join") as trust:  # fmt: skip
            blobs = {p: (args.inputs / f"{p}.csv.enc").read_bytes() for p in PARTIES}
            keys = {p: trust.get_secret(f"join/{p}") for p in PARTIES}  # fresh evidence each
            rows = {
                p: parse_csv(decrypt_dataset(blobs[p], keys[p], name=p), name=p) for p in PARTIES
            }
            result = {
                "format": "two-party-join-v1",
                "measurement": trust.platform.measurement,
                "inputs": [
                    {
                        "party": p,
                        "ciphertext_sha256": hashlib.sha256(blobs[p]).hexdigest(),
                        "rows": len(rows[p]),
                    }
                    for p in PARTIES
                ],
                **join(rows["shop"], rows["bank"]),
            }
            cert = trust.certify()  # reused on a rerun until it nears expiry
            signed = sign_result(result, trust.keystore.private_key(), cert)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except VeriteeError as e:
        print(f"refused [{e.code}]: {e.message}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for p in PARTIES:  # one copy per party, under its own data key
        _key, blob = encrypt_dataset(canonical_json(signed), name=f"join-result/{p}", key=keys[p])
        (args.out / f"{p}.result.enc").write_bytes(blob)
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
