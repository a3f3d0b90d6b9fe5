"""The NVIDIA verifier on exchanges a synthetic GPU signs (tests/fakes/nvidia_gpu.py): what the
claims pin is all of the GPU's measurements, and each opaque value is the one the GPU wrote.
Before, a report with no measurement block was accepted (its ``measurement`` the hash of
nothing), one that asked for some blocks only was accepted, and a repeated opaque type kept its
last value (a second driver version shadowed the first); the firmware ID the GPU reports was not
compared with the one its device certificate certifies (nvtrust compares them)."""

from __future__ import annotations

import pytest
from tests.fakes.nvidia_gpu import DEFAULT_OPAQUE, Gpu, block, tlv

from veritee.errors import MalformedError, VerificationError


@pytest.fixture(scope="module")
def gpu() -> Gpu:
    return Gpu()


def test_a_synthetic_gpu_verifies(gpu: Gpu) -> None:
    claims = gpu.verify(gpu.report()).claims
    assert claims["driver_version"] == "550.90.07"
    assert sorted(claims["measurements"]) == ["1", "2", "3", "4"]
    assert claims["report_data"] == "11" * 32


def test_a_report_without_measurement_blocks_is_refused(gpu: Gpu) -> None:
    with pytest.raises(MalformedError) as e:
        gpu.verify(gpu.report(blocks=()))
    assert e.value.field == "block"


@pytest.mark.parametrize("param2", [0x00, 0x01, 0xFE])
def test_a_request_for_fewer_than_all_blocks_is_refused(gpu: Gpu, param2: int) -> None:
    with pytest.raises(MalformedError) as e:
        gpu.verify(gpu.report(param2=param2, blocks=(block(1, b"\1" * 48),)))
    assert e.value.field == "request.param2"


def test_a_repeated_opaque_type_is_refused(gpu: Gpu) -> None:
    with pytest.raises(MalformedError) as e:
        gpu.verify(gpu.report(opaque=tlv(3, b"535.00.00\0") + DEFAULT_OPAQUE))
    assert e.value.field == "opaque.type"
    # Distinct types are kept, each with its own value.
    claims = gpu.verify(gpu.report(opaque=DEFAULT_OPAQUE + tlv(20, b"\xaa" * 48))).claims
    assert claims["opaque"]["20"] == "aa" * 48


def test_the_reported_firmware_id_must_be_the_certified_one() -> None:
    certified, other = b"\xaa" * 48, b"\xbb" * 48
    gpu = Gpu(fwid=certified)
    claims = gpu.verify(gpu.report(opaque=DEFAULT_OPAQUE + tlv(20, certified))).claims
    assert claims["firmware_id"] == certified.hex()
    with pytest.raises(VerificationError) as e:
        gpu.verify(gpu.report(opaque=DEFAULT_OPAQUE + tlv(20, other)))
    assert e.value.code == "fwid_mismatch"
    # A report without a firmware ID is not compared; the certified one is still the claim.
    assert gpu.verify(gpu.report()).claims["firmware_id"] == certified.hex()
