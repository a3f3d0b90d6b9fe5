"""Issue 11 item 3 in the service: the domain's collateral decides, never the attester's.

Synthetic DCAP quotes and collateral under a fake Intel root, pinned through the service's typed
trust root (``Settings.trust_root``), so that two validly signed collateral sets for one FMSPC
exist: the one from before a TCB recovery (the platform UpToDate) and the one after it
(OutOfDate).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from tests.fakes.intel import Synthetic, pin_roots
from tests.fakes.provenance import (
    AFTER,
    BEFORE,
    NOW,
    POLICY,
    dry_run,
    install_collateral,
    reason_codes,
)
from tests.service.conftest import Env

from veritee.domain import Domain
from veritee.evidence.trust import TrustRoot
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.settings import Settings


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


@contextmanager
def _service(
    tmp_path: Path, *, installed: tuple[Synthetic, ...], accept: bool = False
) -> Iterator[Env]:
    domain = Domain.create(tmp_path / f"domain-{accept}-{len(installed)}", name="t", now=NOW)
    for i, syn in enumerate(installed):
        install_collateral(domain, f"set-{i}.json", syn)
    settings = Settings(data_dir=domain.path, policy_cache_seconds=0, accept_attester_collateral=accept,
                        trust_root=TrustRoot(intel=pin_roots(BEFORE, AFTER)))  # fmt: skip
    with TestClient(create_app(settings)) as client:
        env = Env(
            domain,
            client,
            SimulatedPlatform(tmp_path / "sim", measurement="ab" * 48),
            tmp_path / "sim",
            None,
        )
        env.install_policy(POLICY)
        yield env


def _attest(env: Env, sent: Synthetic | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "evidence": _b64(BEFORE.quote),
        "nonce": env.nonce().hex(),
        "format": "tdx",
    }
    if sent is not None:
        body["collateral"] = [{"name": "sent.json", "data": _b64(json.dumps(sent.doc).encode())}]
    r = env.client.post("/v1/attest", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_attester_supplied_tcb_info_never_overrides_the_domains(tmp_path: Path) -> None:
    for accept in (False, True):
        with _service(tmp_path, installed=(AFTER,), accept=accept) as env:
            out = _attest(env, sent=BEFORE)
            assert out["claims"]["tcb_status"] == "OutOfDate"
            assert out["claims"]["tcb_evaluation_data_number"] == 18
            assert ("attester_collateral_ignored" in reason_codes(out, "warnings")) is not accept


def test_attester_collateral_is_off_unless_a_setting_turns_it_on(tmp_path: Path) -> None:
    with _service(tmp_path, installed=(), accept=False) as env:
        out = _attest(env, sent=BEFORE)
        assert out["claims"] is None and "collateral_missing" in reason_codes(out, "reasons")
        assert "attester_collateral_ignored" in reason_codes(out, "warnings")
    with _service(tmp_path, installed=(), accept=True) as env:
        out = _attest(env, sent=BEFORE)
        assert out["claims"]["tcb_status"] == "UpToDate"
        # the synthetic quote binds no nonce: that is the only refusal left
        assert reason_codes(out, "reasons") == {"binding_mismatch"}


def test_after_the_operator_installs_a_newer_set_and_reloads_the_newer_set_decides(
    tmp_path: Path,
) -> None:
    with _service(tmp_path, installed=(BEFORE,)) as env:
        assert dry_run(env)["claims"]["tcb_status"] == "UpToDate"
        install_collateral(env.domain, "set-1.json", AFTER)  # beside the older set
        assert dry_run(env)["claims"]["tcb_status"] == "UpToDate"  # the folder is read once
        r = env.client.post("/v1/admin/collateral/reload", headers=env.admin)
        assert r.status_code == 200, r.text
        assert r.json()["documents"] == 2
        out = dry_run(env)
        assert (
            out["claims"]["tcb_status"] == "OutOfDate"
            and out["claims"]["tcb_evaluation_data_number"] == 18
        )
        audit = env.client.get("/v1/admin/audit", headers=env.admin).json()["entries"]
        assert audit[-1]["kind"] == "collateral.reload"
        assert env.client.post("/v1/admin/collateral/reload").status_code == 401


def test_a_policy_minimum_tcb_evaluation_data_number_refuses_older_collateral(
    tmp_path: Path,
) -> None:
    strict = {
        **POLICY,
        "platforms": {"tdx": {**POLICY["platforms"]["tdx"], "min_tcb_evaluation_data_number": 18}},
    }
    with _service(tmp_path, installed=(BEFORE,)) as env:
        out = dry_run(env, strict)
        assert not out["accepted"] and reason_codes(out, "reasons") == {
            "tcb_evaluation_data_number_below_minimum"
        }
    with _service(tmp_path, installed=(BEFORE, AFTER)) as env:
        assert dry_run(env, strict)["accepted"] is True


def test_a_reload_reaches_every_worker_and_replica(tmp_path: Path) -> None:
    """Two apps on one domain and database (two workers, or two replicas with copies of the
    folder): a reload through one makes the newer set decide in the other too."""
    with _service(tmp_path, installed=(BEFORE,)) as first:
        settings = Settings(data_dir=first.domain.path, policy_cache_seconds=0,
                            trust_root=TrustRoot(intel=pin_roots(BEFORE, AFTER)))  # fmt: skip
        with TestClient(create_app(settings)) as client:
            second = Env(first.domain, client, first.platform, first.platform_dir, None)
            assert dry_run(second)["claims"]["tcb_status"] == "UpToDate"
            install_collateral(first.domain, "set-1.json", AFTER)
            assert dry_run(second)["claims"]["tcb_status"] == "UpToDate"
            assert (
                first.client.post("/v1/admin/collateral/reload", headers=first.admin).status_code
                == 200
            )
            assert dry_run(second)["claims"]["tcb_status"] == "OutOfDate"
            assert dry_run(first)["claims"]["tcb_status"] == "OutOfDate"
