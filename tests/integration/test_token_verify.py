"""`veritee token verify` and OIDC discovery against a real service (uvicorn over TLS in a
thread, and one `veritee serve` subprocess): valid, malformed, truncated, tampered, expired,
not-yet-valid, other-key, other-issuer and contraindicated tokens; PyJWT's PyJWKClient through
the discovery document."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.appraisal import load_policy, sign_policy
from veritee.binding import report_data_for
from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import DEFAULT_ISSUER, Settings
from veritee.service.tls import server_certificate_files
from veritee.tokens import sign_jwt

_register()
GOOD = "ab" * 48
OTHER = "cd" * 48


@dataclass
class Served:
    url: str
    domain: Domain
    ca: Path
    platform_dir: Path
    server: RunningServer

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca))
        )

    def token(self, measurement: str = GOOD, audience: str | None = None) -> str:
        platform = SimulatedPlatform(self.platform_dir, measurement=measurement)
        with self.client() as c:
            nonce = bytes.fromhex(c.post("/v1/challenge").json()["nonce"])
            ev = platform.evidence(report_data_for(nonce, b"", profile=platform.profile))
            body: dict[str, Any] = {"evidence": base64.b64encode(ev).decode(), "nonce": nonce.hex(),
                                    "format": "simulated"}  # fmt: skip
            if audience:
                body["audience"] = audience
            r = c.post("/v1/attest", json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


def _serve(tmp: Path, issuer: str | None) -> Iterator[Served]:
    domain = Domain.create(tmp / "domain", name="tok", now=dt.datetime.now(dt.UTC))
    cert, key = server_certificate_files(domain.path, "127.0.0.1")
    with socket.socket() as s:  # the issuer names the port: chosen first
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"https://127.0.0.1:{port}"
    settings = Settings(data_dir=domain.path, policy_cache_seconds=0,
                        issuer=url if issuer == "url" else issuer or DEFAULT_ISSUER)  # fmt: skip
    app = create_app(settings)
    server = start_in_thread(app, port=port, ssl_certfile=str(cert), ssl_keyfile=str(key))
    platform_dir = tmp / "sim"
    key_id = SimulatedPlatform(platform_dir, measurement=GOOD).key_id
    doc = {"version": 1, "name": "tok", "platforms": {"simulated": {
        "measurements": [GOOD], "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip
    envelope = sign_policy(load_policy(json.dumps(doc)), domain.policy_key)
    served = Served(url, domain, domain.path / "domain_ca.pem", platform_dir, server)
    with served.client() as c:
        r = c.put("/v1/admin/policy", content=envelope,
                  headers={"Authorization": f"Bearer {domain.admin_token()}"})  # fmt: skip
        assert r.status_code == 200, r.text
    try:
        yield served
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("tokens"), issuer="url")


@pytest.fixture(scope="module")
def good_token(served: Served) -> str:
    return served.token()


def _verify(
    served: Served, *args: str, input: str | None = None
) -> tuple[int, dict[str, Any] | str]:
    r = CliRunner().invoke(cli, ["token", "verify", *args, "--url", served.url, "--ca", str(served.ca)],
                           input=input)  # fmt: skip
    if "--json" in args and r.exit_code in (0, 1):
        return r.exit_code, json.loads(r.stdout)
    return r.exit_code, r.output


def _flip(segment: str) -> str:
    """A base64url segment with one character changed (still base64url)."""
    i = len(segment) // 2
    return segment[:i] + ("A" if segment[i] != "A" else "B") + segment[i + 1 :]


def test_valid_token_prints_status_and_claims(served: Served, good_token: str) -> None:
    code, out = _verify(served, good_token, "--json")
    assert code == 0, out
    assert isinstance(out, dict)
    assert out["valid"] is True and out["status"] == "warning" and out["reasons"] == []
    assert out["issuer_checked"] is True and out["audience_checked"] is False
    assert out["kid"] == served.domain.token_kid
    assert out["claims"]["iss"] == served.url
    sub = out["claims"]["submods"]["simulated"]
    assert sub["ear.veraison.annotated-evidence"]["measurement"] == GOOD
    assert out["submods"]["simulated"]["status"] == "warning"
    code, text = _verify(served, good_token)
    assert code == 0 and isinstance(text, str)
    assert "VALID EAR token  status: warning" in text and f"measurement: {GOOD}" in text
    assert "(not checked: --audience)" in text


def test_token_from_file_and_stdin(served: Served, good_token: str, tmp_path: Path) -> None:
    f = tmp_path / "t.jwt"
    f.write_text(good_token + "\n")
    assert _verify(served, f"@{f}")[0] == 0
    assert _verify(served, "-", input=good_token + "\n")[0] == 0
    code, out = _verify(served, f"@{tmp_path / 'absent'}")
    assert code == 2 and "cannot read the token file" in str(out)


def test_jwks_file_instead_of_url(served: Served, good_token: str, tmp_path: Path) -> None:
    with served.client() as c:
        jwks = c.get("/.well-known/jwks.json").content
    f = tmp_path / "jwks.json"
    f.write_bytes(jwks)
    r = CliRunner().invoke(cli, ["token", "verify", good_token, "--jwks", str(f), "--json",
                                 "--issuer", served.url, "--audience", served.url])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["issuer_checked"] and out["audience_checked"] and out["status"] == "warning"
    # without --issuer, a JWKS file alone cannot tell the issuer: the token's own is shown, unchecked
    r = CliRunner().invoke(cli, ["token", "verify", good_token, "--jwks", str(f), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["issuer_checked"] is False
    for bad, why in ((b"[]", "not usable"), (b"{\"keys\": [{\"kty\": \"EC\"}]}", "not usable"),
                     (b"not json", "not JSON"), (b'{"keys": []}', "no EC")):  # fmt: skip
        f.write_bytes(bad)
        r = CliRunner().invoke(cli, ["token", "verify", good_token, "--jwks", str(f)])
        assert r.exit_code == 2 and why in r.output, (bad, r.output)


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda t: "", "malformed"),
        (lambda t: "not-a-jwt", "malformed"),
        (lambda t: "a.b.c", "malformed"),
        (lambda t: t.rsplit(".", 1)[0], "malformed"),  # truncated: no signature part
        (lambda t: t[: len(t) // 2], "malformed"),  # truncated mid-payload
        (lambda t: t[:-8], "malformed"),  # truncated signature: not an ES256 one
        (lambda t: ".".join([t.split(".")[0], _flip(t.split(".")[1]), t.split(".")[2]]), None),
        (lambda t: ".".join([*t.split(".")[:2], _flip(t.split(".")[2])]), "ear_signature_invalid"),
        (lambda t: t + "x" * (300 * 1024), "oversized"),
    ],
)
def test_malformed_truncated_and_tampered_tokens_are_invalid(
    served: Served, good_token: str, mutate: Any, code: str | None
) -> None:
    exit_code, out = _verify(served, mutate(good_token), "--json")
    assert exit_code == 1, out
    assert isinstance(out, dict) and out["valid"] is False and out["claims"] is None
    codes = [r["code"] for r in out["reasons"]]
    # a flipped payload character either breaks its JSON or its signature; both refuse
    assert codes == [code] if code else codes[0] in ("ear_signature_invalid", "malformed"), codes


def test_payload_tampered_to_another_measurement(served: Served, good_token: str) -> None:
    header, payload, sig = good_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["submods"]["simulated"]["ear.veraison.annotated-evidence"]["measurement"] = OTHER
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    code, out = _verify(served, f"{header}.{forged}.{sig}", "--json")
    assert code == 1 and isinstance(out, dict)
    assert [r["code"] for r in out["reasons"]] == ["ear_signature_invalid"]


def test_expired_and_not_yet_valid(served: Served, good_token: str) -> None:
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()
    code, out = _verify(served, good_token, "--json", "--at", later)
    assert code == 1 and isinstance(out, dict) and out["reasons"][0]["code"] == "ear_expired"
    earlier = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
    code, out = _verify(served, good_token, "--json", "--at", earlier)
    assert code == 1 and isinstance(out, dict) and out["reasons"][0]["code"] == "ear_not_yet_valid"
    code, text = _verify(served, good_token, "--at", later)
    assert code == 1 and "INVALID EAR token" in str(text) and "[ear_expired]" in str(text)
    # within the leeway it passes
    near = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31)).isoformat()
    assert _verify(served, good_token, "--at", near, "--leeway", "300")[0] == 0


def test_wrong_key(served: Served, good_token: str) -> None:
    payload = jwt.decode(good_token, options={"verify_signature": False})
    other = ec.generate_private_key(ec.SECP256R1())
    # another domain's key and kid: not in this domain's JWKS
    code, out = _verify(served, sign_jwt(payload, other, kid="other-domain"), "--json")
    assert code == 1 and isinstance(out, dict) and out["reasons"][0]["code"] == "ear_key_unknown"
    # this domain's kid, but signed by another key
    code, out = _verify(served, sign_jwt(payload, other, kid=served.domain.token_kid), "--json")
    assert (
        code == 1 and isinstance(out, dict) and out["reasons"][0]["code"] == "ear_signature_invalid"
    )
    # signed by this domain's token key but not an EAR (the audit anchor's typ)
    forged = sign_jwt(
        payload, served.domain.token_key, kid=served.domain.token_kid, typ="veritee-audit-head+jwt"
    )
    code, out = _verify(served, forged, "--json")
    assert code == 1 and isinstance(out, dict) and out["reasons"][0]["code"] == "ear_type_invalid"


def test_issuer_and_audience(served: Served) -> None:
    token = served.token(audience="https://rp.example")
    assert _verify(served, token, "--audience", "https://rp.example")[0] == 0
    code, out = _verify(served, token, "--json", "--audience", "https://other.example")
    assert (
        code == 1 and isinstance(out, dict) and out["reasons"][0]["code"] == "ear_audience_mismatch"
    )
    code, out = _verify(served, token, "--json", "--issuer", "someone-else")
    assert (
        code == 1 and isinstance(out, dict) and out["reasons"][0]["code"] == "ear_issuer_mismatch"
    )


def test_contraindicated_token_is_not_valid(served: Served) -> None:
    token = served.token(measurement=OTHER)
    code, out = _verify(served, token, "--json")
    assert code == 1 and isinstance(out, dict)
    assert out["status"] == "contraindicated" and out["valid"] is False
    assert out["claims"] is not None  # authentic: it records the refusal
    assert [r["code"] for r in out["reasons"]] == ["ear_contraindicated"]
    assert any(
        r["code"] == "measurement_not_allowed" for r in out["submods"]["simulated"]["reasons"]
    )
    code, text = _verify(served, token)
    assert (
        code == 1
        and "status: contraindicated" in str(text)
        and "[measurement_not_allowed]" in str(text)
    )


def test_usage_errors(served: Served, good_token: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["token", "verify", good_token])
    assert r.exit_code == 2 and "--url SERVICE or --jwks FILE" in r.output
    r = CliRunner().invoke(cli, ["token", "verify", good_token, "--url", served.url])
    assert r.exit_code == 2 and "needs --ca" in r.output
    other = Domain.create(tmp_path / "other", now=dt.datetime.now(dt.UTC))
    r = CliRunner().invoke(cli, ["token", "verify", good_token, "--url", served.url,
                                 "--ca", str(other.path / "domain_ca.pem")])  # fmt: skip
    assert (
        r.exit_code == 2 and f"did not verify against CA {other.path / 'domain_ca.pem'}" in r.output
    )
    r = CliRunner().invoke(cli, ["token", "verify", good_token, "--url", "http://127.0.0.1:1"])
    assert r.exit_code == 2 and "cannot reach the service" in r.output
    r = CliRunner().invoke(cli, ["token", "verify", good_token, "--url", served.url, "--ca",
                                 str(served.ca), "--at", "yesterday"])  # fmt: skip
    assert r.exit_code == 2


def test_discovery_document_and_pyjwkclient(served: Served, good_token: str) -> None:
    """An off-the-shelf JWT library verifies an EAR through the discovery document alone."""
    with served.client() as c:
        doc = c.get("/.well-known/openid-configuration").json()
        jwks = c.get("/.well-known/jwks.json").json()
    assert doc["issuer"] == served.url
    assert doc["jwks_uri"] == served.url + "/.well-known/jwks.json"
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    assert doc["response_types_supported"] == ["id_token"] and doc["subject_types_supported"] == [
        "public"
    ]
    assert {"iss", "aud", "exp", "submods"} <= set(doc["claims_supported"])
    assert [k["kid"] for k in jwks["keys"]] == [served.domain.token_kid]
    ctx = ssl.create_default_context(cafile=str(served.ca))
    client = jwt.PyJWKClient(doc["jwks_uri"], ssl_context=ctx)
    key = client.get_signing_key_from_jwt(good_token)
    claims = jwt.decode(good_token, key.key, algorithms=doc["id_token_signing_alg_values_supported"],
                        issuer=doc["issuer"], audience=doc["issuer"])  # fmt: skip
    assert claims["submods"]["simulated"]["ear.status"] == "warning"
    header, payload, sig = good_token.split(".")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{header}.{payload}.{_flip(sig)}", key.key, algorithms=["ES256"],
                   issuer=doc["issuer"], audience=doc["issuer"])  # fmt: skip


def test_discovery_without_a_url_issuer(tmp_path: Path) -> None:
    """With the default issuer (not a URL) the JWKS is named under the URL the request reached."""
    for served in _serve(tmp_path, issuer=None):
        with served.client() as c:
            doc = c.get("/.well-known/openid-configuration").json()
        assert doc["issuer"] == "veritee"
        assert doc["jwks_uri"] == served.url + "/.well-known/jwks.json"
        token = served.token()
        assert _verify(served, token)[0] == 0  # the issuer is taken from the discovery document


def test_real_serve_with_issuer_option(tmp_path: Path) -> None:
    """`veritee serve --tls --issuer URL`: discovery, PyJWKClient and `veritee token verify`."""
    from tests.fakes.service import free_port, stop, wait_ready

    data = tmp_path / "domain"
    Domain.create(data, now=dt.datetime.now(dt.UTC))  # as `veritee init` makes it
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "veritee.cli", "serve", "--data", str(data), "--port", str(port), "--tls",
         "--issuer", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(data / "domain_ca.pem"))
    try:
        wait_ready(url, proc, verify=ctx)
        doc = httpx.get(url + "/.well-known/openid-configuration", verify=ctx).json()
        assert doc["issuer"] == url and doc["jwks_uri"] == url + "/.well-known/jwks.json"
        domain = Domain.open(data)
        served = Served(url, domain, data / "domain_ca.pem", tmp_path / "sim", None)  # type: ignore[arg-type]
        token = served.token()  # no policy installed: a refusal, still a token of this issuer
        key = jwt.PyJWKClient(doc["jwks_uri"], ssl_context=ctx).get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key.key, algorithms=["ES256"], issuer=url, audience=url)
        assert claims["submods"]["simulated"]["ear.status"] == "contraindicated"
        r = CliRunner().invoke(cli, ["token", "verify", token, "--url", url, "--ca", str(data / "domain_ca.pem"),
                                     "--json"])  # fmt: skip
        assert r.exit_code == 1 and json.loads(r.stdout)["status"] == "contraindicated"
        assert json.loads(r.stdout)["issuer_checked"] is True
    finally:
        stop(proc)
