"""omne-attest 0.1.0 (pure Python, SEV-SNP) for bench_peers.py, in its own venv.

Per call, case "cached" (the chain checked once per case, as veritee's side caches it):
``Report.parse``, ``verify_signature`` (ECDSA-P384 under the VCEK, the VCEK's DER parsed per
call), ``verify_vcek_binding`` (hwID and TCB extensions against the report) and
``check_policy`` with a policy that checks nothing (veritee's verify() leaves policy to the
appraisal). Case "cold": ``omne_attest.verify`` (all of the above plus VCEK <- ASK <- ARK
RSA-PSS checks and the ARK pin, per call). omne-attest checks no validity dates.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

logging.disable(logging.CRITICAL)  # before the peer is imported (see _driver)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import omne_attest
from _driver import serve
from omne_attest import Policy, Report

ANY = Policy(measurement=None, report_data=None, tcb_floor=None, max_vmpl=3, reject_debug=False)


def prepare(case):  # type: ignore[no-untyped-def]
    report = Path(case["evidence"]).read_bytes()
    vcek, ask, ark = (Path(case[k]).read_bytes() for k in ("vcek_der", "ask_der", "ark_der"))
    pin = bytes.fromhex(case["ark_sha256"])
    if case["kind"] == "sev-snp-cold":
        return lambda: omne_attest.verify(report, vcek, ask, ark, pin, ANY)
    chain_error = None
    try:
        omne_attest.verify_chain(vcek, ask, ark, pin)
    except omne_attest.Fail as e:
        chain_error = e

    def call() -> None:
        if chain_error is not None:
            raise chain_error
        r = Report.parse(report)
        r.verify_signature(vcek)
        r.verify_vcek_binding(vcek)
        r.check_policy(ANY)

    return call


if __name__ == "__main__":
    serve(prepare)
