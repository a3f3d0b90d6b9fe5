"""``veritee logs verify|decrypt`` end to end on a real log."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from tests.unit.logs._logs_helpers import WrittenLog

from veritee.cli.main import _register, cli


def _files(w: WrittenLog, tmp: Path) -> dict[str, Path]:
    signer = tmp / "signer.pem"
    signer.write_bytes(
        w.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    tenant = tmp / "tenant.pem"
    tenant.write_bytes(
        w.tenant_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key = tmp / "logkey.json"
    key.write_bytes(w.key_blob)
    return {"signer": signer, "tenant": tenant, "key": key}


def _run(*args: str) -> tuple[int, str]:
    _register()
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.output


def test_verify_save_head_then_detect_rollback(tmp_path: Path, written: WrittenLog) -> None:
    f = _files(written, tmp_path)
    kept = tmp_path / "kept.json"
    code, out = _run(
        "logs",
        "verify",
        str(written.directory),
        "--signer",
        str(f["signer"]),
        "--save-head",
        str(kept),
        "--require-profile",
        "production",
    )
    assert code == 0, out
    assert "100 records" in out and out.strip().endswith("OK")
    assert json.loads(kept.read_text())["tree_size"] == 100
    written.segments()[-1].unlink()
    code, out = _run(
        "logs",
        "verify",
        str(written.directory),
        "--signer",
        str(f["signer"]),
        "--last-head",
        str(kept),
        "--json",
    )
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    assert "truncation" in {x["kind"] for x in doc["findings"]}


def test_decrypt_prints_records(tmp_path: Path, written: WrittenLog) -> None:
    f = _files(written, tmp_path)
    code, out = _run(
        "logs",
        "decrypt",
        str(written.directory),
        "--signer",
        str(f["signer"]),
        "--key",
        str(f["key"]),
        "--tenant-key",
        str(f["tenant"]),
        "--json",
    )
    assert code == 0, out
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 100 and lines[42]["leaf"] == 42 and lines[42]["text"].endswith("record 42")


def test_decrypt_refuses_a_tampered_log(tmp_path: Path, written: WrittenLog) -> None:
    f = _files(written, tmp_path)
    seg = written.segments()[0]
    data = bytearray(seg.read_bytes())
    data[200] ^= 1
    seg.write_bytes(bytes(data))
    code, out = _run(
        "logs",
        "decrypt",
        str(written.directory),
        "--signer",
        str(f["signer"]),
        "--key",
        str(f["key"]),
        "--tenant-key",
        str(f["tenant"]),
    )
    assert code == 1
    assert "log_integrity" in out and "record" not in out.split("]", 1)[0]


def test_bad_signer_file_is_a_clear_error(tmp_path: Path, written: WrittenLog) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"not a key")
    code, out = _run("logs", "verify", str(written.directory), "--signer", str(bad))
    assert code == 1 and "signer" in out
