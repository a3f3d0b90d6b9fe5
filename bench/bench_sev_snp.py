"""Benchmark SEV-SNP report verification against the raw ECDSA P-384 verify floor.

Measures, in one run on one core (median of rounds):
  (a) raw ``cryptography`` ECDSA-P384/SHA-384 verify of the report's 672 signed bytes with the
      VCEK key (the floor: nothing else can be faster than this);
  (b) full ``sev_snp.verify()`` with the VCEK -> ASK -> ARK chain cached;
  (c) full ``sev_snp.verify()`` without a cache (chain verified and certificates parsed per call).
  (d) ``sev_snp.verify()`` at 2040-01-01, when the VCEK has expired (refused), cache warm, and
  (e) the same without a cache: a refusal must never cost more than an acceptance (issue 15
      item 3), so (d)/(b) and (e)/(c) (time) are printed; goal < 1.
Prints rates and the ratio (b)/(a). Needs ../shared/testvectors.

    .venv/bin/python bench/bench_sev_snp.py [--rounds 7] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from _common import paired_times, rate
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.collateral import Collateral
from veritee.errors import VerificationError
from veritee.evidence import sev_snp
from veritee.evidence.amd import AmdTrust, ChainCache

TV = Path(__file__).resolve().parents[1].parent / "shared" / "testvectors" / "sev-snp"
AT = datetime(2026, 1, 15, tzinfo=UTC)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5)
    args = ap.parse_args()
    if not (TV / "virtee_milan_report.bin").is_file():
        print(f"test vectors not found at {TV}", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")

    data = (TV / "virtee_milan_report.bin").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AMD VCEK serial number 0
        col = Collateral.from_paths(
            [TV / "virtee_milan_vcek.der", TV / "amd_milan_vcek_ask_ark.pem"]
        )
    report = sev_snp.AttestationReport.from_bytes(data)
    vcek = next(c for c in col.certificates if c.subject.rfc4514_string().startswith("CN=SEV-VCEK"))
    key = vcek.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    sig, msg, algo = report.der_signature(), data[: sev_snp.SIGNED_SIZE], ec.ECDSA(hashes.SHA384())

    cached = AmdTrust(cache=ChainCache())
    uncached = AmdTrust(cache=None)
    sev_snp.verify(data, collateral=col, at=AT, trust=cached)  # warm the cache

    def raw() -> None:
        key.verify(sig, msg, algo)

    def full_cached() -> None:
        sev_snp.verify(data, collateral=col, at=AT, trust=cached)

    def full_uncached() -> None:
        sev_snp.verify(data, collateral=col, at=AT, trust=uncached)

    expired = datetime(2040, 1, 1, tzinfo=UTC)

    def refused(trust: AmdTrust) -> Callable[[], None]:
        def call() -> None:
            try:
                sev_snp.verify(data, collateral=col, at=expired, trust=trust)
            except VerificationError:
                return
            raise AssertionError("an expired VCEK was accepted")

        return call

    refuse_cached, refuse_uncached = refused(cached), refused(uncached)

    # Per-call interleaving (a, b, a, b, ...): load from other processes on the shared machine
    # hits both alike, so the per-round ratio of medians is stable even when the rates move.
    a: list[float] = []
    b: list[float] = []
    c: list[float] = []
    d: list[float] = []
    e: list[float] = []
    ratios: list[float] = []
    for _ in range(args.rounds):
        t_raw, t_cached = paired_times(raw, full_cached, args.seconds)
        a.append(1 / t_raw)
        b.append(1 / t_cached)
        ratios.append(b[-1] / a[-1])
        c.append(rate(full_uncached, args.seconds / 2))
        d.append(rate(refuse_cached, args.seconds / 4))
        e.append(rate(refuse_uncached, args.seconds / 4))
    ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
    md, me = statistics.median(d), statistics.median(e)
    print(f"(a) raw ECDSA-P384 verify       : {ma:8.0f} /s  ({1e6 / ma:7.1f} us)")
    print(f"(b) verify(), chain cached      : {mb:8.0f} /s  ({1e6 / mb:7.1f} us)")
    print(f"(c) verify(), uncached          : {mc:8.0f} /s  ({1e6 / mc:7.1f} us)")
    print(
        f"ratio (b)/(a), median of rounds : {statistics.median(ratios):6.1%}  "
        f"(min {min(ratios):.1%}, max {max(ratios):.1%})"
    )
    print(f"ratio (c)/(a)                   : {mc / ma:6.1%}")
    print(f"(d) refusal (expired), cached   : {md:8.0f} /s  ({1e6 / md:7.1f} us)")
    print(f"(e) refusal (expired), uncached : {me:8.0f} /s  ({1e6 / me:7.1f} us)")
    print(f"refusal / acceptance time, cached  : {mb / md:.2f}x (goal < 1)")
    print(f"refusal / acceptance time, uncached: {mc / me:.2f}x (goal < 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
