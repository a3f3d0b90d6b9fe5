"""A multi-party clean room on the key broker (issue 4, part 5); ``veritee demo cleanroom`` is
:mod:`veritee.demo_cleanroom`.

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

from veritee import certs, oids
from veritee._codec import canonical_json as _canonical
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
        if (
            not amount.is_finite()
            or amount < 0
            or amount > MAX_AMOUNT
            or amount != amount.quantize(_CENT)
        ):
            raise MalformedError("amount must be 0..1e9 with at most two decimals", field=where)
        rows.append(Row(rec[0][:64], rec[1][:64], amount))
    return rows


def encrypt_dataset(
    csv_bytes: bytes, *, name: str, key: bytes | None = None
) -> tuple[bytes, bytes]:
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
        raise MalformedError(
            f"dataset {name} is not a veritee clean-room file", field=name, offset=0
        )
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
    """Sorted keys, no whitespace, UTF-8: the bytes a result signature covers (stored data:
    UTF-8, not the ASCII escapes of :func:`veritee._codec.canonical_json`)."""
    return _canonical(obj, ascii_only=False).encode()


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
    cert = certs.load_pem_certificate(str(signed["certificate"]).encode(), "certificate")
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
            f"the result's certificate is not valid at {at.isoformat()}",
            code="result_cert_untrusted",
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
        raise VerificationError(
            "the result key is not ECDSA P-256", code="result_signature_invalid"
        )
    result: dict[str, Any] = dict(signed["result"])
    try:
        pub.verify(sig, RESULT_TAG + canonical_json(result), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError(
            "the result signature does not verify (tampered or another key)",
            code="result_signature_invalid",
        ) from None
    if own_input_sha256 is not None:
        digests = {
            str(i.get("ciphertext_sha256")) for i in result.get("inputs", []) if isinstance(i, dict)
        }
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


def register_data_key(
    admin: httpx.Client, name: str, key: bytes, measurement: str
) -> dict[str, Any]:
    """Store ``key`` as secret ``name`` behind :func:`release_policy_for` (admin API)."""
    body = {"value": base64.b64encode(key).decode(), "policy": release_policy_for(measurement)}
    r = admin.put(f"/v1/admin/secrets/{name}", json=body)
    if r.status_code != 200:
        raise VerificationError(
            f"registering {name} failed: HTTP {r.status_code}", code="register_failed"
        )
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
    trust: Any,
    datasets: Sequence[EncryptedDataset],
    *,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
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
            {
                "party": d.party,
                "secret": d.secret,
                "ciphertext_sha256": d.sha256,
                "rows": len(rows[d.party]),
            }
            for d in datasets
        ],
        **compute_aggregate(rows, min_group_size=min_group_size),
    }
    return sign_result(result, key, cert)
