"""Collateral fetching against a local HTTP server that serves test-vector files at KDS/PCS paths.

No outside network: the server runs in a thread on 127.0.0.1 (port 0). Its routes are built
independently of the fetcher: the VCEK route comes from the VCEK certificate's own TCB and hwID
extensions, the Intel routes from the PCS response files of the test vectors.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from tests.conftest import TESTVECTORS, manifest_cases, testvectors_dir
from tests.fakes.pcs import (
    ROOT_CRL_PATH,
    FileServer,
    config_for,
    quoted,
    serve_amd,
    serve_intel,
    serve_sgx_sample,
    vcek_fields,
    vcek_route,
)

from veritee import evidence
from veritee.collateral import Collateral
from veritee.collateral.cache import CollateralCache
from veritee.collateral.fetch import (
    DcapTarget,
    FetchConfig,
    SnpTarget,
    fetch_collateral,
    kds_vcek_url,
    raw_json_member,
    target_for,
)
from veritee.errors import CollateralError, MalformedError, UsageError, VeriteeError


@pytest.fixture
def server() -> Iterator[FileServer]:
    s = FileServer()
    yield s
    s.close()


def _at(case: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))


def _outcome(data: bytes, coll: Collateral, at: datetime) -> tuple[str, Any]:
    try:
        return "ok", evidence.verify(data, collateral=coll, at=at).claims
    except UsageError as e:
        pytest.skip(f"verifier not available yet: {e}")
    except VeriteeError as e:
        return type(e).__name__, e.code


def _module_or_skip(fmt: str) -> None:
    try:
        evidence._module(fmt)
    except UsageError:
        pytest.skip(f"evidence format {fmt} is not importable yet (a colleague is writing it)")


# --- targets ------------------------------------------------------------------------------------


def test_targets_of_real_samples(testvectors: Path) -> None:
    t = target_for((testvectors / "tdx" / "gotdxguest_tdx_prod_quote_SPR_E4_v4.bin").read_bytes())
    assert t == DcapTarget("tdx", "50806F000000", "platform")
    s = target_for((testvectors / "sgx" / "dcapqvl_sgx_quote_v3.bin").read_bytes())
    assert s == DcapTarget("sgx", "00A067110000", "processor")
    r = target_for((testvectors / "sev-snp" / "azure_milan_v3_report.bin").read_bytes())
    assert isinstance(r, SnpTarget) and r.product == "Milan" and r.signing_key == "vcek"
    v = target_for((testvectors / "sev-snp" / "trustee_vlek_report.bin").read_bytes())
    assert isinstance(v, SnpTarget) and v.signing_key == "vlek"
    assert (
        target_for((testvectors / "sev-snp" / "virtee_milan_report.bin").read_bytes()).product
        is None
    )  # type: ignore[union-attr]


def test_nitro_and_junk_targets(testvectors: Path) -> None:
    with pytest.raises(UsageError, match="Nitro"):
        target_for((testvectors / "nitro" / "nitrite_attestation.cbor").read_bytes())
    for junk in (
        b"",
        b"\x00" * 7,
        b"\xff" * 2000,
        b"\x04\x00\x02\x00\x81\x00\x00\x00" + b"\x00" * 100,
    ):
        with pytest.raises(MalformedError):
            target_for(junk)


def test_turin_url_uses_short_hwid_and_fmc(
    testvectors: Path, server: FileServer, tmp_path: Path
) -> None:
    vcek = (testvectors / "sev-snp" / "virtee_turin_vcek.der").read_bytes()
    f = vcek_fields(vcek)
    assert len(f["4"]) == 8
    # A synthetic Turin v3 report header: family 1Ah, CHIP_ID = hwID + zeros, TCB of the VCEK.
    report = bytearray(0x4A0)
    report[0] = 3
    report[0x188], report[0x189] = 0x1A, 0x02
    report[0x1A0 : 0x1A0 + 8] = f["4"]
    report[0x180:0x188] = bytes([f["3.9"], f["3.1"], f["3.2"], f["3.3"], 0, 0, 0, f["3.8"]])
    target = target_for(bytes(report))
    assert isinstance(target, SnpTarget) and target.product == "Turin"
    url = kds_vcek_url("https://kds", "Turin", target.chip_id, target.reported_tcb)
    assert url == "https://kds" + vcek_route(vcek, "Turin")
    serve_amd(server, vcek, "Turin", crl=None)
    items = fetch_collateral(
        bytes(report), CollateralCache(tmp_path), config_for(server, require_crl=False)
    )
    assert [i.kind for i in items] == ["vcek", "vcek_cert_chain"]
    assert (tmp_path / items[0].path).read_bytes() == vcek


# --- AMD ----------------------------------------------------------------------------------------

SNP_VCEK_CASES = [
    c
    for c in manifest_cases("sev-snp")
    if any("vcek" in p and p.endswith(".der") for p in c["collateral"])
]


@pytest.mark.parametrize("case", SNP_VCEK_CASES, ids=lambda c: c["evidence"])
def test_amd_fetch_lands_in_cache_and_verifies(
    case: dict[str, Any], server: FileServer, tmp_path: Path
) -> None:
    report = (TESTVECTORS / case["evidence"]).read_bytes()
    vcek_path = next(p for p in case["collateral"] if p.endswith(".der"))
    vcek = (TESTVECTORS / vcek_path).read_bytes()
    serve_amd(server, vcek)
    cache = CollateralCache(tmp_path / "cache")
    items = fetch_collateral(report, cache, config_for(server, require_crl=False))
    assert [i.kind for i in items] == ["vcek", "vcek_cert_chain"]
    assert (cache.root / items[0].path).read_bytes() == vcek
    assert items[0].path.startswith("amd/Milan/vcek/")
    assert len(cache.load().certificates) == 3
    assert server.requests[-1] == "/vcek/v1/Milan/crl"  # asked, 404, tolerated here
    # End to end: the cache verifies exactly like the manifest's collateral.
    _module_or_skip("sev-snp")
    expected = _outcome(
        report, Collateral.from_paths([TESTVECTORS / p for p in case["collateral"]]), _at(case)
    )
    assert _outcome(report, Collateral.from_paths([cache.root]), _at(case)) == expected


def test_amd_crl_is_fetched_and_required(
    testvectors: Path, server: FileServer, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    report = (testvectors / "sev-snp" / "azure_milan_v3_report.bin").read_bytes()
    vcek = (testvectors / "sev-snp" / "azure_milan_v3_vcek.der").read_bytes()
    serve_amd(server, vcek)
    cache = CollateralCache(tmp_path)
    with pytest.raises(CollateralError) as e:
        fetch_collateral(report, cache, config_for(server))
    assert e.value.code == "fetch_http_status"
    assert cache.files() == []  # nothing written when one part is missing
    key = ec.generate_private_key(ec.SECP384R1())
    now = datetime(2025, 1, 1)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name.from_rfc4514_string("CN=ARK-Milan"))
        .last_update(now)
        .next_update(now)
        .sign(key, hashes.SHA384())
        .public_bytes(Encoding.DER)
    )
    server.add("/vcek/v1/Milan/crl", crl)
    items = fetch_collateral(report, cache, config_for(server))
    assert [i.kind for i in items] == ["vcek", "vcek_cert_chain", "vcek_crl"]
    assert len(cache.load().crls) == 1


def test_v2_report_falls_back_to_genoa(
    testvectors: Path, server: FileServer, tmp_path: Path
) -> None:
    report = (testvectors / "sev-snp" / "virtee_milan_report.bin").read_bytes()
    vcek = (testvectors / "sev-snp" / "virtee_milan_vcek.der").read_bytes()
    server.add(vcek_route(vcek, "Genoa"), vcek)
    server.add(
        "/vcek/v1/Genoa/cert_chain",
        (testvectors / "sev-snp" / "amd_genoa_vcek_ask_ark.pem").read_bytes(),
    )
    items = fetch_collateral(
        report, CollateralCache(tmp_path), config_for(server, require_crl=False)
    )
    assert items[0].path.startswith("amd/Genoa/")
    assert server.requests[0].startswith("/vcek/v1/Milan/")


def test_vlek_report_fetches_vlek_chain(
    testvectors: Path, server: FileServer, tmp_path: Path
) -> None:
    report = (testvectors / "sev-snp" / "trustee_vlek_report.bin").read_bytes()
    server.add(
        "/vlek/v1/Milan/cert_chain",
        (testvectors / "sev-snp" / "amd_milan_vlek_asvk_ark.pem").read_bytes(),
    )
    items = fetch_collateral(
        report, CollateralCache(tmp_path), config_for(server, require_crl=False)
    )
    assert [i.kind for i in items] == ["vlek_cert_chain"]
    assert all(r.startswith("/vlek/") for r in server.requests)


# --- Intel --------------------------------------------------------------------------------------


def test_intel_fetch_from_pcs_response_files(
    testvectors: Path, server: FileServer, tmp_path: Path
) -> None:
    """Serve go-tdx-guest's PCS responses as PCS would; the cache must equal the manifest JSON."""
    tdx = testvectors / "tdx"
    server.add(
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
        (tdx / "gotdxguest_pckcrl.der").read_bytes(),
        {
            "SGX-PCK-CRL-Issuer-Chain": quoted(
                (tdx / "gotdxguest_pckcrl_issuer_chain.pem").read_text()
            )
        },
    )
    chain = quoted((tdx / "gotdxguest_tcbinfo_qeidentity_issuer_chain.pem").read_text())
    server.add(
        "/tdx/certification/v4/tcb?fmspc=50806F000000",
        (tdx / "gotdxguest_tcbinfo_v3_response.json").read_bytes(),
        {"TCB-Info-Issuer-Chain": chain},
    )
    server.add(
        "/tdx/certification/v4/qe/identity",
        (tdx / "gotdxguest_qeidentity_response.json").read_bytes(),
        {"SGX-Enclave-Identity-Issuer-Chain": chain},
    )
    server.add(ROOT_CRL_PATH, (tdx / "gotdxguest_rootcrl.der").read_bytes())
    cache = CollateralCache(tmp_path)
    quote = (tdx / "gotdxguest_tdx_prod_quote_SPR_E4_v4.bin").read_bytes()
    items = fetch_collateral(quote, cache, config_for(server))
    assert [i.path for i in items] == ["intel/tdx/50806F000000-platform.json"]
    got = json.loads((tmp_path / items[0].path).read_text())
    want = json.loads((tdx / "gotdxguest_tdx_prod_quote_SPR_E4_v4_collateral.json").read_text())
    assert got == want


INTEL_CASES = [c for c in manifest_cases() if c["format"] in ("tdx", "sgx")]


@pytest.mark.parametrize("case", INTEL_CASES, ids=lambda c: f"{c['evidence']}@{c['verify_at']}")
def test_intel_fetch_round_trip_and_verifies(
    case: dict[str, Any], server: FileServer, tmp_path: Path
) -> None:
    quote = (TESTVECTORS / case["evidence"]).read_bytes()
    coll = json.loads((TESTVECTORS / case["collateral"][0]).read_text())
    target = target_for(quote)
    assert isinstance(target, DcapTarget)
    serve_intel(server, target.tee, target.fmspc, target.pck_ca, coll)
    cache = CollateralCache(tmp_path)
    items = fetch_collateral(quote, cache, config_for(server))
    assert len(items) == 1
    assert json.loads((tmp_path / items[0].path).read_text()) == coll
    _module_or_skip(case["format"])
    expected = _outcome(
        quote, Collateral.from_paths([TESTVECTORS / case["collateral"][0]]), _at(case)
    )
    assert _outcome(quote, Collateral.from_paths([cache.root]), _at(case)) == expected


def test_intel_root_crl_url_from_distribution_point() -> None:
    """Without --intel-root-crl the root CRL comes from the Intel SGX Root CA's CRL DP."""
    from veritee.collateral.fetch import _root_crl_url

    testvectors_dir()
    coll = json.loads((TESTVECTORS / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json").read_text())
    url = _root_crl_url(coll["qe_identity_issuer_chain"])
    assert url == "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"


# --- failures -----------------------------------------------------------------------------------


def test_404_writes_nothing(server: FileServer, tmp_path: Path) -> None:
    quote, _ = serve_sgx_sample(server)
    del server.routes["/sgx/certification/v4/qe/identity"]
    cache = CollateralCache(tmp_path)
    with pytest.raises(CollateralError) as e:
        fetch_collateral(quote, cache, config_for(server))
    assert e.value.code == "fetch_http_status" and "404" in str(e.value)
    assert cache.files() == []


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
def test_oversized_response(server: FileServer, tmp_path: Path, declared: bool) -> None:
    quote, _ = serve_sgx_sample(server)
    path = "/sgx/certification/v4/pckcrl?ca=processor&encoding=der"
    headers = dict(server.routes[path][2])
    if not declared:
        headers["X-No-Length"] = "1"
        headers["Connection"] = "close"
    server.add(path, b"\x30" * 200_000, headers)
    with pytest.raises(CollateralError) as e:
        fetch_collateral(quote, CollateralCache(tmp_path), config_for(server, max_bytes=100_000))
    assert e.value.code == "fetch_oversized"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "path",
    [
        "/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
        "/sgx/certification/v4/tcb?fmspc=00A067110000",
        "/sgx/certification/v4/qe/identity",
        ROOT_CRL_PATH,
    ],
)
def test_garbage_body(server: FileServer, tmp_path: Path, path: str) -> None:
    quote, _ = serve_sgx_sample(server)
    server.add(path, b"<html>garbage</html>", server.routes[path][2])
    with pytest.raises(CollateralError) as e:
        fetch_collateral(quote, CollateralCache(tmp_path), config_for(server))
    assert e.value.code == "fetch_malformed"
    assert list(tmp_path.iterdir()) == []


def test_missing_issuer_chain_header(server: FileServer, tmp_path: Path) -> None:
    quote, _ = serve_sgx_sample(server)
    path = "/sgx/certification/v4/tcb?fmspc=00A067110000"
    server.add(path, server.routes[path][1], {})
    with pytest.raises(CollateralError, match="TCB-Info-Issuer-Chain"):
        fetch_collateral(quote, CollateralCache(tmp_path), config_for(server))


def test_tcb_info_for_another_fmspc(server: FileServer, tmp_path: Path) -> None:
    quote, _ = serve_sgx_sample(server)
    path = "/sgx/certification/v4/tcb?fmspc=00A067110000"
    body = server.routes[path][1].replace(b'"fmspc":"00A067110000"', b'"fmspc":"00906EA10000"')
    assert body != server.routes[path][1]
    server.add(path, body, server.routes[path][2])
    with pytest.raises(CollateralError, match="FMSPC"):
        fetch_collateral(quote, CollateralCache(tmp_path), config_for(server))


def test_amd_garbage_vcek(testvectors: Path, server: FileServer, tmp_path: Path) -> None:
    report = (testvectors / "sev-snp" / "azure_milan_v3_report.bin").read_bytes()
    vcek = (testvectors / "sev-snp" / "azure_milan_v3_vcek.der").read_bytes()
    serve_amd(server, vcek)
    server.add(vcek_route(vcek, "Milan"), b"garbage")
    with pytest.raises(CollateralError) as e:
        fetch_collateral(report, CollateralCache(tmp_path), config_for(server, require_crl=False))
    assert e.value.code == "fetch_malformed"


def test_server_down(testvectors: Path, tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    report = (testvectors / "sev-snp" / "azure_milan_v3_report.bin").read_bytes()
    with pytest.raises(CollateralError) as e:
        fetch_collateral(report, CollateralCache(tmp_path), FetchConfig(amd_kds=url, timeout=2))
    assert e.value.code == "fetch_unreachable"
    assert list(tmp_path.iterdir()) == []


# --- raw JSON member ----------------------------------------------------------------------------


def test_raw_json_member_keeps_exact_bytes() -> None:
    text = ' { "a" : {"x": 1,  "y":[1, 2]} , "signature":"ab", "z": null }\n'
    assert raw_json_member(text, "a") == '{"x": 1,  "y":[1, 2]}'
    assert raw_json_member(text, "signature") == '"ab"'
    for bad in ["{}", "[]", '{"a":1', '{"a":1}x', '{"a":1,"a":2}', '{"b":1}', "{1:2}", '{"a" 1}']:
        with pytest.raises(ValueError):
            raw_json_member(bad, "a")


# --- CLI ----------------------------------------------------------------------------------------


def _cli() -> Any:
    from veritee.cli import collateral
    from veritee.cli.main import cli

    collateral.register(cli)
    return cli


def test_cli_fetch(server: FileServer, tmp_path: Path) -> None:
    quote, coll = serve_sgx_sample(server)
    ev = tmp_path / "quote.bin"
    ev.write_bytes(quote)
    cache = tmp_path / "cache"
    args = [
        "collateral",
        "fetch",
        str(ev),
        "--cache",
        str(cache),
        "--intel-pcs",
        server.url,
        "--intel-root-crl",
        server.url + ROOT_CRL_PATH,
        "--json",
    ]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["cache"] == str(cache)
    (item,) = out["fetched"]
    assert item["kind"] == "sgx_collateral"
    assert json.loads(Path(item["path"]).read_text()) == coll
    plain = CliRunner().invoke(_cli(), args[:-1])
    assert plain.exit_code == 0 and "sgx_collateral" in plain.output


def test_cli_exit_codes(testvectors: Path, tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    report = testvectors / "sev-snp" / "azure_milan_v3_report.bin"
    down = CliRunner().invoke(
        _cli(),
        [
            "collateral",
            "fetch",
            str(report),
            "--cache",
            str(tmp_path),
            "--amd-kds",
            f"http://127.0.0.1:{port}",
            "--timeout",
            "2",
        ],
    )
    assert down.exit_code == 2 and "fetch_unreachable" in down.output
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    bad = CliRunner().invoke(_cli(), ["collateral", "fetch", str(junk), "--cache", str(tmp_path)])
    assert bad.exit_code == 1 and "malformed" in bad.output
    nitro = CliRunner().invoke(
        _cli(),
        [
            "collateral",
            "fetch",
            str(testvectors / "nitro" / "nitrite_attestation.cbor"),
            "--cache",
            str(tmp_path),
        ],
    )
    assert nitro.exit_code == 2 and "Nitro" in nitro.output


def _crl_at(this_update: datetime) -> bytes:
    """A CRL (of a throwaway key) with the given thisUpdate: only its time matters here."""
    from datetime import timedelta

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Intel SGX PCK Processor CA")])
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(this_update)
           .next_update(this_update + timedelta(days=30)).sign(key, hashes.SHA256()))  # fmt: skip
    return crl.public_bytes(Encoding.DER)


def _bump(raw_json: str, by: int) -> str:
    body = json.loads(raw_json)
    body["tcbEvaluationDataNumber"] += by
    return json.dumps(body, separators=(",", ":"))


def test_a_replayed_older_pcs_response_never_replaces_newer_cached_parts(
    server: FileServer, tmp_path: Path
) -> None:
    """Issue 11 item 3 (never rolled back, as python-tuf): the cache keeps the newer of each
    part; a fetch only moves each part forward."""
    from datetime import UTC

    quote, served = serve_sgx_sample(server)
    cache = CollateralCache(tmp_path)
    path = "intel/sgx/00A067110000-processor.json"
    later = _crl_at(datetime(2030, 1, 1, tzinfo=UTC)).hex()
    newer = {**served, "tcb_info": _bump(served["tcb_info"], +1), "tcb_info_signature": "00" * 64,
             "pck_crl": later, "pck_crl_issuer_chain": "newer chain"}  # fmt: skip
    cache.write(path, json.dumps(newer).encode())
    items = fetch_collateral(quote, cache, config_for(server))
    assert [i.path for i in items] == [path]
    stored = json.loads((tmp_path / path).read_text())
    for key in ("tcb_info", "tcb_info_signature", "pck_crl", "pck_crl_issuer_chain"):
        assert stored[key] == newer[key], key  # kept: the cache's is newer
    for key in ("qe_identity", "qe_identity_signature", "root_ca_crl"):
        assert stored[key] == served[key], key  # the fetched one (same version) is written
    older = {**served, "tcb_info": _bump(served["tcb_info"], -1),
             "pck_crl": _crl_at(datetime(2001, 1, 1, tzinfo=UTC)).hex()}  # fmt: skip
    cache.write(path, json.dumps(older).encode())
    fetch_collateral(quote, cache, config_for(server))
    assert json.loads((tmp_path / path).read_text()) == served  # older parts move forward
    # A cached AMD CRL with a later thisUpdate stays; an unreadable cached file is replaced.
    from veritee.collateral.fetch import never_older

    amd = "amd/Milan/vcek_crl.der"
    cache.write(amd, _crl_at(datetime(2030, 1, 1, tzinfo=UTC)))
    fetched = _crl_at(datetime(2026, 1, 1, tzinfo=UTC))
    assert never_older(cache, amd, fetched) == (tmp_path / amd).read_bytes()
    cache.write(amd, b"junk")
    assert never_older(cache, amd, fetched) == fetched
