"""dcap-qvl 0.7.0 (Rust, Python bindings) for bench_peers.py, in its own venv.

Per call: ``dcap_qvl.verify(quote, collateral, now)``; the collateral JSON is parsed once into a
``QuoteCollateralV3`` (collateral cached, as veritee's side caches it). dcap-qvl verifies the
PCK chain, CRLs, TCB info and QE identity signatures on every call (it keeps no cache).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

logging.disable(logging.CRITICAL)  # before the peer is imported (see _driver)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import dcap_qvl
from _driver import serve


def prepare(case):  # type: ignore[no-untyped-def]
    quote = Path(case["evidence"]).read_bytes()
    collateral = dcap_qvl.QuoteCollateralV3.from_json(Path(case["collateral"][0]).read_text())
    now = int(case["now"])
    return lambda: dcap_qvl.verify(quote, collateral, now)


if __name__ == "__main__":
    serve(prepare)
