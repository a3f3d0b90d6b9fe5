"""Issue 12 items 5-10 against `veritee serve --tls --workers 2`, as guest-components' KBS
client and Trustee's token verifier see it (tests/kbs_guest.py): JWE headers a guest can
re-serialize, P-521 and RSA tee keys, Trustee's status codes and type names, the session's
token on a second /attest, init-data that the evidence does not bind, the EAR layout, and
hostile bodies answered 401, never 500."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.fakes.service import VERITEE, free_port, run_cli, signed_policy, stop, wait_ready
from tests.kbs_guest import (
    TEE_PUBKEY_PATH_EAR,
    attestation,
    b64ud,
    guest_decrypt,
    pointer,
    request,
    tee_jwk,
    token_claims,
)

from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform

M = "ef" * 48
SECRET = b"image key for the trustee compatibility test"
PREFIX = "https://github.com/confidential-containers/kbs/errors/"
RESOURCE = "/kbs/v0/resource/default/key/image"


@pytest.fixture(scope="module")
def kbs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, ssl.SSLContext, SimulatedPlatform]]:
    tmp = tmp_path_factory.mktemp("kbs")
    data = tmp / "domain"
    run_cli("init", "--data", str(data))
    platform = SimulatedPlatform(tmp / "sim", measurement=M)
    signed = signed_policy(tmp, data, platform.key_id, M)
    port = free_port()
    proc = subprocess.Popen(
        [*VERITEE, "serve", "--data", str(data), "--port", str(port), "--tls", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"https://127.0.0.1:{port}"
    tls = ssl.create_default_context(cafile=str(data / "domain_ca.pem"))
    try:
        wait_ready(url, proc, verify=tls)
        run_cli("policy", "install", str(signed), "--data", str(data), "--url", url)
        admin = {"Authorization": "Bearer " + Domain.open(data).admin_token()}
        body = {"value": base64.b64encode(SECRET).decode(),
                "policy": {"allOf": [{"claim": "measurement", "equals": M}]}}  # fmt: skip
        r = httpx.put(
            f"{url}/v1/admin/secrets/default/key/image", json=body, headers=admin, verify=tls
        )
        assert r.status_code == 200, r.text
        yield url, tls, platform
    finally:
        stop(proc, 15)


def _client(kbs: tuple[str, ssl.SSLContext, SimulatedPlatform]) -> httpx.Client:
    url, tls, _ = kbs
    return httpx.Client(base_url=url, verify=tls, timeout=30)


@contextlib.contextmanager
def _session(
    kbs: tuple[str, ssl.SSLContext, SimulatedPlatform], sk: Any, **kw: Any
) -> Iterator[tuple[httpx.Client, Any]]:
    """/auth then /attest on one client (its cookie jar holds the session), as a guest does."""
    with _client(kbs) as c:
        r = c.post("/kbs/v0/auth", json=request())
        assert r.status_code == 200, r.text
        body = attestation(kbs[2].evidence, r.json(), tee_jwk(sk), **kw)
        yield c, c.post("/kbs/v0/attest", json=body)


def _is_error(r: httpx.Response, status: int, problem: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == PREFIX + problem and r.json()["detail"], r.text


@pytest.mark.parametrize(
    "make_key",
    [lambda: ec.generate_private_key(ec.SECP256R1()), lambda: ec.generate_private_key(ec.SECP521R1()),
     lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)],
    ids=["P-256", "P-521", "RSA-OAEP-256"],
)  # fmt: skip
def test_guest_gets_and_decrypts_the_resource(kbs: Any, make_key: Any) -> None:
    """Items 5 and 6: the guest's AAD is the re-serialized header; P-521 keys work."""
    sk = make_key()
    with _session(kbs, sk) as (c, r):
        assert r.status_code == 200, r.text
        r = c.get(RESOURCE)
        assert r.status_code == 200, r.text
        assert guest_decrypt(r.json(), sk) == SECRET


def test_second_attest_and_token_layout(kbs: Any) -> None:
    """Items 7 and 9: the session's token again; the TEE key at Trustee's EAR path."""
    sk = ec.generate_private_key(ec.SECP256R1())
    with _session(kbs, sk) as (c, first):
        assert first.status_code == 200, first.text
        token = first.json()["token"]
        challenge_body = attestation(
            kbs[2].evidence, {"nonce": "x", "extra-params": ""}, tee_jwk(sk)
        )
        for _ in range(4):  # each POST may land on either worker
            again = c.post("/kbs/v0/attest", json=challenge_body)
            assert again.status_code == 200 and again.json()["token"] == token, again.text
    claims = token_claims(token)
    assert pointer(claims, TEE_PUBKEY_PATH_EAR) == tee_jwk(sk) == claims["cnf"]["jwk"]
    assert (
        claims["aud"] == "veritee/kbs"
        and claims["submods"]["cpu0"]["ear.status"] != "contraindicated"
    )
    assert json.loads(b64ud(token.split(".")[0]))["typ"] == "eat+jwt"


def test_status_codes_and_type_names(kbs: Any) -> None:
    """Item 7: 401 everywhere but a bad path or an unknown plugin (404)."""
    with _client(kbs) as c:
        _is_error(c.get(RESOURCE), 401, "TokenNotFound")
        _is_error(c.post("/kbs/v0/auth", json=request(version="0.3.0")), 401, "AttestationError")
        _is_error(c.post("/kbs/v0/attest", json={}), 401, "AttestationError")
        _is_error(c.get("/kbs/v0/resource/default/key"), 404, "InvalidRequestPath")
        _is_error(c.get("/kbs/v0/nebula-ca/credential"), 404, "PluginNotFound")
        _is_error(
            c.get(RESOURCE, headers={"Authorization": "Bearer a.b.c"}), 401, "TokenVerifierError"
        )
    sk = ec.generate_private_key(ec.SECP256R1())
    with _session(kbs, sk) as (c, r):
        assert r.status_code == 200
        _is_error(c.get("/kbs/v0/resource/default/key/absent"), 401, "PluginInternalError")
        _is_error(c.post(RESOURCE, content=b"new value"), 401, "AdminAuthAccess")


def test_unbound_init_data_and_unsigned_devices_are_refused(kbs: Any) -> None:
    """Item 8: the simulated evidence binds no init-data; a sample device is never appraised OK."""
    sk = ec.generate_private_key(ec.SECP256R1())
    init = 'algorithm = "sha256"\nversion = "0.1.0"\n[data]\n"aa.toml" = "x"\n'
    with _session(kbs, sk, init_data=init) as (c, r):
        _is_error(r, 401, "AttestationError")
        assert "init-data" in r.json()["detail"]
        _is_error(c.get(RESOURCE), 401, "TokenNotFound")
    with _session(kbs, sk, additional='{"sampledevice":{"svn":"1"}}') as (c, r):
        _is_error(r, 401, "AttestationError")


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"version": ' + b"7" * 5000 + b', "tee": "sample"}'],
    ids=["nested", "long-int"],
)
def test_hostile_bodies_are_401(kbs: Any, body: bytes) -> None:
    """Item 10: these were 500s."""
    with _client(kbs) as c:
        headers = {"content-type": "application/json"}
        _is_error(c.post("/kbs/v0/auth", content=body, headers=headers), 401, "AttestationError")
        assert c.post("/kbs/v0/auth", json=request()).status_code == 200
        _is_error(c.post("/kbs/v0/attest", content=body, headers=headers), 401, "AttestationError")
