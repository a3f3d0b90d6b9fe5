"""`veritee refvalues add | list | show | withdraw` against a real service (uvicorn in a thread):
signed and unsigned CoRIMs, expiry, withdrawal, every change in the audit chain."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tests.conftest import TESTVECTORS

from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.service.app import create_app
from veritee.service.runner import start_in_thread
from veritee.service.settings import Settings

_register()
CORIM = TESTVECTORS / "corim"


def _vector(name: str) -> bytes:
    path = CORIM / name
    if not path.is_file():
        pytest.skip(f"CoRIM test vectors not found at {CORIM} (../shared/testvectors is absent)")
    return path.read_bytes()


def _sign(payload: bytes, jwk: dict[str, Any]) -> bytes:
    d = int.from_bytes(base64.urlsafe_b64decode(jwk["d"] + "=" * (-len(jwk["d"]) % 4)), "big")
    key = ec.derive_private_key(d, ec.SECP256R1())
    meta = cbor2.dumps({0: {0: "ACME Ltd signing key"}})
    prot = cbor2.dumps({1: -7, 3: "application/rim+cbor", 8: meta})
    r, s = decode_dss_signature(
        key.sign(cbor2.dumps(["Signature1", prot, b"", payload]), ec.ECDSA(hashes.SHA256()))
    )
    return bytes(
        cbor2.dumps(
            cbor2.CBORTag(18, [prot, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")])
        )
    )


def test_add_list_show_withdraw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    jwk_file = CORIM / "generic" / "veraison-corim_src_ec-p256.jwk"
    unsigned = _vector("sevsnp/services_corim-sevsnp-valid.cbor")
    signed = tmp_path / "snp-signed.cbor"
    signed.write_bytes(
        _sign(unsigned, json.loads(_vector("generic/veraison-corim_src_ec-p256.jwk")))
    )
    plain = tmp_path / "snp.cbor"
    plain.write_bytes(unsigned)
    expired = CORIM / "generic" / "veraison-corim_signed-corim-with-extensions.cbor"
    domain = Domain.create(tmp_path / "domain", name="refvalues", now=dt.datetime.now(dt.UTC))
    app = create_app(Settings(data_dir=domain.path))
    server = start_in_thread(app)
    runner = CliRunner()
    args = ["--url", server.url, "--data", str(domain.path)]
    try:
        r = runner.invoke(
            cli,
            ["refvalues", "add", str(signed), "--set", "snp-fleet", "--key", str(jwk_file), *args],
        )
        assert r.exit_code == 0 and "added: #1 to set snp-fleet" in r.output, r.output
        assert "signer ACME Ltd signing key" in r.output
        r = runner.invoke(
            cli,
            ["refvalues", "add", str(signed), "--set", "snp-fleet", "--key", str(jwk_file), *args],
        )
        assert r.exit_code == 0 and "already registered: #1" in r.output, r.output
        # unsigned: refused unless the admin vouches for it
        r = runner.invoke(cli, ["refvalues", "add", str(plain), "--set", "snp-dev", *args])
        assert r.exit_code == 1 and "corim_signer_untrusted" in r.output, r.output
        r = runner.invoke(cli, ["refvalues", "add", str(plain), "--set", "snp-dev", "--allow-unsigned",
                                "--expires", "2099-01-01T00:00:00Z", "--json", *args])  # fmt: skip
        assert r.exit_code == 0, r.output
        added = json.loads(r.output)
        assert (
            added["signer"] is None
            and added["expires_at"].startswith("2099-01-01")
            and added["id"] == 2
        )
        # a wrong key, an expired signature, a profile of another scheme, a bad set name
        other = tmp_path / "other.pem"
        other.write_text('{"kty": "EC", "crv": "P-256", "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", '
                         '"y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}')  # fmt: skip
        r = runner.invoke(
            cli, ["refvalues", "add", str(expired), "--set", "x", "--key", str(other), *args]
        )
        assert r.exit_code == 1 and "corim_expired" in r.output, r.output
        r = runner.invoke(cli, ["refvalues", "add", str(plain), "--set", "x", "--allow-unsigned",
                                "--scheme", "arm-cca", *args])  # fmt: skip
        assert r.exit_code == 1 and "corim_profile_mismatch" in r.output, r.output
        r = runner.invoke(
            cli, ["refvalues", "add", str(plain), "--set", "Bad Name", "--allow-unsigned", *args]
        )
        assert r.exit_code == 2 and "set names" in r.output, r.output
        garbage = tmp_path / "garbage.cbor"
        garbage.write_bytes(unsigned[:-9])
        r = runner.invoke(
            cli, ["refvalues", "add", str(garbage), "--set", "x", "--allow-unsigned", *args]
        )
        assert r.exit_code == 1 and "truncated" in r.output, r.output
        # list, show
        r = runner.invoke(cli, ["refvalues", "list", *args])
        assert (
            r.exit_code == 0
            and "1\tsnp-fleet\tactive" in r.output
            and "2\tsnp-dev\tactive" in r.output
        )
        r = runner.invoke(cli, ["refvalues", "list", "--set", "snp-dev", "--json", *args])
        assert [s["id"] for s in json.loads(r.output)["sources"]] == [2]
        r = runner.invoke(cli, ["refvalues", "show", "1", "--json", *args])
        shown = json.loads(r.output)
        assert (
            shown["sha256"]
            and shown["signer_key_sha256"]
            and shown["file_name"] == "snp-signed.cbor"
        )
        assert len(shown["values"]) == shown["entries"] > 0
        assert runner.invoke(cli, ["refvalues", "show", "99", *args]).exit_code == 1
        # the set as appraisal sees it, then withdrawn
        ctx = app.state.ctx
        fleet = ctx.refvalue_set("snp-fleet")
        assert (
            len(fleet) == len({v["value"] for v in shown["values"]})
            and fleet.match(shown["values"][0]["value"]).id == 1
        )
        r = runner.invoke(cli, ["refvalues", "withdraw", "1", "--reason", "superseded", *args])
        assert r.exit_code == 0 and "withdrawn: #1 of set snp-fleet" in r.output, r.output
        r = runner.invoke(cli, ["refvalues", "withdraw", "1", *args])
        assert "already withdrawn" in r.output
        assert len(ctx.refvalue_set("snp-fleet")) == 0
        r = runner.invoke(cli, ["refvalues", "list", "--set", "snp-fleet", *args])
        assert "\twithdrawn\t" in r.output
        # every change is in the audit chain, which verifies
        with ctx.storage.transaction(readonly=True) as tx:
            kinds = [e.kind for e in tx.audit_entries(limit=1000)]
            assert tx.verify_audit_chain().ok
        assert kinds.count("refvalues.add") == 2 and kinds.count("refvalues.withdraw") == 1
        r = runner.invoke(cli, ["refvalues", "list", "--url", server.url, "--admin-token", "wrong",
                                "--data", str(domain.path)])  # fmt: skip
        assert r.exit_code == 1 and "admin_invalid" in r.output
    finally:
        server.stop()


def test_add_with_a_trust_anchor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CoRIM signed by a certificate: the service checks its x5chain against the admin's CA at
    the current time (the peers' test PKI is valid 2026-06-19 .. 2031)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    pki = "generic/veraison-corim_testdata_"
    leaf, inter = _vector(pki + "endEntity.der"), _vector(pki + "intermediateCA.der")
    root = x509.load_der_x509_certificate(_vector(pki + "rootCA.der"))
    key = serialization.load_pem_private_key(_vector(pki + "endEntity.key"), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    payload = _vector("sevsnp/services_corim-sevsnp-valid.cbor")
    prot = cbor2.dumps(
        {
            1: -7,
            3: "application/rim+cbor",
            8: cbor2.dumps({0: {0: "Acme Gizmos"}}),
            33: [leaf, inter],
        }
    )
    r, s = decode_dss_signature(
        key.sign(cbor2.dumps(["Signature1", prot, b"", payload]), ec.ECDSA(hashes.SHA256()))
    )
    signed = tmp_path / "x5.cbor"
    signed.write_bytes(
        cbor2.dumps(
            cbor2.CBORTag(18, [prot, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")])
        )
    )
    anchor = tmp_path / "root.pem"
    anchor.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    domain = Domain.create(tmp_path / "domain", name="x5", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path)))
    runner = CliRunner()
    args = ["--url", server.url, "--data", str(domain.path)]
    try:
        r = runner.invoke(
            cli,
            [
                "refvalues",
                "add",
                str(signed),
                "--set",
                "snp",
                "--trust-anchor",
                str(anchor),
                "--json",
                *args,
            ],
        )
        if dt.datetime.now(dt.UTC) < dt.datetime(2026, 6, 20, tzinfo=dt.UTC):
            pytest.skip("the peers' test PKI is not valid yet on this clock")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["signer"] == "Acme Gizmos"
        r = runner.invoke(cli, ["refvalues", "add", str(signed), "--set", "snp2", *args])
        assert r.exit_code == 1 and "corim_signer_untrusted" in r.output
        bad = tmp_path / "leaf.pem"
        bad.write_bytes(
            x509.load_der_x509_certificate(leaf).public_bytes(serialization.Encoding.PEM)
        )
        r = runner.invoke(
            cli,
            ["refvalues", "add", str(signed), "--set", "snp3", "--trust-anchor", str(bad), *args],
        )
        assert r.exit_code == 2 and "not a CA" in r.output, r.output
    finally:
        server.stop()
