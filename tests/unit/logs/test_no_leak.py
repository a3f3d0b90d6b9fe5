"""In production, no byte the host can see holds a record's plaintext or a free-form message.

A real workload process (a subprocess) runs in the production profile with its log folder on the
"host". It logs records carrying a unique marker, logs and raises exceptions with a free-form
message (handled, badly formatted, uncaught), buffers records before the control plane is up and
produces HTTP problem bodies. The parent then scans everything the host sees: the process's
stdout and stderr, and every file under the host folder (segments, the sealed pending buffer,
snapshots of it, the sealed tenant key). The same run in development must show the marker, so the
scan itself is shown to work; the tenant, with its key, must read every marker back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from veritee.logs import decrypt_log, open_log_key, verify_log
from veritee.profiles import Profile

ROOT = Path(__file__).resolve().parents[3]

WORKLOAD = textwrap.dedent(
    """
    import json, logging, os, shutil, sys
    from pathlib import Path
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from veritee.errors import VerificationError
    from veritee.logs import open_workload_log, problem_for
    from veritee.profiles import Profile

    profile = Profile(sys.argv[1]); host = Path(sys.argv[2]); marker = sys.argv[3]
    secret_msg = sys.argv[4]
    tenant = serialization.load_pem_public_key(sys.argv[5].encode())
    sealing = AESGCM(os.urandom(32))
    def seal(data):
        n = os.urandom(12)
        return n + sealing.encrypt(n, data, b"seal")

    log = open_workload_log(profile=profile, directory=host / "log", signing_key=None,
                            tenant_public_key=tenant, seal=seal, log_id="leak-test",
                            host_stream=sys.stderr, plain_stream=sys.stderr, durable=False)
    log.install_excepthook()
    app = log.logger("app")
    app.warning("before control plane %s", marker)
    for held in (host / "log").glob("pending*.sealed"):
        shutil.copy(held, host / "pending-snapshot")
    key = ec.generate_private_key(ec.SECP256R1())
    log.attach_control_plane(key)
    for i in range(50):
        app.info("record %d %s", i, marker)
    try:
        raise VerificationError(secret_msg)
    except VerificationError as e:
        app.exception("handled: %s", marker)
        bodies = [problem_for(e, profile), problem_for(ValueError(secret_msg), profile)]
    app.info("bad format %d", marker)          # triggers Handler.handleError
    app.error("error with code %s", marker, extra={"catalogue_code": "VT-0400"})
    if profile.encrypts_logs:
        (host / "tenant-key.json").write_bytes(log.export_key_for_tenant())
        (host / "head.json").write_text(log.tree_head().to_json())
    print(json.dumps({"bodies": bodies}))
    print(key.public_key().public_bytes(serialization.Encoding.PEM,
          serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    sys.stdout.flush()
    raise RuntimeError("uncaught " + secret_msg)
    """
)


def _run(
    profile: Profile, host: Path, marker: str, secret: str, tenant: x25519.X25519PrivateKey
) -> subprocess.CompletedProcess[bytes]:
    pem = (
        tenant.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", WORKLOAD, profile.value, str(host), marker, secret, pem],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def _host_bytes(host: Path, proc: subprocess.CompletedProcess[bytes]) -> dict[str, bytes]:
    seen = {"<stdout>": proc.stdout, "<stderr>": proc.stderr}
    for p in sorted(host.rglob("*")):
        if p.is_file():
            seen[str(p.relative_to(host))] = p.read_bytes()
    return seen


@pytest.mark.parametrize("profile", [Profile.PRODUCTION, Profile.STAGING])
def test_host_sees_no_plaintext(tmp_path: Path, profile: Profile) -> None:
    marker = "MARKER-" + os.urandom(12).hex()
    secret = "free-form-" + os.urandom(12).hex()
    tenant = x25519.X25519PrivateKey.generate()
    proc = _run(profile, tmp_path, marker, secret, tenant)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]  # the uncaught exception
    seen = _host_bytes(tmp_path, proc)
    assert any(k.startswith("log/run-000001/segment-") for k in seen)
    assert "pending-snapshot" in seen  # the pre-control-plane buffer was on the host, sealed
    for needle in (marker, secret):
        for variant in {needle.encode(), needle.encode("utf-16-le"), needle[7:].encode()}:
            leaks = [name for name, data in seen.items() if variant in data]
            assert not leaks, f"{needle!r} visible to the host in {leaks}"
    # what the host does see: catalogue codes only
    err = proc.stderr.decode()
    for line in err.splitlines():
        assert line.startswith("veritee: VT-"), line
    for code in (
        "VT-0201 application warning",
        "VT-0003 verification failed",
        "VT-0100 log store write failed",
        "VT-0400 platform report request failed",
        "VT-0000 internal error",
    ):
        assert code in err
    bodies = json.loads(proc.stdout.decode().splitlines()[0])["bodies"]
    assert bodies[0] == {
        "type": "urn:veritee:error:VT-0003",
        "title": "verification failed",
        "status": 403,  # as the service says it (veritee.errors.http_status)
        "code": "VT-0003",
    }
    assert all("detail" not in b for b in bodies)
    # ...and the tenant, with its key, reads every record back
    signer = serialization.load_pem_public_key(proc.stdout.split(b"\n", 1)[1])
    run = tmp_path / "log" / "run-000001"
    rep = verify_log(run, signer)  # type: ignore[arg-type]
    assert not [f for f in rep.findings if f.is_error]
    key = open_log_key((tmp_path / "tenant-key.json").read_bytes(), tenant)
    texts = [r.text for r in decrypt_log(run, key, signer)]  # type: ignore[arg-type]
    assert "before control plane " + marker in texts[0]
    assert sum(marker in t for t in texts) == 53
    assert any(secret in t for t in texts)  # the traceback went into the encrypted log


def test_development_shows_everything(tmp_path: Path) -> None:
    """The same scan finds the marker when the profile allows free-form text: the scan works."""
    marker = "MARKER-" + os.urandom(12).hex()
    secret = "free-form-" + os.urandom(12).hex()
    proc = _run(Profile.DEVELOPMENT, tmp_path, marker, secret, x25519.X25519PrivateKey.generate())
    seen = _host_bytes(tmp_path, proc)
    assert marker.encode() in seen["<stderr>"]
    assert secret.encode() in seen["<stderr>"]
    bodies = json.loads(proc.stdout.decode().splitlines()[0])["bodies"]
    assert bodies[0]["detail"] == secret
