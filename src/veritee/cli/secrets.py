"""``veritee secret put|rotate|info|list|delete|dry-run``: the key broker's admin API.

Every command talks to a running Certifier Service with the admin credential: ``--admin-token``,
else ``$VERITEE_ADMIN_TOKEN``, else the ``admin_token`` file of ``--data``. For HTTPS the domain
CA (``--ca``, else ``<data>/domain_ca.pem``) is the trust anchor.

Secret values are read from a file or stdin and are never echoed: output names only versions,
digests and policies. Release policy files are checked locally first (the grammar of
:mod:`veritee.keybroker.policy`), so a typo is reported with the file's path before anything is
sent.

Exit status: 0 done (dry-run: would release), 1 refused by the service or not found (dry-run:
would deny), 2 usage, bad file or the service unreachable.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx

from veritee.cli.exits import REFUSALS, REFUSED, exit_code_for, exit_for
from veritee.errors import (
    AuthenticationError,
    MalformedError,
    PolicyError,
    UsageError,
    VeriteeError,
)
from veritee.keybroker.policy import MAX_POLICY_BYTES, check_claims_known, parse_policy
from veritee.keybroker.vault import MAX_SECRET_BYTES, validate_name
from veritee.sdk.http import explain_unreachable
from veritee.tls import client_context

__all__ = ["register", "secret_group"]

DEFAULT_URL = "http://127.0.0.1:8400"
ADMIN_TOKEN_ENV = "VERITEE_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a credential


def _handle(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map errors to a one-line message and this group's exit codes (never echoing a value)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(exit_code_for(e, REFUSALS))
        except REFUSED as e:
            click.echo(f"refused [{e.code}]: {e.message}", err=True)
            for r in e.reasons or []:
                click.echo(f"  - [{r.get('code')}] {r.get('message')}", err=True)
            sys.exit(exit_code_for(e, REFUSALS))
        except VeriteeError as e:
            click.echo(f"error [{e.code}]: {e.message}", err=True)
            sys.exit(exit_code_for(e, REFUSALS))

    return wrapper


def read_admin_token(folder: Path) -> str:
    """The admin credential in ``folder``/admin_token; a UsageError saying where it was looked
    for (never an errno alone) when there is none or it cannot be read."""
    token_file = folder / "admin_token"
    where = (f"looked for --admin-token, then ${ADMIN_TOKEN_ENV}, then {token_file}; pass --admin-token, "
             f"set ${ADMIN_TOKEN_ENV}, or point --data at the domain folder")  # fmt: skip
    try:
        token = token_file.read_text().strip()
    except FileNotFoundError:
        raise UsageError(f"no admin credential ({where})", code="admin_required") from None
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or type(e).__name__
        raise UsageError(f"cannot read the admin credential {token_file}: {why} ({where})",
                         code="admin_required") from None  # fmt: skip
    if not token:
        raise UsageError(
            f"no admin credential: {token_file} is empty ({where})", code="admin_required"
        )
    return token


class _Admin:
    """The admin API over one ``httpx`` client; service problems become veritee errors."""

    def __init__(
        self, url: str, data: Path | None, admin_token: str | None, ca: Path | None
    ) -> None:
        from veritee.domain import default_data_dir

        folder = data if data is not None else default_data_dir()
        token = (admin_token or "").strip() or read_admin_token(folder)
        verify: ssl.SSLContext | bool = True
        self._ca_file = ca if ca is not None else folder / "domain_ca.pem"
        if url.startswith("https://"):
            ca_file = self._ca_file
            if not ca_file.is_file():
                raise UsageError(f"no CA certificate to trust for HTTPS: {ca_file} (use --ca)")
            verify = client_context(cafile=str(ca_file))
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, verify=verify, timeout=15,
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip

    def _unreachable(self, e: httpx.HTTPError) -> UsageError:
        ca = str(self._ca_file) if self.url.startswith("https://") else None
        code, message = explain_unreachable(e, self.url, ca)
        return UsageError(message, code=code)

    def ca_certificate(self) -> Any:
        """The domain CA certificate (``--ca``, else ``<data>/domain_ca.pem``)."""
        from veritee import certs

        try:
            data = self._ca_file.read_bytes()
        except OSError as e:
            raise UsageError(
                f"cannot read the domain CA {self._ca_file}: {e.strerror or e}"
            ) from None
        return certs.load_pem_certificate(data, str(self._ca_file))

    def get_bytes(self, path: str) -> bytes:
        """GET ``path``; its body (a problem becomes a veritee error, as for :meth:`call`)."""
        try:
            r = self._http.get(path)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        finally:
            self._http.close()
        if r.status_code != 200:
            from veritee.sdk.http import error_from_problem

            raise error_from_problem(r)
        return r.content

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request (``body`` as JSON, or raw ``content``); the client is closed after it."""
        try:
            r = self._http.request(method, path, json=body, content=content, params=params)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        finally:
            self._http.close()
        if r.status_code == 200:
            out: dict[str, Any] = r.json()
            return out
        from veritee.sdk.http import error_from_problem

        err = error_from_problem(r)
        if r.status_code == 401:
            raise AuthenticationError(err.message, code=err.code)
        if r.status_code in (400, 413):  # the request itself was wrong: a usage error
            raise UsageError(f"the service refused the request: {err.message}", code=err.code)
        raise err


_ADMIN_OPTIONS = (
    click.option("--url", default=DEFAULT_URL, show_default=True, help="Certifier Service."),
    click.option(
        "--data", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Domain folder (admin_token, domain_ca.pem).",
    ),
    click.option(
        "--admin-token", envvar="VERITEE_ADMIN_TOKEN", default=None,
        help="Admin credential (default: $VERITEE_ADMIN_TOKEN, then <data>/admin_token).",
    ),
    click.option(
        "--ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="CA to trust for HTTPS (default: <data>/domain_ca.pem).",
    ),
)  # fmt: skip


def _admin_options(fn: Any) -> Any:
    for deco in reversed(_ADMIN_OPTIONS):
        fn = deco(fn)
    return fn


def _policy_from(path: Path) -> dict[str, Any]:
    """Read and check a release policy file; every problem names the file."""
    try:
        size = path.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise UsageError(f"{path}: policy is {size} bytes, the limit is {MAX_POLICY_BYTES}")
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read policy file {path}: {e.strerror or e}") from None
    try:
        check_claims_known(parse_policy(raw))
    except (MalformedError, PolicyError) as e:
        raise UsageError(f"{path}: {e.message}", code=e.code) from None
    doc: dict[str, Any] = json.loads(raw)
    return doc


def _value_from(value_file: Path | None, value_stdin: bool) -> bytes:
    if (value_file is None) == (not value_stdin):
        raise UsageError("give the value with exactly one of --value-file F or --value-stdin")
    if value_file is not None:
        try:
            size = value_file.stat().st_size
            if size > MAX_SECRET_BYTES:
                raise UsageError(
                    f"{value_file}: {size} bytes, larger than the limit of {MAX_SECRET_BYTES}",
                    code="oversized",
                )
            value = value_file.read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read value file {value_file}: {e.strerror or e}") from None
        where = str(value_file)
    else:
        value = sys.stdin.buffer.read(MAX_SECRET_BYTES + 1)
        where = "stdin"
    if len(value) > MAX_SECRET_BYTES:
        raise UsageError(
            f"{where}: larger than the limit of {MAX_SECRET_BYTES} bytes", code="oversized"
        )
    if not value:
        raise UsageError(f"{where}: the value is empty")
    return value


def _value_options(fn: Any) -> Any:
    stdin = click.option("--value-stdin", is_flag=True, help="Read the value from standard input.")
    file = click.option(
        "--value-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Read the value from this file.",
    )  # fmt: skip
    return file(stdin(fn))


def _stored(reply: dict[str, Any], verb: str) -> None:
    click.echo(f"{verb} secret {reply['name']!r} version {reply['version']} "
               f"(policy sha256 {str(reply.get('policy_sha256', ''))[:16]}..., kek {reply.get('kek_id')})")  # fmt: skip


@click.group("secret")
def secret_group() -> None:
    """Store, rotate, inspect and delete key-broker secrets (admin)."""


@secret_group.command("put")
@click.argument("name")
@click.option("--policy", "policy_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Release policy (JSON).")  # fmt: skip
@_value_options
@_admin_options
@_handle
def put_cmd(name: str, policy_file: Path, value_file: Path | None, value_stdin: bool,
            url: str, data: Path | None, admin_token: str | None, ca: Path | None) -> None:  # fmt: skip
    """Store a new version of NAME behind a release policy."""
    validate_name(name)
    policy = _policy_from(policy_file)
    value = _value_from(value_file, value_stdin)
    body = {"value": base64.b64encode(value).decode(), "policy": policy}
    _stored(
        _Admin(url, data, admin_token, ca).call("PUT", f"/v1/admin/secrets/{name}", body), "stored"
    )


@secret_group.command("rotate")
@click.argument("name")
@click.option("--policy", "policy_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="A new release policy (default: keep the current one).")  # fmt: skip
@click.option("--keep-old-policies", is_flag=True,
              help="Older versions stay releasable under their own release policies alone "
                   "(default: a release of any version must satisfy the new policy too).")  # fmt: skip
@_value_options
@_admin_options
@_handle
def rotate_cmd(name: str, policy_file: Path | None, keep_old_policies: bool,
               value_file: Path | None, value_stdin: bool,
               url: str, data: Path | None, admin_token: str | None, ca: Path | None) -> None:  # fmt: skip
    """Store a new value for an existing NAME (a new version).

    From then on a release of any version must also satisfy the new version's release policy,
    unless --keep-old-policies is given."""
    validate_name(name)
    body: dict[str, Any] = {"keep_old_policies": True} if keep_old_policies else {}
    if policy_file is not None:
        body["policy"] = _policy_from(policy_file)
    body["value"] = base64.b64encode(_value_from(value_file, value_stdin)).decode()
    reply = _Admin(url, data, admin_token, ca).call(
        "POST", f"/v1/admin/secrets/{name}/rotate", body
    )
    _stored(reply, "rotated")


@secret_group.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def info_cmd(name: str, as_json: bool, url: str, data: Path | None, admin_token: str | None,
             ca: Path | None) -> None:  # fmt: skip
    """Show NAME's latest version, key id and release policy (never the value)."""
    validate_name(name)
    info = _Admin(url, data, admin_token, ca).call("GET", f"/v1/admin/secrets/{name}")
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"secret {info['name']!r}: version {info['version']}, kek {info['kek_id']}, "
               f"stored {info['created_at']}")  # fmt: skip
    click.echo("release policy:")
    click.echo(json.dumps(info["policy"], indent=2))


@secret_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def list_cmd(
    as_json: bool, url: str, data: Path | None, admin_token: str | None, ca: Path | None
) -> None:
    """List secrets and their versions."""
    reply = _Admin(url, data, admin_token, ca).call("GET", "/v1/admin/secrets")
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    rows = reply["secrets"]
    if not rows:
        click.echo("no secrets")
    for s in rows:
        click.echo(f"{s['name']}\tlatest {s['latest_version']}\tversions {s['versions']}\t"
                   f"updated {s['updated_at']}")  # fmt: skip


@secret_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_admin_options
@_handle
def delete_cmd(name: str, yes: bool, url: str, data: Path | None, admin_token: str | None,
               ca: Path | None) -> None:  # fmt: skip
    """Delete every version of NAME."""
    validate_name(name)
    if not yes and not click.confirm(f"delete every version of {name!r}?", default=False):
        raise UsageError("not deleted")
    reply = _Admin(url, data, admin_token, ca).call("DELETE", f"/v1/admin/secrets/{name}")
    click.echo(f"deleted secret {reply['name']!r} ({reply['deleted_versions']} versions)")


@secret_group.command("dry-run")
@click.argument("name")
@click.option("--evidence", "evidence_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Stored evidence to test.")  # fmt: skip
@click.option("--format", "fmt", default="auto", show_default=True,
              type=click.Choice(["auto", "sev-snp", "tdx", "sgx", "nitro", "tpm", "simulated"]))  # fmt: skip
@click.option("--at", default=None, help="Appraise as of this ISO-8601 time (default: now).")
@click.option("--policy", "policy_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Test this release policy instead of the stored one.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def dry_run_cmd(name: str, evidence_file: Path, fmt: str, at: str | None, policy_file: Path | None,
                as_json: bool, url: str, data: Path | None, admin_token: str | None,
                ca: Path | None) -> None:  # fmt: skip
    """What a release of NAME would decide for this evidence (exit 0 release, 1 deny)."""
    from veritee.cli.options import parse_time
    from veritee.evidence import MAX_EVIDENCE_BYTES

    validate_name(name)
    try:
        if evidence_file.stat().st_size > MAX_EVIDENCE_BYTES:
            raise UsageError(f"{evidence_file}: larger than {MAX_EVIDENCE_BYTES} bytes")
        evidence = evidence_file.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read evidence file {evidence_file}: {e.strerror or e}") from None
    body: dict[str, Any] = {"evidence": base64.b64encode(evidence).decode(), "format": fmt}
    if at is not None:
        body["at"] = parse_time(at).isoformat()
    if policy_file is not None:
        body["policy"] = _policy_from(policy_file)
    reply = _Admin(url, data, admin_token, ca).call(
        "POST", f"/v1/admin/secrets/{name}/dry-run", body
    )
    if as_json:
        click.echo(json.dumps(reply, indent=2))
    else:
        click.echo(f"{'WOULD RELEASE' if reply['allowed'] else 'WOULD DENY'} {name!r}")
        for r in reply["reasons"]:
            click.echo(f"  - [{r['code']}] {r['message']}")
    sys.exit(exit_for(reply["allowed"]))


def register(group: click.Group) -> None:
    group.add_command(secret_group)
