"""The domain's named appraisal policies over the admin API: ``veritee admit`` admits a new
version of a workload in one command (issue 18, item 7); ``veritee policy list|retire`` lists
the policies in force and takes one out; ``veritee policy sign|install`` sign a policy file with
the domain's policy key and install it.

Admitting a new build used to take four steps per party: re-measure, edit and re-sign the
appraisal policy, install it, and rewrite each secret's release policy. ``veritee admit``:

1. reads the named appraisal policy from the service (admin API), adds the measurement to the
   platform's allow-list, shows the unified diff, asks (unless ``--yes``), signs it with the
   domain's policy key and installs it as that name's next version (the domain's other named
   policies stay as they are);
2. for each secret whose release policy pins a measurement the policy admitted before
   (``{"claim": "measurement", "equals"|"in": ...}``), adds the new measurement next to it,
   shows that diff, asks, and stores the new release policy (a new version of the secret, the
   same value: ``POST /v1/admin/secrets/{name}/policy``).

``--from-evidence FILE`` takes the platform and measurement from evidence of the new version
instead, once the service's dry run has verified it. Admitting a measurement already admitted
changes nothing and says so. Exit status as the ``secret`` commands: 0 done (or nothing to do), 1 refused or not found (an unknown policy or
secret) or declined, 2 usage, bad input or the service unreachable.
"""

from __future__ import annotations

import base64
import copy
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from veritee.appraisal.evaluate import MEASUREMENT_PINS
from veritee.cli.exits import EXIT_NOT_ACCEPTED, handle_errors
from veritee.cli.options import DEFAULT_PORT, data_dir, data_option
from veritee.cli.secrets import _Admin, _admin_options, _handle
from veritee.errors import MalformedError, PolicyError, UsageError, VerificationError, VeriteeError

__all__ = ["admit_cmd", "policy_group", "policy_list_cmd", "policy_retire_cmd", "register"]

_HEX = re.compile(r"^[0-9a-fA-F]+$")
MAX_EVIDENCE_BYTES = 300_000  # what the service's dry run takes (400 000 base64 characters)


def _pretty(doc: Any) -> list[str]:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").splitlines(keepends=True)


def show_diff(before: Any, after: Any, label: str) -> None:
    """Print the unified diff of two JSON documents (sorted keys, two-space indent)."""
    diff = difflib.unified_diff(
        _pretty(before), _pretty(after), f"{label} (installed)", f"{label} (admitted)"
    )
    click.echo("".join(diff), nl=False)


def admit_measurement(
    policy: dict[str, Any], platform: str | None, measurement: str
) -> tuple[dict[str, Any], str, list[str]]:
    """``policy`` (JSON form) with ``measurement`` in ``platform``'s allow-list (the platform:
    the policy's only one when None). Returns (new policy, platform, the allow-list before)."""
    sections = policy.get("platforms") or {}
    if platform is None:
        if len(sections) != 1:
            raise UsageError(f"policy {policy.get('name')!r} has sections for {sorted(sections) or 'no platform'}: "
                             "name one with --platform")  # fmt: skip
        platform = next(iter(sections))
    if platform not in sections:
        raise UsageError(f"policy {policy.get('name')!r} has no section for platform {platform!r} "
                         f"(it has {sorted(sections)}): add one with `veritee policy sign` first")  # fmt: skip
    field, _what = MEASUREMENT_PINS.get(platform, ("measurements", "measurement"))
    pins = sections[platform].get(field)
    if isinstance(pins, dict):
        raise UsageError(f"policy {policy.get('name')!r} takes {platform} measurements from reference-value set "
                         f"{pins.get('refvalues')!r}: register the new measurement there (veritee refvalues add)")  # fmt: skip
    before = list(pins or [])
    if sections[platform].get(field) is None:
        raise UsageError(f"policy {policy.get('name')!r} admits any measurement on {platform} "
                         f"(no {field} list): nothing to admit")  # fmt: skip
    after = copy.deepcopy(policy)
    if measurement not in before:
        after["platforms"][platform][field] = [*before, measurement]
    return after, platform, before


def widen_release_policy(node: Any, old: set[str], new: str) -> Any:
    """A copy of a release policy (node) where every leaf pinning one of the ``old``
    measurements (``equals`` one, or ``in`` a list holding one) also admits ``new``."""
    if isinstance(node, list):
        return [widen_release_policy(n, old, new) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("claim") == "measurement":
        if (
            isinstance(node.get("equals"), str)
            and node["equals"].lower() in old
            and node["equals"].lower() != new
        ):
            rest = {k: v for k, v in node.items() if k != "equals"}
            return {**rest, "in": [node["equals"], new]}
        values = node.get("in")
        if (
            isinstance(values, list)
            and {str(v).lower() for v in values} & old
            and new not in {str(v).lower() for v in values}
        ):
            return {**node, "in": [*values, new]}
        return dict(node)
    return {k: widen_release_policy(v, old, new) for k, v in node.items()}


def _from_evidence(admin: _Admin, path: Path, fmt: str, policy: dict[str, Any],
                   platform: str | None) -> tuple[str, str]:  # fmt: skip
    """The (platform, measurement) of authentic evidence: the service's dry run verifies it (its
    collateral, the policy's platform keys) and returns its claims, or says why it cannot."""
    try:
        if path.stat().st_size > MAX_EVIDENCE_BYTES:
            raise UsageError(f"{path}: larger than {MAX_EVIDENCE_BYTES} bytes", code="oversized")
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read evidence {path}: {e.strerror or e}") from None
    body = {"policy": json.dumps(policy), "evidence": base64.b64encode(raw).decode(), "format": fmt}
    out = admin.call("POST", "/v1/admin/policy/dry-run", body)
    claims = out.get("claims")
    if not isinstance(claims, dict) or not isinstance(claims.get("measurement"), str):
        reasons = [r for r in out.get("reasons") or [] if isinstance(r, dict)]
        err = VerificationError(f"{path}: the evidence could not be verified, so nothing is admitted",
                                code=str(reasons[0].get("code")) if reasons else "attestation_refused")  # fmt: skip
        err.reasons = reasons
        raise err
    found = str(claims.get("platform"))
    if platform is not None and platform != found:
        raise UsageError(f"--platform {platform}, but {path} is {found} evidence")
    return found, claims["measurement"].lower()


def _confirm(question: str, yes: bool) -> bool:
    return yes or click.confirm(question, default=False)


@click.command("admit")
@click.option(
    "--policy",
    "policy_name",
    default=None,
    help="Name of the appraisal policy that admits this workload (default: the only one in force).",
)
@click.option(
    "--measurement",
    default=None,
    help="The new version's measurement, hex (e.g. the output of `veritee measure`).",
)
@click.option(
    "--from-evidence",
    "evidence_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Or take the platform and measurement from this evidence of the new version "
    "(the service verifies it first, in a dry run against the policy).",
)
@click.option("--format", "fmt", default="auto", show_default=True, help="The evidence's format.")
@click.option(
    "--platform",
    default=None,
    help="Platform section to add it to (default: the policy's only one).",
)
@click.option(
    "--secrets",
    "secrets",
    default="all",
    show_default=True,
    help="Release policies to update: all (those pinning this workload's earlier "
    "measurements), none, or a comma-separated list of secret names.",
)
@click.option("--yes", is_flag=True, help="Do not ask before signing and installing.")
@_admin_options
@_handle
def admit_cmd(policy_name: str | None, measurement: str | None, evidence_file: Path | None, fmt: str,
              platform: str | None, secrets: str, yes: bool,
              url: str, data: Path | None, admin_token: str | None, ca: Path | None) -> None:  # fmt: skip
    """Admit a new measurement: add it to the named appraisal policy and to the release
    policies of the secrets that admitted the workload's earlier versions; show each diff,
    ask, sign with the domain's policy key, install."""
    from veritee.appraisal import load_policy, sign_policy
    from veritee.domain import Domain, default_data_dir

    if (measurement is None) == (evidence_file is None):
        raise UsageError(
            "give the new version with exactly one of --measurement HEX or --from-evidence FILE"
        )
    if measurement is not None:
        measurement = measurement.strip().lower()
        if not measurement or not _HEX.match(measurement) or len(measurement) % 2:
            raise UsageError(
                f"--measurement {measurement[:80]!r} is not hex (whole bytes)", code="malformed"
            )

    def admin() -> _Admin:
        return _Admin(url, data, admin_token, ca)

    if policy_name is None:
        in_force = [p["name"] for p in admin().call("GET", "/v1/admin/policies")["policies"]]
        if len(in_force) != 1:
            raise UsageError(f"{len(in_force)} appraisal policies are in force ({', '.join(in_force) or 'none'}): "
                             "name the workload's with --policy NAME")  # fmt: skip
        policy_name = in_force[0]
    installed = admin().call("GET", "/v1/admin/policy", params={"name": policy_name})
    before = installed["policy"]
    if evidence_file is not None:
        platform, measurement = _from_evidence(admin(), evidence_file, fmt, before, platform)
    if measurement is None:  # (exactly one of the two was given)
        raise UsageError("no measurement to admit")
    after, platform, earlier = admit_measurement(before, platform, measurement)
    if after == before:
        click.echo(
            f"policy {policy_name!r} version {installed['version']} already admits {measurement} on {platform}"
        )
    else:
        try:
            checked = load_policy(json.dumps(after))  # the same checks as the service's
        except (MalformedError, PolicyError) as e:
            raise UsageError(f"--measurement {measurement}: {e.message}", code=e.code) from None
        folder = data if data is not None else default_data_dir()
        try:
            domain = Domain.open(folder)  # its policy key signs
        except UsageError as e:
            raise UsageError(f"cannot sign policy {policy_name!r}: no domain policy key in {folder} "
                             f"({e.message}); pass --data DOMAIN_DIR", code=e.code) from None  # fmt: skip
        show_diff(before, after, f"policy {policy_name}")
        if not _confirm(
            f"sign and install policy {policy_name!r} with {measurement} admitted?", yes
        ):
            click.echo("nothing installed", err=True)
            sys.exit(EXIT_NOT_ACCEPTED)
        envelope = sign_policy(checked, domain.policy_key)
        reply = admin().call("PUT", "/v1/admin/policy", content=envelope)
        click.echo(f"installed policy {reply['name']!r} version {reply['version']}")
    if secrets == "none":
        return
    old = {m.lower() for m in earlier} - {measurement}
    if secrets == "all":
        names = [s["name"] for s in admin().call("GET", "/v1/admin/secrets")["secrets"]]
    else:
        names = [n.strip() for n in secrets.split(",") if n.strip()]
    for name in names:
        current = admin().call("GET", f"/v1/admin/secrets/{name}")["policy"]
        widened = widen_release_policy(current, old, measurement)
        if widened == current:
            if secrets != "all":
                click.echo(f"secret {name!r}: its release policy pins none of {policy_name!r}'s earlier "
                           "measurements, or already admits this one: unchanged")  # fmt: skip
            continue
        show_diff(current, widened, f"secret {name} release policy")
        if not _confirm(
            f"store secret {name!r}'s release policy with {measurement} admitted?", yes
        ):
            click.echo(f"secret {name!r} unchanged", err=True)
            continue
        reply = admin().call("POST", f"/v1/admin/secrets/{name}/policy", {"policy": widened})
        click.echo(
            f"secret {name!r}: release policy stored as version {reply['version']} (same value)"
        )


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_admin_options
@_handle
def policy_list_cmd(
    as_json: bool, url: str, data: Path | None, admin_token: str | None, ca: Path | None
) -> None:
    """List the appraisal policies in force (one per name: its newest version)."""
    reply = _Admin(url, data, admin_token, ca).call("GET", "/v1/admin/policies")
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    for p in reply["policies"]:
        click.echo(f"{p['name']}\tversion {p['version']}\tinstalled {p['installed_at']}")


@click.command("retire")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_admin_options
@_handle
def policy_retire_cmd(name: str, yes: bool, url: str, data: Path | None, admin_token: str | None,
                      ca: Path | None) -> None:  # fmt: skip
    """Take appraisal policy NAME out of force: the workloads only it admits are refused from
    then on. Its versions stay stored; `veritee policy install` puts a new version in force."""
    if not _confirm(
        f"retire appraisal policy {name!r}? the workloads only it admits will be refused", yes
    ):
        click.echo("nothing retired", err=True)
        sys.exit(EXIT_NOT_ACCEPTED)
    reply = _Admin(url, data, admin_token, ca).call(
        "DELETE", "/v1/admin/policy", params={"name": name}
    )
    click.echo(f"retired policy {name!r} (version {reply['version']} was in force)")


@click.group("policy")
def policy_group() -> None:
    """Sign, install and show appraisal policies."""


@policy_group.command("sign")
@click.argument("policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@handle_errors
def policy_sign(policy_file: Path, data: Path | None, output: Path | None) -> None:
    """Sign a policy with the domain's policy key (prints the signed envelope)."""
    from veritee.appraisal import load_policy, sign_policy
    from veritee.domain import Domain

    domain = Domain.open(data_dir(data))
    envelope = sign_policy(load_policy(policy_file.read_bytes()), domain.policy_key)
    if output:
        output.write_bytes(envelope)
        click.echo(f"signed policy written to {output}", err=True)
    else:
        click.echo(envelope.decode(), nl=False)


@policy_group.command("install")
@click.argument("signed_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_option
@click.option(
    "--url",
    default=f"http://127.0.0.1:{DEFAULT_PORT}",
    show_default=True,
    help="Certifier Service (https://... when it runs with --tls).",
)
@click.option(
    "--admin-token",
    envvar="VERITEE_ADMIN_TOKEN",
    default=None,
    help="Default: the data folder's admin_token.",
)
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CA to trust for HTTPS (default: the data folder's domain CA).",
)
@handle_errors
def policy_install(
    signed_file: Path, data: Path | None, url: str, admin_token: str | None, ca: Path | None
) -> None:
    """Install a signed policy through the service's admin API."""
    from veritee.cli.secrets import _Admin

    body = signed_file.read_bytes()
    _show_replacement(body, (url, data, admin_token, ca))
    admin = _Admin(url, data, admin_token, ca)
    try:
        reply = admin.call("PUT", "/v1/admin/policy", content=body)
    except VeriteeError as e:
        if e.code in ("tls_untrusted", "tls_mismatch", "service_unreachable", "admin_required"):
            raise
        raise UsageError(
            f"service refused the policy [{e.code}]: {e.message}", code=e.code
        ) from None
    click.echo(f"installed policy {reply['name']!r} version {reply['version']}")


def _show_replacement(envelope: bytes, conn: tuple[Any, ...]) -> None:
    """When the envelope holds a new version of a policy already installed, say which version it
    replaces and print the diff (canonical YAML); other names' policies are never replaced. An
    envelope that does not parse here is left for the service to refuse."""
    from veritee.appraisal.policy import ENVELOPE_FORMAT, parse_policy
    from veritee.cli.policy_ops import policy_diff
    from veritee.cli.secrets import _Admin

    try:
        doc = json.loads(envelope)
        new = (
            parse_policy(json.loads(doc["policy"]))
            if doc.get("format") == ENVELOPE_FORMAT
            else None
        )
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, VeriteeError):
        return
    if new is None:
        return
    try:
        current = _Admin(*conn).call("GET", "/v1/admin/policy", params={"name": new.name})
    except VeriteeError as e:
        if e.code == "no_policy":
            click.echo(f"policy {new.name!r} is new (the other policies in force stay as they are)")
            return
        raise
    diff = policy_diff(current["policy"], new.to_json(), f"{new.name} version {current['version']} (installed)",
                       f"{new.name} (this file)")  # fmt: skip
    state = "in force" if current.get("in_force") else "retired"
    click.echo(f"replacing policy {new.name!r} version {current['version']} ({state}); "
               "the other policies in force stay as they are")  # fmt: skip
    click.echo(diff if diff else "(the same policy as the installed version)\n", nl=False)


def register(group: click.Group) -> None:
    group.add_command(admit_cmd)
    group.add_command(policy_group)
    policy_group.add_command(policy_list_cmd)
    policy_group.add_command(policy_retire_cmd)
