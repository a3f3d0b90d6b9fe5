"""A local HTTP server standing in for AMD KDS and Intel PCS: it serves test-vector files at
their KDS/PCS paths, so collateral fetching runs against real HTTP with no outside network.

:class:`FileServer` runs in a thread on 127.0.0.1 (port 0) and answers exact path+query routes
(anything else 404), recording every request. Its routes are built independently of the
fetcher: the VCEK route from the VCEK certificate's own TCB and hwID extensions
(:func:`vcek_route`, :func:`serve_amd`), the Intel routes from the PCS response files of the test
vectors (:func:`serve_intel`, :func:`serve_sgx_sample`). Helpers that read test vectors skip
the test, saying so, where ../shared/testvectors is absent.

Example::

    server = FileServer()
    try:
        quote, _ = serve_sgx_sample(server)
        fetch_collateral(quote, CollateralCache(tmp_path), config_for(server))
    finally:
        server.close()
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from tests.conftest import TESTVECTORS, testvectors_dir

from veritee.collateral.fetch import FetchConfig

__all__ = [
    "ROOT_CRL_PATH",
    "FileServer",
    "config_for",
    "quoted",
    "serve_amd",
    "serve_intel",
    "serve_sgx_sample",
    "vcek_fields",
    "vcek_route",
]

Route = tuple[int, bytes, dict[str, str]]


class FileServer:
    """A tiny HTTP server: exact path+query -> (status, body, headers); anything else 404."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, body, headers = server.routes.get(self.path, (404, b"not found", {}))
                self.send_response(status)
                if "Content-Length" not in headers and "X-No-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def add(
        self, path: str, body: bytes, headers: dict[str, str] | None = None, status: int = 200
    ) -> None:
        """Answer GET ``path`` (with its query, exactly) with ``status``, ``body`` and ``headers``."""
        self.routes[path] = (status, body, headers or {})

    def close(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()


# --- routes built from the vectors, independently of the fetcher --------------------------------

AMD_OID = "1.3.6.1.4.1.3704.1."


def vcek_fields(der: bytes) -> dict[str, Any]:
    """The AMD extensions of a VCEK certificate by OID suffix (TCB SPLs as ints, hwID as bytes)."""
    with warnings.catch_warnings():  # AMD's VCEKs carry a serial of 0 (veritee.certs loads them so)
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        cert = x509.load_der_x509_certificate(der)
    out: dict[str, Any] = {}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if not oid.startswith(AMD_OID):
            continue
        raw = ext.value.value  # type: ignore[attr-defined]
        key = oid[len(AMD_OID) :]
        out[key] = raw if key == "4" else int.from_bytes(raw[2:], "big")
    return out


def vcek_route(der: bytes, product: str) -> str:
    """The KDS path of a VCEK, from the certificate's own TCB and hwID extensions."""
    f = vcek_fields(der)
    spl = f"blSPL={f['3.1']}&teeSPL={f['3.2']}&snpSPL={f['3.3']}&ucodeSPL={f['3.8']}"
    if "3.9" in f:
        spl = f"fmcSPL={f['3.9']}&" + spl
    return f"/vcek/v1/{product}/{f['4'].hex()}?{spl}"


def serve_amd(
    server: FileServer, vcek: bytes, product: str = "Milan", *, crl: bytes | None = None
) -> None:
    """Serve ``vcek``, the product's ASK/ARK chain from the test vectors and optionally its CRL."""
    server.add(vcek_route(vcek, product), vcek)
    testvectors_dir()  # skips, saying so, where ../shared/testvectors is absent
    chain = (TESTVECTORS / "sev-snp" / f"amd_{product.lower()}_vcek_ask_ark.pem").read_bytes()
    server.add(f"/vcek/v1/{product}/cert_chain", chain)
    if crl is not None:
        server.add(f"/vcek/v1/{product}/crl", crl)


def quoted(pem: str) -> str:
    """``pem`` URL-encoded, as PCS sends issuer chains in its headers."""
    return urllib.parse.quote(pem, safe="")


ROOT_CRL_PATH = "/IntelSGXRootCA.der"


def serve_intel(server: FileServer, tee: str, fmspc: str, ca: str, coll: dict[str, str]) -> None:
    """Serve PCS-shaped responses rebuilt from a test-vector collateral JSON."""
    server.add(
        f"/sgx/certification/v4/pckcrl?ca={ca}&encoding=der",
        bytes.fromhex(coll["pck_crl"]),
        {"SGX-PCK-CRL-Issuer-Chain": quoted(coll["pck_crl_issuer_chain"])},
    )
    tcb_body = (
        '{"tcbInfo":' + coll["tcb_info"] + ',"signature":"' + coll["tcb_info_signature"] + '"}'
    )
    server.add(
        f"/{tee}/certification/v4/tcb?fmspc={fmspc}",
        tcb_body.encode(),
        {"TCB-Info-Issuer-Chain": quoted(coll["tcb_info_issuer_chain"])},
    )
    qe_body = (
        '{"enclaveIdentity":'
        + coll["qe_identity"]
        + ',"signature":"'
        + coll["qe_identity_signature"]
        + '"}'
    )
    server.add(
        f"/{tee}/certification/v4/qe/identity",
        qe_body.encode(),
        {"SGX-Enclave-Identity-Issuer-Chain": quoted(coll["qe_identity_issuer_chain"])},
    )
    server.add(ROOT_CRL_PATH, bytes.fromhex(coll["root_ca_crl"]))


def config_for(server: FileServer, **kw: Any) -> FetchConfig:
    """A fetch configuration whose KDS, PCS and Intel root CRL are ``server``."""
    return FetchConfig(
        amd_kds=server.url,
        intel_pcs=server.url,
        intel_root_crl=server.url + ROOT_CRL_PATH,
        timeout=5,
        **kw,
    )


def serve_sgx_sample(server: FileServer) -> tuple[bytes, dict[str, str]]:
    """Serve the PCS responses of the SGX v3 test vector; its quote and collateral JSON."""
    testvectors_dir()  # skips, saying so, where ../shared/testvectors is absent
    quote = (TESTVECTORS / "sgx" / "dcapqvl_sgx_quote_v3.bin").read_bytes()
    coll = json.loads((TESTVECTORS / "sgx" / "dcapqvl_sgx_quote_v3_collateral.json").read_text())
    serve_intel(server, "sgx", "00A067110000", "processor", coll)
    return quote, coll
