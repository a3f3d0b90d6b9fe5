"""Azure SEV-SNP CVMs: vTPM quote anchored in the paravisor's SNP report, on Trustee's real
az-snp-vtpm samples (Milan v2 and v0 documents, a Genoa v0 document) and mutations of them."""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import TESTVECTORS

from veritee import evidence
from veritee.appraisal import appraise, load_policy
from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence import azure_vtpm as az
from veritee.keybroker.kbs import extract_evidence

AZ = TESTVECTORS / "azure-vtpm"
SNP = TESTVECTORS / "sev-snp"
AT = datetime(2026, 1, 15, tzinfo=UTC)
pytestmark = [
    pytest.mark.skipif(
        not (AZ / "az-snp-vtpm_evidence-v2.json").is_file(),
        reason="test vectors absent (../shared/testvectors)",
    ),
    pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive"),
]


@functools.cache
def _chain(product: str) -> Collateral:
    return Collateral.from_paths([SNP / f"amd_{product}_vcek_ask_ark.pem"])


def _v2() -> dict[str, Any]:
    return dict(json.loads((AZ / "az-snp-vtpm_evidence-v2.json").read_text()))


def _from_files() -> dict[str, Any]:
    """A v0 document made of the separate Milan files (HCL report, quote, VCEK chain)."""
    return {
        "quote": json.loads((AZ / "az-snp-vtpm_tpm-quote-v1.json").read_text()),
        "report": list((AZ / "az-snp-vtpm_hcl-report.bin").read_bytes()),
        "vcek": (AZ / "az-snp-vtpm_vcek.pem").read_text(),
    }


def _verify(doc: dict[str, Any], product: str = "milan") -> dict[str, Any]:
    data = json.dumps(doc).encode()
    return az.verify(data, collateral=_chain(product), at=AT).claims


def test_real_documents_verify() -> None:
    genoa = json.loads((AZ / "trustee_az_snp_evidence_genoa.json").read_text())
    for doc, product in ((_v2(), "milan"), (_from_files(), "milan"), (genoa, "genoa")):
        data = json.dumps(doc).encode()
        assert evidence.detect_format(data) == "az-snp-vtpm"
        claims = _verify(doc, product)
        assert claims["platform"] == "sev-snp" and claims["vtpm"] is True
        assert len(claims["measurement"]) == 96 and len(claims["pcr23"]) == 64
        assert claims["hcl_report_data"] != claims["report_data"]
        unverified = az.parse_claims(data)
        assert (
            unverified["pcrs"] == claims["pcrs"]
            and unverified["report_data"] == claims["report_data"]
        )
    assert bytes.fromhex(_verify(_from_files())["report_data"]) == b"challenge"


def test_amd_chain_is_required() -> None:
    with pytest.raises(CollateralError):  # the document's VCEK alone does not reach the ARK
        az.verify(json.dumps(_v2()).encode(), collateral=Collateral.empty(), at=AT)
    with pytest.raises((CollateralError, VerificationError)):  # Genoa report, Milan chain
        genoa = json.loads((AZ / "trustee_az_snp_evidence_genoa.json").read_text())
        az.verify(json.dumps(genoa).encode(), collateral=_chain("milan"), at=AT)


def _flip_hex(text: str, at: int) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[at] ^= 1
    return raw.hex()


def test_each_link_of_the_chain_is_checked() -> None:
    doc = _v2()
    doc["tpm_quote"]["pcrs"][8] = _flip_hex(doc["tpm_quote"]["pcrs"][8], 0)
    with pytest.raises(VerificationError) as e:
        _verify(doc)
    assert e.value.code == "tpm_pcr_mismatch"

    doc = _v2()
    doc["tpm_quote"]["signature"] = _flip_hex(doc["tpm_quote"]["signature"], 10)
    with pytest.raises(VerificationError) as e:
        _verify(doc)
    assert e.value.code == "signature_invalid"

    doc = _v2()  # the nonce (extraData) is inside the signed message
    doc["tpm_quote"]["message"] = _flip_hex(doc["tpm_quote"]["message"], 44)
    with pytest.raises(VerificationError) as e:
        _verify(doc)
    assert e.value.code == "signature_invalid"

    def hcl_changed(offset: int) -> dict[str, Any]:
        d = _from_files()
        d["report"][offset] ^= 1
        return d

    with pytest.raises(VerificationError) as e:  # a byte of the runtime JSON: another AK
        _verify(hcl_changed(2600 - 300))
    assert e.value.code == "binding_mismatch"
    with pytest.raises(VerificationError) as e:  # the SNP measurement inside the HCL report
        _verify(hcl_changed(32 + 0x90))
    assert e.value.code == "signature_invalid"
    with pytest.raises(MalformedError):  # the HCLA signature
        _verify(hcl_changed(0))


def test_malformed_documents_name_their_field() -> None:
    cases: dict[str, Any] = {
        "version": _v2() | {"version": 7},
        "hcl_report": _v2() | {"hcl_report": "***"},
        "report": {k: v for k, v in _from_files().items()} | {"report": [1, 2, 300]},
        "vcek": _v2() | {"vcek": 5},
        "tpm_quote": _v2() | {"tpm_quote": []},
        "tpm_quote.pcrs": _v2() | {"tpm_quote": _v2()["tpm_quote"] | {"pcrs": ["00"] * 3}},
        "tpm_quote.message": _v2() | {"tpm_quote": _v2()["tpm_quote"] | {"message": "zz"}},
        "hcl.hw_report": _v2()
        | {"hcl_report": base64.urlsafe_b64encode(b"HCLA" + bytes(100)).decode()},
    }
    for field, doc in cases.items():
        with pytest.raises(MalformedError) as e:
            _verify(doc)
        assert e.value.field is not None and e.value.field.startswith(field.split(".")[0]), field
    for data in (b"[]", b"{not json", b"{" + b" " * (az.MAX_DOCUMENT_BYTES + 1) + b"}"):
        with pytest.raises(MalformedError):
            az.verify(data, collateral=_chain("milan"), at=AT)


def test_policy_pins_vtpm_pcrs_under_sev_snp_and_kbs_takes_the_document() -> None:
    ev = az.verify(json.dumps(_v2()).encode(), collateral=_chain("milan"), at=AT)
    pcr4 = ev.claims["pcr4"]
    base = f"version: 1\nname: az\nplatforms:\n  sev-snp:\n    measurements: ['{ev.claims['measurement']}']\n"
    assert appraise(ev, load_policy(base + f"    pcrs: {{'4': ['{pcr4}']}}\n")).accepted
    d = appraise(ev, load_policy(base + "    pcrs: {'4': ['" + "00" * 32 + "']}\n"))
    assert [r.code for r in d.reasons] == ["pcr4_not_allowed"]
    fmt, data, _ = extract_evidence("az-snp-vtpm", _v2())
    assert fmt == "az-snp-vtpm" and json.loads(data) == _v2()


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=255))
def test_any_byte_change_of_the_document_is_refused_cleanly(at: int, xor: int) -> None:
    data = bytearray(json.dumps(_from_files()).encode())
    data[at % len(data)] ^= xor
    try:
        az.verify(bytes(data), collateral=_chain("milan"), at=AT)
    except (MalformedError, VerificationError, CollateralError):
        return
    # What may change unnoticed: JSON whitespace, or a byte of the HCL report that nothing
    # signs (header, IGVM framing) - never the quote, the PCRs, the SNP report or the AK.
    changed = json.loads(bytes(data))
    good = _from_files()
    assert changed["quote"] == good["quote"]
    assert changed["report"][32 : 32 + 1184] == good["report"][32 : 32 + 1184]


# --- Azure TDX CVMs (az-tdx-vtpm): the same vTPM links, anchored in a TD quote ---------------

TDX_DOC = AZ / "az-tdx-vtpm_evidence-v1.json"


def _tdx() -> dict[str, Any]:
    return dict(json.loads(TDX_DOC.read_text()))


def _tdx_verify(doc: dict[str, Any], collateral: Collateral | None = None) -> Any:
    from veritee.evidence import azure_tdx_vtpm

    return azure_tdx_vtpm.verify(json.dumps(doc).encode(),
                                 collateral=collateral or Collateral.empty(), at=AT)  # fmt: skip


def test_tdx_document_links_verify_up_to_intel_collateral() -> None:
    from veritee.evidence import azure_tdx_vtpm

    data = TDX_DOC.read_bytes()
    assert evidence.detect_format(data) == "az-tdx-vtpm"
    assert evidence.detect_format(json.dumps(_v2()).encode()) == "az-snp-vtpm"
    claims = azure_tdx_vtpm.parse_claims(data)
    assert claims["platform"] == "tdx" and claims["vtpm"] is True
    assert bytes.fromhex(claims["report_data"]) == b"challenge" and len(claims["pcr4"]) == 64
    # Every vTPM link holds; what stops it here is the TD quote's Intel collateral (no TCB info
    # for its FMSPC is among the vectors): the verifier got that far.
    with pytest.raises(CollateralError):
        _tdx_verify(_tdx())


def test_tdx_document_links_are_each_checked() -> None:
    doc = _tdx()
    doc["tpm_quote"]["pcrs"][0] = _flip_hex(doc["tpm_quote"]["pcrs"][0], 3)
    with pytest.raises(VerificationError) as e:
        _tdx_verify(doc)
    assert e.value.code == "tpm_pcr_mismatch"
    doc = _tdx()
    doc["tpm_quote"]["signature"] = _flip_hex(doc["tpm_quote"]["signature"], 0)
    with pytest.raises(VerificationError) as e:
        _tdx_verify(doc)
    assert e.value.code == "signature_invalid"
    doc = _tdx()  # another runtime JSON byte: the TD quote no longer vouches for it
    hcl = bytearray(
        base64.urlsafe_b64decode(doc["hcl_report"] + "=" * (-len(doc["hcl_report"]) % 4))
    )
    variable = hcl.index(b'"HCLEkPub"')  # a byte of the runtime JSON the AK is not in
    hcl[variable + 1] ^= 1
    doc["hcl_report"] = base64.urlsafe_b64encode(bytes(hcl)).decode().rstrip("=")
    with pytest.raises(VerificationError) as e:
        _tdx_verify(doc)
    assert e.value.code == "binding_mismatch"
    for field, value in (("version", 3), ("td_quote", "***"), ("hcl_report", 5), ("tpm_quote", [])):
        with pytest.raises(MalformedError) as me:
            _tdx_verify(_tdx() | {field: value})
        assert me.value.field is not None and me.value.field.startswith(field), field


@pytest.mark.parametrize("section", ["sev-snp", "tdx"])
@pytest.mark.parametrize("pins", ["{'24': ['" + "00" * 32 + "']}", "{'x': ['" + "00" * 32 + "']}",
                                  "{'4': ['00']}", "{'4': ['zz']}", "['4']"])  # fmt: skip
def test_bad_vtpm_pcr_pins_in_policies_are_named(section: str, pins: str) -> None:
    with pytest.raises(Exception) as e:
        load_policy(f"version: 1\nname: p\nplatforms:\n  {section}:\n    pcrs: {pins}\n")
    assert "pcrs" in str(e.value)
