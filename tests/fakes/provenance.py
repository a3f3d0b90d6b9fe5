"""Two validly signed DCAP collateral sets for one FMSPC, from before and after a TCB recovery,
for the service tests of which collateral decides (issue 11 item 3).

:data:`BEFORE` (tcbEvaluationDataNumber 17: the platform UpToDate) and :data:`AFTER` (18:
OutOfDate, advisory INTEL-SA-09999) are :func:`tests.fakes.intel.build` results issued a day
apart before :data:`NOW`; :data:`POLICY` accepts both statuses and that advisory, so the status
in the result shows which set decided. :func:`install_collateral` puts a set in a domain's
collateral folder; :func:`dry_run` asks the admin dry run for ``BEFORE``'s quote.

Example::

    install_collateral(domain, "set-0.json", AFTER)
    ...  # then, with the service of ``domain`` running as ``env``:
    warnings = reason_codes(dry_run(env), "warnings")
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tests.fakes.intel import RECOVERED, Spec, Synthetic, build

if TYPE_CHECKING:
    from tests.service.conftest import Env

    from veritee.domain import Domain

__all__ = ["AFTER", "BEFORE", "NOW", "POLICY", "dry_run", "install_collateral", "reason_codes"]

NOW = dt.datetime.now(dt.UTC)
BEFORE = build(Spec(issue=NOW - dt.timedelta(days=2)))  # tcbEvaluationDataNumber 17: UpToDate
AFTER = build(replace(RECOVERED, issue=NOW - dt.timedelta(days=1)))  # 18: OutOfDate
POLICY = {"version": 1, "name": "tdx", "platforms": {"tdx": {"tcb_status": ["UpToDate", "OutOfDate"],
                                                             "allowed_advisories": ["INTEL-SA-09999"]}}}  # fmt: skip


def install_collateral(domain: Domain, name: str, syn: Synthetic) -> None:
    """Write ``syn``'s collateral document as ``name`` in ``domain``'s collateral folder."""
    domain.collateral_dir.mkdir(parents=True, exist_ok=True)
    (domain.collateral_dir / name).write_text(json.dumps(syn.doc))


def dry_run(env: Env, policy: dict[str, Any] = POLICY) -> dict[str, Any]:
    """The admin dry run of ``policy`` for :data:`BEFORE`'s quote at :data:`NOW` (asserts 200)."""
    r = env.client.post("/v1/admin/policy/dry-run", headers=env.admin, json={
        "policy": json.dumps(policy), "evidence": base64.b64encode(BEFORE.quote).decode(), "format": "tdx",
        "at": NOW.isoformat()})  # fmt: skip
    assert r.status_code == 200, r.text
    return dict(r.json())


def reason_codes(out: dict[str, Any], key: str) -> set[str]:
    """The codes of the reasons in ``out[key]`` (``reasons``, ``warnings``)."""
    return {x["code"] for x in out[key]}
