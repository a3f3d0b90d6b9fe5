"""What a crash can lose (issue 9, item 5, the writer's half): nothing a killed process had
logged; an error is signed and durable before ``logging`` returns; other records are signed
within one timer period. (Reading a log whose last frame is torn is the tenant's half.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from tests.unit.logs._logs_helpers import open_log

from veritee.logs import decrypt_log, open_log_key, verify_log
from veritee.logs.runs import KEY_FILE
from veritee.logs.segment import parse_segment, segment_name

ROOT = Path(__file__).resolve().parents[3]

KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from veritee.logs import open_workload_log
    from veritee.profiles import Profile

    host = Path(sys.argv[1])
    tenant = serialization.load_pem_public_key(sys.argv[2].encode())
    key = ec.generate_private_key(ec.SECP256R1())
    (host / "signer.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    log = open_workload_log(profile=Profile.PRODUCTION, directory=host / "log", signing_key=key,
                            tenant_public_key=tenant, seal=None, log_id="crash",
                            flush_seconds=3600, durable=False)
    app = log.logger("app")
    for i in range(50):
        app.info("record %d", i)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_killed_workload_loses_no_record_it_logged(tmp_path: Path) -> None:
    tenant = x25519.X25519PrivateKey.generate()
    pem = tenant.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path), pem.decode()],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    run = tmp_path / "log" / "run-000001"
    signer = serialization.load_pem_public_key((tmp_path / "signer.pem").read_bytes())
    key = open_log_key((run / KEY_FILE).read_bytes(), tenant)
    recs = list(decrypt_log(run, key, signer))  # type: ignore[arg-type]
    assert [r.text.rsplit(": ", 1)[1] for r in recs] == [f"record {i}" for i in range(50)]
    assert not any(r.signed for r in recs)  # no head yet: stored, not yet signed


def _last_head_size(run: Path) -> int | None:
    seg = parse_segment((run / segment_name(0)).read_bytes())
    heads = [f.head for f in seg.frames if f.head is not None]
    return heads[-1].tree_size if heads else None


def test_an_error_is_signed_before_logging_returns(tmp_path: Path) -> None:
    log, *_ = open_log(tmp_path / "l")
    assert log.run_directory is not None
    lg = log.logger("crash.error")
    for i in range(3):
        lg.info("fine %d", i)
    assert _last_head_size(log.run_directory) == 0  # the head written at attach
    lg.error("about to fail")
    assert _last_head_size(log.run_directory) == 4
    log.close()


def test_the_timer_signs_records_within_its_period(tmp_path: Path) -> None:
    log, *_ = open_log(tmp_path / "l", flush_seconds=0.01)
    assert log.run_directory is not None
    lg = log.logger("crash.timer")
    for i in range(5):
        lg.info("record %d", i)
    signed = threading.Event()
    for _ in range(1000):  # no timing asserted: wait for the timer thread's head
        if _last_head_size(log.run_directory) == 5:
            signed.set()
            break
        signed.wait(0.01)
    log.close()
    assert signed.is_set()


REFUSED = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from veritee.logs import open_workload_log
    from veritee.profiles import Profile

    host = Path(sys.argv[1])
    tenant = serialization.load_pem_public_key(sys.argv[2].encode())
    key = ec.generate_private_key(ec.SECP256R1())
    (host / "signer.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    log = open_workload_log(profile=Profile.PRODUCTION, directory=host / "log", signing_key=key,
                            tenant_public_key=tenant, seal=None, log_id="refused",
                            host_stream=sys.stderr, flush_seconds=None, durable=False)
    app = log.logger("app")
    for i in range(5):
        app.info("before %d", i)
    segment = log.run_directory / "segment-00000000.vtlog"
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # the host's disk fills up: the next record is written in part, then refused
    resource.setrlimit(resource.RLIMIT_FSIZE, (segment.stat().st_size + 100, hard))
    for i in range(3):
        app.info("refused %d %s", i, "x" * 300)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    for i in range(5):
        app.info("after %d", i)
    log.close()
    """
)


def test_records_the_host_refuses_are_cut_back_counted_and_announced(tmp_path: Path) -> None:
    tenant = x25519.X25519PrivateKey.generate()
    pem = tenant.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    proc = subprocess.run(
        [sys.executable, "-c", REFUSED, str(tmp_path), pem.decode()],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stderr.decode().count("veritee: VT-0100 log store write failed") == 3
    run = tmp_path / "log" / "run-000001"
    signer = serialization.load_pem_public_key((tmp_path / "signer.pem").read_bytes())
    rep = verify_log(run, signer)  # type: ignore[arg-type]
    assert rep.ok and rep.complete, rep.findings
    key = open_log_key((run / KEY_FILE).read_bytes(), tenant)
    texts = [r.text.split(": ", 1)[1] for r in decrypt_log(run, key, signer)]  # type: ignore[arg-type]
    assert texts == [f"before {i}" for i in range(5)] + [
        "3 records were lost: the host's store refused to write them"
    ] + [f"after {i}" for i in range(5)]
