"""The loop every peer driver runs (stdlib only: it runs in each peer's own virtual environment).

A driver reads one JSON request per line on stdin and answers one JSON line on stdout:

  {"op": "load", "cases": {NAME: {...}}}    prepare each case (its inputs, its cached state)
  {"op": "time", "case": NAME, "seconds": S} call the case's verification in a loop for about S
                                             seconds: {"calls": N, "seconds": ELAPSED}
  {"op": "verdicts"}                         call every case once: {"verdicts": {NAME: {"ok":
                                             bool, "why": short reason}}}

A case's verification is a callable that returns on acceptance and raises on refusal. Each
driver script switches logging off (``logging.disable``) before it imports its peer: veritee logs
nothing per call, and a log line per call would be timed as verification. This module does not:
it is also imported by the tests, where a process-wide ``logging.disable`` silenced every later
test's logs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

Prepare = Callable[[dict[str, Any]], Callable[[], object]]


class Refused(Exception):
    """A peer's verdict that is a return value (a result object), turned into a refusal."""


def why(exc: BaseException) -> str:
    """A short reason: the exception's class and the start of its message (never evidence)."""
    text = " ".join(str(exc).split())[:80]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def time_calls(call: Callable[[], object], seconds: float) -> dict[str, float]:
    n, start = 0, time.perf_counter()
    batch = 1
    while True:
        for _ in range(batch):
            call()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return {"calls": n, "seconds": elapsed}
        batch = min(batch * 2, 64)


def serve(prepare: Prepare) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # a peer's own prints must not corrupt the protocol
    calls: dict[str, Callable[[], object]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        reply: dict[str, Any]
        if op == "load":
            calls = {}
            failed = {}
            for name, case in request["cases"].items():
                try:
                    calls[name] = prepare(case)
                except Exception as e:  # a case the peer cannot even take in is a refusal
                    failed[name] = why(e)

                    def refuse(reason: str = failed[name]) -> None:
                        raise Refused(reason)

                    calls[name] = refuse
            reply = {"loaded": sorted(calls), "failed_to_load": failed}
        elif op == "time":
            reply = time_calls(calls[request["case"]], float(request["seconds"]))
        elif op == "verdicts":
            verdicts = {}
            for name, call in calls.items():
                try:
                    call()
                    verdicts[name] = {"ok": True, "why": ""}
                except Exception as e:
                    verdicts[name] = {"ok": False, "why": why(e)}
            reply = {"verdicts": verdicts}
        else:
            reply = {"error": f"unknown op {op!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
