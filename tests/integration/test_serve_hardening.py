"""`veritee serve` hardening (issue 12 item 15), against the real server.

- trailing-slash redirects took their Location from the client's Host header;
- the admin credential was kept in plaintext by the service (it now keeps a salted HMAC);
- TLS 1.2 offered CBC suites (AEAD only now);
- the KBS cookie lacked Secure behind a TLS-terminating proxy (``--trusted-proxy``).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.fakes.service import VERITEE, run_cli, serving

from veritee.domain import ADMIN_TOKEN, ADMIN_VERIFIER, Domain
from veritee.tls import client_context

KBS_REQUEST = {"version": "0.4.0", "tee": "sample", "extra-params": {}}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "domain"
    run_cli("init", "--data", str(folder))
    return folder


def test_no_redirect_to_the_clients_host_and_forwarded_proto_only_from_trusted_proxies(
    data: Path,
) -> None:
    with serving(data) as url:
        r = httpx.get(url + "/v1/domain/ca/", headers={"Host": "evil.example"})
        assert r.status_code == 404 and "location" not in r.headers
        # not a trusted proxy: a client cannot claim https
        r = httpx.post(
            url + "/kbs/v0/auth", json=KBS_REQUEST, headers={"X-Forwarded-Proto": "https"}
        )
        assert r.status_code == 200 and "secure" not in r.headers["set-cookie"].lower()
    with serving(data, "--trusted-proxy", "127.0.0.0/8") as url:
        r = httpx.post(
            url + "/kbs/v0/auth", json=KBS_REQUEST, headers={"X-Forwarded-Proto": "https"}
        )
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
        r = httpx.post(url + "/kbs/v0/auth", json=KBS_REQUEST)
        assert r.status_code == 200 and "secure" not in r.headers["set-cookie"].lower()
    r = subprocess.run([*VERITEE, "serve", "--data", str(data), "--trusted-proxy", "somewhere"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0 and "--trusted-proxy" in r.stderr


def test_tls_12_offers_aead_suites_only(data: Path) -> None:
    with serving(data, tls=True) as url:
        port = int(url.rsplit(":", 1)[1])

        def handshake(ciphers: str) -> str:
            ctx = ssl.create_default_context(cafile=str(data / "domain_ca.pem"))
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(ciphers)
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    cipher = tls.cipher()
                    assert cipher is not None
                    return cipher[0]

        for cbc in (
            "ECDHE-ECDSA-AES128-SHA256",
            "ECDHE-ECDSA-AES256-SHA384",
            "ECDHE-ECDSA-AES256-SHA",
        ):
            with pytest.raises(ssl.SSLError):
                handshake(cbc)
        assert handshake("ECDHE-ECDSA-AES256-GCM-SHA384") == "ECDHE-ECDSA-AES256-GCM-SHA384"
        assert handshake("ECDHE-ECDSA-CHACHA20-POLY1305") == "ECDHE-ECDSA-CHACHA20-POLY1305"
    tls12 = [c["name"] for c in client_context().get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all("GCM" in c or "CHACHA20" in c for c in tls12), tls12


def test_the_service_keeps_a_verifier_not_the_admin_credential(data: Path, tmp_path: Path) -> None:
    token = (data / ADMIN_TOKEN).read_text().strip()
    assert token not in (data / ADMIN_VERIFIER).read_text()
    shutil.move(data / ADMIN_TOKEN, tmp_path / "operator-copy")  # off the server
    with serving(data) as url:
        assert (
            httpx.get(
                url + "/v1/admin/audit", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        assert (
            httpx.get(
                url + "/v1/admin/audit", headers={"Authorization": f"Bearer {wrong}"}
            ).status_code
            == 401
        )
    for path in data.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_a_folder_of_an_earlier_build_gets_its_verifier_on_start(data: Path) -> None:
    """Earlier builds kept only the plaintext credential: the first open makes its verifier."""
    token = (data / ADMIN_TOKEN).read_text().strip()
    (data / ADMIN_VERIFIER).unlink()
    with serving(data) as url:
        assert (
            httpx.get(
                url + "/v1/admin/audit", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )
    doc = json.loads((data / ADMIN_VERIFIER).read_text())
    assert doc["alg"] == "hmac-sha256" and token not in json.dumps(doc)
    assert Domain.open(data).check_admin(token) and not Domain.open(data).check_admin(token + "x")
