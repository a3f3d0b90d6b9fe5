"""`veritee demo`: the whole system end to end on a temporary embedded database.

Starts the Certifier Service (HTTPS, server certificate from the domain CA), certifies two
simulated workloads, lets them talk over the attested channel, shows an unlisted measurement
and a replayed nonce refused with their reasons, and ends with the audit chain's status.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from veritee.appraisal import load_policy, sign_policy
from veritee.cli.tables import audit_table
from veritee.domain import Domain
from veritee.errors import NonceError, VerificationError
from veritee.platforms.simulated import load_or_create_platform_key, measure, platform_key_id
from veritee.sdk.channel import ChannelPolicy
from veritee.sdk.trust import Trust

__all__ = ["run_demo"]

WORKLOADS = {
    "alice": "print('alice: the payments front end')\n",
    "bob": "print('bob: the ledger')\n",
    "mallory": "print('mallory: a modified ledger')\n",
}


def _step(console: Console, n: int, text: str) -> None:
    console.print(f"[bold cyan]{n}.[/] {text}")


def run_demo(console: Console | None = None) -> dict[str, Any]:
    """Run the walkthrough; returns a summary (used by tests)."""
    console = console or Console()
    t0 = time.perf_counter()
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="veritee-demo-") as tmp:
        root = Path(tmp)
        console.print(
            Panel.fit("veritee demo: attestation, admission and attested channels", style="bold")
        )

        _step(
            console,
            1,
            "create a security domain (CA, policy, key-broker and token keys, admin "
            "credential, SQLite)",
        )
        domain = Domain.create(root / "domain", name="demo-domain", now=dt.datetime.now(dt.UTC))
        from veritee.service.app import create_app
        from veritee.service.runner import start_in_thread
        from veritee.service.settings import Settings
        from veritee.service.tls import server_certificate_files

        cert_file, key_file = server_certificate_files(domain.path, "127.0.0.1")
        app = create_app(Settings(data_dir=domain.path))
        server = start_in_thread(app, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file))
        console.print(f"   Certifier Service listening on [green]{server.url}[/] (TLS, domain CA)")

        try:
            _step(console, 2, "measure three workloads on the simulated platform")
            sim_dir = root / "simulated-platform"
            files = {}
            for name, code in WORKLOADS.items():
                f = root / f"{name}.py"
                f.write_text(code)
                files[name] = measure([f])
            plat_key = platform_key_id(load_or_create_platform_key(sim_dir))
            table = Table("workload", "measurement (SHA-384)")
            for name, m in files.items():
                table.add_row(name, m[:32] + "...")
            console.print(table)

            _step(console, 3, "sign and install the appraisal policy: alice and bob only")
            policy = load_policy(
                json.dumps(
                    {
                        "version": 1,
                        "name": "demo",
                        "platforms": {
                            "simulated": {
                                "measurements": [files["alice"], files["bob"]],
                                "platform_keys": [plat_key],
                                "allow_debug": True,
                            }
                        },
                        "certificate_lifetime": 600,
                    }
                )
            )
            envelope = sign_policy(policy, domain.policy_key)
            import httpx

            ca_pem = domain.ca_pem
            import ssl

            sslctx = ssl.create_default_context(cadata=ca_pem.decode())
            with httpx.Client(base_url=server.url, verify=sslctx, timeout=10) as admin:
                r = admin.put(
                    "/v1/admin/policy",
                    content=envelope,
                    headers={"Authorization": f"Bearer {domain.admin_token()}"},
                )
                r.raise_for_status()
                r2 = admin.put(
                    "/v1/admin/policy",
                    content=json.dumps(policy.to_json()),
                    headers={"Authorization": f"Bearer {domain.admin_token()}"},
                )
            console.print(
                f"   installed policy 'demo' version {r.json()['version']}; "
                f"an unsigned copy was refused: [red]{r2.json()['code']}[/]"
            )

            from cryptography.hazmat.primitives.asymmetric import x25519

            tenant_key = x25519.X25519PrivateKey.generate()
            # bob's tenant key reaches bob as a secret the key broker releases to bob only, so
            # the host cannot hand bob a key of its own (Trust(tenant_key_secret=...))
            tenant_pem = tenant_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            with httpx.Client(base_url=server.url, verify=sslctx, timeout=10) as admin:
                admin.put(
                    "/v1/admin/secrets/log-tenant-key",
                    headers={"Authorization": f"Bearer {domain.admin_token()}"},
                    json={
                        "value": base64.b64encode(tenant_pem).decode(),
                        "policy": {"allOf": [{"claim": "measurement", "equals": files["bob"]}]},
                    },
                ).raise_for_status()

            def trust(name: str, profile: str = "development") -> Trust:
                return Trust(
                    server.url,
                    ca_pem,
                    platform="simulated",
                    store=root / f"{name}-store",
                    measurement=files[name],
                    platform_dir=sim_dir,
                    profile=profile,
                    tenant_key_secret="log-tenant-key" if profile == "production" else None,
                )

            _step(
                console, 4, "certify alice and bob (challenge -> evidence -> admission certificate)"
            )
            alice, bob = trust("alice"), trust("bob", profile="production")
            for name, t in (("alice", alice), ("bob", bob)):
                cert = t.certify()
                console.print(
                    f"   {name}: admission certificate serial {cert.serial_number:x}"[:70]
                    + f", valid until {cert.not_valid_after_utc:%H:%M:%S} UTC"
                )
            summary["certified"] = ["alice", "bob"]

            _step(
                console,
                5,
                "bob serves, alice connects: mutual TLS + channel policies "
                "(measurement, platform, profile)",
            )
            received: list[bytes] = []
            done = threading.Event()

            def handler(conn: Any) -> None:
                msg = conn.recv()
                received.append(msg)
                conn.send(b"ledger entry recorded: " + msg)
                done.set()

            # Peers run on this platform by default; bob (production) admits alice's
            # development build and alice admits bob's production one by name.
            srv = bob.serve(
                "127.0.0.1",
                0,
                handler,
                policy=ChannelPolicy.allow(measurements={files["alice"]}, profiles={"development"}),
            )
            try:
                with alice.connect(
                    "127.0.0.1",
                    srv.port,
                    policy=ChannelPolicy.allow(
                        measurements={files["bob"]}, profiles={"production"}
                    ),
                ) as conn:
                    conn.send(b"pay 42 to carol")
                    reply = conn.recv()
                done.wait(5)
            finally:
                srv.stop()
            console.print(f"   bob received: [green]{received[0].decode()}[/]")
            console.print(f"   alice received: [green]{reply.decode()}[/]")
            summary["exchanged"] = [received[0].decode(), reply.decode()]

            _step(console, 6, "mallory (unlisted measurement) asks to be certified")
            mallory = trust("mallory")
            try:
                mallory.certify()
                summary["mallory"] = "certified"
                console.print("   [red]unexpected: mallory was certified[/]")
            except VerificationError as e:
                reasons = e.reasons or []
                summary["mallory"] = [r["code"] for r in reasons]
                console.print("   [red]refused[/] with reasons:")
                for reason in reasons:
                    console.print(escape(f"     - [{reason['code']}] {reason['message']}"))

            _step(console, 7, "a captured request is replayed with its nonce")
            nonce = alice.challenge()
            ev = alice.evidence_for(nonce, None)
            body = {
                "evidence": base64.b64encode(ev).decode(),
                "nonce": nonce.hex(),
                "format": "simulated",
            }
            first = alice._post("/v1/attest", body)
            try:
                alice._post("/v1/attest", body)
                summary["replay"] = "accepted"
            except NonceError as e:
                summary["replay"] = e.code
                console.print(
                    f"   first use: {first['status']}; replay: [red]refused ({e.code})[/]"
                )

            _step(
                console, 8, "bob's confidential log: the host keeps ciphertext, the tenant reads it"
            )
            summary["log"] = _log_step(console, bob, tenant_key)

            _step(console, 9, "audit chain")
            with httpx.Client(base_url=server.url, verify=sslctx, timeout=10) as admin:
                h = {"Authorization": f"Bearer {domain.admin_token()}"}
                report = admin.get("/v1/admin/audit/verify", headers=h).json()
                entries = admin.get("/v1/admin/audit", headers=h).json()["entries"]
            console.print(audit_table(entries))  # the table `veritee audit list` draws
            status = (
                "[green]intact[/]"
                if report["ok"]
                else f"[red]BROKEN at {report['first_broken']}[/]"
            )
            console.print(f"   audit chain {status}: {report['count']} entries")
            summary["audit"] = report
            for t in (alice, bob, mallory):
                t.close()
        finally:
            server.stop()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    console.print(f"[bold green]done[/] in {summary['seconds']} s")
    return summary


def _log_step(console: Console, bob: Trust, tenant_key: Any) -> dict[str, Any]:
    """Bob (production profile) logs; show what the host holds and what the tenant reads."""
    import contextlib
    import io

    from veritee.logs import decrypt_log, open_log_key, verify_log

    host_stderr = io.StringIO()
    with contextlib.redirect_stderr(host_stderr):
        bob.logger.info("ledger: account 4711 balance 1,000,000 (confidential)")
        bob.logger.warning("ledger: retrying payment for carol")
        try:
            raise ValueError("card 4111-1111-1111-1111 declined")
        except ValueError:
            bob.logger.exception("payment failed")
    log = bob.workload_log
    head = log.tree_head()
    key_blob = log.export_key_for_tenant()
    log.close()
    folder, run = log.directory, log.run_directory  # the host's folder; this start's run in it
    stored = b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())
    host_view = stored + host_stderr.getvalue().encode()
    leaked = b"4711" in host_view or b"4111-1111" in host_view
    console.print(
        f"   host folder {folder.name}: {sum(1 for p in folder.rglob('*') if p.is_file())} files, "
        f"{len(stored)} bytes, plaintext visible: [{'red' if leaked else 'green'}]{leaked}[/]"
    )
    cert = bob.keystore.certificate()
    signer = cert.public_key() if cert is not None else None
    if not isinstance(signer, ec.EllipticCurvePublicKey):
        raise RuntimeError("bob has no admission-certified EC key")
    report = verify_log(run, signer, head)
    console.print(
        f"   tenant: log verified: {report.ok} ({report.records} records, tree size {report.tree_size})"
    )
    records = list(decrypt_log(run, open_log_key(key_blob, tenant_key), signer))
    for r in records:
        console.print("     " + escape(r.text.splitlines()[0])[:90])
    return {"verified": report.ok, "records": len(records), "plaintext_on_host": leaked}
