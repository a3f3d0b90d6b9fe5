"""Optional: our verdicts and TCB statuses against the dcap-qvl package on the same inputs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from tests.conftest import manifest_cases
from tests.conftest import testvectors_dir as tv_dir

from veritee.collateral import Collateral
from veritee.errors import VeriteeError
from veritee.evidence import verify

dcap_qvl = pytest.importorskip("dcap_qvl", reason="dcap-qvl (the 'compare' extra) is not installed")

CASES = [c for c in manifest_cases() if c["format"] in ("tdx", "sgx")]


def _theirs(data: bytes, collateral_json: str, at: datetime) -> tuple[bool, str | None, list[str]]:
    try:
        col = dcap_qvl.QuoteCollateralV3.from_json(collateral_json)
        r = dcap_qvl.verify(data, col, int(at.timestamp()))
    except (ValueError, RuntimeError):
        return False, None, []
    return True, str(r.status), sorted(r.advisory_ids)


def _ours(data: bytes, collateral: Collateral, at: datetime) -> tuple[bool, str | None, list[str]]:
    try:
        v = verify(data, collateral=collateral, at=at)
    except VeriteeError:
        return False, None, []
    return True, v.claims["tcb_status"], sorted(v.claims["advisory_ids"])


@pytest.mark.parametrize("case", CASES, ids=[f"{c['evidence']}@{c['verify_at']}" for c in CASES])
def test_same_verdict_as_dcap_qvl(case: dict[str, Any]) -> None:
    tv = tv_dir()
    data = (tv / case["evidence"]).read_bytes()
    (coll_path,) = case["collateral"]
    at = datetime.fromisoformat(case["verify_at"])
    theirs = _theirs(data, (tv / coll_path).read_text(), at)
    # dcap-qvl ignores bytes after the quote; compare on the quote itself (our padding rule is separate).
    from veritee.evidence import dcap

    end = dcap.parse_quote(data).end
    ours = _ours(data[:end], Collateral.from_paths([tv / coll_path]), at)
    assert ours == theirs
    json.dumps(ours)


def _synthetic_specs() -> list[Any]:
    from tests.unit.evidence.test_dcap_synthetic import Spec

    ident = {
        "id": "TDX_03", "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
        "tcbLevels": [{"tcb": {"isvsvn": 3}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"},
                      {"tcb": {"isvsvn": 1}, "tcbDate": "2023-03-13T00:00:00Z", "tcbStatus": "OutOfDate"}],
    }  # fmt: skip
    return [
        Spec(),
        Spec(version=5, v15=False),
        Spec(kind="sgx", version=3),
        Spec(platform_svn=4),
        Spec(platform_svn=2),
        Spec(qe_isvsvn=3),
        Spec(tee_tcb_svn=bytes([2, 3, 2] + [0] * 13), module_identities=(ident,)),
        Spec(pck_revoked=(3,)),
    ]


@pytest.mark.parametrize("index", range(8))
def test_synthetic_same_verdict_as_dcap_qvl(index: int) -> None:
    from tests.unit.evidence.test_dcap_synthetic import AT, build

    syn = build(_synthetic_specs()[index])
    doc = {k: v for k, v in syn.doc.items() if not k.startswith("_")}
    try:
        col = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(doc))
        r = dcap_qvl.verify_with_root_ca(syn.quote, col, syn.root_der, int(AT.timestamp()))
        theirs: tuple[bool, str | None, list[str]] = (True, str(r.status), sorted(r.advisory_ids))
    except (ValueError, RuntimeError):
        theirs = (False, None, [])
    mod_ours: tuple[bool, str | None, list[str]]
    try:
        v = verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
        mod_ours = (True, v.claims["tcb_status"], sorted(v.claims["advisory_ids"]))
    except VeriteeError:
        mod_ours = (False, None, [])
    assert mod_ours == theirs
