"""The Azure CVM attester on a software TPM set up as Azure's paravisor sets up the vTPM.

swtpm plays the vTPM: an RSA AK persisted at 0x81000003 and an HCL report at NV 0x01400001 whose
hardware report (an SEV-SNP report from the fake AMD chain, or a TDREPORT) binds the runtime JSON
carrying that AK as ``HCLAkPub``. A local HTTP server answers as the IMDS does (VCEK and chain;
TDREPORT -> TD quote from the fake Intel PKI). The driver's evidence then goes through the
``az-snp-vtpm`` and ``az-tdx-vtpm`` verifiers with those roots pinned.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tests.fakes import amd as amd_fake
from tests.fakes import tee
from tests.fakes.swtpm import running_tpm, swtpm_missing

from veritee.collateral import Collateral
from veritee.errors import PlatformError
from veritee.evidence import azure_tdx_vtpm, azure_vtpm

pytestmark = [pytest.mark.attester]
if swtpm_missing() is not None:
    pytestmark.append(pytest.mark.skip(reason=str(swtpm_missing())))
tss = pytest.importorskip(
    "tpm2_pytss", reason="tpm2-pytss is not installed (make test installs .[tpm])"
)
azure = pytest.importorskip("veritee.platforms.azure")

RD = bytes(range(64))


def _hcl(hw: bytes, report_type: int, runtime: bytes) -> bytes:
    hw = hw + bytes(azure_vtpm.HW_REPORT_AREA - len(hw))
    igvm = struct.pack("<IIIII", 20 + len(runtime), 1, report_type, 1, len(runtime)) + runtime
    header = b"HCLA" + struct.pack("<III", 1, 32 + len(hw) + len(igvm), 2) + bytes(16)
    return header + hw + igvm


def _setup_vtpm(tcti: str, hcl_for: Any) -> None:
    """Persist an RSA AK at 0x81000003 and write hcl_for(runtime JSON) to NV 0x01400001."""
    t = tss
    with t.ESAPI(tcti) as e:
        attrs = (
            t.TPMA_OBJECT.RESTRICTED
            | t.TPMA_OBJECT.SIGN_ENCRYPT
            | t.TPMA_OBJECT.FIXEDTPM
            | t.TPMA_OBJECT.FIXEDPARENT
            | t.TPMA_OBJECT.SENSITIVEDATAORIGIN
            | t.TPMA_OBJECT.USERWITHAUTH
        )
        template = t.TPM2B_PUBLIC.parse("rsa2048:rsassa-sha256:null", objectAttributes=attrs)
        handle, public, *_ = e.create_primary(t.TPM2B_SENSITIVE_CREATE(), template, t.ESYS_TR.OWNER)
        e.evict_control(t.ESYS_TR.OWNER, handle, azure.AK_HANDLE)
        e.flush_context(handle)
        n = bytes(public.publicArea.unique.rsa)
        b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
        runtime = json.dumps({"keys": [{"kid": "HCLAkPub", "kty": "RSA", "e": b64(b"\x01\x00\x01"), "n": b64(n)}],
                              "vm-configuration": {"secure-boot": True}}).encode()  # fmt: skip
        hcl = hcl_for(runtime)
        nv_public = t.TPM2B_NV_PUBLIC(nvPublic=t.TPMS_NV_PUBLIC(
            nvIndex=azure.HCL_REPORT_INDEX, nameAlg=t.TPM2_ALG.SHA256,
            attributes=t.TPMA_NV.OWNERREAD | t.TPMA_NV.OWNERWRITE | t.TPMA_NV.NO_DA,
            dataSize=len(hcl)))  # fmt: skip
        nv = e.nv_define_space(b"", nv_public, auth_handle=t.ESYS_TR.OWNER)
        for off in range(0, len(hcl), 512):
            e.nv_write(nv, hcl[off : off + 512], off, auth_handle=t.ESYS_TR.OWNER)


class _Imds(http.server.BaseHTTPRequestHandler):
    answers: dict[tuple[str, str], Any] = {}

    def _answer(self, method: str) -> None:
        if self.headers.get("Metadata") != "true":
            self.send_response(400)
            self.end_headers()
            return
        body = (
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if method == "POST"
            else b""
        )
        make = self.answers.get((method, self.path))
        if make is None:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(make(json.loads(body) if body else None)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[tuple[str, dict[tuple[str, str], Any]]]:
    answers: dict[tuple[str, str], Any] = {}
    handler = type("Imds", (_Imds,), {"answers": answers})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()
        server.server_close()


def test_az_snp_vtpm_evidence_verifies(tmp_path: Path, imds: Any) -> None:
    url, answers = imds
    chain = amd_fake.make_chain()
    base = amd_fake.make_report(chain)

    def hcl_for(runtime: bytes) -> bytes:
        bound = hashlib.sha256(runtime).digest() + bytes(32)
        return _hcl(
            tee._resign_snp(chain, base, bound, bytes(32)), azure_vtpm.REPORT_TYPE_SNP, runtime
        )

    pem = serialization.Encoding.PEM
    answers[("GET", azure.THIM_PATH)] = lambda _: {
        "vcekCert": chain.leaf.public_bytes(pem).decode(),
        "certificateChain": (chain.ask.public_bytes(pem) + chain.ark.public_bytes(pem)).decode(),
    }
    with running_tpm(tmp_path / "vtpm", tmp_path / "ca") as tpm:
        _setup_vtpm(tpm.tcti, hcl_for)
        platform = azure.AzureCvmPlatform(
            tcti=tpm.tcti, state_dir=tmp_path / "state", imds_url=url, event_log=None
        )
        assert platform.name == "az-snp-vtpm"
        ev = platform.evidence(RD)
        collateral = Collateral.from_blobs(platform.collateral().items())
        verified = azure_vtpm.verify(ev, collateral=collateral, trust=chain.trust(), at=amd_fake.AT)
        assert verified.claims["report_data"] == RD.hex() and verified.claims["vtpm"] is True
        assert verified.claims["measurement"] == platform.measurement
        assert platform.describe()["format"] == "az-snp-vtpm"
        # A vTPM quote over other report data does not pass for this one.
        other = json.loads(ev)
        other["tpm_quote"] = json.loads(platform.evidence(bytes(64)))["tpm_quote"]
        assert azure_vtpm.verify(json.dumps(other).encode(), collateral=collateral, trust=chain.trust(),
                                 at=amd_fake.AT).claims["report_data"] == "00" * 64  # fmt: skip
        # Without an IMDS there is no VCEK: a clear platform error.
        answers.clear()
        with pytest.raises(PlatformError) as e:
            platform.evidence(RD)
        assert e.value.code == "platform_refused"


def test_az_tdx_vtpm_evidence_verifies(tmp_path: Path, imds: Any) -> None:
    url, answers = imds
    maker = tee.tdx()
    runtimes: list[bytes] = []

    def hcl_for(runtime: bytes) -> bytes:
        runtimes.append(runtime)
        tdreport = bytearray(1024)
        tdreport[512 + 16 : 512 + 64] = b"\x11" * 48  # MRTD
        return _hcl(bytes(tdreport), azure_vtpm.REPORT_TYPE_TDX, runtime)

    def td_quote(body: dict[str, Any]) -> dict[str, Any]:
        assert len(base64.urlsafe_b64decode(body["report"] + "==")) == 1024
        quote, _ = maker.generate(hashlib.sha256(runtimes[0]).digest() + bytes(32), 0)
        return {"quote": base64.urlsafe_b64encode(quote).decode().rstrip("=")}

    answers[("POST", azure.TDQUOTE_PATH)] = td_quote
    with running_tpm(tmp_path / "vtpm", tmp_path / "ca") as tpm:
        _setup_vtpm(tpm.tcti, hcl_for)
        platform = azure.AzureCvmPlatform(
            tcti=tpm.tcti, state_dir=tmp_path / "state", imds_url=url, event_log=None
        )
        assert platform.name == "az-tdx-vtpm"
        ev = platform.evidence(RD)
        verified = azure_tdx_vtpm.verify(
            ev, collateral=maker.collateral, trust=maker.trust, at=maker.at
        )
        assert verified.claims["report_data"] == RD.hex() and verified.claims["platform"] == "tdx"
        assert platform.measurement == "11" * 48


def test_hcl_report_of_unknown_type_is_a_platform_error() -> None:
    with pytest.raises(PlatformError):
        azure.hcl_report_type(b"HCLA" + bytes(2000))
    with pytest.raises(PlatformError):
        azure.hcl_report_type(b"")
