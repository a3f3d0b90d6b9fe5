"""``veritee refvalues inspect | add | list | show | withdraw``: reference values from their sources.

``inspect`` reads a CoRIM / CoMID locally and judges it (:mod:`veritee.refvalues.corim`);
``add``, ``list``, ``show`` and ``withdraw`` talk to the domain's reference-value store over the
admin API (:mod:`veritee.service.routes_refvalues`; admin credential, service URL and CA as for
``veritee secret``). For those: exit 0 done, 1 refused by the service, 2 usage or unreachable.

``inspect FILE [--key PEM_OR_JWK] [--scheme S] [--at TIME] --json`` prints
``{"valid", "reasons", "reference_values", ...}``: one entry per reference-value triple (its
environment and measurements, bytes as hex), the signer recorded, the validity. Exit status: 0
valid, 1 not valid, 2 usage or I/O error (an unreadable file or key, an unknown scheme).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from pathlib import Path

import click

from veritee.cli.exits import EXIT_USAGE, exit_for
from veritee.cli.secrets import _Admin, _admin_options, _handle
from veritee.errors import UsageError
from veritee.refvalues import corim, profiles

__all__ = ["refvalues_group", "register"]


@click.group("refvalues")
def refvalues_group() -> None:
    """Reference values from their sources (CoRIM / CoMID)."""


def _usage(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _parse_at(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _usage(f"--at {text!r} is not an ISO 8601 time")
        raise  # unreachable
    if when.tzinfo is None:
        _usage("--at needs a time zone (e.g. 2026-01-15T00:00:00Z)")
    return when


#: Options ``inspect`` and ``add`` share.
_key_option = click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The signer's key: PEM public key, PEM certificate or JWK (for a signed CoRIM).",
)
_scheme_option = click.option(
    "--scheme",
    type=click.Choice(sorted(profiles.SCHEMES)),
    default=None,
    help="Refuse a CoRIM whose profile belongs to another scheme.",
)


@refvalues_group.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_key_option
@click.option(
    "--trust-anchor",
    "anchor_paths",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    help="A CA certificate (PEM or DER) the signed CoRIM's x5chain must lead to (instead of --key).",
)
@_scheme_option
@click.option(
    "--at", "at_text", default=None, help="Check the validity periods at this time (ISO 8601)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect_cmd(file: Path, key_path: Path | None, anchor_paths: tuple[Path, ...], scheme: str | None,
                at_text: str | None, as_json: bool) -> None:  # fmt: skip
    """Read a CoRIM (signed or not) or CoMID and list its reference values."""
    try:
        data = file.read_bytes()
    except OSError as e:
        _usage(f"cannot read {file}: {e.strerror or e}")
        return
    key = None
    if key_path is not None:
        try:
            key = corim.load_key(key_path.read_bytes())
        except OSError as e:
            _usage(f"cannot read {key_path}: {e.strerror or e}")
        except ValueError as e:
            _usage(f"--key {key_path}: {e}")
    anchors = []
    for path in anchor_paths:
        try:
            anchors += corim.load_anchors(path.read_bytes())
        except OSError as e:
            _usage(f"cannot read {path}: {e.strerror or e}")
        except ValueError as e:
            _usage(f"--trust-anchor {path}: {e}")
    at = _parse_at(at_text)
    result = corim.inspect(data, key=key, scheme=scheme, at=at, anchors=anchors or None,
                           chain_at=at or dt.datetime.now(dt.UTC))  # fmt: skip
    if at is None:  # without --at the validity is reported against the clock, not enforced
        now = dt.datetime.now(dt.UTC)
        for what, validity in (("CoRIM", result.validity), ("signature", result.signer_validity)):
            if validity is not None and now > validity.not_after:
                result.warnings.append(
                    ("corim_expired", f"the {what} validity ended (give --at to enforce it)")
                )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        state = "valid" if result.valid else "NOT valid"
        click.echo(
            f"{file}: {state} {result.kind}"
            + (f", profile {result.profile}" if result.profile else "")
        )
        if result.signer is not None:
            click.echo(
                f"  signed by {result.signer.name} (key sha256 {result.signer.key_thumbprint})"
            )
        if result.validity is not None:
            click.echo(f"  valid until {corim._jsonable(result.validity.not_after)}")
        for code, message in result.reasons:
            click.echo(f"  refused [{code}] {message}")
        for code, message in result.warnings:
            click.echo(f"  warning [{code}] {message}")
        for comid, triple in result.reference_values:
            env = json.dumps(triple.environment.to_json())
            click.echo(f"  {comid.tag_id}: {env}: {len(triple.measurements)} measurement(s)")
    sys.exit(exit_for(result.valid))


MAX_UPLOAD_BYTES = 700 * 1024  # base64 of it fits the service's 1 MiB body limit


@refvalues_group.command("add")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "set_name", required=True, help="The set's name (policies refer to it).")
@_key_option
@_scheme_option
@click.option(
    "--trust-anchor",
    "anchor_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CA certificate(s), PEM, the signed CoRIM's x5chain must lead to (instead of --key).",
)
@click.option(
    "--allow-unsigned", is_flag=True, help="Register an unsigned CoRIM (you vouch for it)."
)
@click.option("--expires", "expires", default=None, help="Stop counting its values at (ISO 8601).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def add_cmd(file: Path, set_name: str, key_path: Path | None, anchor_path: Path | None, scheme: str | None,
            allow_unsigned: bool,
            expires: str | None, as_json: bool, url: str, data: Path | None, admin_token: str | None,
            ca: Path | None) -> None:  # fmt: skip
    """Register a CoRIM's reference values in a named set of the domain."""
    try:
        size = file.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise UsageError(f"{file}: {size} bytes, the limit is {MAX_UPLOAD_BYTES}")
        raw = file.read_bytes()
        key = key_path.read_text() if key_path is not None else None
        anchor = anchor_path.read_text() if anchor_path is not None else None
    except OSError as e:
        raise UsageError(f"cannot read {e.filename}: {e.strerror or e}") from None
    body: dict[str, object] = {
        "set": set_name, "corim": base64.b64encode(raw).decode(), "file_name": file.name,
        "key": key, "trust_anchor": anchor, "scheme": scheme, "allow_unsigned": allow_unsigned,
    }  # fmt: skip
    when = _parse_at(expires)
    if when is not None:
        body["expires_at"] = when.isoformat()
    reply = _Admin(url, data, admin_token, ca).call("POST", "/v1/admin/refvalues", body)
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    state = "added" if reply.get("new") else "already registered"
    click.echo(f"{state}: #{reply['id']} to set {reply['set']}: {reply['entries']} value(s) from "
               f"{reply['file_name']} (sha256 {reply['sha256']}), signer {reply['signer'] or 'none (unsigned)'}"
               + (f", expires {reply['expires_at']}" if reply.get("expires_at") else ""))  # fmt: skip
    for w in reply.get("warnings", []):
        click.echo(f"  warning [{w['code']}] {w['message']}")


@refvalues_group.command("list")
@click.option("--set", "set_name", default=None, help="Only this set.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def list_cmd(set_name: str | None, as_json: bool, url: str, data: Path | None, admin_token: str | None,
             ca: Path | None) -> None:  # fmt: skip
    """List the registered CoRIMs."""
    params = {"set": set_name} if set_name else None
    reply = _Admin(url, data, admin_token, ca).call("GET", "/v1/admin/refvalues", params=params)
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    rows = reply["sources"]
    if not rows:
        click.echo("no reference values registered")
    for r in rows:
        click.echo("\t".join(str(x) for x in (
            r["id"], r["set"], r["status"], r["entries"], r["file_name"], r["signer"] or "-",
            r["expires_at"] or "-", r["added_at"])))  # fmt: skip


@refvalues_group.command("show")
@click.argument("source_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def show_cmd(source_id: int, as_json: bool, url: str, data: Path | None, admin_token: str | None,
             ca: Path | None) -> None:  # fmt: skip
    """Show one registered CoRIM and its reference values."""
    reply = _Admin(url, data, admin_token, ca).call("GET", f"/v1/admin/refvalues/{source_id}")
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    for k in ("id", "set", "status", "file_name", "sha256", "kind", "corim_id", "profile", "scheme",
              "signer", "signer_key_sha256", "not_before", "expires_at", "added_by", "added_at",
              "withdrawn_at", "withdrawn_reason"):  # fmt: skip
        if reply.get(k) is not None:
            click.echo(f"{k}: {reply[k]}")
    for v in reply["values"]:
        click.echo(f"  {v['alg']}\t{v['value']}\t{v['mkey']}")


@refvalues_group.command("withdraw")
@click.argument("source_id", type=int)
@click.option("--reason", default="", help="Why (kept in the audit log).")
@_admin_options
@_handle
def withdraw_cmd(source_id: int, reason: str, url: str, data: Path | None, admin_token: str | None,
                 ca: Path | None) -> None:  # fmt: skip
    """Withdraw a registered CoRIM: its values stop counting at once."""
    reply = _Admin(url, data, admin_token, ca).call(
        "POST", f"/v1/admin/refvalues/{source_id}/withdraw", {"reason": reason}
    )
    state = "withdrawn" if reply["new"] else "already withdrawn"
    click.echo(f"{state}: #{reply['id']} of set {reply['set']} (at {reply['withdrawn_at']})")


@refvalues_group.command("snp-measure")
@click.option(
    "--ovmf", type=click.Path(dir_okay=False, path_type=Path), required=True, help="OVMF firmware."
)
@click.option("--vcpus", type=int, required=True, help="Number of vCPUs of the guest.")
@click.option(
    "--vcpu-type", required=True, help="vCPU type as QEMU names it (EPYC-v4, EPYC-Milan, ...)."
)
@click.option(
    "--kernel",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Kernel measured through OVMF's SEV hashes table (direct boot).",
)
@click.option(
    "--initrd", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Initrd."
)
@click.option("--append", default=None, help="Kernel command line.")
@click.option(
    "--guest-features", default="0x1", show_default=True, help="SEV features of the VMSA (hex)."
)
@click.option("--vmm", default="qemu", show_default=True, help="qemu, ec2 or gce.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a CoRIM carrying the measurement (SEV-SNP profile) here.",
)
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Sign the CoRIM with this PEM private key (EC P-256/384/521 or Ed25519).",
)
@click.option("--signer", default=None, help="The signer's name in the CoRIM (with --sign-key).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def snp_measure_cmd(ovmf: Path, vcpus: int, vcpu_type: str, kernel: Path | None, initrd: Path | None,
                    append: str | None, guest_features: str, vmm: str, output: Path | None,
                    sign_key: Path | None, signer: str | None, as_json: bool) -> None:  # fmt: skip
    """Compute an SEV-SNP guest's launch measurement from its artefacts (sev-snp-measure)."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from veritee.refvalues import snp

    try:
        features = int(guest_features, 16)
    except ValueError:
        _usage(f"--guest-features {guest_features!r} is not hex")
        return
    if (sign_key is None) != (signer is None):
        _usage("give --sign-key and --signer together")
    try:
        digest = snp.launch_digest(ovmf, vcpus=vcpus, vcpu_type=vcpu_type, kernel=kernel, initrd=initrd,
                                   append=append, guest_features=features, vmm=vmm)  # fmt: skip
    except UsageError as e:
        _usage(e.message)
        return
    inputs = {"ovmf": ovmf, "kernel": kernel, "initrd": initrd}
    hashes = {
        k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in inputs.items() if p is not None
    }
    out: dict[str, object] = {"measurement": digest.hex(), "vcpus": vcpus, "vcpu_type": vcpu_type,
                              "vmm": vmm, "append": append, "sha256": hashes}  # fmt: skip
    if output is not None:
        described = (
            ", ".join(f"{k} sha256 {v[:16]}" for k, v in hashes.items())
            + f", {vcpus} x {vcpu_type}"
        )
        blob = snp.launch_corim(digest, description=f"launch measurement: {described}")
        if sign_key is not None:
            try:
                key = serialization.load_pem_private_key(sign_key.read_bytes(), password=None)
                if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
                    raise ValueError("the key is neither EC nor Ed25519")
                blob = corim.sign(blob, key, signer_name=str(signer))
            except (OSError, ValueError, TypeError) as e:
                _usage(f"--sign-key {sign_key}: {e}")
        try:
            output.write_bytes(blob)
        except OSError as e:
            _usage(f"cannot write {output}: {e.strerror or e}")
        out["corim"] = str(output)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(digest.hex())
        if output is not None:
            click.echo(
                f"CoRIM written to {output}" + (" (signed)" if sign_key else " (unsigned)"),
                err=True,
            )


def register(cli: click.Group) -> None:
    cli.add_command(refvalues_group)
