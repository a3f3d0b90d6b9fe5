"""Stand-in AMD KDS / Intel PCS / PCCS servers for tests: real HTTP servers on 127.0.0.1 (a
thread, port 0) that serve the real test-vector collateral at the vendors' paths, and can be
told to fail (a status, a garbage body, a delay longer than the client's timeout).

Routes are built from the test vectors independently of the fetcher: the Intel ones from a
collateral JSON of the test vectors (the PCS API v4 paths and issuer-chain headers), the AMD
ones from the VCEK certificate's own TCB and hwID extensions.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from tests.conftest import TESTVECTORS, testvectors_dir


@dataclass
class Route:
    status: int
    body: bytes
    headers: dict[str, str]
    delay: float = 0.0


class StandIn:
    """A tiny vendor server: exact path+query -> Route; anything else 404. Counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(self.path)
                    route = server.routes.get(self.path, Route(404, b"not found", {}))
                if route.delay:
                    time.sleep(route.delay)
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Length", str(len(route.body)))
                    for k, v in route.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def add(self, path: str, body: bytes, headers: dict[str, str] | None = None, status: int = 200,
            delay: float = 0.0) -> None:  # fmt: skip
        with self._lock:
            self.routes[path] = Route(status, body, headers or {}, delay)

    def set(self, path: str, **changes: Any) -> None:
        """Change one route (status, body, delay) keeping the rest."""
        with self._lock:
            r = self.routes[path]
            self.routes[path] = Route(**{**r.__dict__, **changes})

    def count(self, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.startswith(prefix))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- Intel PCS / PCCS -----------------------------------------------------------------------------

ROOT_CRL_PATH = "/IntelSGXRootCA.der"
PCCS_ROOT_CRL_PATH = "/sgx/certification/v4/rootcacrl"


def intel_set(name: str) -> dict[str, str]:
    """A DCAP collateral JSON of the test vectors (``tdx/..._collateral.json``)."""
    testvectors_dir()  # skips, saying so, where ../shared/testvectors is absent
    doc: dict[str, str] = json.loads((TESTVECTORS / name).read_text())
    return doc


def _q(pem: str) -> str:
    return urllib.parse.quote(pem, safe="")


def intel_paths(tee: str, fmspc: str, ca: str) -> dict[str, str]:
    return {
        "pck_crl": f"/sgx/certification/v4/pckcrl?ca={ca}&encoding=der",
        "tcb_info": f"/{tee}/certification/v4/tcb?fmspc={fmspc}",
        "qe_identity": f"/{tee}/certification/v4/qe/identity",
    }


def serve_intel(server: StandIn, tee: str, fmspc: str, ca: str, coll: dict[str, str], *,
                pccs: bool = False) -> None:  # fmt: skip
    """Serve one collateral set as PCS (or a PCCS: the root CA CRL hex-encoded at its path)."""
    paths = intel_paths(tee, fmspc, ca)
    server.add(paths["pck_crl"], bytes.fromhex(coll["pck_crl"]),
               {"SGX-PCK-CRL-Issuer-Chain": _q(coll["pck_crl_issuer_chain"])})  # fmt: skip
    tcb = '{"tcbInfo":' + coll["tcb_info"] + ',"signature":"' + coll["tcb_info_signature"] + '"}'
    server.add(
        paths["tcb_info"],
        tcb.encode(),
        {"TCB-Info-Issuer-Chain": _q(coll["tcb_info_issuer_chain"])},
    )
    qe = (
        '{"enclaveIdentity":'
        + coll["qe_identity"]
        + ',"signature":"'
        + coll["qe_identity_signature"]
        + '"}'
    )
    server.add(paths["qe_identity"], qe.encode(),
               {"SGX-Enclave-Identity-Issuer-Chain": _q(coll["qe_identity_issuer_chain"])})  # fmt: skip
    if pccs:
        server.add(PCCS_ROOT_CRL_PATH, coll["root_ca_crl"].encode())
    else:
        server.add(ROOT_CRL_PATH, bytes.fromhex(coll["root_ca_crl"]))


# --- AMD KDS ------------------------------------------------------------------------------------

AMD_OID = "1.3.6.1.4.1.3704.1."


def vcek_route(der: bytes, product: str) -> str:
    """The KDS path of a VCEK, read from the certificate's own extensions (spec 57230)."""
    with warnings.catch_warnings():  # AMD VCEKs carry serial number 0
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        cert = x509.load_der_x509_certificate(der)
    f: dict[str, Any] = {}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if oid.startswith(AMD_OID):
            raw = ext.value.value  # type: ignore[attr-defined]
            key = oid[len(AMD_OID) :]
            f[key] = raw if key == "4" else int.from_bytes(raw[2:], "big")
    spl = f"blSPL={f['3.1']}&teeSPL={f['3.2']}&snpSPL={f['3.3']}&ucodeSPL={f['3.8']}"
    if "3.9" in f:
        spl = f"fmcSPL={f['3.9']}&" + spl
    return f"/vcek/v1/{product}/{f['4'].hex()}?{spl}"


def serve_amd(server: StandIn, vcek_file: str, product: str = "Milan") -> tuple[bytes, Path]:
    """Serve a VCEK of the test vectors and its product's ASK+ARK chain (no CRL: 404)."""
    testvectors_dir()
    vcek = (TESTVECTORS / vcek_file).read_bytes()
    server.add(vcek_route(vcek, product), vcek)
    chain = TESTVECTORS / "sev-snp" / f"amd_{product.lower()}_vcek_ask_ark.pem"
    server.add(f"/vcek/v1/{product}/cert_chain", chain.read_bytes())
    return vcek, chain
