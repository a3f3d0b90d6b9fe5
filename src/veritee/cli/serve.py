"""``veritee serve``: run the Certifier Service under uvicorn (one process or several workers)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from veritee.cli.exits import handle_errors
from veritee.cli.options import DEFAULT_PORT, data_dir, data_option
from veritee.errors import UsageError
from veritee.tls import AEAD_CIPHERS

__all__ = ["register", "serve_cmd"]

#: prometheus-client's multiprocess folder (veritee.service.metrics.MULTIPROC_ENV).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """``--config FILE``: its keys become the defaults of the other flags (given flags win)."""
    if value is not None:
        from veritee.cli.serve_config import load_config

        ctx.default_map = {**(ctx.default_map or {}), **load_config(value, ctx)}
    return value


@click.command("serve")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="A TOML file with any of these flags as keys (the flag's name without its dashes, e.g. "
    'db = "postgresql://...", trusted-proxy = ["10.0.0.0/8"]); flags given here win. See '
    "examples/deploy/veritee.toml.",
)
@data_option
@click.option(
    "--db",
    default=None,
    help="Database URL (default: SQLite in the data folder; postgresql://... for replicas).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--tls/--no-tls",
    default=False,
    help="Serve HTTPS with a server certificate from the domain CA.",
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16))
@click.option(
    "--accept-attester-collateral", is_flag=True,
    help="Also use TCB info, QE identity and CRLs that attesters send with their evidence "
         "(ranked below the domain's own collateral, which always wins). Default: only the "
         "domain's collateral decides; attesters' certificates serve as path candidates.",
)  # fmt: skip
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="IP|CIDR",
    help="A TLS-terminating proxy in front of the service (repeatable): its X-Forwarded-Proto and "
    "X-Forwarded-For are honoured (the KBS cookie is then Secure behind it). Default: none.",
)
@click.option(
    "--issuer",
    default=None,
    help="The iss of the EAR tokens and the issuer of /.well-known/openid-configuration (default: "
    "veritee). OpenID Connect wants the service's public https:// URL here.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
    help="The service's and uvicorn's messages at this level and above, as JSON lines on stderr.",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="One JSON line per request on stderr (method, path, query, route, status, duration, "
    "bytes, client address, worker; never a header, a body or a token).",
)
@click.option(
    "--attest-self",
    "attest_self",
    default=None,
    metavar="PLATFORM",
    help="Run as an attested service: produce evidence of this service on PLATFORM (simulated, auto, "
    "sev-snp, tdx, ...) binding the keys it signs tokens and certificates with and its TLS key, "
    "served at /v1/domain/evidence (docs/tokens.md). The start fails if the platform cannot attest.",
)
@click.option(
    "--attest-state",
    "attest_state",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State of the --attest-self driver (the simulated platform's key; default <data>/service-platform).",
)
@click.option("--collateral-fetch/--no-collateral-fetch", default=True, show_default=True,
              help="Fetch collateral the domain lacks and refresh it before its nextUpdate "
                   "(AMD KDS, Intel PCS or --pccs); off: only <data>/collateral decides.")  # fmt: skip
@click.option(
    "--pccs",
    metavar="URL",
    default=None,
    help="An Intel PCCS to fetch Intel collateral from instead of Intel PCS.",
)
@click.option(
    "--kds", metavar="URL", default=None, help="AMD KDS base URL (default https://kdsintf.amd.com)."
)
@click.option(
    "--pcs",
    metavar="URL",
    default=None,
    help="Intel PCS base URL (default https://api.trustedservices.intel.com).",
)
@click.option("--collateral-warn-hours", type=click.IntRange(0, 24 * 365), default=48, show_default=True,
              help="/readyz says degraded when collateral is this close to its nextUpdate.")  # fmt: skip
@handle_errors
def serve_cmd(
    data: Path | None,
    db: str | None,
    host: str,
    port: int,
    tls: bool,
    workers: int,
    accept_attester_collateral: bool,
    trusted_proxies: tuple[str, ...],
    issuer: str | None,
    log_level: str,
    access_log: bool,
    attest_self: str | None,
    attest_state: Path | None,
    collateral_fetch: bool,
    pccs: str | None,
    kds: str | None,
    pcs: str | None,
    collateral_warn_hours: int,
) -> None:
    """Run the Certifier Service under uvicorn."""
    # prometheus-client picks its mode when first imported: one process counts alone (a shared
    # folder given from outside is not ours to use); several get a private one (_metrics_dir).
    os.environ.pop(MULTIPROC_ENV, None)
    import uvicorn

    from veritee.service.app import create_app
    from veritee.service.serving import log_config, start_line
    from veritee.service.settings import DEFAULT_ISSUER, Settings, fetch_settings

    path = data_dir(data)
    if issuer is not None and not issuer.strip():
        raise UsageError("--issuer must not be empty")
    fetch = fetch_settings(collateral_fetch, pccs=pccs, kds=kds, pcs=pcs)
    ssl: dict[str, Any] = {}
    cert_file: Path | None = None
    if tls:
        from veritee.service.tls import server_certificate_files

        cert_file, key_file = server_certificate_files(path, host)
        # TLS 1.2 suites: AEAD only (veritee.tls); TLS 1.3's are AEAD anyway.
        ssl = {
            "ssl_certfile": str(cert_file),
            "ssl_keyfile": str(key_file),
            "ssl_ciphers": AEAD_CIPHERS,
        }
    attest_state = attest_state.resolve() if attest_state is not None else None
    settings = Settings(data_dir=path, database_url=db, accept_attester_collateral=accept_attester_collateral,
                        issuer=issuer or DEFAULT_ISSUER, access_log=access_log, attest_self=attest_self,
                        attest_state_dir=attest_state, tls_certificate=cert_file, collateral_fetch=fetch,
                        collateral_warn_before=dt.timedelta(hours=collateral_warn_hours))  # fmt: skip
    scheme = "https" if tls else "http"
    shown_host = f"[{host}]" if ":" in host else host
    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "access_log": False,
                              "log_config": log_config(log_level, access_log), **ssl}  # fmt: skip
    from veritee.service.runner import http_protocol

    common.update(http_protocol())
    # Forwarded headers only from the proxies named (uvicorn alone trusts 127.0.0.1 and
    # $FORWARDED_ALLOW_IPS): a client cannot claim another scheme or address.
    common.update(_proxy_settings(trusted_proxies))
    # Migrate, and fail here (not in N workers) on a bad setup.
    app = create_app(settings)
    click.echo(start_line(app.state.ctx, f"{scheme}://{shown_host}:{port}", workers), err=True)
    if workers > 1:
        # Each worker process builds its own app (and database pool) from the environment.
        os.environ["VERITEE_DATA_DIR"] = str(path)
        os.environ["VERITEE_DATABASE_URL"] = db or ""
        os.environ["VERITEE_ACCEPT_ATTESTER_COLLATERAL"] = "1" if accept_attester_collateral else ""
        os.environ["VERITEE_ISSUER"] = issuer or ""
        os.environ["VERITEE_ACCESS_LOG"] = "1" if access_log else ""
        os.environ["VERITEE_ATTEST_SELF"] = attest_self or ""
        os.environ["VERITEE_ATTEST_STATE"] = str(attest_state) if attest_state else ""
        os.environ["VERITEE_TLS_CERT"] = str(cert_file) if cert_file else ""
        os.environ["VERITEE_COLLATERAL_FETCH"] = json.dumps(
            {
                "on": collateral_fetch,
                "pccs": pccs,
                "kds": kds,
                "pcs": pcs,
                "warn_hours": collateral_warn_hours,
            }
        )
        app.state.ctx.storage.close()
        with _metrics_dir():
            uvicorn.run("veritee.service.app:app_from_env", factory=True, workers=workers, **common)
        return
    uvicorn.run(app, **common)


@contextlib.contextmanager
def _metrics_dir() -> Iterator[Path]:
    """A private, empty folder for the workers' metric values (prometheus-client's multiprocess
    mode, ``$PROMETHEUS_MULTIPROC_DIR``), made for this start of the service and removed at its
    end: counts never carry over from an earlier run nor mix with another service's."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="veritee-metrics-"))  # mode 0700
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _proxy_settings(trusted: tuple[str, ...]) -> dict[str, Any]:
    """uvicorn's proxy settings for ``--trusted-proxy`` (each an IP address or network)."""
    import ipaddress

    for item in trusted:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise UsageError(f"--trusted-proxy {item!r} is not an IP address or network") from None
    if not trusted:
        return {"proxy_headers": False, "forwarded_allow_ips": []}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted)}


def register(group: click.Group) -> None:
    group.add_command(serve_cmd)
