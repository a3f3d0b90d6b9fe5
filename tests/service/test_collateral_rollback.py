"""Issue 11 item 3: the domain's collateral is never rolled back.

The service records, in its database, the newest authentic DCAP collateral its folder held (per
FMSPC, QE identity and CRL issuer; table ``collateral_marks``). An operator, or a host that can
write the data folder, who puts back an older folder gets evidence refused with
``collateral_rolled_back``: after a reload, after a restart, and on every replica sharing the
database. Synthetic collateral under a fake Intel root (tests.service.test_collateral_provenance).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from tests.fakes.intel import pin_roots
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
from veritee.service.storage import default_sqlite_url


def _folder(domain: Domain, *sets: Any) -> None:
    """Replace the collateral folder by ``sets`` (as an operator restoring a backup would)."""
    shutil.rmtree(domain.collateral_dir, ignore_errors=True)
    for i, syn in enumerate(sets):
        install_collateral(domain, f"set-{i}.json", syn)


@contextmanager
def _app(domain: Domain, db_url: str, tmp_path: Path) -> Iterator[Env]:
    settings = Settings(data_dir=domain.path, database_url=db_url, policy_cache_seconds=0,
                        trust_root=TrustRoot(intel=pin_roots(BEFORE, AFTER)))  # fmt: skip
    with TestClient(create_app(settings)) as client:
        yield Env(domain, client, SimulatedPlatform(tmp_path / "sim", measurement="ab" * 48), tmp_path / "sim",
                  db_url)  # fmt: skip


def _shared_url(service_db: str | None, tmp_path: Path) -> str:
    return service_db or default_sqlite_url(tmp_path / "shared-db")


def _reload(env: Env) -> dict[str, Any]:
    r = env.client.post("/v1/admin/collateral/reload", headers=env.admin)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _refused(out: dict[str, Any]) -> bool:
    return out["accepted"] is False and reason_codes(out, "reasons") == {"collateral_rolled_back"}


def test_an_older_folder_put_back_is_refused_after_reload_and_restart(
    tmp_path: Path, service_db: str | None
) -> None:
    (tmp_path / "shared-db").mkdir()
    url = _shared_url(service_db, tmp_path)
    domain = Domain.create(tmp_path / "domain", name="t", now=NOW)
    _folder(domain, BEFORE)
    with _app(domain, url, tmp_path) as env:
        env.install_policy(POLICY)
        assert dry_run(env)["claims"]["tcb_status"] == "UpToDate"  # 17, recorded
        _folder(domain, AFTER)
        assert "rolled_back" not in _reload(env)
        assert dry_run(env)["claims"]["tcb_evaluation_data_number"] == 18  # recorded
        _folder(domain, BEFORE)  # the older folder, put back
        out = _reload(env)
        assert {r["kind"] for r in out["rolled_back"]} >= {"tcb_info", "pck_crl"}
        tcb = next(r for r in out["rolled_back"] if r["kind"] == "tcb_info")
        assert (tcb["subject"], tcb["value"], tcb["recorded"]["value"]) == (
            "TDX:B0C06F000000",
            17,
            18,
        )
        assert {w["code"] for w in out["warnings"]} == {"collateral_rolled_back"}
        assert any("tcbEvaluationDataNumber 17" in w["message"] for w in out["warnings"])
        refused = dry_run(env)
        assert _refused(refused) and refused["claims"] is None
        audit = env.client.get("/v1/admin/audit", headers=env.admin).json()["entries"]
        assert audit[-1]["kind"] == "collateral.reload" and audit[-1]["details"]["rolled_back"]
    with _app(domain, url, tmp_path) as env:  # a restart reads the older folder: still refused
        assert _refused(dry_run(env))
        _folder(domain, BEFORE, AFTER)  # the newer set installed again decides
        assert "rolled_back" not in _reload(env)
        assert dry_run(env)["claims"]["tcb_status"] == "OutOfDate"


def test_replicas_sharing_one_database_share_the_marks(
    tmp_path: Path, service_db: str | None
) -> None:
    """A replica whose folder is older than what another replica accepted (its own copy of the
    domain, one database) refuses the older set from its first read on."""
    (tmp_path / "shared-db").mkdir()
    url = _shared_url(service_db, tmp_path)
    first = Domain.create(tmp_path / "first", name="t", now=NOW)
    _folder(first, AFTER)
    with _app(first, url, tmp_path) as a:
        a.install_policy(POLICY)
        assert dry_run(a)["claims"]["tcb_evaluation_data_number"] == 18
        shutil.copytree(first.path, tmp_path / "second")
        second = Domain.open(tmp_path / "second")
        _folder(second, BEFORE)
        with _app(second, url, tmp_path) as b:
            assert _refused(dry_run(b))
            assert dry_run(a)["claims"]["tcb_evaluation_data_number"] == 18
            # The second replica's marks are the first's: nothing it reads lowers them.
            with a.client.app.state.ctx.storage.transaction(readonly=True) as tx:  # type: ignore[attr-defined]
                marks = tx.collateral_marks()
            assert marks.get(("tcb_info", "TDX:B0C06F000000")).value == 18  # type: ignore[union-attr]


def test_a_replica_started_on_a_newer_folder_reaches_the_others_without_a_reload(
    tmp_path: Path, service_db: str | None
) -> None:
    """A replica whose first read raises a mark counts a collateral generation: a replica that
    had read an older folder reads its folder again within policy_cache_seconds and refuses the
    older set, though nobody called the reload."""
    (tmp_path / "shared-db").mkdir()
    url = _shared_url(service_db, tmp_path)
    first = Domain.create(tmp_path / "first", name="t", now=NOW)
    _folder(first, BEFORE)
    with _app(first, url, tmp_path) as a:
        a.install_policy(POLICY)
        assert dry_run(a)["claims"]["tcb_status"] == "UpToDate"  # 17 read and cached
        shutil.copytree(first.path, tmp_path / "second")
        second = Domain.open(tmp_path / "second")
        _folder(second, AFTER)
        with _app(second, url, tmp_path) as b:
            assert dry_run(b)["claims"]["tcb_evaluation_data_number"] == 18
            assert _refused(dry_run(a))


def test_a_forged_set_in_the_folder_raises_no_mark_and_the_reload_names_it(
    tmp_path: Path, service_db: str | None
) -> None:
    """A TCB info claiming tcbEvaluationDataNumber 99 whose signature does not verify could
    otherwise lock every real set out: it is not marked, and the reload says why."""
    (tmp_path / "shared-db").mkdir()
    url = _shared_url(service_db, tmp_path)
    domain = Domain.create(tmp_path / "domain", name="t", now=NOW)
    _folder(domain, AFTER)
    info = json.loads(AFTER.doc["tcb_info"])
    forged = {**AFTER.doc, "tcb_info": json.dumps({**info, "tcbEvaluationDataNumber": 99})}
    with _app(domain, url, tmp_path) as env:
        (domain.collateral_dir / "forged.json").write_text(json.dumps(forged))
        out = _reload(env)
        assert len(out["unverified"]) == 1 and "rolled_back" not in out
        with env.client.app.state.ctx.storage.transaction(readonly=True) as tx:  # type: ignore[attr-defined]
            assert tx.collateral_marks().get(("tcb_info", "TDX:B0C06F000000")).value == 18  # type: ignore[union-attr]
        (domain.collateral_dir / "forged.json").unlink()
        assert "unverified" not in _reload(env)
        env.install_policy(POLICY)
        assert dry_run(env)["claims"]["tcb_evaluation_data_number"] == 18
