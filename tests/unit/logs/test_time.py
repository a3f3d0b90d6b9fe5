"""Time in the log: epochs end on time (forward secrecy with a time bound), and the wall clock
never decides order (issue 9, item 7)."""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from tests.unit.logs._logs_helpers import open_log

from veritee.logs import decrypt_log, open_log_key, verify_log
from veritee.logs.segment import parse_segment
from veritee.logs.writer import LogWriter, SegmentStore


class FakeClock:
    """A clock the test moves by hand (wall or monotonic)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _writer(directory: Path, wall: FakeClock, mono: FakeClock, **kw: object) -> LogWriter:
    return LogWriter(SegmentStore(directory, durable=False), log_id="time", profile="production",
                     signing_key=ec.generate_private_key(ec.SECP256R1()), clock=wall,
                     monotonic=mono, **kw)  # type: ignore[arg-type]  # fmt: skip


def _epochs(directory: Path) -> list[int]:
    out = []
    for p in sorted(directory.glob("segment-*.vtlog")):
        out += [f.record.epoch for f in parse_segment(p.read_bytes()).frames if f.record]
    return out


def test_sixty_records_over_seven_days_do_not_share_an_epoch(tmp_path: Path) -> None:
    wall, mono = FakeClock(), FakeClock(0.0)
    w = _writer(tmp_path / "l", wall, mono, epoch_seconds=300.0)
    for i in range(60):
        w.append(b"record %d" % i)
        wall.now += 7 * 86400 / 60
        mono.now += 7 * 86400 / 60
    w.close()
    assert _epochs(tmp_path / "l") == list(range(60))


def test_an_idle_log_ends_its_epoch_on_time(tmp_path: Path) -> None:
    wall, mono = FakeClock(), FakeClock(0.0)
    w = _writer(tmp_path / "l", wall, mono, epoch_seconds=300.0)
    w.append(b"before the pause")
    old_key = bytes(w._ratchet.record_key)
    mono.now += 299
    w.tick()
    assert w.epoch == 0
    mono.now += 2
    w.tick()  # no record came, yet the epoch-0 key is gone (overwritten by epoch 1's)
    assert w.epoch == 1 and bytes(w._ratchet.record_key) != old_key
    w.close()


def test_the_workload_log_timer_ends_idle_epochs(tmp_path: Path) -> None:
    log, *_ = open_log(tmp_path / "l", epoch_seconds=0.01, flush_seconds=0.01)
    writer = log.handler.writer
    assert writer is not None
    advanced = threading.Event()
    for _ in range(1000):  # the timer thread advances the epoch without any record
        if writer.epoch >= 2:
            advanced.set()
            break
        advanced.wait(0.01)
    log.close()
    assert advanced.is_set()


def test_a_clock_step_back_is_not_reordering(tmp_path: Path) -> None:
    """NTP steps the wall clock back 2 s between two heads: the log is honest and verifies."""
    wall, mono = FakeClock(), FakeClock(0.0)
    w = _writer(tmp_path / "l", wall, mono, records_per_head=5)
    tenant = x25519.X25519PrivateKey.generate()
    from veritee.logs.segment import key_id
    from veritee.logs.tenant import seal_log_key

    epoch, chain = w.chain_key()
    blob = seal_log_key(chain, epoch=epoch, log_id="time", profile="production",
                        signer_key_id=key_id(w.signing_public_key),
                        tenant_public_key=tenant.public_key())  # fmt: skip
    for i in range(10):
        w.append(b"r%d" % i)
        wall.now += 0.1 if i != 4 else -2.0  # the step comes right after the first head
        mono.now += 0.1
    w.close()
    rep = verify_log(tmp_path / "l", w.signing_public_key)
    assert rep.ok, rep.findings
    assert rep.tree_size == 10
    recs = list(decrypt_log(tmp_path / "l", open_log_key(blob, tenant), w.signing_public_key))
    assert [r.leaf_index for r in recs] == list(range(10))
