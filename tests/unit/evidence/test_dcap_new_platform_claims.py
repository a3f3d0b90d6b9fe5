"""A new platform's claims and memo key (issue 15 item 2, ninth pass): a TDX quote's claims built
as one dict are the claims ``_base_claims`` and ``DcapResult.claims`` make, key for key and in
order; the TCB memo keyed by the TD inputs' fields still tells TD inputs apart with the memo warm;
the pinned roots' tag, computed once, is the tag."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fakes.intel import AT, Spec, build

from veritee.collateral import Collateral
from veritee.errors import VerificationError
from veritee.evidence import dcap, tdx
from veritee.evidence.dcap_tcb import TdxTcbInput

TV = Path(__file__).resolve().parents[4] / "shared" / "testvectors" / "tdx"
QVL_AT = datetime(2025, 6, 20, tzinfo=UTC)


def _generic(version: int, report: tdx.TdReport, result: dcap.DcapResult) -> dict[str, object]:
    out = {"platform": "tdx", "version": version, **report.claims()}
    out.update(result.claims(tdx=True))
    return out


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    assert list(a.items()) == list(b.items())  # (the same keys, values and order)


def _results() -> list[dcap.DcapResult]:
    base = dcap.DcapResult(
        "UpToDate", (), "B0C06F000000", "0000", "UpToDate", "UpToDate", "UpToDate", None, 17,
        QVL_AT, (),
    )  # fmt: skip
    return [
        base,
        dataclasses.replace(base, tcb_status="OutOfDate", advisory_ids=("INTEL-SA-1", "INTEL-SA-2"),
                            tdx_module_tcb_status=None, tcb_date="2024-03-13T00:00:00Z"),
    ]  # fmt: skip


def _bodies() -> list[tuple[int, bytes, int]]:
    """(version, body, body type) of the real quotes and a synthetic TD report 1.5."""
    out = []
    for name in ("dcapqvl_tdx_quote_v4.bin", "dcapqvl_tdx_quote_v5_outdated.bin",
                 "trustee_tdx_quote_5_v5.bin", "gotdxguest_tdx_prod_quote_SPR_E4_v4.bin"):  # fmt: skip
        path = TV / name
        if path.exists():
            q = dcap.parse_quote(path.read_bytes())
            out.append((q.header.version, q.body, q.body_type))
    q = dcap.parse_quote(build(Spec(version=5, v15=True)).quote)
    out.append((q.header.version, q.body, q.body_type))
    return out


def test_claims_as_one_dict_agree_with_the_generic_claims() -> None:
    bodies = _bodies()
    assert len(bodies) >= 2
    for version, body, body_type in bodies:
        mutations = [body]
        for i in range(len(body)):  # every byte 0x00 and 0xFF (the debug bit among them)
            mutations += [body[:i] + b"\0" + body[i + 1 :], body[:i] + b"\xff" + body[i + 1 :]]
        for m in mutations:
            report = tdx.TdReport.from_bytes(m, body_type)
            for result in _results():
                _same(
                    tdx._verified_claims(version, report, result), _generic(version, report, result)
                )

    # A report or result of another type: the generic composition itself.
    class Report(tdx.TdReport):
        def claims(self) -> dict[str, object]:
            return {**super().claims(), "extra": 1}

    report = Report.from_bytes(bodies[0][1], bodies[0][2])
    _same(tdx._verified_claims(4, report, _results()[0]), _generic(4, report, _results()[0]))


def test_verified_claims_agree_with_the_generic_claims_on_real_and_synthetic_quotes() -> None:
    cases = [build(), build(Spec(debug=True)), build(Spec(version=5, v15=True))]
    for syn in cases:
        for keep in (False, True):
            dcap.clear_caches(keep_collateral=keep)
            got = tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust)
            q, report = tdx._parse(syn.quote)
            assert got.claims["debug"] is report.debug
            assert any(f.code == "debug" for f in got.findings) is report.debug
    quote = (TV / "dcapqvl_tdx_quote_v4.bin").read_bytes()
    coll = Collateral.from_paths([TV / "dcapqvl_tdx_quote_v4_collateral.json"])
    got = tdx.verify(quote, collateral=coll, at=QVL_AT)
    q, report = tdx._parse(quote)
    tcb = tdx._make_tcb_input(report.tee_tcb_svn, report.mr_signer_seam, report.seam_attributes)
    result = dcap.verify_quote(q, collateral=coll, at=QVL_AT, tdx=tcb)
    _same(got.claims, _generic(q.header.version, report, result))


def test_memo_keyed_by_td_fields_tells_td_inputs_apart_when_warm() -> None:
    """The TCB memo (kept with the verified collateral) is keyed by the TD inputs' bytes: another
    TEE_TCB_SVN or SEAM attributes is evaluated, not answered from the memo."""
    syn = build()
    q, report = tdx._parse(syn.quote)
    good = TdxTcbInput(report.tee_tcb_svn, report.mr_signer_seam, report.seam_attributes)
    dcap.clear_caches()
    for _ in range(2):
        first = dcap.verify_quote(q, collateral=syn.collateral, at=AT, trust=syn.trust, tdx=good)
        assert first.tcb_status == "UpToDate"
        older = TdxTcbInput(bytes([3, 0, 1] + [0] * 13), good.mr_signer_seam, good.seam_attributes)
        r = dcap.verify_quote(q, collateral=syn.collateral, at=AT, trust=syn.trust, tdx=older)
        assert r.tcb_status == "OutOfDate"
        below = TdxTcbInput(bytes(16), good.mr_signer_seam, good.seam_attributes)
        with pytest.raises(VerificationError):
            dcap.verify_quote(q, collateral=syn.collateral, at=AT, trust=syn.trust, tdx=below)
        # The same quote as SGX input (tdx=None) is another key: refused as a TDX TCB info.
        with pytest.raises(Exception) as e:
            dcap.verify_quote(q, collateral=syn.collateral, at=AT, trust=syn.trust, tdx=None)
        assert getattr(e.value, "code", None) == "tcb_info_mismatch"
        dcap.clear_caches(keep_collateral=True)


def test_memo_key_names_every_td_input_field() -> None:
    """verify_quote's TCB memo key spells out TdxTcbInput's fields one by one: a field added
    to the input must be added to the key too, or a warm memo would answer for another TD."""
    assert [f.name for f in dataclasses.fields(TdxTcbInput)] == [
        "tee_tcb_svn",
        "mr_signer_seam",
        "seam_attributes",
    ]


def test_cache_tag_is_computed_once_and_is_the_tag() -> None:
    roots = frozenset({b"\x02" * 32, b"\x01" * 32})
    trust = dcap.DcapTrust(roots)
    assert trust.cache_tag == b"\x01" * 32 + b"\x02" * 32
    assert trust.cache_tag is trust.cache_tag
    assert trust == dcap.DcapTrust(roots) and hash(trust) == hash(dcap.DcapTrust(roots))
    assert dcap.DEFAULT_TRUST.cache_tag == b"".join(sorted(dcap.DEFAULT_TRUST.root_sha256))
    with pytest.raises(dataclasses.FrozenInstanceError):
        trust.root_sha256 = frozenset()  # type: ignore[misc]
