"""Catalogue, key ratchet, segment format, tenant key envelope, handler modes."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from tests.unit.logs._logs_helpers import Sealer, WrittenLog, open_log

import veritee.logs as logs_pkg
from veritee.errors import (
    CollateralError,
    MalformedError,
    NonceError,
    OversizedError,
    SealingError,
    UsageError,
    VerificationError,
    VeriteeError,
    http_status,
)
from veritee.logs import catalogue, decrypt_log, open_log_key, open_workload_log, verify_log
from veritee.logs.handler import load_pending
from veritee.logs.ratchet import KeyRatchet, log_context, wipe
from veritee.logs.segment import SignedTreeHead, parse_segment
from veritee.logs.tenant import seal_log_key
from veritee.logs.writer import SegmentStore
from veritee.profiles import Profile

# -- catalogue -------------------------------------------------------------------------------


def test_catalogue_codes_are_unique_and_documented() -> None:
    codes = [s.code for s in catalogue.CATALOGUE]
    assert len(set(codes)) == len(codes)
    doc = catalogue.__doc__ or ""
    for s in catalogue.CATALOGUE:
        line = next(x for x in doc.splitlines() if x.startswith(s.code))
        assert s.title in line and str(s.status) in line and str(s.site) in line


@pytest.mark.parametrize(("exc", "code"), [
    (OversizedError("x"), "VT-0002"), (MalformedError("x"), "VT-0001"),
    (CollateralError("x"), "VT-0004"), (VerificationError("x"), "VT-0003"),
    (SealingError("x"), "VT-0010"), (UsageError("x"), "VT-0011"),
    (KeyError("x"), "VT-0000"), (logs_pkg.LogIntegrityError("x"), "VT-0103"),
])  # fmt: skip
def test_classify(exc: BaseException, code: str) -> None:
    assert catalogue.classify(exc).code == code
    # one status table: the catalogue says what the service's problem details say
    state = catalogue.classify(exc)
    if isinstance(exc, VeriteeError):
        assert state.status == http_status(exc)
    assert catalogue.problem_for(exc, Profile.PRODUCTION)["status"] == http_status(exc)


def test_a_reused_nonce_is_409_as_the_service_says() -> None:
    e = NonceError("used", code="nonce_reused")
    assert catalogue.problem_for(e, Profile.PRODUCTION)["status"] == 409 == http_status(e)


def test_problem_and_message_by_profile() -> None:
    e = VerificationError("signature over card 4111 failed")
    for p in (Profile.STAGING, Profile.PRODUCTION):
        assert catalogue.public_message(e, p) == "VT-0003 verification failed"
        body = catalogue.problem_for(e, p)
        assert set(body) == {"type", "title", "status", "code"} and "4111" not in str(body)
    for p in (Profile.DEVELOPMENT, Profile.TESTING):
        assert catalogue.problem_for(e, p)["detail"] == str(e)
        assert "4111" in catalogue.public_message(e, p)


def test_public_modules_have_all() -> None:
    import importlib

    for name in (
        "catalogue",
        "layers",
        "merkle",
        "ratchet",
        "segment",
        "handler",
        "writer",
        "tenant",
        "workload",
        "errors",
    ):
        mod = importlib.import_module(f"veritee.logs.{name}")
        for sym in mod.__all__:
            assert hasattr(mod, sym), (name, sym)
    for sym in logs_pkg.__all__:
        assert hasattr(logs_pkg, sym)


# -- ratchet ---------------------------------------------------------------------------------


def test_ratchet_forward_only_and_erases() -> None:
    ctx = log_context("l", "production")
    s = os.urandom(32)
    a = KeyRatchet(s, context=ctx)
    keys = [bytes(a.record_key)]
    live = a.record_key
    for _ in range(3):
        a.advance()
        keys.append(bytes(a.record_key))
    assert len(set(keys)) == 4
    # the tenant holding S derives the same keys; holding chain_2 derives from epoch 2 only
    b = KeyRatchet(s, context=ctx)
    b.advance_to(3)
    assert bytes(b.record_key) == keys[3]
    a2 = KeyRatchet(s, context=ctx)
    a2.advance_to(2)
    c = KeyRatchet(a2.chain_key(), context=ctx, epoch=2)
    assert bytes(c.record_key) == keys[2]
    with pytest.raises(ValueError, match="cannot go back"):
        c.advance_to(1)
    # log id and profile are bound into every key
    assert bytes(KeyRatchet(s, context=log_context("l", "staging")).record_key) != keys[0]
    a.erase()
    assert live == bytearray(32) and a.chain_key() == bytes(32)


def test_wipe_bytes_best_effort() -> None:
    buf = bytes(bytearray(os.urandom(32)))
    wipe(buf)
    assert buf == bytes(32)


# -- segment format --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda: ec.generate_private_key(ec.SECP384R1()),
    ed25519.Ed25519PrivateKey.generate,
])  # fmt: skip
def test_tree_head_sign_verify_roundtrip(make: object) -> None:
    key = make()  # type: ignore[operator]
    h = SignedTreeHead.sign(
        key,
        log_id="l",
        profile="production",
        tree_size=7,
        root_hash=b"\x01" * 32,
        timestamp_ms=5,
        epoch=1,
        segment=0,
    )
    assert h.verify(key.public_key())
    again = SignedTreeHead.from_json(h.to_json())
    assert again == h and again.verify(key.public_key())
    assert not h.verify(ed25519.Ed25519PrivateKey.generate().public_key())
    raw = bytearray(h.to_bytes())
    raw[20] ^= 1
    assert not SignedTreeHead.from_bytes(bytes(raw)).verify(key.public_key())


def test_segment_parse_errors_name_field_and_offset(written: WrittenLog) -> None:
    data = written.segments()[0].read_bytes()
    with pytest.raises(MalformedError, match=r"segment\.magic.*offset 0"):
        parse_segment(b"XXXX" + data[4:])
    with pytest.raises(MalformedError, match=r"segment\.version"):
        parse_segment(data[:8] + b"\x09" + data[9:])
    with pytest.raises(MalformedError, match="truncated"):
        parse_segment(data[:15])
    hdr_end = len(parse_segment(data).header.to_bytes())
    with pytest.raises(MalformedError, match=rf"frame\.type.*offset {hdr_end}"):
        parse_segment(data[:hdr_end] + b"\x07" + data[hdr_end + 1 :])
    with pytest.raises(MalformedError, match=r"frame\.length"):
        parse_segment(data[: hdr_end + 1] + b"\xff\xff\xff\xff" + data[hdr_end + 5 :])
    assert parse_segment(data[:-1]).truncated_at is not None
    for _ in range(50):
        try:
            parse_segment(os.urandom(200))
        except MalformedError:
            pass
    with pytest.raises(MalformedError):
        SignedTreeHead.from_json("{}")


# -- tenant key envelope ---------------------------------------------------------------------


def test_log_key_envelope(written: WrittenLog) -> None:
    key = open_log_key(written.key_blob, written.tenant_key)
    assert key.epoch == 0 and key.log_id == "test-log/run-000001" and "chain_key" not in repr(key)
    with pytest.raises(SealingError):
        open_log_key(written.key_blob, x25519.X25519PrivateKey.generate())
    moved = written.key_blob.replace(b'"profile": "production"', b'"profile": "staging"')
    with pytest.raises(SealingError):
        open_log_key(moved, written.tenant_key)
    with pytest.raises(MalformedError):
        open_log_key(b"[1]", written.tenant_key)
    p256 = ec.generate_private_key(ec.SECP256R1())
    blob = seal_log_key(
        b"k" * 32,
        epoch=3,
        log_id="x",
        profile="staging",
        signer_key_id=b"\x00" * 32,
        tenant_public_key=p256.public_key(),
    )
    assert open_log_key(blob, p256).chain_key == b"k" * 32


def test_late_tenant_key_reads_only_later_epochs(tmp_path: Path) -> None:
    log = open_workload_log(profile=Profile.PRODUCTION, directory=tmp_path / "l",
                            signing_key=ec.generate_private_key(ec.SECP256R1()),
                            tenant_public_key=None, seal=None, log_id="late",
                            records_per_epoch=10, durable=False)  # fmt: skip
    lg = log.logger("late.app")
    for i in range(25):
        lg.info("r%d", i)
    tenant = x25519.X25519PrivateKey.generate()
    blob = log.export_key_for_tenant(tenant.public_key())
    for i in range(25, 30):
        lg.info("r%d", i)
    log.close()
    assert log.handler.writer is not None
    signer = log.handler.writer.signing_public_key
    recs = list(decrypt_log(tmp_path / "l" / "run-000001", open_log_key(blob, tenant), signer))
    assert [r.leaf_index for r in recs] == list(range(20, 30))  # epoch 2 onwards


# -- handler modes ---------------------------------------------------------------------------


def test_development_writes_plaintext(tmp_path: Path) -> None:
    out = io.StringIO()
    log = open_workload_log(profile=Profile.DEVELOPMENT, directory=tmp_path / "d",
                            signing_key=ec.generate_private_key(ec.SECP256R1()),
                            tenant_public_key=None, seal=None, log_id="dev",
                            plain_stream=out)  # fmt: skip
    log.logger("dev.app").debug("visible %s", "text")
    assert "DEBUG dev.app: visible text" in out.getvalue()
    assert not list((tmp_path / "d").glob("segment-*"))
    with pytest.raises(UsageError):
        log.export_key_for_tenant()
    log.close()


def test_pending_buffer_delivered_after_control_plane(tmp_path: Path) -> None:
    sealer = Sealer()
    tenant = x25519.X25519PrivateKey.generate()
    log = open_workload_log(profile=Profile.PRODUCTION, directory=tmp_path / "p",
                            signing_key=None, tenant_public_key=tenant.public_key(),
                            seal=sealer.seal, log_id="pending", durable=False)  # fmt: skip
    lg = log.logger("pending.app")
    for i in range(5):
        lg.error("early failure %d", i)
    pending = log.handler.pending_path
    assert log.handler.pending == 5 and pending is not None and pending.is_file()
    assert b"early failure" not in pending.read_bytes()
    # a restarted workload with the same sealing key recovers them
    assert [r.decode().split(": ", 1)[1] for r in load_pending(pending, sealer.unseal)] == [
        f"early failure {i}" for i in range(5)
    ]
    with pytest.raises(SealingError):  # another measurement's key does not unseal
        load_pending(pending, Sealer().unseal)
    key = ec.generate_private_key(ec.SECP256R1())
    assert log.attach_control_plane(key) == 5
    assert not pending.exists()
    lg.info("after")
    log.close()
    texts = [
        r.text
        for r in decrypt_log(
            tmp_path / "p" / "run-000001",
            open_log_key(log.export_key_for_tenant(), tenant),
            key.public_key(),
        )
    ]
    assert [t.split(": ", 1)[1] for t in texts] == [
        *(f"early failure {i}" for i in range(5)),
        "after",
    ]
    with pytest.raises(UsageError):
        log.attach_control_plane(key)


def test_segment_store_refuses_a_folder_with_segments(written: WrittenLog) -> None:
    with pytest.raises(UsageError, match="already holds segments"):
        SegmentStore(written.directory)


def test_logger_is_detached_on_close(tmp_path: Path) -> None:
    log, *_ = open_log(tmp_path / "c")
    lg = log.logger("closing.app")
    log.close()
    assert log.handler not in lg.handlers
    assert verify_log(tmp_path / "c" / "run-000001", _[0].public_key()).ok
    logging.getLogger("closing.app").propagate = True
