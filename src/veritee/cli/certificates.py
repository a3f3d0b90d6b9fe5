"""``veritee certificate list|revoke|revocations|crl`` (also ``veritee cert ...``): the domain's
admission certificates (admin).

``list`` shows the issued certificates, the newest first, with their state (``valid``,
``expiring`` with under a quarter of the lifetime left, ``expired``, ``revoked``);
``--state`` keeps one (``GET /v1/admin/certificates``).

``revoke`` takes ``--serial HEX`` (one certificate) or ``--measurement HEX`` (every certificate
certifying that measurement, and no new one); the revocation is audited and holds at once on
every worker and replica. ``crl`` fetches the domain's CRL (``GET /v1/crl``), checks it against
the domain CA and writes it (DER) or lists it. Admin credential, service URL and CA as for
``veritee secret`` (:mod:`veritee.cli.secrets`).

Exit status: 0 done, 1 refused by the service, 2 usage or the service unreachable.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from veritee.cli.secrets import _Admin, _admin_options, _handle
from veritee.errors import UsageError

__all__ = ["cert_group", "certificate_group", "register"]


@click.group("certificate")
def certificate_group() -> None:
    """Revoke admission certificates and read the domain's CRL (admin)."""


@certificate_group.command("revoke")
@click.option("--serial", default=None, help="The certificate's serial number (hex).")
@click.option(
    "--measurement", default=None, help="Revoke every certificate of this measurement (hex)."
)
@click.option("--reason", default="", help="Why (kept in the audit log).")
@_admin_options
@_handle
def revoke_cmd(serial: str | None, measurement: str | None, reason: str, url: str,
               data: Path | None, admin_token: str | None, ca: Path | None) -> None:  # fmt: skip
    """Revoke one admission certificate (--serial) or every one of a measurement."""
    if (serial is None) == (measurement is None):
        raise UsageError("give exactly one of --serial and --measurement")
    body = {"reason": reason} | ({"serial": serial} if serial else {"measurement": measurement})
    reply = _Admin(url, data, admin_token, ca).call("POST", "/v1/admin/revocations", body)
    state = "revoked" if reply["new"] else "already revoked"
    click.echo(f"{state}: {reply['kind']} {reply['value']} (at {reply['revoked_at']})")


@certificate_group.command("revocations")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def revocations_cmd(as_json: bool, url: str, data: Path | None, admin_token: str | None,
                    ca: Path | None) -> None:  # fmt: skip
    """List every revocation."""
    reply = _Admin(url, data, admin_token, ca).call("GET", "/v1/admin/revocations")
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    rows = reply["revocations"]
    if not rows:
        click.echo("no revocations")
    for r in rows:
        click.echo(f"{r['kind']}\t{r['value']}\t{r['revoked_at']}\t{r['reason']}")


@certificate_group.command("crl")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the CRL (DER) here; without it, list the revoked serials.")  # fmt: skip
@_admin_options
@_handle
def crl_cmd(output: Path | None, url: str, data: Path | None, admin_token: str | None,
            ca: Path | None) -> None:  # fmt: skip
    """Fetch the domain's CRL and check that the domain CA signed it."""
    from veritee.sdk.revocation import CRL_PATH, RevocationList

    admin = _Admin(url, data, admin_token, ca)
    der = admin.get_bytes(CRL_PATH)
    crl = RevocationList.from_der(der, admin.ca_certificate())
    if not crl.is_current(dt.datetime.now(dt.UTC)):
        raise UsageError("the service's CRL is not current")
    if output is not None:
        output.write_bytes(der)
        click.echo(f"wrote {output} ({len(crl.serials)} revoked, next update {crl.next_update})")
        return
    for serial in sorted(crl.serials):
        click.echo(format(serial, "x"))


@certificate_group.command("list")
@click.option("--state", type=click.Choice(["valid", "expiring", "expired", "revoked"]), default=None,
              help="Only certificates in this state.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Look at the newest N issued.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def list_cmd(state: str | None, limit: int, as_json: bool, url: str, data: Path | None, admin_token: str | None,
             ca: Path | None) -> None:  # fmt: skip
    """List issued admission certificates, the newest first: serial, state, platform,
    measurement, validity."""
    from collections import Counter

    from veritee.cli.tables import certificate_table, console

    params = {"limit": str(limit)} | ({"state": state} if state else {})
    reply = _Admin(url, data, admin_token, ca).call("GET", "/v1/admin/certificates", params=params)
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    rows = reply["certificates"]
    if not rows:
        click.echo("no admission certificates" + (f" in state {state}" if state else ""))
        return
    console().print(certificate_table(rows))
    counts = Counter(c["state"] for c in rows)
    click.echo(", ".join(f"{n} {name}" for name, n in sorted(counts.items())))


@click.group("cert")
def cert_group() -> None:
    """Admission certificates: list, revoke, revocations, CRL (as `veritee certificate`)."""


for _cmd in (list_cmd, revoke_cmd, revocations_cmd, crl_cmd):
    cert_group.add_command(_cmd)


def register(group: click.Group) -> None:
    group.add_command(certificate_group)
    group.add_command(cert_group)
