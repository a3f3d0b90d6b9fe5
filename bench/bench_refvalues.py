"""Appraisal against a reference-value store of 100,000 values vs a literal allow-list of ten.

Issue 17: a policy may take its measurements from a named set of the domain's reference-value
store (``measurements: {refvalues: NAME}``). The set is loaded once into a dict (cached per set,
read again only after a change anywhere) and a match is one dict lookup, so a set of 100,000
values should cost no more than 5 % over ten literal values. Measured side by side in one run, on the real domain database (SQLite), with simulated evidence:

Interleaved call by call; the minimum of the rounds is the figure (medians printed beside).

1. the whole appraisal (``ServiceContext.appraise``: verify the evidence, resolve the policy's
   sets, appraise), literal vs set;
2. the policy check alone (``appraise`` on verified evidence), literal vs set, the set resolved
   once as the service does per appraisal.

Prints both figures and the ratio of each. ``--values N`` changes the store's size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from veritee import evidence
from veritee.appraisal import load_policy
from veritee.appraisal.evaluate import appraise
from veritee.collateral import Collateral
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.settings import Settings

MEAS = "5a" * 48


def _timed(fn: object, n: int) -> float:
    call = fn  # type: ignore[assignment]
    start = time.perf_counter()
    for _ in range(n):
        call()  # type: ignore[operator]
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--values", type=int, default=100_000, help="reference values in the store's set"
    )
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200, help="appraisals per round and kind")
    args = ap.parse_args()
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        domain = Domain.create(Path(tmp) / "domain", name="bench", now=now)
        app = create_app(Settings(data_dir=domain.path))
        ctx = app.state.ctx
        platform = SimulatedPlatform(Path(tmp) / "sim", measurement=MEAS)
        values = [secrets.token_hex(48) for _ in range(args.values - 1)] + [MEAS]
        start = time.perf_counter()
        with ctx.storage.transaction() as tx:
            tx.add_refvalue_source(
                {"set_name": "fleet", "file_name": "bench.corim", "sha256": "00" * 32, "document": b"-",
                 "kind": "unsigned-corim", "corim_id": "bench", "profile": None, "scheme": None,
                 "signer_name": None, "signer_key_sha256": None, "not_before": None, "expires_at": None},
                [(v, "sha-384", '"image"', "{}") for v in values], actor="bench", now=now,
            )  # fmt: skip
        stored = time.perf_counter() - start
        start = time.perf_counter()
        loaded = len(ctx.refvalue_set("fleet", now))
        load_s = time.perf_counter() - start
        section = {"platform_keys": [platform.key_id], "allow_debug": True}
        literal = load_policy(json.dumps({"version": 1, "name": "literal", "platforms": {"simulated": {
            **section, "measurements": [secrets.token_hex(48) for _ in range(9)] + [MEAS]}}}))  # fmt: skip
        by_set = load_policy(json.dumps({"version": 1, "name": "set", "platforms": {"simulated": {
            **section, "measurements": {"refvalues": "fleet"}}}}))  # fmt: skip
        ev_bytes = platform.evidence(b"\0" * 64)
        verified = evidence.verify(
            ev_bytes, collateral=Collateral.empty(), at=now, format="simulated"
        )
        for policy in (literal, by_set):  # both accept, and the set's decision names the CoRIM
            a = ctx.appraise(ev_bytes, at=now, format="simulated", policy=policy)
            if not a.decision.accepted:
                sys.exit(f"{policy.name}: not accepted: {a.decision.reasons}")
        resolver = ctx.refvalues_for(by_set, now)

        def full_literal() -> None:
            ctx.appraise(ev_bytes, at=now, format="simulated", policy=literal)

        def full_set() -> None:
            ctx.appraise(ev_bytes, at=now, format="simulated", policy=by_set)

        def check_literal() -> None:
            appraise(verified, literal)

        def check_set() -> None:
            appraise(verified, by_set, resolver)

        # Interleaved pairs in short rounds; the minimum of the rounds is the figure (the machine
        # may be shared: interference only ever adds time), the median is printed beside it.
        figures: dict[str, list[float]] = {
            k: [] for k in ("full_literal", "full_set", "check_literal", "check_set")
        }
        for _ in range(args.rounds):
            for kind, fn, n in (("full", (full_literal, full_set), args.calls),
                                ("check", (check_literal, check_set), args.calls * 10)):  # fmt: skip
                lit = st = 0.0
                for i in range(n):  # each goes first in half of the pairs
                    first, second = (fn[0], fn[1]) if i % 2 == 0 else (fn[1], fn[0])
                    t0 = time.perf_counter()
                    first()
                    t1 = time.perf_counter()
                    second()
                    t2 = time.perf_counter()
                    lit += (t1 - t0) if i % 2 == 0 else (t2 - t1)
                    st += (t2 - t1) if i % 2 == 0 else (t1 - t0)
                figures[f"{kind}_literal"].append(lit / n)
                figures[f"{kind}_set"].append(st / n)
        med = {k: min(v) for k, v in figures.items()}
        mid = {k: statistics.median(v) for k, v in figures.items()}
        print(f"store: {args.values:,} reference values in set 'fleet' (stored in {stored:.2f} s, "
              f"loaded {loaded:,} distinct in {load_s * 1000:.1f} ms, once per change)")  # fmt: skip
        for kind, title in (
            ("full", "whole appraisal (verify + sets + appraise)"),
            ("check", "policy check alone (appraise)"),
        ):
            lit, st = med[f"{kind}_literal"], med[f"{kind}_set"]
            print(
                f"{title:44s} literal list of 10 {lit * 1e6:8.1f} us, set of {args.values:,} {st * 1e6:8.1f} us, "
                f"ratio {st / lit:.3f} (medians {mid[f'{kind}_set'] / mid[f'{kind}_literal']:.3f})"
            )
        ctx.storage.close()


if __name__ == "__main__":
    main()
