"""``veritee evidence show FILE``: every field of a piece of evidence, offline and UNVERIFIED
(``veritee verify`` checks it), and an event log as a table.

Per format, the fields are what the format's parser reads (:func:`veritee.evidence.parse_claims`,
the same names the claims carry); an Intel DCAP quote (``tdx``, ``sgx``) adds its header and
signature data (attestation key, QE report, PCK chain); a go-tpm-tools attestation (``tpm``)
adds its quotes and its TCG event log, one row per event. Event logs alone are shown too:
``--format ccel`` reads a TDX CCEL event log (``--ccel-table`` the ACPI CCEL table; the RTMRs
it replays to are shown), ``--format tcg-log`` a TCG crypto-agile log (PC Client, as
``/sys/kernel/security/tpm0/binary_bios_measurements``; the PCRs it replays to per bank).

Exit status: 0 shown, 1 the evidence does not parse (named field and offset), 2 usage, a
missing or oversized file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from veritee.cli.exits import PARSE, exit_code_for
from veritee.errors import MalformedError, OversizedError, UsageError, VeriteeError

__all__ = ["describe", "register"]

LOG_FORMATS = ("ccel", "tcg-log")
MAX_CCEL_TABLE = 4096


def _dcap_fields(data: bytes) -> dict[str, Any]:
    """The header and signature data of an Intel DCAP quote (v3/v4/v5)."""
    from cryptography import x509

    from veritee.evidence import dcap_quote

    q = dcap_quote.parse_quote(data)
    h, s = q.header, q.signature_data
    qe = s.qe_report
    chain = []
    for block in s.pck_chain_pem.split(b"-----END CERTIFICATE-----")[:-1]:
        try:
            cert = x509.load_pem_x509_certificate(block + b"-----END CERTIFICATE-----\n")
        except ValueError:
            chain.append("(a certificate that does not parse)")
            continue
        chain.append(f"{cert.subject.rfc4514_string()} (until {cert.not_valid_after_utc:%Y-%m-%d})")
    return {
        "header": {"version": h.version, "att_key_type": h.att_key_type, "tee_type": f"{h.tee_type:#x}",
                   "qe_svn": h.qe_svn, "pce_svn": h.pce_svn, "qe_vendor_id": h.qe_vendor_id.hex(),
                   "user_data": h.user_data.hex()},
        "body": {"type": q.body_type, "size": len(q.body)},
        "signature_data": {
            "ecdsa_signature": s.signature.hex(), "attestation_key": s.attestation_key.hex(),
            "qe_report": {"cpu_svn": qe.cpu_svn.hex(), "misc_select": qe.misc_select,
                          "attributes": qe.attributes.hex(), "mr_enclave": qe.mr_enclave.hex(),
                          "mr_signer": qe.mr_signer.hex(), "isv_prod_id": qe.isv_prod_id,
                          "isv_svn": qe.isv_svn, "report_data": qe.report_data.hex()},
            "qe_report_signature": s.qe_report_signature.hex(),
            "qe_auth_data_size": len(s.qe_auth_data),
            "pck_chain": chain,
        },
        "trailing_bytes": len(q.trailing),
    }  # fmt: skip


def _tcg_events(log: Any) -> list[dict[str, Any]]:
    from veritee.evidence import tcg_log

    out = []
    for e in log.events:
        row = tcg_log.event_claims(e)
        row["digests"] = {
            tcg_log.HASH_NAMES.get(alg, f"{alg:#06x}"): d.hex() for alg, d in e.digests.items()
        }
        out.append(row)
    return out


def _tcg_replay(log: Any) -> dict[str, dict[str, str]]:
    """The PCRs the log extends, per bank, as a replay gives them."""
    from veritee.evidence import tcg_log

    extended = sorted({e.index for e in log.events if e.type != tcg_log.EV_NO_ACTION})
    banks: dict[str, dict[str, str]] = {}
    for alg in sorted(log.sizes):
        if alg not in tcg_log.HASH_NAMES or not all(
            alg in e.digests for e in log.events if e.type != tcg_log.EV_NO_ACTION
        ):
            continue
        values = log.replay(alg, 24)
        banks[tcg_log.HASH_NAMES[alg]] = {str(i): values[i].hex() for i in extended if i < 24}
    return banks


def describe(data: bytes, fmt: str, *, ccel_table: bytes | None = None) -> dict[str, Any]:
    """What ``evidence show`` prints, as one JSON object: ``format``, ``size``, ``sha256``,
    ``fields`` (per format), and ``event_log`` (a list of events) where there is one.
    Raises :class:`MalformedError` (naming field and offset) when the data does not parse."""
    from veritee import evidence
    from veritee.evidence import ccel, tcg_log

    out: dict[str, Any] = {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "verified": False,
    }
    if fmt == "ccel":
        log = ccel.replay(ccel_table, data)
        fields: dict[str, Any] = {"events": len(log.events)}
        if ccel_table is not None:
            t = ccel.parse_table(ccel_table)
            fields["acpi_table"] = {
                "cc_type": t.cc_type,
                "cc_subtype": t.cc_subtype,
                "laml": t.laml,
                "lasa": f"{t.lasa:#x}",
            }
        fields["replayed"] = {f"rtmr{i}": v.hex() for i, v in enumerate(log.rtmrs)}
        return {"format": "ccel", **out, "fields": fields, "event_log": log.claims()}
    if fmt == "tcg-log":
        tlog = tcg_log.parse(data, max_index=23)
        fields = {"events": len(tlog.events), "banks": [tcg_log.HASH_NAMES.get(a, f"{a:#06x}") for a in sorted(tlog.sizes)],
                  "startup_locality": tlog.startup_locality, "replayed": _tcg_replay(tlog)}  # fmt: skip
        return {"format": "tcg-log", **out, "fields": fields, "event_log": _tcg_events(tlog)}
    if len(data) > evidence.MAX_EVIDENCE_BYTES:
        raise OversizedError(
            f"evidence is {len(data)} bytes; the limit is {evidence.MAX_EVIDENCE_BYTES}"
        )
    if fmt == "auto":
        fmt = evidence.detect_format(data)
    fields = evidence.parse_claims(data, format=fmt)
    result: dict[str, Any] = {"format": fmt, **out, "fields": fields}
    if fmt in ("tdx", "sgx"):
        result["quote"] = _dcap_fields(data)
    if fmt == "tpm":
        from veritee.evidence import tpm

        att = tpm.parse(data)
        result["quotes"] = [{"bank": tpm.HASHES[q.bank][0], "pcrs": sorted(q.pcrs), "firmware_version": q.firmware_version,
                             "extra_data": q.extra_data.hex()} for q in att.quotes]  # fmt: skip
        result["ak_certificate"] = att.ak_cert is not None
        if att.event_log:
            tlog = tcg_log.parse(att.event_log, max_index=tpm.MAX_PCRS - 1)
            result["event_log"] = _tcg_events(tlog)
            result["fields"]["event_log"] = {"bytes": len(att.event_log), "events": len(tlog.events),
                                             "verified": False, "replayed": _tcg_replay(tlog)}  # fmt: skip
    if fmt == "tdx" and isinstance(fields.get("event_log"), list):
        result["event_log"] = fields.pop("event_log")
    return result


def _print(desc: dict[str, Any], path: Path) -> None:
    from veritee.cli.tables import console, event_log_table, fields_table

    out = console()
    out.print(f"{path}: {desc['format']} evidence, {desc['size']} bytes, sha256 {desc['sha256']}")
    out.print(
        "[yellow]UNVERIFIED[/]: parsed only; `veritee verify` checks signatures, chains and collateral"
    )
    out.print(fields_table(desc["fields"], title="fields"))
    for key in ("quote", "quotes"):
        if key in desc:
            out.print(fields_table({key: desc[key]}, title=key))
    events = desc.get("event_log")
    if events:
        register = "rtmr" if desc["format"] in ("ccel", "tdx") else "index"
        title = f"event log: {len(events)} events" + (
            " (register: RTMR; index 0 is MRTD)" if register == "rtmr" else " (register: PCR)"
        )
        out.print(event_log_table(events, register=register, title=title))


@click.group("evidence")
def evidence_group() -> None:
    """Inspect evidence offline."""


@evidence_group.command("show")
@click.argument("evidence_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", default="auto", show_default=True,
              help="The evidence's format (as `veritee verify`), or ccel / tcg-log for an event log alone.")  # fmt: skip
@click.option("--ccel-table", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --format ccel: the ACPI CCEL table (its log length bounds the log).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show_cmd(evidence_file: Path, fmt: str, ccel_table: Path | None, as_json: bool) -> None:
    """Show every field of evidence FILE and, for a TPM attestation or a CCEL/TCG event log, the
    event log as a table. Nothing is verified."""
    from veritee.cli.options import FORMATS
    from veritee.evidence import tcg_log

    try:
        if fmt not in (*FORMATS, *LOG_FORMATS):
            raise UsageError(
                f"--format {fmt!r} is not one of {', '.join((*FORMATS, *LOG_FORMATS))}"
            )
        if ccel_table is not None and fmt != "ccel":
            raise UsageError("--ccel-table goes with --format ccel")
        limit = tcg_log.MAX_EVENT_LOG if fmt in LOG_FORMATS else 256 * 1024
        data = _read(evidence_file, limit, "evidence")
        table = _read(ccel_table, MAX_CCEL_TABLE, "CCEL table") if ccel_table is not None else None
        desc = describe(data, fmt, ccel_table=table)
    except (UsageError, OversizedError, OSError) as e:
        click.echo(f"error: {getattr(e, 'message', None) or e}", err=True)
        sys.exit(exit_code_for(e, PARSE))
    except (MalformedError, VeriteeError) as e:
        click.echo(
            f"{evidence_file}: does not parse as {fmt} evidence [{e.code}]: {e.message}", err=True
        )
        sys.exit(exit_code_for(e, PARSE))
    if as_json:
        click.echo(json.dumps({"file": str(evidence_file), **desc}, indent=2))
        return
    _print(desc, evidence_file)


def _read(path: Path, limit: int, what: str) -> bytes:
    if not path.is_file():
        raise UsageError(f"{what} file not found: {path}")
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{what} {path} is larger than {limit} bytes", code="oversized")
    if not data:
        raise UsageError(f"{what} {path} is empty", code="empty")
    return data


def register(group: click.Group) -> None:
    group.add_command(evidence_group)
