"""`veritee demo cleanroom`: the multi-party clean room of :mod:`veritee.keybroker.cleanroom`
end to end on a temporary domain.

Three parties encrypt their CSV files and register their data keys behind a release policy that
pins the analytics workload's measurement; the workload attests, gets the keys, computes the
joint aggregate and signs it; every party verifies the result and sees the releases in the audit
log; a modified workload (one changed byte) gets nothing and is told why.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx

from veritee.errors import VerificationError
from veritee.keybroker.cleanroom import (
    PARTIES,
    EncryptedDataset,
    audit_entries,
    encrypt_dataset,
    register_data_key,
    run_workload,
    synthetic_csv,
    verify_result,
)

__all__ = ["run_cleanroom_demo"]


def _workload_source() -> bytes:
    """examples/cleanroom/workload.py from the source tree (else this module, when installed)."""
    from pathlib import Path

    here = Path(__file__).resolve()
    example = here.parents[2] / "examples" / "cleanroom" / "workload.py"
    return example.read_bytes() if example.is_file() else here.read_bytes()


def _modified(source: bytes) -> bytes:
    """One changed byte: the small-group threshold 5 becomes 1 (else the last byte flips)."""
    marker = b"MIN_GROUP_SIZE = 5"
    if marker in source:
        return source.replace(marker, b"MIN_GROUP_SIZE = 1", 1)
    return source[:-1] + bytes([source[-1] ^ 0x01])


def run_cleanroom_demo(console: Any = None) -> dict[str, Any]:
    """``veritee demo cleanroom``: the whole clean room on a temporary domain; returns a summary
    (used by tests)."""
    import ssl
    import tempfile
    import time
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    from veritee.appraisal import load_policy, sign_policy
    from veritee.domain import Domain
    from veritee.platforms.simulated import load_or_create_platform_key, measure, platform_key_id
    from veritee.sdk.trust import Trust
    from veritee.service.app import create_app
    from veritee.service.runner import start_in_thread
    from veritee.service.settings import Settings
    from veritee.service.tls import server_certificate_files

    con: Console = console or Console()
    t0 = time.perf_counter()
    summary: dict[str, Any] = {}

    def step(n: int, text: str) -> None:
        con.print(f"[bold cyan]{n}.[/] {text}")

    with tempfile.TemporaryDirectory(prefix="veritee-cleanroom-") as tmp:
        root = Path(tmp)
        con.print(Panel.fit("veritee demo cleanroom: three parties, one attested analytics workload",
                            style="bold"))  # fmt: skip
        step(1, "a security domain and its Certifier Service (HTTPS, SQLite)")
        domain = Domain.create(root / "domain", name="cleanroom", now=dt.datetime.now(dt.UTC))
        cert_file, key_file = server_certificate_files(domain.path, "127.0.0.1")
        server = start_in_thread(create_app(Settings(data_dir=domain.path)),
                                 ssl_certfile=str(cert_file), ssl_keyfile=str(key_file))  # fmt: skip
        sslctx = ssl.create_default_context(cadata=domain.ca_pem.decode())
        admin = httpx.Client(base_url=server.url, verify=sslctx, timeout=10,
                             headers={"Authorization": f"Bearer {domain.admin_token()}"})  # fmt: skip
        trusts: list[Trust] = []
        try:
            source = _workload_source()
            (root / "workload.py").write_bytes(source)
            (root / "modified").mkdir()
            (root / "modified" / "workload.py").write_bytes(_modified(source))
            good = measure([root / "workload.py"])
            bad = measure([root / "modified" / "workload.py"])
            summary.update(measurement=good, modified_measurement=bad)
            con.print(f"   analytics workload measurement: [green]{good[:32]}...[/]")

            step(2, "the operator admits the analytics workload (signed appraisal policy)")
            sim_dir = root / "simulated-platform"
            doc = {"version": 1, "name": "cleanroom", "certificate_lifetime": 600, "platforms": {
                "simulated": {"measurements": [good], "allow_debug": True,
                              "platform_keys": [platform_key_id(load_or_create_platform_key(sim_dir))]}}}  # fmt: skip
            admin.put("/v1/admin/policy",
                      content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key)).raise_for_status()  # fmt: skip

            step(3, "each party encrypts its CSV under its own data key and registers the key")
            con.print("   release policy on every key: platform = simulated AND measurement = "
                      f"{good[:16]}...")  # fmt: skip
            datasets: list[EncryptedDataset] = []
            table = Table("party", "rows", "encrypted file (SHA-256)", "secret", "version")
            for party in PARTIES:
                plain = synthetic_csv(party)
                data_key, blob = encrypt_dataset(plain, name=party)
                ds = EncryptedDataset(party, f"cleanroom/{party}", blob)
                reg = register_data_key(admin, ds.secret, data_key, good)
                datasets.append(ds)
                table.add_row(
                    party,
                    str(plain.count(b"\n") - 1),
                    ds.sha256[:24] + "...",
                    ds.secret,
                    str(reg["version"]),
                )
            con.print(table)

            step(
                4,
                "the workload attests for each key, computes, gets certified and signs the aggregate",
            )
            workload = Trust(server.url, domain.ca_pem, platform="simulated", measurement=good,
                             platform_dir=sim_dir, store=root / "workload-store")  # fmt: skip
            trusts.append(workload)
            signed = run_workload(workload, datasets)
            result = signed["result"]
            table = Table("category", "rows", "total", "mean", "parties")
            for cat, v in result["categories"].items():
                if v.get("suppressed"):
                    table.add_row(cat, "<5", "suppressed", "-", str(v["parties"]))
                else:
                    table.add_row(cat, str(v["count"]), v["total"], v["mean"], str(v["parties"]))
            con.print(table)
            cust = result["customers"]
            con.print(
                f"   customers: {cust['distinct']} distinct, {cust['in_every_party']} known to all three parties"
            )
            summary["result"] = result

            step(5, "every party verifies the signed result against the domain CA and its pin")
            verified: dict[str, bool] = {}
            for ds in datasets:
                verify_result(signed, ca_certificate=domain.ca_certificate, measurement=good,
                              at=dt.datetime.now(dt.UTC), own_input_sha256=ds.sha256)  # fmt: skip
                verified[ds.party] = True
                con.print(
                    f"   {ds.party}: [green]verified[/] (CA chain, measurement, ES256 signature, its input listed)"
                )
            summary["verified"] = verified

            step(6, "the audit log: every release (kind secret.release)")
            table = Table("seq", "kind", "secret", "workload measurement", "decision")
            releases = audit_entries(admin, ["secret.release"])
            for e in releases:
                table.add_row(str(e["seq"]), e["kind"], e["subject"],
                              str(e["details"].get("measurement"))[:24] + "...", e["decision"])  # fmt: skip
            con.print(table)
            summary["releases"] = [e["subject"] for e in releases]

            step(7, "a modified workload (one byte: MIN_GROUP_SIZE 5 -> 1) asks for the keys")
            con.print(f"   its measurement: [red]{bad[:32]}...[/]")
            mallory = Trust(server.url, domain.ca_pem, platform="simulated", measurement=bad,
                            platform_dir=sim_dir, store=root / "modified-store")  # fmt: skip
            trusts.append(mallory)
            denials: dict[str, list[str]] = {}
            told: list[dict[str, Any]] = []
            for ds in datasets:
                try:
                    mallory.get_secret(ds.secret)
                    denials[ds.secret] = []
                    con.print(f"   [bold red]UNEXPECTED: {ds.secret} released[/]")
                except VerificationError as err:
                    told = list(err.reasons or [])
                    denials[ds.secret] = [str(r["code"]) for r in told]
                    con.print(f"   {ds.secret}: [red]denied[/] ({err.code})")
            con.print("   the reasons it was given:")
            for r in told:
                con.print(escape(f"     - [{r['code']}] {r['message']}"))
            summary["denials"] = denials
            denied = audit_entries(admin, ["secret.deny"])
            summary["denials_audited"] = [e["subject"] for e in denied]
            table = Table("seq", "kind", "secret", "reasons recorded")
            for e in denied:
                codes = [str(r["code"]) for r in e["details"].get("release_reasons", [])]
                table.add_row(str(e["seq"]), e["kind"], e["subject"], ", ".join(codes))
            con.print(table)

            report = admin.get("/v1/admin/audit/verify").json()
            summary["audit_ok"] = bool(report["ok"])
            status = (
                "[green]intact[/]"
                if report["ok"]
                else f"[red]BROKEN at {report['first_broken']}[/]"
            )
            con.print(f"   audit chain {status}: {report['count']} entries")
        finally:
            for t in trusts:
                t.close()
            admin.close()
            server.stop()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    con.print(f"[bold green]done[/] in {summary['seconds']} s")
    return summary
