"""Verify the verifier (issue 17.2): the Certifier Service attests itself (simulated platform),
`GET /v1/domain/evidence` binds the keys it signs with and its TLS key, and the SDK
(`Trust(service_policy=...)`) and `veritee token verify --require-service-evidence` refuse it,
fail closed with their reason codes, when the evidence is missing, tampered, bound to other keys,
of a measurement not allowed, or stale after the keys rotated. Against the real app over TLS
(uvicorn in a thread) and one `veritee serve --attest-self simulated` subprocess."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import Trust
from veritee.appraisal import load_policy, sign_policy
from veritee.binding import service_report_data
from veritee.domain import Domain
from veritee.errors import VerificationError
from veritee.platforms.measure import measure
from veritee.platforms.simulated import SimulatedPlatform
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings
from veritee.service.tls import server_certificate_files
from veritee.service_proof import (
    KeysInUse,
    ServiceEvidenceError,
    thumbprint,
    verify_service_evidence,
)

WORKLOAD = "ab" * 48
NOW = dt.datetime.now(dt.UTC)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_policy(platform_dir: Path, measurement: str | None = None) -> str:
    """The relying party's policy of the service: the veritee package it runs, its platform key."""
    key_id = SimulatedPlatform(platform_dir, measurement=WORKLOAD).key_id
    return json.dumps({"version": 1, "name": "certifier", "platforms": {"simulated": {
        "measurements": [measurement or measure("veritee")], "platform_keys": [key_id], "allow_debug": True}}})  # fmt: skip


@dataclass
class Service:
    url: str
    domain: Domain
    ca: Path
    service_platform: Path  # the service's own (simulated) platform state
    workload_platform: Path
    server: RunningServer

    @property
    def verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def document(self) -> dict[str, Any]:
        r = httpx.get(self.url + "/v1/domain/evidence", verify=self.verify)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def keys(self, **kw: Any) -> KeysInUse:
        args: dict[str, Any] = {"admission": self.domain.ca_key.public_key(),
                                "tokens": [self.domain.token_key.public_key()]}  # fmt: skip
        args.update(kw)
        return KeysInUse.of(**args)

    def policy(self, measurement: str | None = None) -> Any:
        return load_policy(service_policy(self.service_platform, measurement))

    def trust(self, tmp: Path, policy: Any, **kw: Any) -> Trust:
        return Trust(self.url, self.ca, platform="simulated", store=tmp / "store", measurement=WORKLOAD,
                     platform_dir=self.workload_platform, service_policy=policy, **kw)  # fmt: skip


def start_service(tmp: Path, *, attest: bool = True, domain: Domain | None = None,
                  bound_tls: Path | None = None, port: int | None = None) -> Service:  # fmt: skip
    """A service over TLS; ``bound_tls``: the certificate its evidence binds, if not the one served."""
    domain = domain or Domain.create(tmp / "domain", name="svc", now=NOW)
    cert, key = server_certificate_files(domain.path, "127.0.0.1")
    port = port or _port()
    url = f"https://127.0.0.1:{port}"
    settings = Settings(data_dir=domain.path, policy_cache_seconds=0, issuer=url,
                        attest_self="simulated" if attest else None, attest_state_dir=tmp / "service-platform",
                        tls_certificate=bound_tls or cert)  # fmt: skip
    server = start_in_thread(create_app(settings), port=port, ssl_certfile=str(cert), ssl_keyfile=str(key),
                             timeout_graceful_shutdown=1)  # clients' kept-alive connections  # fmt: skip
    svc = Service(
        url,
        domain,
        domain.path / "domain_ca.pem",
        tmp / "service-platform",
        tmp / "workload",
        server,
    )
    key_id = SimulatedPlatform(svc.workload_platform, measurement=WORKLOAD).key_id
    doc = {"version": 1, "name": "wl", "platforms": {"simulated": {
        "measurements": [WORKLOAD], "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip
    r = httpx.put(url + "/v1/admin/policy", content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key),
                  headers={"Authorization": f"Bearer {domain.admin_token()}"}, verify=svc.verify)  # fmt: skip
    assert r.status_code == 200, r.text
    return svc


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    s = start_service(tmp_path_factory.mktemp("svc"))
    try:
        yield s
    finally:
        s.server.stop()


def _refusal(doc: Any, svc: Service, keys: KeysInUse | None = None, policy: Any = None) -> str:
    with pytest.raises(ServiceEvidenceError) as e:
        verify_service_evidence(doc, policy=policy or svc.policy(), keys=keys or svc.keys(), at=NOW)
    return e.value.code


# --- the document and its binding ---------------------------------------------------------
def test_evidence_binds_the_keys_in_use(svc: Service) -> None:
    doc = svc.document()
    st = doc["statement"]
    assert doc["format"] == "simulated"
    cert = svc.domain.path / "server_cert.pem"
    from cryptography import x509

    tls_key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    assert st == {"version": 1, "issuer": svc.url, "keys": {
        "admission": thumbprint(svc.domain.ca_key.public_key()),
        "broker": thumbprint(svc.domain.broker_key.public_key()),
        "tokens": [thumbprint(svc.domain.token_key.public_key())],
        "tls": thumbprint(tls_key)}}  # fmt: skip
    proof = verify_service_evidence(
        doc, policy=svc.policy(), keys=svc.keys(tls=tls_key, issuer=svc.url), at=NOW
    )
    assert proof.measurement == measure("veritee") and proof.platform == "simulated"
    assert proof.claims["report_data"] == service_report_data(st).hex()
    assert doc["keys"]["jwks"]["keys"][0]["kid"] == svc.domain.token_kid
    assert doc["keys"]["ca_certificate"] == svc.ca.read_text()
    assert [c["name"] for c in doc["collateral"]] == ["platform_key.pem"]
    # the same document on every request while the keys stay
    assert svc.document()["evidence"] == doc["evidence"]


def test_tampered_evidence_refused(svc: Service) -> None:
    doc = svc.document()
    raw = bytearray(base64.b64decode(doc["evidence"]))
    for offset in (0x10, 0x40, 0x7F, len(raw) - 3):  # measurement, report data, signature
        bad = copy.deepcopy(doc)
        mutated = bytearray(raw)
        mutated[offset] ^= 0x01
        bad["evidence"] = base64.b64encode(bytes(mutated)).decode()
        assert _refusal(bad, svc) == "service_evidence_refused", offset
    bad["evidence"] = base64.b64encode(bytes(raw[:100])).decode()  # truncated
    assert _refusal(bad, svc) == "service_evidence_refused"


def test_tampered_statement_refused(svc: Service) -> None:
    doc = svc.document()
    other = thumbprint(ec.generate_private_key(ec.SECP256R1()).public_key())
    for path in (("tokens",), ("admission",), ("tls",), ("broker",)):
        bad = copy.deepcopy(doc)
        bad["statement"]["keys"][path[0]] = [other] if path[0] == "tokens" else other
        keys = svc.keys(tokens=[svc.domain.token_key.public_key()])
        assert _refusal(bad, svc, keys) == "service_binding_mismatch", path
    bad = copy.deepcopy(doc)
    bad["statement"]["issuer"] = "https://elsewhere.example"
    assert _refusal(bad, svc) == "service_binding_mismatch"


def test_evidence_bound_to_other_keys(svc: Service, tmp_path: Path) -> None:
    """Genuine evidence of another service (another domain's keys, same allowed build and
    platform) does not vouch for this one."""
    other_domain = Domain.create(tmp_path / "other", name="other", now=NOW)
    shutil.copytree(svc.service_platform, tmp_path / "service-platform")  # the same machine
    other = start_service(tmp_path, domain=other_domain)
    try:
        doc = other.document()
        assert verify_service_evidence(
            doc, policy=svc.policy(), keys=other.keys(), at=NOW
        )  # genuine for itself
        assert _refusal(doc, svc) == "service_binding_mismatch"  # not for this domain
    finally:
        other.server.stop()


def test_wrong_measurement_and_platform_key(svc: Service, tmp_path: Path) -> None:
    doc = svc.document()
    assert _refusal(doc, svc, policy=svc.policy("cd" * 48)) == "service_measurement_not_allowed"
    elsewhere = load_policy(service_policy(tmp_path / "another-machine"))
    assert _refusal(doc, svc, policy=elsewhere) == "service_evidence_refused"
    with pytest.raises(ServiceEvidenceError) as e:
        verify_service_evidence(doc, policy=elsewhere, keys=svc.keys(), at=NOW)
    assert any(r["code"] == "platform_key_not_trusted" for r in e.value.reasons), e.value.reasons


def test_stale_evidence_after_rotation(svc: Service) -> None:
    doc = svc.document()
    rotated = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert _refusal(doc, svc, svc.keys(tokens=[rotated])) == "service_evidence_stale"
    assert _refusal(doc, svc, svc.keys(tls=rotated)) == "service_evidence_stale"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: [],
        lambda d: d.pop("evidence"),
        lambda d: d.update(evidence="not base64!"),
        lambda d: d.update(evidence="A" * (600 * 1024)),
        lambda d: d.update(format=7),
        lambda d: d.pop("statement"),
        lambda d: d["statement"].update(version=2),
        lambda d: d["statement"].update(extra=1),
        lambda d: d["statement"]["keys"].update(tokens=[]),
        lambda d: d["statement"]["keys"].update(tokens=["x" * 43] * 17),
        lambda d: d["statement"]["keys"].update(admission="short"),
        lambda d: d["statement"]["keys"].pop("tls"),
        lambda d: d.update(collateral={}),
        lambda d: d.update(collateral=[{"name": "x"}] * 17),
        lambda d: d.update(collateral=[{"name": "x.pem", "data": "!!"}]),
    ],
)
def test_malformed_documents(svc: Service, mutate: Any) -> None:
    doc = copy.deepcopy(svc.document())
    out = mutate(doc)
    assert _refusal(out if isinstance(out, list) else doc, svc) == "service_evidence_malformed"


def test_service_without_attest_self_has_no_evidence(tmp_path: Path) -> None:
    plain = start_service(tmp_path, attest=False)
    try:
        r = httpx.get(plain.url + "/v1/domain/evidence", verify=plain.verify)
        assert r.status_code == 404 and r.json()["code"] == "service_evidence_missing"
        trust = plain.trust(tmp_path, plain.policy())
        with pytest.raises(VerificationError) as e:
            trust.certify()
        assert e.value.code == "service_evidence_missing"
        trust.close()
    finally:
        plain.server.stop()


def test_platform_that_cannot_attest_stops_the_start(tmp_path: Path) -> None:
    from veritee.errors import VeriteeError

    domain = Domain.create(tmp_path / "d", now=NOW)
    for name in ("sev-snp", "no-such-platform"):
        with pytest.raises(VeriteeError):
            create_app(Settings(data_dir=domain.path, attest_self=name))


# --- the SDK --------------------------------------------------------------------------------
def test_sdk_verifies_the_service_before_trusting_it(svc: Service, tmp_path: Path) -> None:
    trust = svc.trust(tmp_path, svc.policy())
    cert = trust.certify()
    proof = trust.service.proof  # type: ignore[union-attr]
    assert proof is not None and proof.measurement == measure("veritee")
    assert proof.statement["keys"]["tls"] is not None  # the TLS key of the connection was compared
    claims = trust.verify_token(trust.last_token)
    assert (
        claims["submods"]["simulated"]["ear.veraison.annotated-evidence"]["measurement"] == WORKLOAD
    )
    assert cert is not None
    # a token of another key (forged kid) is not trusted
    from veritee.tokens import sign_jwt

    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(VerificationError) as e:
        trust.verify_token(sign_jwt({"iss": svc.url}, other, kid="elsewhere"))
    assert e.value.code == "ear_key_unknown"
    trust.close()


def test_sdk_refuses_a_service_of_another_measurement(svc: Service, tmp_path: Path) -> None:
    trust = svc.trust(tmp_path, service_policy(svc.service_platform, "cd" * 48))
    with pytest.raises(VerificationError) as e:
        trust.certify()
    assert e.value.code == "service_measurement_not_allowed"
    assert trust.keystore.certificate() is None  # nothing was certified
    with pytest.raises(VerificationError):  # and again: a refusal is not cached as a pass
        trust.get_secret("anything")
    trust.close()


def test_sdk_refuses_evidence_that_binds_another_tls_key(svc: Service, tmp_path: Path) -> None:
    """The service's TLS certificate was renewed, its evidence still binds the old key."""
    domain = Domain.create(tmp_path / "d", name="tls", now=NOW)
    cert, _ = server_certificate_files(domain.path, "127.0.0.1")
    old = tmp_path / "old_cert.pem"
    shutil.copy(cert, old)
    for f in ("server_cert.pem", "server_key.pem"):
        (domain.path / f).unlink()
    stale = start_service(tmp_path, domain=domain, bound_tls=old)
    try:
        trust = stale.trust(tmp_path, stale.policy())
        with pytest.raises(VerificationError) as e:
            trust.certify()
        assert e.value.code == "service_evidence_stale"
        trust.close()
    finally:
        stale.server.stop()


def test_sdk_holds_every_connection_to_the_bound_tls_key(tmp_path: Path) -> None:
    """The service restarts with a renewed TLS certificate: a new connection presents a key the
    kept proof does not bind, so the SDK verifies the new evidence (which binds it); after a
    restart whose evidence binds an earlier certificate than the one served, it refuses."""
    first = start_service(tmp_path)
    port = int(first.url.rsplit(":", 1)[1])
    trust = first.trust(tmp_path, first.policy())
    trust.certify()
    tls_1 = trust.service.proof.statement["keys"]["tls"]  # type: ignore[union-attr]
    first.server.stop()

    def renew() -> Path:
        kept = tmp_path / f"cert-{len(list(tmp_path.glob('cert-*')))}.pem"
        shutil.copy(first.domain.path / "server_cert.pem", kept)
        for f in ("server_cert.pem", "server_key.pem"):
            (first.domain.path / f).unlink()
        return kept

    renew()
    second = start_service(tmp_path, domain=Domain.open(first.domain.path), port=port)
    try:
        trust.certify(force=True)
        tls_2 = trust.service.proof.statement["keys"]["tls"]  # type: ignore[union-attr]
        assert tls_2 != tls_1
    finally:
        second.server.stop()
    previous = renew()
    third = start_service(
        tmp_path, domain=Domain.open(first.domain.path), port=port, bound_tls=previous
    )
    try:
        with pytest.raises(VerificationError) as e:
            trust.certify(force=True)
        assert e.value.code == "service_evidence_stale"
        assert trust.service.proof is None  # type: ignore[union-attr]
    finally:
        trust.close()
        third.server.stop()


class Replay(httpx.BaseTransport):
    """A man in the middle that answers /v1/domain/evidence with a document it recorded."""

    def __init__(self, inner: httpx.BaseTransport, document: bytes) -> None:
        self.inner, self.document = inner, document

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/domain/evidence":
            return httpx.Response(
                200, content=self.document, headers={"content-type": "application/json"}
            )
        return self.inner.handle_request(request)


class Answer(httpx.BaseTransport):
    """A man in the middle that answers ``path`` with bytes of its choice."""

    def __init__(self, inner: httpx.BaseTransport, path: str, body: bytes) -> None:
        self.inner, self.path, self.body = inner, path, body

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self.path:
            return httpx.Response(
                200, content=self.body, headers={"content-type": "application/json"}
            )
        return self.inner.handle_request(request)


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/domain/evidence", b"x" * (1024 * 1024 + 10)),  # oversized
        ("/v1/domain/evidence", b"{not json"),
        ("/v1/domain/evidence", b'{"format": "simulated"'),  # truncated
        (
            "/v1/domain/evidence",
            b"[[[[" * 5000 + b"]]]]" * 5000,
        ),  # nested deeper than JSON allows here
        (
            "/.well-known/jwks.json",
            b'{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "k"}]}',
        ),
        ("/.well-known/jwks.json", b"null"),
    ],
)
def test_sdk_refuses_malformed_answers_from_a_man_in_the_middle(
    svc: Service, tmp_path: Path, path: str, body: bytes
) -> None:
    inner = httpx.HTTPTransport(verify=svc.verify)
    trust = svc.trust(tmp_path, svc.policy(), transport=Answer(inner, path, body))
    with pytest.raises(VerificationError) as e:
        trust.certify()
    assert e.value.code == "service_evidence_malformed"
    assert trust.keystore.certificate() is None
    trust.close()


def test_rotation_refreshes_the_evidence_and_a_replayed_old_one_is_stale(tmp_path: Path) -> None:
    """The token key rotates (a new token_key.pem, the service restarted): the service's new
    evidence binds it and a client that kept the old proof verifies again; the old evidence
    replayed by a man in the middle is ``service_evidence_stale``."""
    first = start_service(tmp_path)
    old_doc = httpx.get(first.url + "/v1/domain/evidence", verify=first.verify).content
    trust = first.trust(tmp_path, first.policy())
    trust.certify()
    old_token = trust.last_token
    old_proof = trust.service.proof  # type: ignore[union-attr]
    first.server.stop()
    new_key = ec.generate_private_key(ec.SECP256R1())
    (first.domain.path / "token_key.pem").write_bytes(new_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    domain = Domain.open(first.domain.path)
    port = int(first.url.rsplit(":", 1)[1])
    settings = Settings(data_dir=domain.path, policy_cache_seconds=0, issuer=first.url, attest_self="simulated",
                        attest_state_dir=first.service_platform, tls_certificate=domain.path / "server_cert.pem")  # fmt: skip
    server = start_in_thread(create_app(settings), port=port, ssl_certfile=str(domain.path / "server_cert.pem"),
                             ssl_keyfile=str(domain.path / "server_key.pem"), timeout_graceful_shutdown=1)  # fmt: skip
    try:
        new_doc = httpx.get(first.url + "/v1/domain/evidence", verify=first.verify).json()
        assert new_doc["statement"]["keys"]["tokens"] == [thumbprint(new_key.public_key())]
        trust.certify(force=True)  # a token of the new key: the client verifies the new evidence
        assert trust.service.proof is not old_proof  # type: ignore[union-attr]
        assert trust.service.proof.tokens == {thumbprint(new_key.public_key())}  # type: ignore[union-attr]
        with pytest.raises(VerificationError) as e:  # the old key is no longer the service's
            trust.verify_token(old_token)
        assert e.value.code == "ear_key_unknown"
        trust.close()
        # a man in the middle replays the evidence of before the rotation
        inner = httpx.HTTPTransport(verify=first.verify)
        replayed = first.trust(tmp_path / "2", first.policy(), transport=Replay(inner, old_doc))
        with pytest.raises(VerificationError) as e:
            replayed.certify()
        assert e.value.code == "service_evidence_stale"
        replayed.close()
    finally:
        server.stop()


# --- the command line -----------------------------------------------------------------------
def _cli(*args: str) -> tuple[int, Any]:
    from click.testing import CliRunner

    from veritee.cli.main import _register, cli

    _register()
    r = CliRunner().invoke(cli, list(args))
    if "--json" in args and r.exit_code in (0, 1):
        return r.exit_code, json.loads(r.stdout)
    return r.exit_code, r.output


def test_token_verify_refuses_a_service_without_evidence(tmp_path: Path) -> None:
    plain = start_service(tmp_path, attest=False)
    try:
        policy = tmp_path / "p.yaml"
        policy.write_text(service_policy(plain.service_platform))
        token = httpx.get(
            plain.url + "/.well-known/jwks.json", verify=plain.verify
        )  # (no token needed to refuse)
        assert token.status_code == 200
        from veritee.tokens import sign_jwt

        some = sign_jwt({"iss": plain.url}, plain.domain.token_key, kid=plain.domain.token_kid)
        code, out = _cli("token", "verify", some, "--url", plain.url, "--ca", str(plain.ca), "--json",
                         "--require-service-evidence", "--service-policy", str(policy))  # fmt: skip
        assert (
            code == 1
            and out["reasons"][0]["code"] == "service_evidence_missing"
            and out["claims"] is None
        )
    finally:
        plain.server.stop()


def test_token_verify_require_service_evidence_against_veritee_serve(tmp_path: Path) -> None:
    from tests.fakes.service import stop, wait_ready

    data = tmp_path / "domain"
    Domain.create(data, now=NOW)  # as `veritee init` makes it
    port = _port()
    url = f"https://127.0.0.1:{port}"
    state = tmp_path / "service-platform"
    proc = subprocess.Popen(
        [sys.executable, "-m", "veritee.cli", "serve", "--data", str(data), "--port", str(port), "--tls",
         "--issuer", url, "--attest-self", "simulated", "--attest-state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(data / "domain_ca.pem"))
    try:
        wait_ready(url, proc, verify=ctx)
        svc = Service(url, Domain.open(data), data / "domain_ca.pem", state, tmp_path / "wl", None)  # type: ignore[arg-type]
        trust = Trust(url, svc.ca, platform="simulated", store=tmp_path / "s", measurement=WORKLOAD,
                      platform_dir=svc.workload_platform)  # fmt: skip
        token = trust.attest()["token"]  # no workload policy: a refusal, still this service's token
        trust.close()
        good = tmp_path / "service-policy.yaml"
        good.write_text(service_policy(state))
        wrong = tmp_path / "wrong-policy.yaml"
        wrong.write_text(service_policy(state, "cd" * 48))
        base = [
            "token",
            "verify",
            token,
            "--url",
            url,
            "--ca",
            str(svc.ca),
            "--json",
            "--require-service-evidence",
        ]
        code, out = _cli(*base, "--service-policy", str(good))
        assert out["service"]["measurement"] == measure("veritee")
        assert (
            out["status"] == "contraindicated" and code == 1
        )  # the token itself records a refusal
        code, out = _cli(*base, "--service-policy", str(wrong))
        assert code == 1 and out["reasons"][0]["code"] == "service_measurement_not_allowed"
        assert out["service"] is None and out["claims"] is None
        code, text = _cli(*base[:-1], "--service-policy", str(good))  # without the flag
        assert code == 2 and "--require-service-evidence" in text
        code, text = _cli("token", "verify", token, "--url", url, "--require-service-evidence",
                          "--service-policy", str(good))  # fmt: skip
        assert code == 2 and "--ca" in text
        bad = tmp_path / "bad-policy.yaml"
        bad.write_text("platforms: [")
        code, text = _cli(*base, "--service-policy", str(bad))
        assert code == 2 and "--service-policy" in text
        code, text = _cli(*base[:-2], "--require-service-evidence", "--service-policy", str(good))
        assert code == 1 and "service verified: simulated measurement" in text
    finally:
        stop(proc)
    assert proc.stderr is not None
    start = proc.stderr.read().decode()
    assert "attested on simulated (measurement " + measure("veritee")[:16] in start, start


def test_worker_processes_attest_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --workers N` hands the settings to each worker through the environment: each one
    attests itself with the same platform and binds the same TLS key."""
    from cryptography import x509
    from fastapi.testclient import TestClient

    from veritee.service.app import app_from_env

    domain = Domain.create(tmp_path / "d", now=NOW)
    cert, _ = server_certificate_files(domain.path, "127.0.0.1")
    for name, value in {"VERITEE_DATA_DIR": str(domain.path), "VERITEE_ATTEST_SELF": "simulated",
                        "VERITEE_ATTEST_STATE": str(tmp_path / "state"), "VERITEE_TLS_CERT": str(cert),
                        "VERITEE_ISSUER": "https://c.example"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    docs = []
    for _ in range(2):
        with TestClient(app_from_env()) as c:
            docs.append(c.get("/v1/domain/evidence").json())
    assert docs[0]["statement"] == docs[1]["statement"]
    tls_key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    assert docs[0]["statement"]["keys"]["tls"] == thumbprint(tls_key)
    assert docs[0]["statement"]["issuer"] == "https://c.example"
    keys = KeysInUse.of(
        admission=domain.ca_key.public_key(), tokens=[domain.token_key.public_key()], tls=tls_key
    )
    for doc in docs:
        verify_service_evidence(
            doc, policy=load_policy(service_policy(tmp_path / "state")), keys=keys, at=NOW
        )
    monkeypatch.setenv("VERITEE_ATTEST_SELF", "")
    with TestClient(app_from_env()) as c:
        assert c.get("/v1/domain/evidence").status_code == 404


def test_attester_produces_new_evidence_when_a_key_changes(tmp_path: Path) -> None:
    """Within a running process too: each request compares the statement with the keys in use."""
    from veritee.service.self_attest import ServiceAttester, open_service_platform

    domain = Domain.create(tmp_path / "d", now=NOW)
    attester = ServiceAttester(open_service_platform("simulated", tmp_path / "state"), domain,
                               issuer="veritee", tls_certificate=None)  # fmt: skip
    before = attester.document()
    assert attester.document() is before  # kept while the keys stay
    domain.token_key = ec.generate_private_key(ec.SECP256R1())  # a rotation of the token key
    after = attester.document()
    assert after["statement"]["keys"]["tokens"] == [thumbprint(domain.token_key.public_key())]
    assert after["evidence"] != before["evidence"] and after["statement"]["keys"]["admission"] == \
        before["statement"]["keys"]["admission"]  # fmt: skip
    policy = load_policy(service_policy(tmp_path / "state"))
    keys = KeysInUse.of(
        admission=domain.ca_key.public_key(), tokens=[domain.token_key.public_key()]
    )
    verify_service_evidence(after, policy=policy, keys=keys, at=NOW)
    with pytest.raises(ServiceEvidenceError) as e:
        verify_service_evidence(before, policy=policy, keys=keys, at=NOW)
    assert e.value.code == "service_evidence_stale"
