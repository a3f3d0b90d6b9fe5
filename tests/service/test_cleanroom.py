"""The multi-party clean room end to end: `veritee demo cleanroom` and the examples' by-hand flow."""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from rich.console import Console

from veritee.appraisal import load_policy, sign_policy
from veritee.cli.main import _register, cli
from veritee.demo_cleanroom import run_cleanroom_demo
from veritee.domain import Domain
from veritee.keybroker.cleanroom import PARTIES, synthetic_csv
from veritee.platforms.simulated import measure
from veritee.service.app import create_app
from veritee.service.runner import start_in_thread
from veritee.service.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cleanroom"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"cleanroom_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demo_releases_to_the_workload_and_denies_the_modified_one() -> None:
    out = io.StringIO()
    s = run_cleanroom_demo(Console(file=out, width=120))
    names = [f"cleanroom/{p}" for p in PARTIES]
    assert s["releases"] == names  # three secret.release audit entries, one per party
    assert s["verified"] == {p: True for p in PARTIES}
    assert s["measurement"] != s["modified_measurement"]
    for name in names:  # the modified workload got nothing, and was told why
        assert {
            "appraisal_not_accepted",
            "measurement_not_allowed",
            "release_claim_mismatch",
        } <= set(s["denials"][name])
    assert s["denials_audited"] == names
    assert s["audit_ok"] is True
    result = s["result"]
    assert [i["rows"] for i in result["inputs"]] == [120, 120, 120]
    counted = sum(v.get("count", 0) for v in result["categories"].values())
    expected = sum(synthetic_csv(p).count(b"\n") - 1 for p in PARTIES)
    assert counted == expected
    assert result["measurement"] == s["measurement"]
    text = out.getvalue()
    assert "secret.release" in text and "secret.deny" in text and "release_claim_mismatch" in text


def test_by_hand_flow_with_the_cli_and_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README steps: make data, encrypt, `veritee secret put`, run workload.py, verify."""
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    _register()
    make_data, party, workload = _load("make_data"), _load("party"), _load("workload")
    domain = Domain.create(tmp_path / "domain", name="cr", now=dt.datetime.now(dt.UTC))
    sim = tmp_path / "sim"
    assert make_data.main([str(tmp_path / "plain")]) == 0
    good = measure([EXAMPLES / "workload.py"])
    modified = tmp_path / "modified" / "workload.py"
    modified.parent.mkdir()
    modified.write_bytes(
        (EXAMPLES / "workload.py")
        .read_bytes()
        .replace(b"MIN_GROUP_SIZE = 5", b"MIN_GROUP_SIZE = 1")
    )

    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)))
    try:
        capsys.readouterr()
        assert workload.main(["--show-platform-key", "--platform-dir", str(sim)]) == 0
        plat_key = capsys.readouterr().out.strip()
        doc = {"version": 1, "name": "cr", "platforms": {"simulated": {
            "measurements": [good], "platform_keys": [plat_key], "allow_debug": True}}}  # fmt: skip
        signed_policy = tmp_path / "appraisal.signed.json"
        signed_policy.write_bytes(sign_policy(load_policy(json.dumps(doc)), domain.policy_key))
        runner = CliRunner()
        r = runner.invoke(cli, ["policy", "install", str(signed_policy), "--url", server.url,
                                "--data", str(domain.path)])  # fmt: skip
        assert r.exit_code == 0, r.output

        enc = tmp_path / "encrypted"
        for p in PARTIES:
            assert (
                party.main(["encrypt", p, str(tmp_path / "plain" / f"{p}.csv"), "--out", str(enc)])
                == 0
            )
            pol = tmp_path / f"{p}-policy.json"
            capsys.readouterr()
            assert party.main(["policy", "--measurement", good]) == 0
            pol.write_text(capsys.readouterr().out)
            r = runner.invoke(cli, ["secret", "put", f"cleanroom/{p}", "--policy", str(pol),
                                    "--value-file", str(enc / f"{p}.key"), "--url", server.url,
                                    "--data", str(domain.path)])  # fmt: skip
            assert r.exit_code == 0, r.output

        out = tmp_path / "result.json"
        rc = workload.main(["--url", server.url, "--ca", str(domain.path / "domain_ca.pem"),
                            "--inputs", str(enc), "--out", str(out), "--store", str(tmp_path / "store"),
                            "--platform-dir", str(sim)])  # fmt: skip
        assert rc == 0
        ca = str(domain.path / "domain_ca.pem")
        for p in PARTIES:
            assert party.main(["verify", str(out), "--ca", ca, "--measurement", good,
                               "--input", str(enc / f"{p}.csv.enc")]) == 0  # fmt: skip
        # a party pinning another measurement refuses the result
        assert party.main(["verify", str(out), "--ca", ca, "--measurement", "cd" * 48]) == 1
        # a dataset that was not an input is not listed
        stranger = tmp_path / "stranger.enc"
        stranger.write_bytes(b"VTCRDv01" + b"\0" * 40)
        assert (
            party.main(
                ["verify", str(out), "--ca", ca, "--measurement", good, "--input", str(stranger)]
            )
            == 1
        )

        # the modified workload (run from its own file: measured as such) is refused every key
        mod = importlib.util.spec_from_file_location("cleanroom_modified", modified)
        assert mod is not None and mod.loader is not None
        modwl = importlib.util.module_from_spec(mod)
        mod.loader.exec_module(modwl)
        rc = modwl.main(["--url", server.url, "--ca", ca, "--inputs", str(enc), "--out",
                         str(tmp_path / "stolen.json"), "--store", str(tmp_path / "store2"),
                         "--platform-dir", str(sim)])  # fmt: skip
        assert rc == 1 and not (tmp_path / "stolen.json").exists()
    finally:
        server.stop()
