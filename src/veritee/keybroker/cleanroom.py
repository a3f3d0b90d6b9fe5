"""A multi-party clean room on the key broker (issue 4, part 5), and ``veritee demo cleanroom``.

Several parties each encrypt a CSV file under their own data key and register that key as a
secret whose release policy pins one analytics workload's measurement. The workload attests,
receives the keys (only after the domain's appraisal *and* every party's release policy hold),
computes a joint aggregate and signs the result with its admission-certified key. Each party
verifies that result: the certificate chains to the domain CA, carries the pinned measurement,
and the signature verifies. Releases and denials are in the service's audit log.

Dataset file (:func:`encrypt_dataset`)::

    0x00  8   MAGIC        b"VTCRDv01"
    0x08  12  NONCE        AES-256-GCM nonce
    0x14  c   CIPHERTEXT   CSV bytes + 16-byte tag; AAD = MAGIC || dataset name (UTF-8)

CSV columns: ``customer_id,category,amount`` (amount: a non-negative decimal, two places at
most). Signed result (:func:`sign_result`): ``{"alg": "ES256", "result": {...}, "signature":
base64 DER ECDSA P-256/SHA-256 over RESULT_TAG || canonical JSON of result, "certificate": PEM}``.

The same functions serve ``examples/cleanroom/`` (workload.py, party.py, make_data.py).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee import oids
from veritee.errors import MalformedError, OversizedError, VerificationError

__all__ = [
    "CATEGORIES",
    "DEFAULT_MIN_GROUP_SIZE",
    "PARTIES",
    "EncryptedDataset",
    "audit_entries",
    "canonical_json",
    "compute_aggregate",
    "decrypt_dataset",
    "encrypt_dataset",
    "register_data_key",
    "release_policy_for",
    "run_cleanroom_demo",
    "run_workload",
    "sign_result",
    "synthetic_csv",
    "verify_result",
]

MAGIC = b"VTCRDv01"
NONCE_SIZE = 12
KEY_SIZE = 32
RESULT_TAG = b"veritee-cleanroom-result-v1\n"
RESULT_FORMAT = "veritee-cleanroom-v1"
MAX_DATASET_BYTES = 8 * 1024 * 1024
MAX_ROWS = 200_000
MAX_AMOUNT = Decimal("1000000000")
DEFAULT_MIN_GROUP_SIZE = 5
CSV_HEADER = ("customer_id", "category", "amount")
CATEGORIES = ("groceries", "travel", "electronics", "health", "dining")
PARTIES = ("bank", "retailer", "insurer")
_CENT = Decimal("0.01")


# --- data --------------------------------------------------------------------------------


def synthetic_csv(party: str, *, rows: int = 120, customers: int = 150) -> bytes:
    """Deterministic synthetic spending rows for ``party`` (no real data; same bytes each run)."""
    rng = random.Random(f"veritee-cleanroom/{party}")  # seeded on purpose: reproducible data
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_HEADER)
    weights = [rng.randint(1, 6) for _ in CATEGORIES]
    for _ in range(rows):
        cid = f"c{rng.randrange(customers):04d}"
        cat = rng.choices(CATEGORIES, weights=weights)[0]
        w.writerow((cid, cat, f"{rng.randint(100, 40000) / 100:.2f}"))
    return out.getvalue().encode()


@dataclass(frozen=True)
class Row:
    customer_id: str
    category: str
    amount: Decimal


def parse_csv(data: bytes, *, name: str) -> list[Row]:
    """Parse a dataset; every error names the dataset and the row."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedError(f"dataset {name} is not UTF-8", field=name, offset=e.start) from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise MalformedError(f"dataset {name}: header must be {','.join(CSV_HEADER)}", field=name)
    rows: list[Row] = []
    for i, rec in enumerate(reader, start=2):
        where = f"{name} row {i}"
        if len(rows) >= MAX_ROWS:
            raise OversizedError(f"dataset {name} has more than {MAX_ROWS} rows", field=name)
        if len(rec) != 3 or not rec[0] or not rec[1]:
            raise MalformedError("expected customer_id,category,amount", field=where)
        try:
            amount = Decimal(rec[2])
        except InvalidOperation:
            raise MalformedError("amount is not a number", field=where) from None
        if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT or amount != amount.quantize(_CENT):
            raise MalformedError("amount must be 0..1e9 with at most two decimals", field=where)
        rows.append(Row(rec[0][:64], rec[1][:64], amount))
    return rows


def encrypt_dataset(csv_bytes: bytes, *, name: str, key: bytes | None = None) -> tuple[bytes, bytes]:
    """Encrypt a dataset under a data key (fresh unless given); returns ``(key, blob)``."""
    key = key if key is not None else AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(NONCE_SIZE)
    ct = AESGCM(key).encrypt(nonce, csv_bytes, MAGIC + name.encode())
    return key, MAGIC + nonce + ct


def decrypt_dataset(blob: bytes, key: bytes, *, name: str) -> bytes:
    """Open a dataset blob; a wrong key, name or a tampered byte is ``dataset_tampered``."""
    if len(blob) > MAX_DATASET_BYTES + 64:
        raise OversizedError(f"dataset {name} is larger than {MAX_DATASET_BYTES} bytes", field=name)
    if len(blob) < len(MAGIC) + NONCE_SIZE + 16 or not blob.startswith(MAGIC):
        raise MalformedError(f"dataset {name} is not a veritee clean-room file", field=name, offset=0)
    if len(key) != KEY_SIZE:
        raise VerificationError(f"data key for {name} is not 32 bytes", code="dataset_key_invalid")
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_SIZE]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_SIZE :], MAGIC + name.encode())
    except InvalidTag:
        raise VerificationError(
            f"dataset {name} does not decrypt (wrong key or tampered)", code="dataset_tampered"
        ) from None


def _money(d: Decimal) -> str:
    return str(d.quantize(_CENT, rounding=ROUND_HALF_EVEN))


def compute_aggregate(
    datasets: Mapping[str, Sequence[Row]], *, min_group_size: int = DEFAULT_MIN_GROUP_SIZE
) -> dict[str, Any]:
    """Joint spend per category across parties; groups smaller than ``min_group_size`` are
    suppressed (their figures withheld), so no single customer's rows come back out."""
    cats: dict[str, list[Decimal]] = {}
    parties_in: dict[str, set[str]] = {}
    customers: dict[str, set[str]] = {}
    for party, rows in datasets.items():
        customers[party] = {r.customer_id for r in rows}
        for r in rows:
            cats.setdefault(r.category, []).append(r.amount)
            parties_in.setdefault(r.category, set()).add(party)
    categories: dict[str, Any] = {}
    for cat in sorted(cats):
        amounts = cats[cat]
        if len(amounts) < min_group_size:
            categories[cat] = {"suppressed": True, "parties": len(parties_in[cat])}
            continue
        total = sum(amounts, Decimal(0))
        categories[cat] = {
            "count": len(amounts),
            "total": _money(total),
            "mean": _money(total / len(amounts)),
            "parties": len(parties_in[cat]),
        }
    sets = list(customers.values())
    common = set.intersection(*sets) if sets else set()
    return {
        "categories": categories,
        "customers": {"distinct": len(set().union(*sets)), "in_every_party": len(common)},
        "min_group_size": min_group_size,
    }


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes a result signature covers."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- signed results ----------------------------------------------------------------------


def sign_result(
    result: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate
) -> dict[str, Any]:
    """Sign ``result`` with the workload's admission-certified key (ES256)."""
    sig = key.sign(RESULT_TAG + canonical_json(result), ec.ECDSA(hashes.SHA256()))
    return {
        "alg": "ES256",
        "result": dict(result),
        "signature": base64.b64encode(sig).decode(),
        "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
    }


def _measurement_of(cert: x509.Certificate) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oids.MEASUREMENT)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        return None
    try:
        return oids.decode_utf8_string(value.value)
    except ValueError:
        return None


def verify_result(
    signed: Mapping[str, Any],
    *,
    ca_certificate: x509.Certificate,
    measurement: str,
    at: dt.datetime,
    own_input_sha256: str | None = None,
) -> dict[str, Any]:
    """A party's check of a signed result; returns the result or raises.

    1. shape and the certificate parse (:class:`MalformedError` naming the field);
    2. the certificate is issued by the domain CA and valid at ``at`` (``result_cert_untrusted``);
    3. its measurement extension equals the pinned ``measurement`` (``result_measurement_mismatch``);
    4. the ES256 signature over the canonical result verifies (``result_signature_invalid``);
    5. if ``own_input_sha256`` is given, the result lists that input (``result_input_missing``).
    """
    for field, kind in (("result", dict), ("signature", str), ("certificate", str), ("alg", str)):
        if not isinstance(signed.get(field), kind):
            raise MalformedError(f"signed result lacks {field}", field=field)
    if signed["alg"] != "ES256":
        raise MalformedError(f"unsupported alg {str(signed['alg'])[:16]!r}", field="alg")
    try:
        cert = x509.load_pem_x509_certificate(str(signed["certificate"]).encode())
    except ValueError:
        raise MalformedError("the certificate is not PEM X.509", field="certificate") from None
    try:
        sig = base64.b64decode(str(signed["signature"]), validate=True)
    except ValueError:
        raise MalformedError("the signature is not base64", field="signature") from None
    try:
        cert.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise VerificationError(
            "the result's certificate is not issued by the domain CA", code="result_cert_untrusted"
        ) from None
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise VerificationError(
            f"the result's certificate is not valid at {at.isoformat()}", code="result_cert_untrusted"
        )
    got = _measurement_of(cert)
    if got is None or got.lower() != measurement.lower():
        shown = "absent" if got is None else got[:16] + "..."
        raise VerificationError(
            f"the result was signed by workload {shown}, not the pinned {measurement[:16]}...",
            code="result_measurement_mismatch",
        )
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
        raise VerificationError("the result key is not ECDSA P-256", code="result_signature_invalid")
    result: dict[str, Any] = dict(signed["result"])
    try:
        pub.verify(sig, RESULT_TAG + canonical_json(result), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError(
            "the result signature does not verify (tampered or another key)",
            code="result_signature_invalid",
        ) from None
    if own_input_sha256 is not None:
        digests = {str(i.get("ciphertext_sha256")) for i in result.get("inputs", []) if isinstance(i, dict)}
        if own_input_sha256.lower() not in digests:
            raise VerificationError(
                "the result does not list this party's dataset", code="result_input_missing"
            )
    return result


# --- the workload and the parties ----------------------------------------------------------


@dataclass(frozen=True)
class EncryptedDataset:
    """One party's contribution: its encrypted file and the secret holding its data key."""

    party: str
    secret: str
    blob: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()


def release_policy_for(measurement: str, platform: str = "simulated") -> dict[str, Any]:
    """The release policy a party puts on its data key: this platform, this measurement only."""
    return {
        "version": 1,
        "description": "clean-room analytics workload only",
        "allOf": [
            {"claim": "platform", "equals": platform},
            {"claim": "measurement", "equals": measurement.lower()},
        ],
    }


def register_data_key(admin: httpx.Client, name: str, key: bytes, measurement: str) -> dict[str, Any]:
    """Store ``key`` as secret ``name`` behind :func:`release_policy_for` (admin API)."""
    body = {"value": base64.b64encode(key).decode(), "policy": release_policy_for(measurement)}
    r = admin.put(f"/v1/admin/secrets/{name}", json=body)
    if r.status_code != 200:
        raise VerificationError(f"registering {name} failed: HTTP {r.status_code}", code="register_failed")
    out: dict[str, Any] = r.json()
    return out


def audit_entries(admin: httpx.Client, kinds: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every audit entry (paged), optionally only those of ``kinds``."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        r = admin.get("/v1/admin/audit", params={"after": after, "limit": 1000})
        r.raise_for_status()
        page = r.json()["entries"]
        out.extend(e for e in page if not kinds or e["kind"] in kinds)
        if len(page) < 1000:
            return out
        after = int(page[-1]["seq"])


def run_workload(
    trust: Any, datasets: Sequence[EncryptedDataset], *, min_group_size: int = DEFAULT_MIN_GROUP_SIZE
) -> dict[str, Any]:
    """The analytics workload: get every data key, decrypt, aggregate, certify, sign.

    ``trust`` is a :class:`veritee.sdk.trust.Trust`. A denied key raises the service's refusal
    (``VerificationError`` with ``.reasons``) before anything is computed.
    """
    rows: dict[str, list[Row]] = {}
    for ds in datasets:  # each release is its own fresh attestation, audited by the broker
        data_key = trust.get_secret(ds.secret)
        rows[ds.party] = parse_csv(decrypt_dataset(ds.blob, data_key, name=ds.party), name=ds.party)
    cert = trust.certify()  # the admission certificate the parties check the signature against
    key = trust.keystore.private_key()
    result = {
        "format": RESULT_FORMAT,
        "measurement": trust.platform.measurement,
        "inputs": [
            {"party": d.party, "secret": d.secret, "ciphertext_sha256": d.sha256, "rows": len(rows[d.party])}
            for d in datasets
        ],
        **compute_aggregate(rows, min_group_size=min_group_size),
    }
    return sign_result(result, key, cert)


# --- `veritee demo cleanroom` ----------------------------------------------------------------


def _workload_source() -> bytes:
    """examples/cleanroom/workload.py from the source tree (else this module, when installed)."""
    from pathlib import Path

    here = Path(__file__).resolve()
    example = here.parents[3] / "examples" / "cleanroom" / "workload.py"
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
                table.add_row(party, str(plain.count(b"\n") - 1), ds.sha256[:24] + "...", ds.secret, str(reg["version"]))
            con.print(table)

            step(4, "the workload attests for each key, computes, gets certified and signs the aggregate")
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
            con.print(f"   customers: {cust['distinct']} distinct, {cust['in_every_party']} known to all three parties")
            summary["result"] = result

            step(5, "every party verifies the signed result against the domain CA and its pin")
            verified: dict[str, bool] = {}
            for ds in datasets:
                verify_result(signed, ca_certificate=domain.ca_certificate, measurement=good,
                              at=dt.datetime.now(dt.UTC), own_input_sha256=ds.sha256)  # fmt: skip
                verified[ds.party] = True
                con.print(f"   {ds.party}: [green]verified[/] (CA chain, measurement, ES256 signature, its input listed)")
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
                    told = list(getattr(err, "reasons", []))
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
            status = "[green]intact[/]" if report["ok"] else f"[red]BROKEN at {report['first_broken']}[/]"
            con.print(f"   audit chain {status}: {report['count']} entries")
        finally:
            for t in trusts:
                t.close()
            admin.close()
            server.stop()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    con.print(f"[bold green]done[/] in {summary['seconds']} s")
    return summary
