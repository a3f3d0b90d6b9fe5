"""``veritee init``: create a domain (CA, policy, key-broker and token keys, admin credential,
database), or bring an existing domain folder to the current format (``--upgrade``)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import click

from veritee.cli.exits import handle_errors
from veritee.cli.options import data_dir, data_option

__all__ = ["init_cmd", "register"]


@click.command("init")
@data_option
@click.option("--name", default="veritee-domain", show_default=True, help="Domain name.")
@click.option(
    "--upgrade", is_flag=True,
    help="Bring an existing domain folder to the current format instead (separate CA, policy "
         "and key-broker keys; the CA and its certificate stay). Do it on one copy, then copy "
         "that folder to every replica.",
)  # fmt: skip
@click.option(
    "--admin-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the admin credential (default: <data>/admin_token). The service keeps "
    "only its verifier (admin_token.hmac) and runs without this file.",
)
@handle_errors
def init_cmd(data: Path | None, name: str, upgrade: bool, admin_token_file: Path | None) -> None:
    """Create a domain: CA, policy, key-broker and token keys, admin credential, database."""
    from veritee.domain import Domain
    from veritee.keybroker.kek import KEK_ENV, FileKek
    from veritee.service.storage import Storage

    path = data_dir(data)
    if upgrade:
        before = (path / "ca_key.pem").is_file()
        domain = Domain.open(path)
        store = Storage(domain.database_url)
        store.migrate()
        store.close()
        click.echo(f"domain {domain.name!r} in {path} is up to date"
                   + ("" if before else ": the CA key moved to ca_key.pem, policy_key.pem is a new "
                      "policy key (policies signed before stay valid as stored until re-signed), "
                      "broker_key.pem and broker_cert.pem sign release envelopes"))  # fmt: skip
        return
    domain = Domain.create(
        path, name=name, now=dt.datetime.now(dt.UTC), admin_token_file=admin_token_file
    )
    store = Storage(domain.database_url)
    store.migrate()
    store.close()
    click.echo(f"created domain {name!r} in {path}")
    click.echo(f"  domain CA certificate: {path / 'domain_ca.pem'}")
    token_file = admin_token_file or path / "admin_token"
    click.echo(f"  admin credential:      {token_file} (keep it secret; the service needs only "
               f"{path / 'admin_token.hmac'})")  # fmt: skip
    click.echo(f"  database:              {domain.database_url}")
    if not os.environ.get(KEK_ENV):
        # Created now, not on the first secret, so that copies of the folder (replicas) share it.
        kek = FileKek.in_data_dir(path)
        click.echo(f"  secrets' KEK:          {kek.path} (keep it secret; or set {KEK_ENV})")


def register(group: click.Group) -> None:
    group.add_command(init_cmd)
