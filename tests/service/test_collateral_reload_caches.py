"""A collateral reload forgets what was verified under the service's trust root, also when the
operator gave that trust root caches of its own (``Settings.trust_root``): a DCAP trust's
``DcapCache`` and an AMD trust's ``ChainCache``, as the shared ones."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

from fastapi.testclient import TestClient
from tests.fakes.intel import AT, build

from veritee.domain import Domain
from veritee.evidence import amd, dcap, tdx
from veritee.evidence.trust import TrustRoot
from veritee.service.app import create_app
from veritee.service.settings import Settings


def test_reload_forgets_a_trust_roots_own_caches(tmp_path: Path) -> None:
    syn = build()
    intel = replace(syn.trust, cache=dcap.DcapCache())
    chains = amd.ChainCache()
    root = TrustRoot(intel=intel, amd=replace(amd.AmdTrust(), cache=chains))
    domain = Domain.create(tmp_path / "domain", name="test", now=dt.datetime.now(dt.UTC))
    app = create_app(Settings(data_dir=domain.path, trust_root=root))
    admin = {"Authorization": f"Bearer {domain.admin_token()}"}
    with TestClient(app) as client:
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=intel)
        chains.put(("a chain",), object())  # type: ignore[arg-type]
        assert len(intel.cache.pck_chains.items()) == 1 and len(chains) == 1
        r = client.post("/v1/admin/collateral/reload", headers=admin)
        assert r.status_code == 200, r.text
        assert intel.cache.pck_chains.items() == [] and intel.cache.collateral.items() == []
        assert len(chains) == 0
        # Verified again from nothing, the same verdict.
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=intel)
        assert len(intel.cache.collateral.items()) == 1
