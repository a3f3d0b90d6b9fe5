"""`veritee evidence show`: every field of real evidence (the test vectors: a TDX quote, a
go-tpm-tools attestation with its TCG event log, a TDX CCEL log and table; the simulated
platform's), the event logs as tables whose replay matches the quoted registers, and malformed,
truncated, tampered, oversized and missing input refused with a clear message and exit 1/2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.conftest import testvectors_dir

from veritee import evidence
from veritee.binding import report_data_for
from veritee.cli.main import _register, cli
from veritee.evidence import tcg_log
from veritee.platforms.simulated import SimulatedPlatform

_register()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _json(runner: CliRunner, *args: str) -> dict[str, Any]:
    r = runner.invoke(cli, ["evidence", "show", *args, "--json"])
    assert r.exit_code == 0, r.output
    out: dict[str, Any] = json.loads(r.output)
    return out


def test_simulated_every_field(runner: CliRunner, tmp_path: Path) -> None:
    p = SimulatedPlatform(tmp_path / "sim", measurement="ab" * 48)
    f = tmp_path / "ev.bin"
    f.write_bytes(p.evidence(report_data_for(b"n", b"", profile=p.profile)))
    desc = _json(runner, str(f))
    assert desc["format"] == "simulated" and desc["verified"] is False
    assert desc["fields"] == evidence.parse_claims(f.read_bytes())
    r = runner.invoke(cli, ["evidence", "show", str(f)])
    assert r.exit_code == 0 and "UNVERIFIED" in r.output
    for name in desc["fields"]:
        assert name in r.output
    assert "tcb_status" in r.output and "not reported" in r.output and "None" not in r.output


def test_tdx_quote_header_and_signature_data(runner: CliRunner) -> None:
    quote = testvectors_dir() / "tdx" / "dcapqvl_tdx_quote_v4.bin"
    desc = _json(runner, str(quote))
    assert desc["format"] == "tdx" and desc["fields"]["mrtd"] == desc["fields"]["measurement"]
    q = desc["quote"]
    assert q["header"]["version"] == 4 and q["header"]["tee_type"] == "0x81"
    assert len(q["signature_data"]["attestation_key"]) == 128
    assert any("PCK Certificate" in c for c in q["signature_data"]["pck_chain"])
    assert any("Root CA" in c for c in q["signature_data"]["pck_chain"])
    r = runner.invoke(cli, ["evidence", "show", str(quote), "--format", "tdx"])
    assert r.exit_code == 0 and "quote.header.qe_vendor_id" in r.output and "rtmr3" in r.output


def test_tpm_attestation_and_its_event_log(runner: CliRunner) -> None:
    pb = testvectors_dir() / "tpm" / "gotpmtools_gce-cos-85-nonce9009.pb"
    desc = _json(runner, str(pb))
    assert desc["format"] == "tpm"
    events = desc["event_log"]
    assert len(events) == desc["fields"]["event_log"]["events"] > 10
    assert {"index", "type_name", "digests", "data_size", "data_verified"} <= set(events[0])
    # the replay of the log gives the PCRs the TPM quoted, for every register the log extends
    replayed = desc["fields"]["event_log"]["replayed"]["sha256"]
    quoted = desc["fields"]["pcrs"]["sha256"]
    assert replayed and all(quoted[i] == v for i, v in replayed.items()), (replayed, quoted)
    r = runner.invoke(cli, ["evidence", "show", str(pb)])
    assert r.exit_code == 0
    assert f"event log: {len(events)} events (register: PCR)" in r.output
    assert "EV_SEPARATOR" in r.output and "sha256:" in r.output


def test_ccel_log_with_its_table(runner: CliRunner) -> None:
    root = testvectors_dir() / "tdx"
    desc = _json(runner, str(root / "gotdxguest_ccel_data.dat"), "--format", "ccel",
                 "--ccel-table", str(root / "gotdxguest_ccel_table.dat"))  # fmt: skip
    assert desc["format"] == "ccel" and desc["fields"]["acpi_table"]["cc_type"] == 2
    assert len(desc["event_log"]) == desc["fields"]["events"] > 10
    # the RTMRs the log replays to are the ones the TD's quote reports
    quote = _json(runner, str(root / "gotdxguest_ccel_cos-113-tdx-quote_v4.bin"))
    for i in range(4):
        assert desc["fields"]["replayed"][f"rtmr{i}"] == quote["fields"][f"rtmr{i}"]
    r = runner.invoke(
        cli, ["evidence", "show", str(root / "gotdxguest_ccel_data.dat"), "--format", "ccel"]
    )
    assert r.exit_code == 0 and "register: RTMR" in r.output and "EV_EFI_ACTION" in r.output


def test_malformed_truncated_tampered_oversized(runner: CliRunner, tmp_path: Path) -> None:
    root = testvectors_dir()
    ccel = (root / "tdx" / "gotdxguest_ccel_data.dat").read_bytes()
    log = tcg_log.parse(ccel, max_index=4)
    cases: dict[str, tuple[bytes, list[str], int, str]] = {}
    # truncated in the middle of an event: names the field and offset
    cut = log.events[5].offset + 20
    cases["truncated-ccel"] = (ccel[:cut], ["--format", "ccel"], 1, "does not parse as ccel")
    # a data-bound event whose data no longer hashes to its digest
    bound = next(e for e in log.events if e.data_verified and e.data)
    body = bytearray(ccel)
    data_at = ccel.index(bound.data, bound.offset)  # the event's data, after its header and digests
    body[data_at] ^= 0x01
    cases["tampered-ccel"] = (bytes(body), ["--format", "ccel"], 1, "event_data_mismatch")
    quote = (root / "tdx" / "dcapqvl_tdx_quote_v4.bin").read_bytes()
    cases["truncated-quote"] = (quote[:300], ["--format", "tdx"], 1, "does not parse as tdx")
    cases["garbage"] = (b"\x13\x37" * 100, [], 1, "format_unknown")
    cases["empty"] = (b"", [], 2, "is empty")
    cases["oversized"] = (b"\0" * (256 * 1024 + 1), [], 2, "larger than")
    cases["oversized-log"] = (
        b"\0" * (tcg_log.MAX_EVENT_LOG + 1),
        ["--format", "tcg-log"],
        2,
        "larger than",
    )
    cases["not-a-tcg-log"] = (b"\0" * 64, ["--format", "tcg-log"], 1, "does not parse as tcg-log")
    for name, (data, args, code, text) in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        r = runner.invoke(cli, ["evidence", "show", str(f), *args])
        assert r.exit_code == code, (name, r.output)
        assert text in r.output and "Traceback" not in r.output, (name, r.output)
    # a CCEL table with a bad checksum
    table = bytearray((root / "tdx" / "gotdxguest_ccel_table.dat").read_bytes())
    table[20] ^= 0xFF
    bad_table = tmp_path / "table"
    bad_table.write_bytes(bytes(table))
    r = runner.invoke(cli, ["evidence", "show", str(root / "tdx" / "gotdxguest_ccel_data.dat"), "--format", "ccel",
                            "--ccel-table", str(bad_table)])  # fmt: skip
    assert r.exit_code == 1 and "checksum" in r.output


def test_usage_errors(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"x")
    for args in ([str(tmp_path / "absent")], [str(f), "--format", "nope"], [str(f), "--ccel-table", str(f)],
                 [str(tmp_path)]):  # fmt: skip
        r = runner.invoke(cli, ["evidence", "show", *args])
        assert r.exit_code == 2, (args, r.output)
