"""The Trustee KBS flow against `veritee serve --tls --workers 2`: each step on a new connection,
so steps land on either worker process; the session travels in its cookie."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import subprocess
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from tests.fakes.service import VERITEE, free_port, run_cli, signed_policy, stop, wait_ready

from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform

M = "cd" * 48
SECRET = b"image key for the kbs test"


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _jwk(sk: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    n = sk.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
            "x": _b64u(n.x.to_bytes(32, "big")), "y": _b64u(n.y.to_bytes(32, "big"))}  # fmt: skip


def test_rcar_flow_across_two_workers_over_https(tmp_path: Path) -> None:
    data = tmp_path / "domain"
    run_cli("init", "--data", str(data))
    platform = SimulatedPlatform(tmp_path / "sim", measurement=M)
    signed = signed_policy(tmp_path, data, platform.key_id, M)
    port = free_port()
    proc = subprocess.Popen(
        [*VERITEE, "serve", "--data", str(data), "--port", str(port), "--tls", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"https://127.0.0.1:{port}"
    tls = ssl.create_default_context(cafile=str(data / "domain_ca.pem"))
    admin = {"Authorization": "Bearer " + Domain.open(data).admin_token()}
    try:
        wait_ready(url, proc, verify=tls)
        run_cli("policy", "install", str(signed), "--data", str(data), "--url", url)
        body = {"value": base64.b64encode(SECRET).decode(),
                "policy": {"allOf": [{"claim": "measurement", "equals": M}]}}  # fmt: skip
        r = httpx.put(f"{url}/v1/admin/secrets/default/key/image", json=body, headers=admin,
                      verify=tls)  # fmt: skip
        assert r.status_code == 200, r.text
        for _ in range(8):
            sk = ec.generate_private_key(ec.SECP256R1())
            # Each step on its own connection: the kernel hands it to either worker.
            with httpx.Client(base_url=url, verify=tls) as c:
                r = c.post("/kbs/v0/auth", json={"version": "0.4.0", "tee": "sample",
                                                 "extra-params": {}})  # fmt: skip
                assert r.status_code == 200, r.text
                assert "secure" in r.headers["set-cookie"].lower()
                challenge, cookie = r.json(), r.cookies["kbs-session-id"]
            runtime = {"tee-pubkey": _jwk(sk), "nonce": challenge["nonce"]}
            # protocol 0.4: the evidence binds the runtime data with "additional-evidence"
            bound = {**runtime, "additional-evidence": ""}
            text = json.dumps(bound, sort_keys=True, separators=(",", ":")).encode()
            evidence = platform.evidence(hashlib.sha384(text).digest().ljust(64, b"\0"))
            attestation = {"runtime-data": runtime, "tee-evidence": {
                "primary_evidence": {"evidence": base64.b64encode(evidence).decode()},
                "additional_evidence": ""}}  # fmt: skip
            with httpx.Client(base_url=url, verify=tls, cookies={"kbs-session-id": cookie}) as c:
                r = c.post("/kbs/v0/attest", json=attestation)
                assert r.status_code == 200, r.text
                cookie = r.cookies["kbs-session-id"]
            with httpx.Client(base_url=url, verify=tls, cookies={"kbs-session-id": cookie}) as c:
                r = c.get("/kbs/v0/resource/default/key/image")
                assert r.status_code == 200, r.text
                assert set(r.json()) >= {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    finally:
        stop(proc, 15)
    r = run_cli("audit", "verify", "--data", str(data))
    assert "intact" in r.stdout
