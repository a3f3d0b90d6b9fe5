"""The tenant's side: receive the log key, verify a stored log, decrypt its records.

Log keys reach the tenant sealed with HPKE (RFC 9180, single-shot base mode) to the tenant's
X25519, P-256 or P-384 public key. The HPKE ``info`` binds the log id, the profile, the epoch the
key starts at and the SHA-256 of the signer's SubjectPublicKeyInfo, so an envelope moved to
another log, profile or signer does not open.

:func:`verify_log` needs no secret: only the signer's public key (the workload's attested key)
and, ideally, the last tree head the tenant kept. It names what it finds:

==============  =====================================================================
kind            meaning
==============  =====================================================================
truncation      records or segments cut away at the end (or a segment cut short)
deletion        records missing from the middle of the log
rollback        the stored log is an older (signed) state than the tenant's kept head
reordering      records, heads or segment files stored out of order
tampering       stored bytes changed: records do not hash to the signed roots
bad_signature   a tree head is not signed by the given key
fork            the stored history does not extend the kept head (equivocation)
wrong_log       segments or heads of another log id / profile mixed in
profile         the log's profile is not the one the tenant requires
unsigned_tail   (warning) records after the last signed head; not yet authenticated
not_closed      (warning) no final head; records after the last head may be missing
==============  =====================================================================

Checking every signed head's root against the stored leaves is equivalent to checking each
record's RFC 9162 inclusion proof; the kept head is checked with an RFC 9162 consistency proof.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import MalformedError, SealingError, UsageError
from veritee.logs.errors import LogIntegrityError
from veritee.logs.merkle import MerkleTree, leaf_hash, verify_consistency
from veritee.logs.ratchet import KEY_SIZE, KeyRatchet, log_context
from veritee.logs.segment import (
    FRAME_HEAD,
    RecordFrame,
    SignedTreeHead,
    VerifyingKey,
    key_id,
    parse_segment,
    record_aad,
)
from veritee.profiles import Profile

__all__ = [
    "ERROR_KINDS",
    "WARNING_KINDS",
    "Finding",
    "LogKey",
    "LogRecord",
    "LogReport",
    "TenantPrivateKey",
    "TenantPublicKey",
    "decrypt_log",
    "open_log_key",
    "seal_log_key",
    "verify_log",
]

LOG_KEY_FORMAT = "veritee-log-key-v1"
ERROR_KINDS = ("truncation", "deletion", "rollback", "reordering", "tampering", "bad_signature",
               "fork", "wrong_log", "profile")  # fmt: skip
WARNING_KINDS = ("unsigned_tail", "not_closed")
_SEGMENT_RE = re.compile(r"^segment-(\d{8})\.vtlog$")

TenantPublicKey = x25519.X25519PublicKey | ec.EllipticCurvePublicKey
TenantPrivateKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


# -- log key envelope ----------------------------------------------------------------------------


def _suite(key: object) -> tuple[hpke.Suite, str]:
    if isinstance(key, x25519.X25519PublicKey | x25519.X25519PrivateKey):
        return hpke.Suite(
            hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
        ), "X25519"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM), "P-256"
        if isinstance(key.curve, ec.SECP384R1):
            return hpke.Suite(hpke.KEM.P384, hpke.KDF.HKDF_SHA384, hpke.AEAD.AES_256_GCM), "P-384"
    raise UsageError("tenant key must be X25519, P-256 or P-384", code="tenant_key_type")


def _info(log_id: str, profile: str, epoch: int, signer_key_id: bytes) -> bytes:
    lid, prof = log_id.encode(), profile.encode()
    return (LOG_KEY_FORMAT.encode() + struct.pack(">H", len(lid)) + lid
            + struct.pack(">H", len(prof)) + prof + struct.pack(">I", epoch) + signer_key_id)  # fmt: skip


@dataclass(frozen=True)
class LogKey:
    """An opened log key: the chain key of ``epoch`` (reads records of that epoch and later)."""

    log_id: str
    profile: str
    epoch: int
    signer_key_id: bytes
    chain_key: bytes = field(repr=False)


def seal_log_key(
    chain_key: bytes,
    *,
    epoch: int,
    log_id: str,
    profile: str,
    signer_key_id: bytes,
    tenant_public_key: TenantPublicKey,
) -> bytes:
    """HPKE-seal a chain key to the tenant; returns a small JSON envelope (bytes)."""
    suite, kem = _suite(tenant_public_key)
    sealed = suite.encrypt(chain_key, tenant_public_key,
                           info=_info(log_id, profile, epoch, signer_key_id))  # fmt: skip
    doc = {
        "format": LOG_KEY_FORMAT,
        "log_id": log_id,
        "profile": profile,
        "epoch": epoch,
        "signer_key_id": signer_key_id.hex(),
        "kem": kem,
        "sealed": base64.b64encode(sealed).decode(),
    }
    return json.dumps(doc, indent=2).encode()


def open_log_key(blob: bytes, tenant_private_key: TenantPrivateKey) -> LogKey:
    """Open an envelope from :func:`seal_log_key`. Raises MalformedError / SealingError."""
    try:
        doc = json.loads(blob)
        if doc.get("format") != LOG_KEY_FORMAT:
            raise MalformedError("not a veritee log key", field="format")
        log_id, profile, epoch = str(doc["log_id"]), str(doc["profile"]), int(doc["epoch"])
        signer = bytes.fromhex(doc["signer_key_id"])
        sealed = base64.b64decode(doc["sealed"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MalformedError(f"log key envelope does not parse ({type(e).__name__})",
                             field="log_key") from None  # fmt: skip
    suite, _ = _suite(tenant_private_key)
    try:
        chain = suite.decrypt(
            sealed, tenant_private_key, info=_info(log_id, profile, epoch, signer)
        )
    except Exception:  # HPKE raises InvalidTag or ValueError for a wrong key / tampered envelope
        raise SealingError("log key does not open with this tenant key", code="log_key") from None
    if len(chain) != KEY_SIZE:
        raise MalformedError("log key has the wrong length", field="log_key.sealed")
    return LogKey(log_id, profile, epoch, signer, chain)


# -- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    segment: int | None = None
    offset: int | None = None
    leaf_index: int | None = None

    @property
    def is_error(self) -> bool:
        return self.kind not in WARNING_KINDS

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "message": self.message}
        for k in ("segment", "offset", "leaf_index"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


@dataclass(frozen=True)
class LogReport:
    log_id: str | None
    profile: str | None
    segments: int
    records: int
    tree_size: int  # size of the latest head that verified (signature and root)
    latest_head: SignedTreeHead | None
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not any(f.is_error for f in self.findings)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(f.kind for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        h = self.latest_head
        return {
            "ok": self.ok,
            "log_id": self.log_id,
            "profile": self.profile,
            "segments": self.segments,
            "records": self.records,
            "tree_size": self.tree_size,
            "root_hash": h.root_hash.hex() if h else None,
            "final": h.final if h else False,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class _Scan:
    records: dict[int, RecordFrame]
    report: LogReport


def verify_log(
    segments_dir: Path | str,
    signer_public_key: VerifyingKey,
    last_tree_head: SignedTreeHead | None = None,
    *,
    require_profile: Profile | None = None,
    require_final: bool = False,
) -> LogReport:
    """Verify a stored log without any secret; every problem found is a named :class:`Finding`."""
    return _scan(Path(segments_dir), signer_public_key, last_tree_head,
                 require_profile, require_final).report  # fmt: skip


def _scan(
    directory: Path,
    signer: VerifyingKey,
    kept: SignedTreeHead | None,
    require_profile: Profile | None,
    require_final: bool,
) -> _Scan:
    out: list[Finding] = []
    files = sorted(directory.glob("segment-*.vtlog"))
    records: dict[int, RecordFrame] = {}
    order: list[int] = []
    heads: list[tuple[SignedTreeHead, int]] = []
    log_id: str | None = None
    profile: str | None = None
    expected_seg = 0
    present: list[int] = []
    # 1. read segments in name order; check names, numbering, framing and head signatures
    for pos, path in enumerate(files):
        m = _SEGMENT_RE.match(path.name)
        name_idx = int(m.group(1)) if m else -1
        try:
            seg = parse_segment(path.read_bytes())
        except MalformedError as e:
            out.append(Finding("tampering", f"{path.name} does not parse: {e}", name_idx, e.offset))
            expected_seg = max(expected_seg, name_idx + 1)
            continue
        h = seg.header
        if h.index != name_idx:
            out.append(Finding("reordering", f"{path.name} holds segment {h.index}", h.index))
        if log_id is None:
            log_id, profile = h.log_id, h.profile
        elif (h.log_id, h.profile) != (log_id, profile):
            out.append(
                Finding("wrong_log", f"segment {h.index} belongs to log {h.log_id!r}", h.index)
            )
            continue
        if h.index > expected_seg:
            out.append(Finding("truncation", f"segments {expected_seg}..{h.index - 1} are missing",
                               expected_seg))  # fmt: skip
        elif h.index < expected_seg:
            out.append(Finding("reordering", f"segment {h.index} is stored after a later one",
                               h.index))  # fmt: skip
        expected_seg = max(expected_seg, h.index + 1)
        present.append(h.index)
        for fr in seg.frames:
            if fr.record is not None:
                idx = fr.record.leaf_index
                if idx in records:
                    out.append(Finding("tampering", f"leaf {idx} is stored twice", h.index,
                                       fr.offset, idx))  # fmt: skip
                    continue
                records[idx] = fr.record
                order.append(idx)
            elif fr.head is not None:
                hd = fr.head
                if not hd.verify(signer):
                    out.append(Finding("bad_signature", f"tree head of size {hd.tree_size} is not "
                                       "signed by the given key", h.index, fr.offset))  # fmt: skip
                elif (hd.log_id, hd.profile) != (log_id, profile):
                    out.append(Finding("wrong_log", f"tree head of log {hd.log_id!r}", h.index,
                                       fr.offset))  # fmt: skip
                else:
                    heads.append((hd, h.index))
        if seg.truncated_at is not None:
            out.append(Finding("truncation", f"segment {h.index} ends inside a frame",
                               h.index, seg.truncated_at))  # fmt: skip
        elif pos != len(files) - 1 and (not seg.frames or seg.frames[-1].kind != FRAME_HEAD):
            out.append(Finding("truncation", f"segment {h.index} does not end with its signed "
                               "tree head: records were cut from its end", h.index))  # fmt: skip

    # 2. record order and completeness
    if order != sorted(order):
        at = next(i for i in range(1, len(order)) if order[i] < order[i - 1])
        out.append(Finding("reordering", f"leaf {order[at]} is stored after leaf {order[at - 1]}",
                           leaf_index=order[at]))  # fmt: skip
    contiguous = 0
    while contiguous in records:
        contiguous += 1
    if contiguous < len(records):
        out.append(Finding("deletion", f"records from leaf {contiguous} are missing while later "
                           "ones are present", leaf_index=contiguous))  # fmt: skip
    tree = MerkleTree([leaf_hash(records[i].body) for i in range(contiguous)])

    # 3. every signed head against the stored leaves (== inclusion of each record)
    latest: SignedTreeHead | None = None
    prev: SignedTreeHead | None = None
    good = 0
    for hd, seg_idx in heads:
        if prev is not None and prev.final:
            out.append(Finding("tampering", "a tree head follows the final one", seg_idx))
        # order is the leaf index (tree size), never the workload's wall clock: a clock step
        # back between two honest heads is not reordering
        if prev is not None and hd.tree_size < prev.tree_size:
            out.append(Finding("reordering", f"tree head of size {hd.tree_size} is stored after "
                               f"one of size {prev.tree_size}", seg_idx))  # fmt: skip
        prev = hd
        if hd.tree_size > len(records):
            out.append(Finding("truncation", f"a signed head covers {hd.tree_size} records but "
                               f"only {len(records)} are stored", seg_idx))  # fmt: skip
        elif hd.tree_size > contiguous:
            continue  # already named as deletion
        elif tree.root(hd.tree_size) != hd.root_hash:
            out.append(Finding("tampering", f"records in leaves {good}..{hd.tree_size - 1} do not "
                               "hash to the signed root", seg_idx, leaf_index=good))  # fmt: skip
        else:
            good = max(good, hd.tree_size)
            if latest is None or hd.tree_size >= latest.tree_size:
                latest = hd
    final = next((hd for hd, _ in heads if hd.final), None)
    if final is not None and len(records) > final.tree_size:
        out.append(Finding("tampering", f"{len(records) - final.tree_size} records stored after "
                           "the final tree head", leaf_index=final.tree_size))  # fmt: skip

    # 4. against the head the tenant kept: no rollback, truncation or rewritten history
    if kept is not None:
        _check_kept(kept, signer, log_id, tree, latest, present, out)

    # 5. completeness warnings and requirements
    signed = latest.tree_size if latest else 0
    if contiguous > signed:
        out.append(Finding("unsigned_tail", f"{contiguous - signed} records after the last signed "
                           "head are not yet authenticated", leaf_index=signed))  # fmt: skip
    if final is None and files:
        kind = "truncation" if require_final else "not_closed"
        out.append(Finding(kind, "the log has no final tree head; records after the last head "
                           "may be missing"))  # fmt: skip
    if require_profile is not None and profile != require_profile.value:
        out.append(Finding("profile", f"log profile is {profile!r}, required "
                           f"{require_profile.value!r}"))  # fmt: skip
    if not files and kept is not None and kept.tree_size:
        out.append(Finding("truncation", "no segments are stored"))
    report = LogReport(log_id, profile, len(files), len(records), signed, latest, tuple(out))
    return _Scan(records, report)


def _check_kept(
    kept: SignedTreeHead,
    signer: VerifyingKey,
    log_id: str | None,
    tree: MerkleTree,
    latest: SignedTreeHead | None,
    present: list[int],
    out: list[Finding],
) -> None:
    if not kept.verify(signer):
        out.append(Finding("bad_signature", "the kept tree head is not signed by the given key"))
        return
    if log_id is not None and kept.log_id != log_id:
        out.append(Finding("wrong_log", f"the kept head is of log {kept.log_id!r}"))
        return
    if kept.tree_size > tree.size:
        have = latest.tree_size if latest else 0
        if kept.segment > max(present, default=-1):
            out.append(Finding("truncation", f"the kept head covers {kept.tree_size} records in "
                               f"segment {kept.segment}, but the stored log ends at {tree.size} "
                               "records: segments were removed", kept.segment))  # fmt: skip
        else:
            out.append(Finding("rollback", f"the stored log (signed size {have}) is older than "
                               f"the kept head (size {kept.tree_size}): it was rolled back"))  # fmt: skip
        return
    if kept.tree_size == 0:
        return
    new_size = latest.tree_size if latest and latest.tree_size >= kept.tree_size else tree.size
    new_root = tree.root(new_size)
    proof = tree.consistency_proof(kept.tree_size, new_size)
    if not verify_consistency(kept.tree_size, new_size, kept.root_hash, new_root, proof):
        out.append(Finding("fork", f"the stored history does not extend the kept head of size "
                           f"{kept.tree_size}"))  # fmt: skip


# -- decryption --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRecord:
    leaf_index: int
    epoch: int
    text: str
    signed: bool  # covered by a verified signed tree head


def decrypt_log(
    segments_dir: Path | str,
    log_key: LogKey,
    signer_public_key: VerifyingKey,
    last_tree_head: SignedTreeHead | None = None,
    *,
    require_profile: Profile | None = None,
) -> Iterator[LogRecord]:
    """Verify the log, then yield its records in order. Raises :class:`LogIntegrityError` when
    verification finds an error (warnings such as an unsigned tail do not stop it; those records
    come with ``signed=False``). Records of epochs before the key's epoch are unreadable by design
    and skipped."""
    scan = _scan(Path(segments_dir), signer_public_key, last_tree_head, require_profile, False)
    rep = scan.report
    if not rep.ok:
        kinds = ", ".join(sorted(f.kind for f in rep.findings if f.is_error))
        raise LogIntegrityError(f"log failed verification: {kinds}", report=rep)
    if rep.log_id is None:
        return
    if (log_key.log_id, log_key.profile) != (rep.log_id, rep.profile):
        raise UsageError("the log key belongs to another log or profile", code="log_key_mismatch")
    if log_key.signer_key_id != key_id(signer_public_key):
        raise UsageError("the log key names another signer", code="log_key_mismatch")
    ratchet = KeyRatchet(log_key.chain_key, context=log_context(rep.log_id, rep.profile or ""),
                         epoch=log_key.epoch)  # fmt: skip
    lid, prof = rep.log_id.encode(), (rep.profile or "").encode()
    aead, aead_epoch = AESGCM(ratchet.record_key), ratchet.epoch
    try:
        for idx in sorted(scan.records):
            r = scan.records[idx]
            if r.epoch < ratchet.epoch:
                continue
            if r.epoch != aead_epoch:
                ratchet.advance_to(r.epoch)
                aead, aead_epoch = AESGCM(ratchet.record_key), r.epoch
            try:
                pt = aead.decrypt(r.nonce, r.ciphertext, record_aad(lid, prof, r.epoch, idx))
            except InvalidTag:
                raise LogIntegrityError(f"record {idx} does not decrypt: tampered, or not "
                                        "this log's key", report=rep) from None  # fmt: skip
            yield LogRecord(idx, r.epoch, pt.decode("utf-8", "replace"), idx < rep.tree_size)
    finally:
        ratchet.erase()
