"""Runs of a workload's log folder: restarts, held records of earlier starts, the run-start frame.

The end-to-end scenario (real processes, SIGKILL, a real service) is
``tests/integration/test_log_restart.py``; these check the parts.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from tests.unit.logs._logs_helpers import Sealer, run_in_child

from veritee.errors import MalformedError, StorageError
from veritee.logs import WorkloadLog, decrypt_log, open_log_key, open_workload_log, verify_log
from veritee.logs.runs import KEY_FILE, observe, read_run_start, runs_in
from veritee.logs.segment import FRAME_RUN, RunCause, parse_segment, segment_name
from veritee.logs.writer import LogWriter, SegmentStore
from veritee.profiles import Profile


def _open(directory: Path, sealer: Sealer, tenant: x25519.X25519PrivateKey,
          key: ec.EllipticCurvePrivateKey | None) -> WorkloadLog:  # fmt: skip
    return open_workload_log(profile=Profile.PRODUCTION, directory=directory, signing_key=key,
                             tenant_public_key=tenant.public_key(), seal=sealer.seal,
                             unseal=sealer.unseal, log_id="wl", durable=False,
                             flush_seconds=None)  # fmt: skip


def _read(
    run_dir: Path, tenant: x25519.X25519PrivateKey, key: ec.EllipticCurvePrivateKey
) -> list[str]:
    lk = open_log_key((run_dir / KEY_FILE).read_bytes(), tenant)
    return [r.text.split(": ", 1)[1] for r in decrypt_log(run_dir, lk, key.public_key())]


def test_each_start_is_a_new_run_naming_the_one_before(tmp_path: Path) -> None:
    sealer, tenant = Sealer(), x25519.X25519PrivateKey.generate()
    key = ec.generate_private_key(ec.SECP256R1())
    first = _open(tmp_path / "l", sealer, tenant, key)
    first.logger("runs.a").info("one")
    head = first.tree_head()
    # no close(): the process died; a second start on the same folder just works
    second = _open(tmp_path / "l", sealer, tenant, key)
    second.logger("runs.b").info("two")
    second.close()
    runs = runs_in(tmp_path / "l")
    assert [r.run for r in runs] == [1, 2]
    assert _read(runs[0].path, tenant, key) == ["one"]
    assert _read(runs[1].path, tenant, key) == ["two"]
    start = read_run_start(runs[1].path)
    assert start is not None and start.verify(key.public_key())
    assert start.log_id == "wl/run-000002" and start.cause is RunCause.RESTART
    assert start.previous is not None
    assert (start.previous.log_id, start.previous.signed, start.previous.root_hash) == (
        "wl/run-000001",
        1,
        head.root_hash,
    )


def test_held_records_of_a_start_that_crashed_are_replayed(tmp_path: Path) -> None:
    sealer, tenant = Sealer(), x25519.X25519PrivateKey.generate()

    def crashed() -> None:  # a start that dies before the control plane is up
        log = _open(tmp_path / "l", sealer, tenant, None)
        for i in range(4):
            log.logger("runs.held").error("held %d", i)

    run_in_child(crashed)
    held = list((tmp_path / "l").glob("pending*.sealed"))
    assert len(held) == 1
    with held[0].open("ab") as f:  # the crash cut a fifth record mid-write
        f.write(struct.pack(">I", 60) + b"\x00" * 10)
    key = ec.generate_private_key(ec.SECP256R1())
    again = _open(tmp_path / "l", sealer, tenant, None)
    assert not held[0].exists()  # its records are in this start's own (durable) buffer
    again.logger("runs.held").error("after restart")
    assert again.attach_control_plane(key) == 5
    again.close()
    assert not list((tmp_path / "l").glob("pending*"))
    (run,) = runs_in(tmp_path / "l")
    assert _read(run.path, tenant, key) == [f"held {i}" for i in range(4)] + ["after restart"]
    start = read_run_start(run.path)
    assert start is not None
    assert (start.replayed, start.recovered, start.lost) == (5, 4, 1)


def test_a_held_buffer_that_does_not_unseal_is_kept_aside_and_counted(tmp_path: Path) -> None:
    tenant = x25519.X25519PrivateKey.generate()

    def other() -> None:  # a start whose sealing key this one does not have
        log = _open(tmp_path / "l", Sealer(), tenant, None)
        for i in range(3):
            log.logger("runs.other").warning("w %d", i)

    run_in_child(other)
    key = ec.generate_private_key(ec.SECP256R1())
    log = _open(tmp_path / "l", Sealer(), tenant, key)  # another sealing key: cannot unseal
    log.close()
    assert len(list((tmp_path / "l").glob("pending*.sealed.unreadable"))) == 1
    start = read_run_start(runs_in(tmp_path / "l")[0].path)
    assert start is not None and (start.replayed, start.lost) == (0, 3)


def test_a_version_1_log_in_the_folder_is_the_previous_run(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    w = LogWriter(SegmentStore(tmp_path / "l", durable=False), log_id="wl",
                  profile="production", signing_key=key)  # fmt: skip
    w.append(b"legacy")
    w.close()
    log = _open(tmp_path / "l", Sealer(), x25519.X25519PrivateKey.generate(), key)
    log.close()
    start = read_run_start(runs_in(tmp_path / "l")[0].path)
    assert start is not None and start.previous is not None
    assert (start.previous.log_id, start.previous.stored, start.previous.final) == ("wl", 1, True)
    assert observe(tmp_path / "l", "wl").signed == 1


def test_a_tampered_run_start_is_caught(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    log = _open(tmp_path / "l", Sealer(), x25519.X25519PrivateKey.generate(), key)
    log.logger("runs.t").info("x")
    log.close()
    seg = runs_in(tmp_path / "l")[0].path / segment_name(0)
    data = bytearray(seg.read_bytes())
    frame = parse_segment(bytes(data)).frames[0]
    assert frame.kind == FRAME_RUN and frame.run is not None
    off = bytes(data).index(b"wl/run-000001", frame.offset)
    data[off + len("wl/run-00000")] = ord("7")  # it now claims to be run 7
    seg.write_bytes(bytes(data))
    assert "bad_signature" in verify_log(seg.parent, key.public_key()).kinds
    data[frame.offset + 5] = 9  # an unknown run-start version
    seg.write_bytes(bytes(data))
    with pytest.raises(MalformedError):
        read_run_start(seg.parent)


def test_a_live_start_keeps_its_held_records(tmp_path: Path) -> None:
    """Two instances on one store (a rolling restart): the new one recovers only what no live
    process holds; the old one's buffer stays its own and reaches its own run."""
    sealer, tenant = Sealer(), x25519.X25519PrivateKey.generate()
    old = _open(tmp_path / "l", sealer, tenant, None)
    old.logger("runs.live").warning("old instance, held")
    new = _open(tmp_path / "l", sealer, tenant, None)  # the old one is alive: locked
    assert old.handler.pending_path is not None and old.handler.pending_path.is_file()
    assert new.handler.pending == 0
    key = ec.generate_private_key(ec.SECP256R1())
    assert old.attach_control_plane(key) == 1
    old.close()
    new.close()
    (run,) = runs_in(tmp_path / "l")
    assert _read(run.path, tenant, key) == ["old instance, held"]


def test_held_records_whose_key_is_out_of_reach_wait_for_a_later_start(tmp_path: Path) -> None:
    """A domain-released buffer key while the service is down: the file stays as it is."""
    sealer, tenant = Sealer(), x25519.X25519PrivateKey.generate()

    def crashed() -> None:
        _open(tmp_path / "l", sealer, tenant, None).logger("runs.wait").warning("held")

    run_in_child(crashed)

    def unreachable(blob: bytes) -> bytes:
        raise StorageError("cannot reach the Certifier Service", code="service_unreachable")

    down = open_workload_log(profile=Profile.PRODUCTION, directory=tmp_path / "l",
                             signing_key=None, tenant_public_key=tenant.public_key(),
                             seal=sealer.seal, unseal=unreachable, log_id="wl", durable=False,
                             flush_seconds=None)  # fmt: skip
    assert down.handler.pending == 0
    down.close()
    assert not list((tmp_path / "l").glob("*.unreadable"))
    key = ec.generate_private_key(ec.SECP256R1())
    up = _open(tmp_path / "l", sealer, tenant, key)
    up.close()
    (run,) = runs_in(tmp_path / "l")
    assert _read(run.path, tenant, key) == ["held"]
