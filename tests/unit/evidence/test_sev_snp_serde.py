"""The sev crate's JSON AttestationReport turned back into the signed bytes, on the real reports.

The JSON is made from each real report by tests/sev_crate_json.py (the inverse, written apart
from the converter). Round trips must be byte-identical; every changed number must change the
bytes (so the signature check refuses), and malformed JSON must be refused naming the member.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from tests.conftest import manifest_cases
from tests.conftest import testvectors_dir as _tv_dir
from tests.sev_crate_json import LAYOUTS, sev_evidence, sev_json

from veritee.collateral import Collateral
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import sev_snp
from veritee.evidence.sev_snp_serde import (
    CERT_TYPE_GUIDS,
    MAX_CERT_ENTRIES,
    SevCertEntry,
    cert_chain_from_sev_json,
    evidence_from_sev_json,
    report_from_sev_json,
)
from veritee.keybroker.kbs import extract_evidence

pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")

CASES = manifest_cases("sev-snp")
ACCEPTED = [c for c in CASES if c["baseline"] == "accept"]
MIT = slice(0x1F8, 0x208)  # LAUNCH_MIT_VECTOR, CURRENT_MIT_VECTOR (v5)


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["evidence"].rsplit("/", 1)[-1] for c in cases]


def _raw(case: dict[str, Any]) -> bytes:
    return (_tv_dir() / case["evidence"]).read_bytes()


def _verify(raw: bytes, case: dict[str, Any]) -> dict[str, Any]:
    tv = _tv_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        col = Collateral.from_paths([tv / p for p in case["collateral"]])
    at = datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))
    return sev_snp.verify(raw, collateral=col, at=at).claims


def _virtee() -> tuple[bytes, dict[str, Any]]:
    case = next(c for c in CASES if c["evidence"].endswith("virtee_milan_report.bin"))
    return _raw(case), case


def _leaves(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    elif isinstance(doc, int):
        yield path


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(doc)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


# -- round trips on every real report ------------------------------------------------------------


needs_vectors = pytest.mark.skipif(not CASES, reason="test vectors absent (../shared/testvectors)")


@needs_vectors
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_round_trip_is_byte_identical(case: dict[str, Any], layout: str) -> None:
    raw = _raw(case)
    doc = json.loads(json.dumps(sev_json(raw, layout)))  # through real JSON text
    rebuilt = report_from_sev_json(doc)
    if layout == "sev6" and any(raw[MIT]):
        # sev 5/6 have no members for the v5 mitigation vectors: they come back as zero
        assert rebuilt[MIT] == bytes(16) and rebuilt[:0x1F8] == raw[:0x1F8]
        assert rebuilt[0x208:] == raw[0x208:]
    else:
        assert rebuilt == raw


@needs_vectors
@pytest.mark.parametrize("layout", ["sev1", "sev7"])
@pytest.mark.parametrize("case", ACCEPTED, ids=_ids(ACCEPTED))
def test_rebuilt_report_verifies(case: dict[str, Any], layout: str) -> None:
    claims = _verify(report_from_sev_json(sev_json(_raw(case), layout)), case)
    assert claims["measurement"] == case["claims"]["measurement"]


@needs_vectors
def test_v5_report_through_sev6_layout_fails_closed() -> None:
    case = next(c for c in ACCEPTED if c["claims"]["version"] == 5)
    raw = _raw(case)
    assert any(raw[MIT])
    with pytest.raises(VerificationError) as e:
        _verify(report_from_sev_json(sev_json(raw, "sev6")), case)
    assert e.value.code == "signature_invalid"


@needs_vectors
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_number_changed_by_one_changes_the_bytes(layout: str) -> None:
    raw, _ = _virtee()
    good = sev_json(raw, layout)
    leaves = list(_leaves(good))
    in_signed_part = set()
    for path in leaves:
        value = _get(good, path)
        for bumped in (value + 1, value - 1):
            try:
                rebuilt = report_from_sev_json(_set(good, path, bumped))
            except MalformedError:
                continue  # out of range, or (compact) a version/cpuid inconsistency
            assert rebuilt != raw, path
            if rebuilt[:0x2A0] != raw[:0x2A0]:
                in_signed_part.add(path)
    # every member outside the signature lands in the signed bytes (a v2 report's version
    # cannot move to 1 or 3 in the compact layout without other members changing too)
    expected = {p for p in leaves if p[0] != "signature"} - {("version",)}
    assert expected <= in_signed_part, sorted(expected - in_signed_part)[:5]


@needs_vectors
@pytest.mark.parametrize(
    "path",
    [("measurement", 0), ("report_data", 5), ("guest_svn",), ("policy",), ("vmpl",),
     ("current_tcb", "snp"), ("chip_id", 63), ("current", "minor"), ("signature", "r", 0),
     ("signature", "s", 47)],
)  # fmt: skip
def test_changed_field_is_refused_for_its_signature(path: tuple[Any, ...]) -> None:
    raw, case = _virtee()
    good = sev_json(raw, "sev7")
    value = _get(good, path)
    bad = _set(good, path, value + 1 if value < 255 else value - 1)
    with pytest.raises(VerificationError) as e:
        _verify(report_from_sev_json(bad), case)
    assert e.value.code == "signature_invalid"
    assert "signature does not verify" in e.value.message


@needs_vectors
def test_changed_signature_padding_is_refused() -> None:
    raw, case = _virtee()
    good = sev_json(raw, "sev7")
    with pytest.raises(MalformedError, match="non-zero bytes beyond the 48-byte"):
        _verify(report_from_sev_json(_set(good, ("signature", "s", 71), 1)), case)


# -- malformed JSON is refused, naming the member ----------------------------------------------


def _sample(layout: str = "sev7") -> dict[str, Any]:
    raw = bytearray(1184)
    raw[0:4] = (3).to_bytes(4, "little")
    raw[0x34] = 1
    raw[0x188:0x18B] = b"\x19\x01\x01"
    raw[0x1F0:0x1F8] = bytes([3, 0, 0, 0, 0, 0, 8, 0x73])
    return sev_json(bytes(raw), layout)


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda d: d.pop("measurement"), "attestation_report", "missing member 'measurement'"),
        (lambda d: d.update(extra=1), "attestation_report", "unexpected member 'extra'"),
        (lambda d: d["current_tcb"].update(_reserved=[0] * 4), "attestation_report.current_tcb",
         "unexpected member '_reserved'"),
        (lambda d: d.update(version="3"), "attestation_report.version", "got str"),
        (lambda d: d.update(vmpl=True), "attestation_report.vmpl", "got bool"),
        (lambda d: d.update(guest_svn=1.0), "attestation_report.guest_svn", "got float"),
        (lambda d: d.update(vmpl=1 << 32), "attestation_report.vmpl", "out of range"),
        (lambda d: d.update(policy=-1), "attestation_report.policy", "out of range"),
        (lambda d: d["report_data"].pop(), "attestation_report.report_data", "expected 64 bytes, got 63"),
        (lambda d: d["chip_id"].append(0), "attestation_report.chip_id", "expected 64 bytes, got 65"),
        (lambda d: d.update(report_data=[0] * 1_000_000), "attestation_report.report_data",
         "got 1000000"),
        (lambda d: d["measurement"].__setitem__(3, 256), "attestation_report.measurement[3]",
         "out of range"),
        (lambda d: d["signature"].__setitem__("r", "00" * 72), "attestation_report.signature.r",
         "got str"),
        (lambda d: d["current"].pop("build"), "attestation_report.current", "missing member 'build'"),
        (lambda d: d["launch_tcb"].update(microcode=None), "attestation_report.launch_tcb.microcode",
         "got NoneType"),
        (lambda d: d.update(launch_mit_vector=1), "attestation_report.launch_mit_vector",
         "version 5 and later"),
        (lambda d: d.update(cpuid_step=None), "attestation_report.cpuid_step", "must be a number"),
        (lambda d: d["reported_tcb"].update(fmc=1), "attestation_report.current_tcb.fmc",
         "disagree on fmc"),
        (lambda d: d.update(version=1), "attestation_report.version", "2 or later"),
    ],
)  # fmt: skip
def test_malformed_compact_report(mutate: Any, field: str, words: str) -> None:
    doc = _sample()
    mutate(doc)
    with pytest.raises(MalformedError) as e:
        report_from_sev_json(doc)
    assert e.value.field == field
    assert words in e.value.message


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda d: d.pop("_reserved_4"), "attestation_report", "missing member '_reserved_4'"),
        (lambda d: d.update(_author_key_en=0), "attestation_report", "exactly one of"),
        (lambda d: d["_reserved_1"].pop(), "attestation_report._reserved_1", "expected 21 bytes"),
        (lambda d: d["signature"].pop("_reserved"), "attestation_report.signature",
         "missing member '_reserved'"),
        (lambda d: d["current_tcb"]["_reserved"].append(0), "attestation_report.current_tcb._reserved",
         "expected 4 bytes"),
        (lambda d: d.update(current_major=300), "attestation_report.current_major", "out of range"),
        (lambda d: d.update(current={"major": 1, "minor": 2, "build": 3}), "attestation_report",
         "missing member"),
    ],
)  # fmt: skip
def test_malformed_full_report(mutate: Any, field: str, words: str) -> None:
    doc = _sample("sev4")
    mutate(doc)
    with pytest.raises(MalformedError) as e:
        report_from_sev_json(doc)
    assert e.value.field == field
    assert words in e.value.message


@pytest.mark.parametrize("doc", [None, [], "AAAA", 5, {}, {"version": 2}])
def test_not_a_report_object(doc: Any) -> None:
    with pytest.raises(MalformedError) as e:
        report_from_sev_json(doc, field="tee-evidence.attestation_report")
    assert e.value.field == "tee-evidence.attestation_report"


def test_huge_json_is_refused_quickly() -> None:
    doc = _sample()
    doc["family_id"] = list(range(256)) * 4_000  # a million numbers
    with pytest.raises(MalformedError, match="expected 16 bytes, got 1024000"):
        report_from_sev_json(doc)
    doc = _sample()
    doc["guest_svn"] = 10**400
    with pytest.raises(MalformedError, match="out of range"):
        report_from_sev_json(doc)


# -- TCB layouts, CPUID and mitigation vectors (synthetic: no public Turin report) -------------


def test_turin_tcb_layout_follows_fmc() -> None:
    doc = _sample()
    doc.update(cpuid_fam_id=0x1A, cpuid_mod_id=0x02)
    for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        doc[name] = {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5}
    raw = report_from_sev_json(doc)
    for off in (0x38, 0x180, 0x1E0, 0x1F0):
        assert raw[off : off + 8] == bytes([1, 2, 3, 4, 0, 0, 0, 5])
    assert sev_json(raw)["launch_tcb"]["fmc"] == 1  # and back
    doc["cpuid_fam_id"] = 0x19  # a Milan family with the Turin layout: inconsistent
    with pytest.raises(MalformedError, match="does not match the TCB layout"):
        report_from_sev_json(doc)


def test_legacy_tcb_layout_and_v2_cpuid() -> None:
    doc = _sample()
    doc.update(version=2, cpuid_fam_id=None, cpuid_mod_id=None, cpuid_step=None)
    doc["current_tcb"] = {"fmc": None, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5}
    raw = report_from_sev_json(doc)
    assert raw[0x38:0x40] == bytes([2, 3, 0, 0, 0, 0, 4, 5])
    assert raw[0x188:0x1A0] == bytes(24)
    doc["cpuid_fam_id"] = 0x19
    with pytest.raises(MalformedError, match="null in a version 2 report"):
        report_from_sev_json(doc)


def test_mitigation_vectors_in_v5_and_absent_members() -> None:
    doc = _sample()
    doc.update(version=5, launch_mit_vector=0x0B, current_mit_vector=0x0C)
    raw = report_from_sev_json(doc)
    assert raw[0x1F8:0x200] == (0x0B).to_bytes(8, "little")
    assert raw[0x200:0x208] == (0x0C).to_bytes(8, "little")
    del doc["launch_mit_vector"], doc["current_mit_vector"]  # the sev 5/6 shape
    assert report_from_sev_json(doc)[0x1F8:0x208] == bytes(16)


def test_full_layout_variants() -> None:
    raw = report_from_sev_json(_sample("sev4"))
    one = _sample("sev1")
    assert report_from_sev_json(one) == raw
    renamed = copy.deepcopy(one)
    renamed["author_key_en"] = renamed.pop("_author_key_en")
    early = copy.deepcopy(one)
    for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        tcb = early[name]
        early[name] = {"boot_loader": tcb["bootloader"], "tee": tcb["tee"],
                       "reserved": tcb["_reserved"], "snp": tcb["snp"],
                       "microcode": tcb["microcode"]}  # fmt: skip
    assert report_from_sev_json(renamed) == raw == report_from_sev_json(early)


# -- cert_chain and the whole SnpEvidence -------------------------------------------------------


def test_cert_chain_entries() -> None:
    chain = [
        {"cert_type": "VCEK", "data": [0x30, 0x82, 1, 2]},
        {"cert_type": "ASK", "data": []},
        {"cert_type": {"OTHER": "11111111-2222-3333-4444-555555555555"}, "data": [7]},
    ]
    got = cert_chain_from_sev_json(chain)
    assert got == (
        SevCertEntry("VCEK", CERT_TYPE_GUIDS["VCEK"], b"\x30\x82\x01\x02"),
        SevCertEntry("ASK", CERT_TYPE_GUIDS["ASK"], b""),
        SevCertEntry("OTHER", "11111111-2222-3333-4444-555555555555", b"\x07"),
    )
    assert cert_chain_from_sev_json(None) == ()
    assert set(CERT_TYPE_GUIDS) == {"Empty", "ARK", "ASK", "VCEK", "VLEK", "CRL"}


@pytest.mark.parametrize(
    ("chain", "field"),
    [
        ({"cert_type": "VCEK"}, "cert_chain"),
        ([{"cert_type": "vcek", "data": []}], "cert_chain[0].cert_type"),
        ([{"cert_type": {"OTHER": "not-a-guid"}, "data": []}], "cert_chain[0].cert_type.OTHER"),
        ([{"cert_type": {"ARK": 1}, "data": []}], "cert_chain[0].cert_type"),
        ([{"cert_type": "ARK", "data": "MIIB"}], "cert_chain[0].data"),
        ([{"cert_type": "ARK", "data": [0] * 70_000}], "cert_chain[0].data"),
        ([{"cert_type": "ARK", "data": [0, 999]}], "cert_chain[0].data[1]"),
        ([{"cert_type": "ARK", "data": [], "guid": "x"}], "cert_chain[0]"),
        ([{"cert_type": "ARK", "data": []}] * (MAX_CERT_ENTRIES + 1), "cert_chain"),
    ],
)
def test_malformed_cert_chain(chain: Any, field: str) -> None:
    with pytest.raises(MalformedError) as e:
        cert_chain_from_sev_json(chain)
    assert e.value.field == field


def test_snp_evidence_envelope() -> None:
    raw = report_from_sev_json(_sample())
    doc = {"attestation_report": _sample(), "cert_chain": [{"cert_type": "VLEK", "data": [1]}]}
    assert evidence_from_sev_json(doc) == (
        raw,
        (SevCertEntry("VLEK", CERT_TYPE_GUIDS["VLEK"], b"\x01"),),
    )
    assert evidence_from_sev_json({"attestation_report": _sample()})[0] == raw  # pre-Option shape
    with pytest.raises(MalformedError) as e:
        evidence_from_sev_json({**doc, "svsm_manifest": "AAAA"})
    assert e.value.field == "tee-evidence.svsm_manifest" and "SVSM" in e.value.message
    with pytest.raises(MalformedError) as e:
        evidence_from_sev_json({**doc, "quote": "AAAA"})
    assert "unexpected member 'quote'" in e.value.message
    with pytest.raises(MalformedError):
        evidence_from_sev_json([doc])


@needs_vectors
@pytest.mark.parametrize("layout", LAYOUTS)
def test_kbs_extracts_the_sev_crate_form(layout: str) -> None:
    raw, _ = _virtee()
    assert extract_evidence("snp", sev_evidence(raw, layout)) == ("sev-snp", raw, ())
    # protocol 0.1 carried the evidence as a JSON string; Trustee's 0.4.0 does not
    with pytest.raises(MalformedError):
        extract_evidence("snp", json.dumps(sev_evidence(raw, layout)))
    bad = sev_evidence(raw, layout)
    bad["attestation_report"]["measurement"] = bad["attestation_report"]["measurement"][:47]
    with pytest.raises(MalformedError) as e:
        extract_evidence("snp", bad)
    assert e.value.field == "tee-evidence.attestation_report.measurement"
