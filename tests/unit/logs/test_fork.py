"""A forked child never encrypts under its parent's key and nonces (issue 9, item 1).

Pre-fork servers (gunicorn, uvicorn workers) and ``multiprocessing`` on Linux fork a process
whose log is already running. A real ``os.fork()`` here: parent and child both log; the child
gets its own run (its own log secret, key envelope and signed run start naming its parent);
no (key, nonce) pair is ever used twice, and the tenant reads both runs.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.x509.oid import NameOID
from tests.unit.logs._logs_helpers import Sealer, run_in_child

from veritee.errors import UsageError
from veritee.logs import decrypt_log, open_log_key, open_workload_log, verify_log
from veritee.logs.handler import recover_pending
from veritee.logs.runs import ADMISSION_FILE, KEY_FILE, read_run_start, runs_in
from veritee.logs.segment import RunCause, parse_segment
from veritee.logs.writer import LogWriter, SegmentStore
from veritee.profiles import Profile

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A self-signed certificate of ``key`` (what matters here is only whose key it holds)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workload")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


def _nonces(run: Path) -> list[bytes]:
    out = []
    for p in sorted(run.glob("segment-*.vtlog")):
        out += [f.record.nonce for f in parse_segment(p.read_bytes()).frames if f.record]
    return out


def test_parent_and_child_never_share_a_key_and_nonce(tmp_path: Path) -> None:
    tenant = x25519.X25519PrivateKey.generate()
    key = ec.generate_private_key(ec.SECP256R1())
    log = open_workload_log(profile=Profile.PRODUCTION, directory=tmp_path / "l", signing_key=key,
                            tenant_public_key=tenant.public_key(), seal=None, log_id="forked",
                            durable=False, flush_seconds=None)  # fmt: skip
    log.set_certificate(_certificate(ec.generate_private_key(ec.SECP256R1())))  # not its key
    pem = _certificate(key)
    log.set_certificate(pem)
    lg = log.logger("fork.app")
    for i in range(5):
        lg.info("parent before fork %d", i)

    def child() -> None:
        for i in range(20):
            lg.info("child %d", i)
        log.close()

    run_in_child(child)
    for i in range(20):
        lg.info("parent after fork %d", i)
    log.close()

    parent_run, child_run = runs_in(tmp_path / "l")
    texts, chains = [], []
    for r in (parent_run, child_run):
        assert verify_log(r.path, key.public_key()).ok
        lk = open_log_key((r.path / KEY_FILE).read_bytes(), tenant)
        chains.append(lk.chain_key)
        texts.append([x.text.rsplit(": ", 1)[1] for x in decrypt_log(r.path, lk, key.public_key())])
    assert texts[0] == [f"parent before fork {i}" for i in range(5)] + [
        f"parent after fork {i}" for i in range(20)
    ]
    assert texts[1] == [f"child {i}" for i in range(20)]
    # a fresh secret in the child: its keys and nonces are unrelated to the parent's
    assert chains[0] != chains[1]
    nonces = _nonces(parent_run.path) + _nonces(child_run.path)
    assert len(set(nonces)) == len(nonces) == 45
    # the admission certificate of the signing key is beside both runs, for the tenant
    assert (parent_run.path / ADMISSION_FILE).read_bytes() == pem
    assert (child_run.path / ADMISSION_FILE).read_bytes() == pem
    start = read_run_start(child_run.path)
    assert start is not None and start.verify(key.public_key())
    assert (start.cause, start.parent_run, start.parent_size) == (RunCause.FORK, 1, 5)


def test_a_forked_writer_refuses_to_encrypt(tmp_path: Path) -> None:
    w = LogWriter(SegmentStore(tmp_path / "w", durable=False), log_id="w", profile="production",
                  signing_key=ec.generate_private_key(ec.SECP256R1()))  # fmt: skip
    w.append(b"parent")

    def child() -> None:
        assert w.forked
        with pytest.raises(UsageError) as e:
            w.append(b"child")
        assert e.value.code == "log_forked"
        w.close()  # writes nothing into the parent's file

    run_in_child(child)
    assert not w.forked
    w.append(b"parent again")
    w.close()
    assert verify_log(tmp_path / "w", w.signing_public_key).ok


def test_a_child_forked_before_the_control_plane_keeps_its_own_held_records(
    tmp_path: Path,
) -> None:
    sealer, tenant = Sealer(), x25519.X25519PrivateKey.generate()
    log = open_workload_log(profile=Profile.PRODUCTION, directory=tmp_path / "l", signing_key=None,
                            tenant_public_key=tenant.public_key(), seal=sealer.seal,
                            log_id="held", durable=False, flush_seconds=None)  # fmt: skip
    lg = log.logger("fork.held")
    lg.warning("parent held")
    parent_file = log.handler.pending_path
    assert parent_file is not None

    def child() -> None:
        lg.warning("child held")  # a buffer and file of the child's own

    run_in_child(child)
    lg.warning("parent held again")
    files = sorted((tmp_path / "l").glob("pending*.sealed"))
    assert len(files) == 2
    (child_file,) = [f for f in files if f != parent_file]
    held = {f: [r.decode().rsplit(": ", 1)[1] for r in recover_pending(f, sealer.unseal)[0]]
            for f in files}  # fmt: skip
    assert held[parent_file] == ["parent held", "parent held again"]
    assert held[child_file] == ["child held"]
    key = ec.generate_private_key(ec.SECP256R1())
    assert log.attach_control_plane(key) == 2
    log.close()
