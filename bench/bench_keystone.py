"""Benchmark RISC-V Keystone report verification (pure-Python Ed25519 with SHA3-512).

Measures, in one run on one core (median of rounds):
  (a) one Ed25519-SHA3-512 signature check (``eddsa.verify``) of a 1,096-byte message, the size
      of an enclave report's signed bytes with 1,024 bytes of data;
  (b) ``keystone.verify()`` of a struct-form report whose SM report was verified before (the
      steady state: a device's SM report is the same until it reboots): one signature, with the
      SM key's fixed-base table;
  (c) ``keystone.verify()`` with the SM-report cache emptied before each call: two signatures
      (the keys' tables kept);
  (d) ``keystone.verify()`` of the first report of a device never seen: every cache emptied
      (two signatures by the 4-bit window method, keys decoded);
  (e) for scale, ``cryptography``'s RFC 8032 Ed25519 (OpenSSL, C) on the same message size.
Prints verifications per second and the ratio (e)/(b). Reports are built as Keystone's SM builds
them, with its published TEST device key from ../shared/testvectors/keystone.

    .venv/bin/python bench/bench_keystone.py [--rounds 5] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import struct
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import rate
from tests.fakes import keystone as fake

from veritee.collateral import Collateral
from veritee.evidence import eddsa, keystone

AT = datetime(2026, 1, 15, tzinfo=UTC)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    args = ap.parse_args()
    if not fake.DEV_KEY_HEADER.is_file():
        print(f"Keystone test device key not found at {fake.DEV_KEY_HEADER}", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")
    dev, sm = fake.dev_key(), fake.expand_seed(b"\x5a" * 32)
    data = bytes(range(256)) * 4
    enclave_hash, sm_hash = hashlib.sha3_512(b"enclave").digest(), hashlib.sha3_512(b"sm").digest()
    report = fake.build_report(
        device=dev, sm=sm, enclave_hash=enclave_hash, sm_hash=sm_hash, data=data
    )
    signed = enclave_hash + struct.pack("<Q", len(data)) + data
    sig = sm.sign(signed)
    ref_key = Ed25519PrivateKey.generate()
    ref_pub, ref_sig = ref_key.public_key(), ref_key.sign(signed)
    empty = Collateral.empty()
    keystone.verify(report, collateral=empty, at=AT)  # warm: base table, key tables, SM cache

    for _ in range(8):  # steady state: the keys' fixed-base tables are built
        keystone.verify(report, collateral=empty, at=AT)

    def sm_again() -> None:
        keystone._SM_VERIFIED.clear()
        keystone.verify(report, collateral=empty, at=AT)

    def new_device() -> None:
        keystone._SM_VERIFIED.clear()
        eddsa._COMB_TABLES.clear()
        eddsa._USES.clear()
        eddsa._key_table.cache_clear()
        keystone.verify(report, collateral=empty, at=AT)

    cases: dict[str, Callable[[], object]] = {
        "(a) eddsa.verify SHA3-512, 1096 B": lambda: eddsa.verify(
            sm.public, signed, sig, hash=eddsa.SHA3_512
        ),
        "(b) keystone.verify, steady state": lambda: keystone.verify(
            report, collateral=empty, at=AT
        ),
        "(c) keystone.verify, SM report again": sm_again,
        "(d) keystone.verify, a new device": new_device,
        "(e) cryptography Ed25519 (C), 1096 B": lambda: ref_pub.verify(ref_sig, signed),
    }
    results: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            results[name].append(rate(fn, args.seconds, batch=8))
    med = {k: statistics.median(v) for k, v in results.items()}
    for name, r in med.items():
        print(f"{name:44s} {r:10,.0f} /s  ({1e3 / r:.3f} ms)")
    b, e = med["(b) keystone.verify, steady state"], med["(e) cryptography Ed25519 (C), 1096 B"]
    print(f"C Ed25519 / keystone.verify in steady state: {e / b:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
