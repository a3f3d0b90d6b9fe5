"""Every CoRIM / CoMID of ../shared/testvectors/corim/manifest.json: valid or not as the peers'
own tests say, with the reference values the manifest decodes (triple and measurement counts,
every digest)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.conftest import TESTVECTORS

from veritee.cli.main import _register, cli
from veritee.refvalues import corim

CORIM = TESTVECTORS / "corim"


def _cases() -> list[Any]:
    path = CORIM / "manifest.json"
    if not path.is_file():
        return [pytest.param(None, id="absent")]
    cases = json.loads(path.read_text())["cases"]
    return [pytest.param(c, id=c["file"]) for c in cases]


def _case_or_skip(case: dict[str, Any] | None) -> dict[str, Any]:
    if case is None:
        pytest.skip(f"CoRIM test vectors not found at {CORIM} (../shared/testvectors is absent)")
    return case


def _manifest_digests(node: Any) -> list[str]:
    """Hex digest values of the manifest's decoded reference values ([alg, hex] pairs)."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "digests" or (
                isinstance(v, list) and k != "measurements" and _is_digest_list(v)
            ):
                found += [d[1] for d in v if _is_digest(d)]
            else:
                found += _manifest_digests(v)
    elif isinstance(node, list):
        for v in node:
            found += _manifest_digests(v)
    return found


def _is_digest(d: Any) -> bool:
    return (
        isinstance(d, list)
        and len(d) == 2
        and isinstance(d[0], str | int)
        and isinstance(d[1], str)
    )


def _is_digest_list(v: list[Any]) -> bool:
    return bool(v) and all(_is_digest(d) for d in v)


def _inspect(case: dict[str, Any]) -> corim.Inspection:
    key = corim.load_key((CORIM / case["key"]).read_bytes()) if case.get("key") else None
    return corim.inspect((CORIM / case["file"]).read_bytes(), key=key)


@pytest.mark.parametrize("case", _cases())
def test_valid_as_the_peers_say(case: dict[str, Any] | None) -> None:
    case = _case_or_skip(case)
    result = _inspect(case)
    assert result.valid == (case["expect"] == "valid"), (result.reasons, case.get("peer_error"))
    if not result.valid:
        assert result.reasons and all(code for code, _ in result.reasons)
        return
    counts = case["counts"]
    got = result.to_json()["counts"]
    assert got["comids"] == counts["comids"]
    assert got["reference_triples"] == counts["reference_triples"]
    assert (
        sum(len(t.measurements) for _, t in result.reference_values)
        == counts["reference_measurements"]
    )
    assert got["attest_key_triples"] == counts["attest_key_triples"]
    assert got["endorsed_triples"] == counts["endorsed_triples"]
    mine = [
        d.value.hex()
        for _, t in result.reference_values
        for m in t.measurements
        for d in m.all_digests()
    ]
    assert Counter(mine) == Counter(_manifest_digests(case["reference_values"]))


def _peer_error_cases() -> list[Any]:
    """Unsigned CoRIMs whose peer test asserts an error text (the scheme profile rules, the tag)."""
    return [
        p
        for p in _cases()
        if p.values[0] is None
        or (p.values[0].get("peer_error") and p.values[0]["kind"].startswith("unsigned-corim"))
    ]


@pytest.mark.parametrize("case", _peer_error_cases())
def test_peer_error_is_named(case: dict[str, Any] | None) -> None:
    """The refusal says what the peer's own test expects it to say."""
    case = _case_or_skip(case)
    result = _inspect(case)
    assert not result.valid
    peer = (
        case["peer_error"].split(" or ")[0].strip('"').removeprefix("submit endorsements failed: ")
    )
    assert peer in result.reasons[0][1]


def test_cli_inspect_json_and_exit_codes(tmp_path: Path) -> None:
    case = _case_or_skip(_cases()[0].values[0])
    del case
    _register()
    runner = CliRunner()
    good = CORIM / "generic" / "veraison-corim_signed-corim-with-extensions.cbor"
    key = CORIM / "generic" / "veraison-corim_src_ec-p256.jwk"
    res = runner.invoke(cli, ["refvalues", "inspect", str(good), "--key", str(key), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["valid"] is True and out["reasons"] == []
    assert out["signer"]["name"] == "ACME Ltd signing key" and out["signer"]["alg"] == "ES256"
    assert len(out["reference_values"]) == 1
    digests = out["reference_values"][0]["measurements"][0]["mval"]["digests"]
    assert all(len(bytes.fromhex(d["value"])) == 32 for d in digests)
    # no key: a signed CoRIM is not trusted
    res = runner.invoke(cli, ["refvalues", "inspect", str(good), "--json"])
    assert res.exit_code == 1
    assert json.loads(res.output)["reasons"][0]["code"] == "corim_signer_untrusted"
    # a profile of another scheme
    snp = CORIM / "sevsnp" / "services_corim-sevsnp-valid.cbor"
    res = runner.invoke(cli, ["refvalues", "inspect", str(snp), "--scheme", "arm-cca", "--json"])
    assert res.exit_code == 1
    assert json.loads(res.output)["reasons"][0]["code"] == "corim_profile_mismatch"
    res = runner.invoke(cli, ["refvalues", "inspect", str(snp), "--scheme", "sevsnp", "--json"])
    assert res.exit_code == 0
    assert len(json.loads(res.output)["reference_values"][0]["measurements"]) == 18
    # usage errors: unknown scheme, missing file, unreadable key
    assert runner.invoke(cli, ["refvalues", "inspect", str(snp), "--scheme", "nope"]).exit_code == 2
    assert (
        runner.invoke(cli, ["refvalues", "inspect", str(tmp_path / "absent.cbor")]).exit_code == 2
    )
    bad_key = tmp_path / "k.pem"
    bad_key.write_text("not a key")
    res = runner.invoke(cli, ["refvalues", "inspect", str(good), "--key", str(bad_key)])
    assert res.exit_code == 2
    # --at enforces the signature's validity (2021-12-31 .. 2025-12-31)
    res = runner.invoke(
        cli,
        [
            "refvalues",
            "inspect",
            str(good),
            "--key",
            str(key),
            "--at",
            "2026-06-01T00:00:00Z",
            "--json",
        ],
    )
    assert res.exit_code == 1
    assert json.loads(res.output)["reasons"][0]["code"] == "corim_expired"
    res = runner.invoke(
        cli, ["refvalues", "inspect", str(good), "--key", str(key), "--at", "2023-06-01T00:00:00Z"]
    )
    assert res.exit_code == 0
