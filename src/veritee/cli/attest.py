"""``veritee attest``: evidence from the platform this runs on, and ``--show`` to look at it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from veritee.cli.exits import handle_errors
from veritee.errors import UsageError

__all__ = ["attest_cmd", "public_key_spki", "register"]

PLATFORMS = [
    "auto",
    "simulated",
    "sev-snp",
    "tdx",
    "cca",
    "nitro",
    "tpm",
    "az-snp-vtpm",
    "az-tdx-vtpm",
]


def open_for_cli(platform: str, *, tcti: str | None, state: Path, measurement: str | None) -> Any:
    """The driver ``veritee attest`` uses (``auto`` detects; no silent simulated stand-in)."""
    from veritee.platforms.detect import Interfaces, detect, open_hardware

    where = Interfaces(tcti=tcti)
    if platform == "auto":
        found = detect(where)
        if found is None:
            raise UsageError("no TEE found (no configfs-tsm, /dev/sev-guest, /dev/tdx_guest, /dev/nsm or "
                             "TPM); pass --platform simulated for development", code="platform_absent")  # fmt: skip
        platform = found
    if platform == "simulated":
        from veritee.platforms.simulated import SimulatedPlatform

        if measurement is None:
            raise UsageError("--platform simulated needs --measurement HEX (see `veritee measure`)")
        return SimulatedPlatform(state / "simulated", measurement=measurement)
    return open_hardware(platform, state_dir=state, where=where)


def public_key_spki(path: Path | None) -> bytes:
    """The DER SubjectPublicKeyInfo of a PEM public key file (empty for None)."""
    if path is None:
        return b""
    from cryptography.hazmat.primitives import serialization

    from veritee.binding import spki_der

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError):
        raise UsageError(f"{path} is not a PEM public key (SubjectPublicKeyInfo)") from None
    return spki_der(key)


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    else:
        out.append((prefix, "not reported" if value is None else
                    json.dumps(value) if isinstance(value, list | bool) else str(value)))  # fmt: skip


def _show(description: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{description.get('platform', '?')} as this workload sees itself (unverified)"
    )
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, str]] = []
    _flatten("", description, rows)
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


@click.command("attest")
@click.option(
    "--platform", "platform", type=click.Choice(PLATFORMS), default="auto", show_default=True
)
@click.option("--tcti", default=None, help="TPM TCTI as tpm2-tools spell it (default device:/dev/tpmrm0; "
              "swtpm:host=H,port=P, mssim:host=H,port=P).")  # fmt: skip
@click.option("--nonce", default=None, help="Hex nonce to bind (the verifier's challenge).")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="PEM public key to bind with the nonce (as the service expects).")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the evidence.")  # fmt: skip
@click.option("--collateral-out", "collateral_out", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Folder for the certificates the platform hands over (SEV-SNP VCEK, ...).")  # fmt: skip
@click.option("--state", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Driver state: the TPM's AK certificate and sealed objects (default $XDG_DATA_HOME/veritee/platform).")  # fmt: skip
@click.option("--measurement", default=None, help="Simulated platform only: the measurement (hex).")
@click.option(
    "--show", is_flag=True, help="Print what the platform reports about this workload instead."
)
@click.option("--json", "as_json", is_flag=True, help="With --show: one JSON object.")
@handle_errors
def attest_cmd(
    platform: str,
    tcti: str | None,
    nonce: str | None,
    public_key: Path | None,
    output: Path | None,
    collateral_out: Path | None,
    state: Path | None,
    measurement: str | None,
    show: bool,
    as_json: bool,
) -> None:
    """Produce evidence on this machine's TEE, binding --nonce (and --public-key).

    `veritee verify EVIDENCE --nonce HEX [--public-key PEM] --collateral DIR` accepts what this
    writes, with the collateral it wrote (and, for a TPM, the domain CA that enrolled it).
    """
    from veritee.binding import report_data_for
    from veritee.platforms.detect import default_state_dir

    driver = open_for_cli(
        platform, tcti=tcti, state=state or default_state_dir(), measurement=measurement
    )
    if show:
        describe = getattr(driver, "describe", None)
        info = (
            describe()
            if describe is not None
            else {"platform": driver.name, "measurement": driver.measurement}
        )
        _show(info, as_json)
        return
    if nonce is None or output is None:
        raise UsageError("attest needs --nonce HEX and -o EVIDENCE (or --show)")
    try:
        nonce_bytes = bytes.fromhex(nonce)
    except ValueError:
        raise UsageError("--nonce must be hex") from None
    if not 1 <= len(nonce_bytes) <= 64:
        raise UsageError("--nonce is 1..64 bytes")
    evidence = driver.evidence(
        report_data_for(nonce_bytes, public_key_spki(public_key), profile=driver.profile)
    )
    output.write_bytes(evidence)
    written = [str(output)]
    if collateral_out is not None:
        collateral_out.mkdir(parents=True, exist_ok=True)
        for name, data in getattr(driver, "collateral", dict)().items():
            (collateral_out / name).write_bytes(data)
            written.append(str(collateral_out / name))
    click.echo(f"{driver.name} evidence ({len(evidence)} bytes): {', '.join(written)}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(attest_cmd)
