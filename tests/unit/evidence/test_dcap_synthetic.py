"""Synthetic DCAP quotes and collateral under a fake Intel-like chain (our own P-256 keys).

:func:`build` makes a complete, internally consistent quote (SGX v3, TDX v4, TDX v5 with a TD
report 1.5) plus collateral in the test-vector JSON layout, so tests reach the cases no public
sample covers: every TCB status, revocation, module identities, windows, a non-pinned root.
The builder is :mod:`tests.fakes.intel`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.fakes.intel import AT, KEYS, Spec, Synthetic, build, public_xy, raw_sign, tdx_level

from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence import dcap, sgx, tdx


def _verify(syn: Synthetic, at: datetime = AT, **kw: Any) -> Any:
    mod = tdx if syn.quote[4] == 0x81 else sgx
    return mod.verify(syn.quote, collateral=syn.collateral, at=at, trust=kw.get("trust", syn.trust))


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "version", "v15"),
    [("tdx", 4, False), ("tdx", 5, False), ("tdx", 5, True), ("sgx", 3, False)],
)
def test_synthetic_quote_verifies_up_to_date(kind: str, version: int, v15: bool) -> None:
    syn = build(Spec(kind=kind, version=version, v15=v15))
    v = _verify(syn)
    assert v.claims["tcb_status"] == "UpToDate"
    assert v.claims["advisory_ids"] == []
    assert v.claims["fmspc"] == "B0C06F000000"
    assert v.claims["version"] == version
    assert v.findings == ()
    if v15:
        assert v.claims["mr_service_td"] == "44" * 48
    if kind == "sgx":
        assert v.claims["mr_enclave"] == "aa" * 32 and v.claims["isv_prod_id"] == 7


def test_fake_root_not_pinned_by_default() -> None:
    syn = build()
    with pytest.raises(VerificationError) as e:
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT)
    assert e.value.code == "root_not_pinned"


def test_lower_platform_tcb_gives_out_of_date_finding() -> None:
    syn = build(Spec(platform_svn=4, pcesvn=11))
    v = _verify(syn)
    assert v.claims["tcb_status"] == "OutOfDate"
    assert v.claims["advisory_ids"] == ["INTEL-SA-00001"]
    assert {r.code for r in v.findings} == {"tcb_status", "intel_advisories"}


def test_no_matching_tcb_level_is_a_failure() -> None:
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(platform_svn=2)))
    assert e.value.code == "tcb_level_not_found"
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(tee_tcb_svn=bytes([1, 0, 0] + [0] * 13))))
    assert e.value.code == "tcb_level_not_found"


def test_qe_out_of_date_converges() -> None:
    v = _verify(build(Spec(qe_isvsvn=3)))
    assert v.claims["tcb_status"] == "OutOfDate"
    assert v.claims["qe_tcb_status"] == "OutOfDate"
    assert "INTEL-SA-00002" in v.claims["advisory_ids"]
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(qe_isvsvn=1)))
    assert e.value.code == "tcb_level_not_found"


def test_tdx_module_identity_and_mismatch() -> None:
    ident = {
        "id": "TDX_03", "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
        "tcbLevels": [{"tcb": {"isvsvn": 3}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"},
                      {"tcb": {"isvsvn": 1}, "tcbDate": "2023-03-13T00:00:00Z", "tcbStatus": "OutOfDate"}],
    }  # fmt: skip
    # TEE_TCB_SVN[1] = 3 selects TDX_03; components 0 and 1 are then not compared with the level.
    up = build(Spec(tee_tcb_svn=bytes([3, 3, 2] + [0] * 13), module_identities=(ident,)))
    assert _verify(up).claims["tdx_module_tcb_status"] == "UpToDate"
    old = _verify(build(Spec(tee_tcb_svn=bytes([2, 3, 2] + [0] * 13), module_identities=(ident,))))
    assert (
        old.claims["tcb_status"] == "OutOfDate"
        and old.claims["tdx_module_tcb_status"] == "OutOfDate"
    )
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(tee_tcb_svn=bytes([3, 4, 2] + [0] * 13), module_identities=(ident,))))
    assert e.value.code == "tdx_module_mismatch"
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(mr_signer_seam=b"\x01" * 48)))
    assert e.value.code == "tdx_module_mismatch"


def test_debug_bit_is_a_claim_and_finding() -> None:
    for kind, version in (("tdx", 4), ("sgx", 3)):
        v = _verify(build(Spec(kind=kind, version=version, debug=True)))
        assert v.claims["debug"] is True
        assert "debug" in {r.code for r in v.findings}


def test_a_revoked_platform_is_refused_after_another_of_the_same_tcb_was_accepted() -> None:
    """The TCB evaluation is shared by the platforms of one TCB; the leaf's revocation is not."""
    good = build(Spec(pck_revoked=(5,)))
    revoked = build(Spec(pck_revoked=(5,), pck_serial=5))  # same keys and names, new signatures
    trust = dcap.DcapTrust(good.trust.root_sha256 | revoked.trust.root_sha256)
    assert _verify(good, trust=trust).claims["tcb_status"] == "UpToDate"
    for _ in range(2):  # the first time and with the evaluation memoized
        with pytest.raises(VerificationError) as e:
            tdx.verify(revoked.quote, collateral=good.collateral, at=AT, trust=trust)
        assert e.value.code == "certificate_revoked"
    assert _verify(good, trust=trust).claims["tcb_status"] == "UpToDate"
    # Without the revocation the other platform shares the evaluation and is accepted.
    other = build(Spec(pck_serial=6))
    both = dcap.DcapTrust(trust.root_sha256 | other.trust.root_sha256)
    assert _verify(good, trust=both).claims["tcb_status"] == "UpToDate"
    assert (
        tdx.verify(other.quote, collateral=good.collateral, at=AT, trust=both).claims["tcb_status"]
        == "UpToDate"
    )


def test_revoked_pck_and_pck_ca() -> None:
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(pck_revoked=(3,))))
    assert e.value.code == "certificate_revoked"
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(root_revoked=(2,))))
    assert e.value.code == "certificate_revoked"


@pytest.mark.parametrize(
    ("at", "code"),
    [
        (datetime(2025, 6, 18, tzinfo=UTC), "collateral_not_yet_valid"),
        (datetime(2025, 7, 20, tzinfo=UTC), "collateral_expired"),
        (datetime(2041, 1, 1, tzinfo=UTC), "certificate_expired"),
    ],
)
def test_time_outside_windows(at: datetime, code: str) -> None:
    with pytest.raises(VerificationError) as e:
        _verify(build(), at=at)
    assert e.value.code == code


def test_collateral_expired_is_collateral_error() -> None:
    with pytest.raises(CollateralError):
        _verify(build(), at=datetime(2025, 7, 20, tzinfo=UTC))


def test_tampered_collateral_and_wrong_fmspc() -> None:
    syn = build()
    with pytest.raises(VerificationError) as e:
        _verify(
            syn.with_doc(
                tcb_info=syn.doc["tcb_info"].replace(
                    '"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18'
                )
            )
        )
    assert e.value.code == "collateral_signature_invalid"
    with pytest.raises(VerificationError) as e:
        _verify(
            syn.with_doc(qe_identity=syn.doc["qe_identity"].replace("UpToDate", "OutOfDate", 1))
        )
    assert e.value.code == "collateral_signature_invalid"
    with pytest.raises(CollateralError) as e:
        _verify(build(Spec(tcb_info_fmspc="00906ED50000")))
    assert e.value.code == "tcb_info_mismatch"
    with pytest.raises(CollateralError) as e:
        _verify(build(Spec(kind="sgx", version=3)).with_doc(tcb_info=syn.doc["tcb_info"],
                                                              tcb_info_signature=syn.doc["tcb_info_signature"]))  # fmt: skip
    assert e.value.code == "tcb_info_mismatch"


def test_missing_collateral() -> None:
    syn = build()
    with pytest.raises(CollateralError) as e:
        tdx.verify(syn.quote, collateral=Collateral.empty(), at=AT, trust=syn.trust)
    assert e.value.code == "collateral_missing"
    with pytest.raises(MalformedError):
        _verify(syn.with_doc(pck_crl="zz"))


def test_qe_report_data_must_bind_attestation_key() -> None:
    syn = build()
    q = bytearray(syn.quote)
    # The attestation key sits right after the 64-byte quote signature.
    key_off = 48 + 584 + 4 + 64
    other = public_xy(KEYS["other"])
    q[key_off : key_off + 64] = other
    with pytest.raises(VerificationError) as e:
        tdx.verify(bytes(q), collateral=syn.collateral, at=AT, trust=syn.trust)
    assert e.value.code == "qe_report_data_mismatch"


def test_cache_is_keyed_by_bytes_and_trust() -> None:
    syn = build()
    dcap.clear_caches()
    first = _verify(syn)
    second = _verify(syn)  # cached collateral and chain
    assert first.claims == second.claims
    with pytest.raises(VerificationError):
        tdx.verify(
            syn.quote, collateral=syn.collateral, at=AT
        )  # same bytes, default trust: not pinned


def test_in_place_change_of_cached_collateral_is_seen() -> None:
    syn = build()
    doc = dict(syn.doc)
    coll = Collateral(documents=(doc,))
    assert (
        tdx.verify(syn.quote, collateral=coll, at=AT, trust=syn.trust).claims["tcb_status"]
        == "UpToDate"
    )
    doc["tcb_info"] = doc["tcb_info"].replace(
        '"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":19'
    )
    with pytest.raises(VerificationError) as e:
        tdx.verify(syn.quote, collateral=coll, at=AT, trust=syn.trust)
    assert e.value.code == "collateral_signature_invalid"


@pytest.mark.parametrize(
    ("mask", "accepted"),
    [
        ("FEFFFFFF", True),  # little-endian 0xFFFFFFFE: bit 0 is not compared
        ("FFFFFFFE", False),  # little-endian 0xFEFFFFFF: bit 0 is compared, and differs
        ("01000000", False),  # little-endian 0x00000001: only bit 0, which differs
    ],
)
def test_qe_miscselect_and_mask_are_little_endian(mask: str, accepted: bool) -> None:
    """Intel QVL and dcap-qvl read the QE identity's MISCSELECT and its mask little-endian, as the
    report's MISCSELECT is: a QE with MISCSELECT bit 0 set passes a mask that leaves bit 0 out
    and fails one that compares it (issue 11 item 10)."""
    syn = build(
        Spec(qe_misc_select=1, qe_identity={"miscselect": "00000000", "miscselectMask": mask})
    )
    if accepted:
        assert _verify(syn).claims["tcb_status"] == "UpToDate"
    else:
        with pytest.raises(VerificationError) as e:
            _verify(syn)
        assert e.value.code == "qe_identity_mismatch"
    # The expected value is little-endian too: bit 0 set in "01000000" matches the QE's bit 0.
    same = build(
        Spec(qe_misc_select=1, qe_identity={"miscselect": "01000000", "miscselectMask": "FFFFFFFF"})
    )
    assert _verify(same).claims["tcb_status"] == "UpToDate"


def _sgx_level(svn: int, pcesvn: int, status: str) -> dict[str, Any]:
    return {"tcb": {"sgxtcbcomponents": [{"svn": svn}] * 16, "pcesvn": pcesvn},
            "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status}  # fmt: skip


@pytest.mark.parametrize("kind", ["tdx", "sgx"])
@pytest.mark.parametrize(
    ("platform_svn", "pcesvn", "qe_isvsvn"), [(5, 11, 4), (4, 11, 4), (5, 11, 3), (3, 5, 2)]
)
def test_tcb_levels_are_ordered_as_qvl_orders_them(
    kind: str, platform_svn: int, pcesvn: int, qe_isvsvn: int
) -> None:
    """The same TCB info and QE identity with their levels listed in reverse give the same
    verdict: levels are ordered as Intel QVL orders them, not taken in JSON order (item 11)."""
    version = 4 if kind == "tdx" else 3
    base = Spec(
        kind=kind, version=version, platform_svn=platform_svn, pcesvn=pcesvn, qe_isvsvn=qe_isvsvn
    )
    listed = _verify(build(base)).claims
    flipped = replace(
        base, levels=tuple(reversed(base.levels)), qe_levels=tuple(reversed(base.qe_levels))
    )
    claims = _verify(build(flipped)).claims
    for k in ("tcb_status", "qe_tcb_status", "advisory_ids"):
        assert claims[k] == listed[k]


def test_sgx_components_outrank_pcesvn() -> None:
    """QVL orders by SGX components first: of two levels a platform meets, (5.., PCESVN 5)
    comes before (4.., PCESVN 11) whatever the JSON order, so the verdict is the former's."""
    levels = (_sgx_level(4, 11, "UpToDate"), _sgx_level(5, 5, "OutOfDate"))
    v = _verify(build(Spec(kind="sgx", version=3, platform_svn=5, pcesvn=11, levels=levels)))
    assert v.claims["tcb_status"] == "OutOfDate"


def test_tdx_components_break_ties() -> None:
    tdx_levels = (
        tdx_level(5, 11, [3, 0, 1] + [0] * 13, "OutOfDate"),
        tdx_level(5, 11, [5, 0, 2] + [0] * 13, "UpToDate"),
    )
    assert _verify(build(Spec(levels=tdx_levels))).claims["tcb_status"] == "UpToDate"


@pytest.mark.parametrize("where", ["tcb_info", "tdx_module", "qe_identity"])
def test_duplicated_tcb_levels_are_refused(where: str) -> None:
    """Intel QVL refuses TCB info and enclave identities with two equal levels
    ("Detected duplicated TCB levels"), whatever their statuses."""
    spec = Spec()
    if where == "tcb_info":
        spec = Spec(levels=(*spec.levels, tdx_level(5, 11, [5, 0, 2] + [0] * 13, "Revoked")))
    elif where == "qe_identity":
        spec = Spec(qe_levels=(*spec.qe_levels, {"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z",
                                                  "tcbStatus": "Revoked"}))  # fmt: skip
    else:
        lv = [
            {"tcb": {"isvsvn": n}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}
            for n in (3, 3)
        ]
        ident = {"id": "TDX_03", "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
                 "tcbLevels": lv}  # fmt: skip
        spec = Spec(tee_tcb_svn=bytes([3, 3, 2] + [0] * 13), module_identities=(ident,))
    with pytest.raises(CollateralError) as e:
        _verify(build(spec))
    assert e.value.code == "collateral_invalid"
    assert "duplicated" in e.value.message


def _qe_level(isvsvn: int, status: str, adv: list[str] | None = None) -> dict[str, Any]:
    lvl: dict[str, Any] = {
        "tcb": {"isvsvn": isvsvn},
        "tcbDate": "2024-03-13T00:00:00Z",
        "tcbStatus": status,
    }
    if adv:
        lvl["advisoryIDs"] = adv
    return lvl


def test_revoked_is_refused_by_the_verifier() -> None:
    """Revoked (platform or QE) is Intel QVL's terminal result: refused, never a claim (item 5)."""
    revoked_platform = (tdx_level(5, 11, [5, 0, 2] + [0] * 13, "Revoked"),)
    for spec in (Spec(levels=revoked_platform), Spec(qe_levels=(_qe_level(4, "Revoked"),))):
        with pytest.raises(VerificationError) as e:
            _verify(build(spec))
        assert e.value.code == "tcb_revoked"


@pytest.mark.parametrize(
    "status", ["SWHardeningNeeded", "ConfigurationNeeded", "OutOfDateConfigurationNeeded"]
)
def test_identity_levels_have_identity_statuses_only(status: str) -> None:
    """Intel QVL's IdentityTcbLevel allows UpToDate, OutOfDate and Revoked only."""
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(qe_levels=(_qe_level(4, status),))))
    assert e.value.code == "tcb_status_unrecognized"
    ident = {"id": "TDX_03", "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
             "tcbLevels": [_qe_level(3, status)]}  # fmt: skip
    with pytest.raises(VerificationError) as e:
        _verify(build(Spec(tee_tcb_svn=bytes([3, 3, 2] + [0] * 13), module_identities=(ident,))))
    assert e.value.code == "tcb_status_unrecognized"


def test_matched_qe_level_advisories_are_reported() -> None:
    """Every matched level's advisories, the QE's too when it is up to date (QVL, dcap-qvl)."""
    v = _verify(build(Spec(qe_levels=(_qe_level(4, "UpToDate", ["INTEL-SA-00077"]),))))
    assert v.claims["tcb_status"] == "UpToDate" and v.claims["advisory_ids"] == ["INTEL-SA-00077"]


def _resigned(syn: Synthetic, which: str, change: Any) -> Synthetic:
    doc = json.loads(syn.doc[which])
    change(doc)
    raw = json.dumps(doc, separators=(",", ":"))
    return syn.with_doc(
        **{which: raw, f"{which}_signature": raw_sign(KEYS["tcb"], raw.encode()).hex()}
    )


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(doc: Any) -> None:
        for k in path[:-1]:
            doc = doc[k]
        doc[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("which", "path", "value"),
    [
        (
            "tcb_info",
            ("tcbLevels", 1, "tcbDate"),
            "not a date",
        ),  # a level the platform does not reach
        ("tcb_info", ("tcbLevels", 1, "tcbStatus"), "Fine"),
        ("tcb_info", ("tcbLevels", 1, "tcb", "sgxtcbcomponents"), []),
        ("tcb_info", ("tcbLevels", 0, "tcb", "sgxtcbcomponents", 3, "svn"), 256),
        ("tcb_info", ("tcbLevels", 0, "tcb", "pcesvn"), 65536),
        ("tcb_info", ("issueDate",), "2025-06-19900:00:00Z"),  # fromisoformat takes any separator
        ("tcb_info", ("version",), 2),  # TDX TCB info is version 3
        ("tcb_info", ("tdxModule", "attributesMask"), "FF"),
        ("qe_identity", ("version",), 3),
        ("qe_identity", ("tcbLevels", 1, "tcbDate"), "2023-03-13T00:00:00Z00"),
        ("qe_identity", ("isvprodid",), 65536),
    ],
)
def test_every_field_of_every_level_is_checked(
    which: str, path: tuple[Any, ...], value: Any
) -> None:
    """As Intel QVL's parsers, every field of the TCB info and QE identity, in every level, not
    only in the level the platform matches (issue 11 item 12: found by the dcap-qvl comparison)."""
    syn = _resigned(build(), which, _set(path, value))
    with pytest.raises(VerificationError if path[-1] == "tcbStatus" else MalformedError):
        _verify(syn)


def test_the_cheap_checks_parse_is_reused_only_for_the_same_bytes() -> None:
    """The verification reuses what the cheap checks parsed only when it is the same set: a set
    changed in between (another, equally authentic one) is read again."""
    a = build(Spec())
    b = build(Spec(tcb_evaluation_data_number=18))
    trust = dcap.DcapTrust(a.trust.root_sha256 | b.trust.root_sha256)
    raw_a, raw_b = dcap._raw_from_layout(a.doc), dcap._raw_from_layout(b.doc)
    parsed_a = dcap._collateral_cheap(trust, raw_a.digest(trust), lambda: raw_a)
    assert isinstance(parsed_a, dcap._CollateralCheap)
    vc = dcap._verify_collateral(raw_b, trust, b"test-" + raw_b.digest(trust), parsed_a)
    assert vc.tcb_info["tcbEvaluationDataNumber"] == 18
    vc = dcap._verify_collateral(raw_a, trust, b"test-" + raw_a.digest(trust), parsed_a)
    assert vc.tcb_info["tcbEvaluationDataNumber"] == 17
