"""``veritee logs verify|decrypt|tail``: the tenant's view of a workload's confidential log."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from veritee.cli.exits import EXIT_INCOMPLETE, EXIT_NOT_ACCEPTED, EXIT_OK, handle_errors
from veritee.errors import MalformedError, UsageError
from veritee.logs.errors import LogIntegrityError
from veritee.logs.export import to_json
from veritee.logs.folder import FolderReport, check_folder, is_run_folder_parent
from veritee.logs.runs import KEY_FILE, RUN_DIR_RE, runs_in
from veritee.logs.segment import SignedTreeHead, VerifyingKey
from veritee.logs.signer import ADMISSION_FILE, AdmittedSigner, admitted_signer, load_certificate
from veritee.logs.tenant import (
    CheckedLog,
    LogRecord,
    LogReport,
    TenantPrivateKey,
    check_log,
    decrypt_records,
    open_log_key,
)
from veritee.profiles import Profile

__all__ = ["register"]


@dataclass(frozen=True)
class _Signer:
    key: VerifyingKey
    admitted: AdmittedSigner | None


def _load_signer(opts: dict[str, Any], folder: Path) -> _Signer:
    """The log signer, bound to an attested workload (:mod:`veritee.logs.signer`): the
    admission certificate (``--signer``, else the ``admission.pem`` the workload put beside the
    run: the host cannot forge one), issued by ``--ca``, for an expected ``--measurement``. A
    bare public key (or an unchecked certificate) only with ``--insecure-signer-key``."""
    path: Path = opts["signer"] or folder / ADMISSION_FILE
    if not path.is_file():
        raise UsageError(f"no {ADMISSION_FILE} in {folder}: give --signer (the workload's "
                         "admission certificate)", code="log_signer_not_certified")  # fmt: skip
    data = path.read_bytes()
    try:
        cert: x509.Certificate | None = load_certificate(data, "signer")
    except MalformedError:
        cert = None
    insecure = bool(opts["insecure_signer_key"])
    if insecure:
        click.echo("warning: --insecure-signer-key: the signer is not checked against any "
                   "attestation; anyone's key passes", err=True)  # fmt: skip
        return _Signer(_public_key(path, data, cert), None)
    if cert is None:
        raise UsageError(
            f"{path} is not a certificate: a bare key ties the log to no attested workload; give "
            "the workload's admission certificate with --ca (or --insecure-signer-key)",
            code="log_signer_not_certified",
        )
    ca_path: Path | None = opts["ca"]
    if ca_path is None:
        raise UsageError("give --ca (the domain CA certificate) to check the signer's admission "
                         "certificate", code="log_signer_not_certified")  # fmt: skip
    measurements: tuple[str, ...] = opts["measurements"]
    if not measurements and not opts["any_measurement"]:
        raise UsageError("say which workload you expect: --measurement HEX (or --any-measurement)",
                         code="log_signer_not_certified")  # fmt: skip
    ca = load_certificate(ca_path.read_bytes(), "ca")
    prof = opts["require_profile"]
    admitted = admitted_signer(cert, ca, measurements=measurements or None,
                               platforms=opts["platforms"] or None,
                               profiles=[prof] if prof else None)  # fmt: skip
    return _Signer(admitted.public_key, admitted)


def _public_key(path: Path, data: bytes, cert: x509.Certificate | None) -> VerifyingKey:
    key: object = cert.public_key() if cert is not None else None
    for load in (serialization.load_pem_public_key, serialization.load_der_public_key):
        if key is not None:
            break
        try:
            key = load(data)
        except (ValueError, UnsupportedAlgorithm):
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
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The workload's admission certificate (PEM or DER); default: the admission.pem "
        "beside each run's segments.",
    ),
    click.option(
        "--ca",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The domain CA certificate (domain_ca.pem) that must have issued --signer.",
    ),
    click.option(
        "--measurement",
        "measurements",
        multiple=True,
        help="A measurement (hex) you expect the signer to run; repeat for several.",
    ),
    click.option(
        "--any-measurement",
        is_flag=True,
        help="Accept any workload measurement the domain admitted.",
    ),
    click.option(
        "--platform",
        "platforms",
        multiple=True,
        help="A platform you expect the signer to run on (sev-snp, tdx, ...); repeatable.",
    ),
    click.option(
        "--insecure-signer-key",
        is_flag=True,
        help="Accept --signer unchecked, even as a bare public key (testing only).",
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


def _check(
    segments: Path, opts: dict[str, Any], *, require_final: bool = False
) -> tuple[_Signer, CheckedLog]:
    signer = _load_signer(opts, segments)
    prof = opts["require_profile"]
    checked = check_log(segments, signer.key, _load_head(opts["last_head"]),
                        require_profile=Profile(prof) if prof else None,
                        require_final=require_final, admitted=signer.admitted)  # fmt: skip
    return signer, checked


def _check_folder(
    folder: Path, opts: dict[str, Any], *, require_final: bool = False
) -> FolderReport:
    def signer_for(run: Path) -> tuple[VerifyingKey, AdmittedSigner | None]:
        s = _load_signer(opts, run)
        return s.key, s.admitted

    prof = opts["require_profile"]
    return check_folder(folder, signer_for, _load_head(opts["last_head"]),
                        require_profile=Profile(prof) if prof else None,
                        require_final=require_final)  # fmt: skip


def _print_folder(rep: FolderReport, as_json: bool, *, err: bool = False) -> None:
    """Each run's report, then the links between runs and the folder's verdict."""
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=None if err else 2), err=err)
        return
    for r in rep.runs:
        _echo(f"== {r.label}: {r.verdict}", err=err)
        _print_report(r.checked.report, False, err=err)
    for f in rep.findings:
        _echo(f"{f.kind.upper() if f.is_error else 'warning: ' + f.kind}: {f.message}", err=err)
    ended = [r.label for r in rep.runs if r.verdict == "ENDED"]
    if ended:
        _echo(f"{', '.join(ended)} ended without closing (killed or crashed): the next run's "
              "signed start saw each as it is stored", err=err)  # fmt: skip
    _echo(f"== all {len(rep.runs)} runs: {rep.verdict}", err=err)


def _is_folder(segments: Path) -> bool:
    return is_run_folder_parent(segments)


@logs.command("verify")
@_with_common
@click.option("--require-final", is_flag=True, help="Fail unless the log was closed.")
@handle_errors
def verify_cmd(segments: Path, require_final: bool, **opts: Any) -> None:
    """Check signatures, inclusion and consistency; name truncation, rollback, reordering or
    tampering, and say up to which signed head the log is proven.

    SEGMENTS is a run folder (run-NNNNNN) or a workload's log folder (<store>/logs/<log id>):
    then every run is checked, and the signed start of each run against the run before it.

    The signer is the workload's admission certificate (--signer, or each run's admission.pem),
    checked against the domain CA (--ca) and the measurement you expect (--measurement); the
    log's profile must be the one it attests, and it must be valid at the latest verified head.

    Exit 0 (OK) when the log is complete: closed by its final head; 3 (INCOMPLETE) when it
    verifies but is not closed, so records after its last signed head may be missing; 1 (FAILED)
    on any error, an empty folder, or (with --require-final) a log not closed."""
    if _is_folder(segments):
        folder = _check_folder(segments, opts, require_final=require_final)
        _print_folder(folder, opts["as_json"])
        if folder.ok and folder.runs:
            _save_head(folder.runs[-1].checked.report, opts["save_head"])
        sys.exit(_EXIT_FOR[folder.verdict])
    _, checked = _check(segments, opts, require_final=require_final)
    rep = checked.report
    _print_report(rep, opts["as_json"])
    _save_head(rep, opts["save_head"])
    sys.exit(_EXIT_FOR[rep.verdict])


@logs.command("decrypt")
@_with_common
@click.option("--key", "key_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The log key envelope the workload sealed to you (HPKE); default: the "
              "tenant-key.json beside each run's segments.")  # fmt: skip
@click.option("--tenant-key", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your private key (PEM or DER; X25519, P-256 or P-384).")  # fmt: skip
@handle_errors
def decrypt_cmd(segments: Path, key_file: Path | None, tenant_key: Path, **opts: Any) -> None:
    """Verify the log, then print its records (one per line; JSON lines with --json: the
    export format, one object per record with its run, leaf, epoch, signed flag and text).

    The report (findings, what is proven, the verdict) goes to stderr, as ``verify`` prints it;
    exit status as for ``verify``: 0 complete, 3 incomplete, 1 failed (no record printed)."""
    tenant = _load_tenant_key(tenant_key)
    as_json = opts["as_json"]
    if _is_folder(segments):
        folder = _check_folder(segments, opts)
        _print_folder(folder, as_json, err=True)
        if not folder.ok:
            raise LogIntegrityError("log failed verification")
        given = open_log_key(key_file.read_bytes(), tenant) if key_file is not None else None
        for r in folder.runs:
            if given is not None and given.log_id == r.checked.report.log_id:
                log_key = given
            elif (r.path / KEY_FILE).is_file():
                log_key = open_log_key((r.path / KEY_FILE).read_bytes(), tenant)
            else:
                _echo(f"warning: {r.label} holds no {KEY_FILE} (the workload had no tenant "
                      "key): its records are not read", err=True)  # fmt: skip
                continue
            _print_records(decrypt_records(r.checked, log_key, r.signer), as_json, run=r.run)
        if folder.runs:
            _save_head(folder.runs[-1].checked.report, opts["save_head"])
        sys.exit(_EXIT_FOR[folder.verdict])
    log_key = open_log_key(_key_file(key_file, segments).read_bytes(), tenant)
    signer, checked = _check(segments, opts)
    rep = checked.report
    _print_report(rep, as_json, err=True)
    _print_records(decrypt_records(checked, log_key, signer.key), as_json)
    _save_head(rep, opts["save_head"])
    sys.exit(_EXIT_FOR[rep.verdict])


@logs.command("tail")
@_with_common
@click.option("--key", "key_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The log key envelope (default: tenant-key.json beside the run).")  # fmt: skip
@click.option("--tenant-key", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your private key (PEM or DER; X25519, P-256 or P-384).")  # fmt: skip
@click.option("-n", "--lines", default=10, show_default=True, type=click.IntRange(min=0),
              help="How many of the last signed records to print first.")  # fmt: skip
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing records as signed heads cover them (a log folder: into new "
              "runs too); stops when a single run is closed.")  # fmt: skip
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between looks at the folder.")  # fmt: skip
@handle_errors
def tail_cmd(segments: Path, key_file: Path | None, tenant_key: Path, lines: int, follow: bool,
             interval: float, **opts: Any) -> None:  # fmt: skip
    """Print the last signed records of a run (the latest run of a log folder), and with
    --follow the ones that come, as ``tail -f`` does. Only records a verified signed head covers
    are printed; every look re-verifies the log against the head seen before, so a rollback or
    a rewrite while following fails (exit 1)."""
    tenant = _load_tenant_key(tenant_key)
    as_json, prof = opts["as_json"], opts["require_profile"]
    folder = segments if _is_folder(segments) else None
    run_dir = runs_in(folder)[-1].path if folder is not None else segments
    kept, next_leaf, draining = _load_head(opts["last_head"]), None, False
    while True:
        if follow and not _ready(run_dir, opts["signer"], key_file):
            time.sleep(interval)  # a run just started: its files come a moment later
            continue
        looked_at = _stat(run_dir)
        signer = _load_signer(opts, run_dir)
        checked = check_log(run_dir, signer.key, kept, admitted=signer.admitted,
                            require_profile=Profile(prof) if prof else None)  # fmt: skip
        rep = checked.report
        if not rep.ok:
            _print_report(rep, False, err=True)
            sys.exit(EXIT_NOT_ACCEPTED)
        log_key = open_log_key(_key_file(key_file, run_dir).read_bytes(), tenant)
        signed = [r for r in decrypt_records(checked, log_key, signer.key) if r.signed]
        if next_leaf is None:
            next_leaf = signed[-lines].leaf_index if 0 < lines <= len(signed) else (
                0 if lines else rep.tree_size)  # fmt: skip
        run = _run_number(run_dir) if folder is not None else None
        _print_records([r for r in signed if r.leaf_index >= next_leaf], as_json, run=run)
        next_leaf, kept = max(next_leaf, rep.tree_size), rep.latest_head or kept
        if not follow:
            break
        newer = [r for r in runs_in(folder) if r.path.name > run_dir.name] if folder else []
        if newer and not draining:  # this run is over: one more look for its last records
            draining = True
            continue
        if newer:  # then the next run, from its start
            run_dir, kept, next_leaf, draining = newer[0].path, None, 0, False
            continue
        if folder is None and rep.complete:
            break
        time.sleep(interval)
        while _stat(run_dir) == looked_at and (
            folder is None or runs_in(folder)[-1].path == run_dir
        ):
            time.sleep(interval)  # nothing new stored: no need to read and verify it again
    _save_head(rep, opts["save_head"])
    sys.exit(_EXIT_FOR[rep.verdict])


def _ready(run_dir: Path, signer: Path | None, key_file: Path | None) -> bool:
    """A run's first segment, certificate and log key are all stored (a new run writes them
    one after the other)."""
    return ((run_dir / "segment-00000000.vtlog").is_file()
            and (signer is not None or (run_dir / ADMISSION_FILE).is_file())
            and (key_file is not None or (run_dir / KEY_FILE).is_file()))  # fmt: skip


def _stat(run_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when anything is appended to a run: its segment files' sizes and times."""
    out = []
    for p in sorted(run_dir.glob("segment-*.vtlog")):
        with contextlib.suppress(OSError):
            st = p.stat()
            out.append((p.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _run_number(run_dir: Path) -> int | None:
    m = RUN_DIR_RE.match(run_dir.name)
    return int(m.group(1)) if m else None


def _key_file(given: Path | None, run: Path) -> Path:
    path = given or run / KEY_FILE
    if not path.is_file():
        raise UsageError(f"no {KEY_FILE} in {run}: give --key (the log key the workload sealed "
                         "to you)", code="log_no_key")  # fmt: skip
    return path


def _print_records(records: Iterable[LogRecord], as_json: bool, *, run: int | None = None) -> None:
    """One record per line: ``[run:]leaf<TAB>text`` (text escaped), or one JSON object."""
    for r in records:
        if as_json:
            click.echo(json.dumps(to_json(r, run=run)))
        else:
            where = f"{run}:{r.leaf_index}" if run is not None else str(r.leaf_index)
            click.echo(f"{where}\t{'' if r.signed else '(unsigned) '}{_safe(r.text)}")


def register(group: click.Group) -> None:
    group.add_command(logs)
