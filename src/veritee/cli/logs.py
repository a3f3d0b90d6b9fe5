"""``veritee logs verify|decrypt``: the tenant's view of a workload's confidential log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from veritee.cli.main import EXIT_INCOMPLETE, EXIT_NOT_ACCEPTED, EXIT_OK, handle_errors
from veritee.errors import MalformedError, UsageError
from veritee.logs.segment import SignedTreeHead, VerifyingKey
from veritee.logs.tenant import (
    LogReport,
    TenantPrivateKey,
    check_log,
    decrypt_records,
    open_log_key,
    verify_log,
)
from veritee.profiles import Profile

__all__ = ["register"]


def _load_signer(path: Path) -> VerifyingKey:
    """A PEM/DER public key, or an X.509 certificate (e.g. the admission certificate)."""
    data = path.read_bytes()
    key: object = None
    loaders = (
        lambda d: x509.load_pem_x509_certificate(d).public_key(),
        lambda d: x509.load_der_x509_certificate(d).public_key(),
        serialization.load_pem_public_key,
        serialization.load_der_public_key,
    )
    for load in loaders:
        try:
            key = load(data)
            break
        except ValueError:
            continue
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise MalformedError(f"{path}: not an EC/Ed25519 public key or certificate", field="signer")
    return key


def _load_tenant_key(path: Path) -> TenantPrivateKey:
    data = path.read_bytes()
    try:
        key = (serialization.load_pem_private_key(data, None) if b"-----BEGIN" in data
               else serialization.load_der_private_key(data, None))  # fmt: skip
    except (ValueError, TypeError) as e:
        raise MalformedError(
            f"{path}: not an unencrypted private key ({e})", field="tenant_key"
        ) from None
    if not isinstance(key, x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise UsageError("tenant key must be X25519, P-256 or P-384", code="tenant_key_type")
    return key


def _load_head(path: Path | None) -> SignedTreeHead | None:
    return SignedTreeHead.from_json(path.read_bytes()) if path is not None else None


_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    named = _NAMED_ESCAPES.get(ch)
    if named is not None:
        return named
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def _safe(text: str) -> str:
    """``text`` made safe for a terminal: every character that is not printable (newlines,
    escape sequences, C1 controls, bidirectional overrides, ...) and the backslash itself are
    written as Python-style escapes, so logged data and host-chosen file names can neither forge
    output lines nor drive the tenant's terminal. ``--json`` gives the exact text."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else _escape_char(c) for c in text)


def _echo(line: str, *, err: bool = False) -> None:
    click.echo(_safe(line), err=err)


_EXIT_FOR = {"OK": EXIT_OK, "INCOMPLETE": EXIT_INCOMPLETE, "FAILED": EXIT_NOT_ACCEPTED}


def _print_report(rep: LogReport, as_json: bool, *, err: bool = False) -> None:
    """The report: what was found, what is proven, and the verdict (OK / INCOMPLETE / FAILED)."""
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=None if err else 2), err=err)
        return
    h = rep.latest_head
    _echo(f"log {rep.log_id!r} ({rep.profile}): {rep.records} records in {rep.segments} "
          f"segments; signed tree size {rep.tree_size}{', final' if h and h.final else ''}",
          err=err)  # fmt: skip
    for f in rep.findings:
        label = f.kind.upper() if f.is_error else f"warning: {f.kind}"
        where = "".join(f" {k} {v}" for k, v in (("segment", f.segment), ("offset", f.offset),
                                                ("leaf", f.leaf_index)) if v is not None)  # fmt: skip
        _echo(f"{label}: {f.message}{' (' + where.strip() + ')' if where else ''}", err=err)
    _echo(rep.proven(), err=err)
    _echo(rep.verdict, err=err)


def _save_head(rep: LogReport, path: Path | None) -> None:
    if path is not None and rep.ok and rep.latest_head is not None:
        path.write_text(rep.latest_head.to_json())


_common = [
    click.argument("segments", type=click.Path(exists=True, file_okay=False, path_type=Path)),
    click.option(
        "--signer",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Workload signing public key or its certificate.",
    ),
    click.option(
        "--last-head",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The tree head you kept last time: checks consistency, rollback.",
    ),
    click.option(
        "--save-head",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Keep the latest verified tree head here (only when verification passes).",
    ),
    click.option("--require-profile", type=click.Choice([p.value for p in Profile])),
    click.option("--json", "as_json", is_flag=True),
]


def _with_common(fn: Any) -> Any:
    for deco in reversed(_common):
        fn = deco(fn)
    return fn


@click.group("logs")
def logs() -> None:
    """Verify and read a workload's encrypted, signed log (segments kept by the host)."""


@logs.command("verify")
@_with_common
@click.option("--require-final", is_flag=True, help="Fail unless the log was closed.")
@handle_errors
def verify_cmd(segments: Path, signer: Path, last_head: Path | None, save_head: Path | None,
               require_profile: str | None, as_json: bool, require_final: bool) -> None:  # fmt: skip
    """Check signatures, inclusion and consistency; name truncation, rollback, reordering or
    tampering, and say up to which signed head the log is proven.

    Exit 0 (OK) when the log is complete: closed by its final head; 3 (INCOMPLETE) when it
    verifies but is not closed, so records after its last signed head may be missing; 1 (FAILED)
    on any error, an empty folder, or (with --require-final) a log not closed."""
    rep = verify_log(segments, _load_signer(signer), _load_head(last_head),
                     require_profile=Profile(require_profile) if require_profile else None,
                     require_final=require_final)  # fmt: skip
    _print_report(rep, as_json)
    _save_head(rep, save_head)
    sys.exit(_EXIT_FOR[rep.verdict])


@logs.command("decrypt")
@_with_common
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The log key envelope the workload sealed to you (HPKE).")  # fmt: skip
@click.option("--tenant-key", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your private key (PEM or DER; X25519, P-256 or P-384).")  # fmt: skip
@handle_errors
def decrypt_cmd(segments: Path, signer: Path, last_head: Path | None, save_head: Path | None,
                require_profile: str | None, as_json: bool, key_file: Path,
                tenant_key: Path) -> None:  # fmt: skip
    """Verify the log, then print its records (one per line; JSON lines with --json).

    The report (findings, what is proven, the verdict) goes to stderr, as ``verify`` prints it;
    exit status as for ``verify``: 0 complete, 3 incomplete, 1 failed (no record printed)."""
    signer_key = _load_signer(signer)
    log_key = open_log_key(key_file.read_bytes(), _load_tenant_key(tenant_key))
    checked = check_log(segments, signer_key, _load_head(last_head),
                        require_profile=Profile(require_profile) if require_profile else None)  # fmt: skip
    rep = checked.report
    _print_report(rep, as_json, err=True)
    for r in decrypt_records(checked, log_key, signer_key):
        if as_json:
            click.echo(json.dumps({"leaf": r.leaf_index, "epoch": r.epoch, "signed": r.signed,
                                   "text": r.text}))  # fmt: skip
        else:
            click.echo(f"{r.leaf_index}\t{'' if r.signed else '(unsigned) '}{_safe(r.text)}")
    _save_head(rep, save_head)
    sys.exit(_EXIT_FOR[rep.verdict])


def register(group: click.Group) -> None:
    group.add_command(logs)
