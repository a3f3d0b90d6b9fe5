"""NVIDIA Hopper GPU measurements (SPDM GET_MEASUREMENTS) on two real H100 reports, with their
device chains, and mutations of them."""

from __future__ import annotations

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
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import nitro, nvidia

DIR = TESTVECTORS / "nvidia-gpu"
AT = datetime(2026, 1, 1, tzinfo=UTC)
PAIRS = (("nvtrust_hopperAttestationReport.txt", "nvtrust_hopperCertChain.pem"),
         ("trustee_hopper_coco_report1.txt", "trustee_hopper_coco_certs1.pem"))  # fmt: skip
pytestmark = pytest.mark.skipif(not (DIR / PAIRS[0][0]).is_file(),
                                reason="test vectors absent (../shared/testvectors)")  # fmt: skip


@functools.cache
def _doc(i: int = 0) -> tuple[str, str]:
    report, chain = PAIRS[i]
    return (DIR / report).read_text().strip(), (DIR / chain).read_text()


def _data(report: str | None = None, chain: str | None = None, i: int = 0) -> bytes:
    r, c = _doc(i)
    return json.dumps({"report": r if report is None else report,
                       "certificate_chain": c if chain is None else chain}).encode()  # fmt: skip


def _verify(data: bytes, at: datetime = AT) -> dict[str, Any]:
    return nvidia.verify(data, collateral=Collateral.empty(), at=at).claims


def test_real_reports_verify() -> None:
    for i, driver in ((0, "550.90.07"), (1, "580.95.05")):
        data = _data(i=i)
        assert nvidia.detect(data) and evidence.detect_format(data) == "nvidia-gpu"
        c = _verify(data)
        assert c["platform"] == "nvidia-gpu" and c["driver_version"] == driver
        assert len(c["measurements"]) == 64 and len(c["report_data"]) == 64
        assert c == nvidia.parse_claims(data)


def _flip(text: str, byte: int) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[byte] ^= 1
    return raw.hex()


def test_changes_to_the_signed_exchange_are_refused() -> None:
    report, _ = _doc()
    size = len(bytes.fromhex(report))
    for byte, what in ((10, "request nonce"), (37 + 8 + 10, "a measurement"),
                       (size - 200, "opaque data"), (size - 10, "signature")):  # fmt: skip
        with pytest.raises(VerificationError) as e:
            _verify(_data(report=_flip(report, byte)))
        assert e.value.code == "signature_invalid", what


def test_the_chain_must_end_at_nvidia_and_be_the_signers() -> None:
    _, chain = _doc()
    _, other = _doc(1)
    with pytest.raises(VerificationError) as e:  # another GPU's chain: its leaf did not sign
        _verify(_data(chain=other))
    assert e.value.code == "signature_invalid"
    pems = chain.split("-----END CERTIFICATE-----")
    with pytest.raises(VerificationError) as e:  # the root dropped: the chain ends elsewhere
        _verify(
            _data(chain="-----END CERTIFICATE-----".join(pems[:-2]) + "-----END CERTIFICATE-----\n")
        )
    assert e.value.code == "root_not_pinned"
    with pytest.raises(VerificationError) as e:
        nvidia.verify(_data(), collateral=Collateral.empty(), at=AT, trust={"00" * 32})
    assert e.value.code == "root_not_pinned"
    with pytest.raises(VerificationError) as e:
        _verify(_data(), at=datetime(2020, 1, 1, tzinfo=UTC))
    assert e.value.code == "certificate_expired"


def test_malformed_documents_name_their_field() -> None:
    report, chain = _doc()
    raw = bytes.fromhex(report)
    cases = {
        "document": [b"[]", b"{bad", json.dumps({"report": report}).encode(),
                     json.dumps({"report": 5, "certificate_chain": chain}).encode()],
        "report": [_data(report="zz!")],
        "certificate_chain": [_data(chain="nope"), _data(chain=chain.split("-----END")[0])],
        "request": [_data(report=(b"\x10" + raw[1:]).hex()), _data(report=raw[:20].hex())],
        "response": [_data(report=(raw + bytes(40)).hex()), _data(report=raw[:-97].hex())],
        "block": [_data(report=(raw[:45] + b"\x01\x01\xff\xff" + raw[49:]).hex())],
    }  # fmt: skip
    for prefix, docs in cases.items():
        for data in docs:
            with pytest.raises(MalformedError) as e:
                _verify(data)
            assert e.value.field is not None and e.value.field.startswith(prefix), (prefix, e.value)


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(st.integers(min_value=0, max_value=4116), st.integers(min_value=1, max_value=255))
def test_any_single_byte_change_of_the_report_is_refused(at: int, xor: int) -> None:
    raw = bytearray(bytes.fromhex(_doc()[0]))
    raw[at] ^= xor
    with pytest.raises((MalformedError, VerificationError)):
        _verify(_data(report=raw.hex()))


def test_policy_pins_blocks_measurement_and_driver() -> None:
    ev = nvidia.verify(_data(), collateral=Collateral.empty(), at=AT)
    b1 = ev.claims["measurements"]["1"]
    ok = load_policy(
        "version: 1\nname: gpu\nplatforms:\n  nvidia-gpu:\n"
        f"    measurements: ['{ev.claims['measurement']}']\n    blocks: {{'1': ['{b1}']}}\n"
        "    driver_versions: ['550.90.07']\n"
    )
    assert appraise(ev, ok).accepted
    old = load_policy(
        "version: 1\nname: gpu\nplatforms:\n  nvidia-gpu:\n    driver_versions: ['535.0']\n"
    )
    assert [r.code for r in appraise(ev, old).reasons] == ["driver_version_not_allowed"]


def test_a_tampered_certificate_is_refused_with_the_links_warm() -> None:
    """The chain's verified links are kept by their exact bytes (nitro.verify_chain's memo):
    with them warm, a certificate whose signature has one bit flipped is refused, at any
    position, and the good chain still verifies."""
    import base64

    nitro.clear_caches()
    _verify(_data())
    _, chain = _doc()
    pems = [
        p + "-----END CERTIFICATE-----\n" for p in chain.split("-----END CERTIFICATE-----")[:-1]
    ]
    for position in range(len(pems) - 1):  # every certificate below the pinned root
        body = "".join(pems[position].split("-----")[2].split())
        der = bytearray(base64.b64decode(body))
        der[-3] ^= 0x01  # in the signature value, which ends the DER
        pem = "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(der)).decode()
        tampered = [*pems[:position], pem + "-----END CERTIFICATE-----\n", *pems[position + 1 :]]
        with pytest.raises(VerificationError) as e:
            _verify(_data(chain="".join(tampered)))
        assert e.value.code == "chain_invalid", position
    assert _verify(_data())["driver_version"] == "550.90.07"


def test_the_real_reports_firmware_id_is_the_certified_one() -> None:
    """Both public reports' firmware ID (opaque type 20) is the FWID their leaf certifies."""
    for i in range(len(PAIRS)):
        m, _chain = nvidia.parse(_data(i=i))
        claims = _verify(_data(i=i))
        assert claims["firmware_id"] == m.opaque[20].hex()
