"""Core commands: init, serve, verify, measure, policy, audit, demo."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from veritee.cli.main import EXIT_NOT_ACCEPTED, EXIT_OK, EXIT_USAGE, handle_errors
from veritee.errors import PolicyError, UsageError, VeriteeError
from veritee.tls import AEAD_CIPHERS

__all__ = ["register"]

DEFAULT_PORT = 8400
#: prometheus-client's multiprocess folder (veritee.service.metrics.MULTIPROC_ENV).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FORMATS = ["auto", "sev-snp", "tdx", "sgx", "nitro", "tpm", "az-snp-vtpm", "az-tdx-vtpm", "cca", "nvidia-gpu", "keystone", "simulated"]


def _data_option(f: Any) -> Any:
    return click.option(
        "--data", "data", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Domain data folder (default: $XDG_DATA_HOME/veritee).",
    )(f)


def _data_dir(data: Path | None) -> Path:
    from veritee.domain import default_data_dir

    return data if data is not None else default_data_dir()


def parse_time(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {value!r} is not an ISO-8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@click.command("init")
@_data_option
@click.option("--name", default="veritee-domain", show_default=True, help="Domain name.")
@click.option(
    "--upgrade", is_flag=True,
    help="Bring an existing domain folder to the current format instead (separate CA, policy "
         "and key-broker keys; the CA and its certificate stay). Do it on one copy, then copy "
         "that folder to every replica.",
)  # fmt: skip
@click.option(
    "--admin-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Where to write the admin credential (default: <data>/admin_token). The service keeps "
    "only its verifier (admin_token.hmac) and runs without this file.",
)
@handle_errors
def init_cmd(data: Path | None, name: str, upgrade: bool, admin_token_file: Path | None) -> None:
    """Create a domain: CA, policy, key-broker and token keys, admin credential, database."""
    from veritee.domain import Domain
    from veritee.keybroker.kek import KEK_ENV, FileKek
    from veritee.service.storage import Storage

    path = _data_dir(data)
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
    domain = Domain.create(path, name=name, now=dt.datetime.now(dt.UTC), admin_token_file=admin_token_file)
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


def _load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """``--config FILE``: its keys become the defaults of the other flags (given flags win)."""
    if value is not None:
        from veritee.cli.serve_config import load_config

        ctx.default_map = {**(ctx.default_map or {}), **load_config(value, ctx)}
    return value


@click.command("serve")
@click.option(
    "--config", type=click.Path(dir_okay=False, path_type=Path), default=None, is_eager=True,
    expose_value=False, callback=_load_config,
    help="A TOML file with any of these flags as keys (the flag's name without its dashes, e.g. "
    "db = \"postgresql://...\", trusted-proxy = [\"10.0.0.0/8\"]); flags given here win. See "
    "examples/deploy/veritee.toml.",
)
@_data_option
@click.option("--db", default=None, help="Database URL (default: SQLite in the data folder; postgresql://... for replicas).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--tls/--no-tls", default=False, help="Serve HTTPS with a server certificate from the domain CA.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16))
@click.option(
    "--accept-attester-collateral", is_flag=True,
    help="Also use TCB info, QE identity and CRLs that attesters send with their evidence "
         "(ranked below the domain's own collateral, which always wins). Default: only the "
         "domain's collateral decides; attesters' certificates serve as path candidates.",
)  # fmt: skip
@click.option(
    "--trusted-proxy", "trusted_proxies", multiple=True, metavar="IP|CIDR",
    help="A TLS-terminating proxy in front of the service (repeatable): its X-Forwarded-Proto and "
    "X-Forwarded-For are honoured (the KBS cookie is then Secure behind it). Default: none.",
)
@click.option(
    "--issuer", default=None,
    help="The iss of the EAR tokens and the issuer of /.well-known/openid-configuration (default: "
    "veritee). OpenID Connect wants the service's public https:// URL here.",
)
@click.option(
    "--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning", show_default=True,
    help="The service's and uvicorn's messages at this level and above, as JSON lines on stderr.",
)
@click.option(
    "--access-log/--no-access-log", default=False, show_default=True,
    help="One JSON line per request on stderr (method, path, query, route, status, duration, "
    "bytes, client address, worker; never a header, a body or a token).",
)
@click.option(
    "--attest-self", "attest_self", default=None, metavar="PLATFORM",
    help="Run as an attested service: produce evidence of this service on PLATFORM (simulated, auto, "
    "sev-snp, tdx, ...) binding the keys it signs tokens and certificates with and its TLS key, "
    "served at /v1/domain/evidence (docs/tokens.md). The start fails if the platform cannot attest.",
)
@click.option(
    "--attest-state", "attest_state", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="State of the --attest-self driver (the simulated platform's key; default <data>/service-platform).",
)
@click.option("--collateral-fetch/--no-collateral-fetch", default=True, show_default=True,
              help="Fetch collateral the domain lacks and refresh it before its nextUpdate "
                   "(AMD KDS, Intel PCS or --pccs); off: only <data>/collateral decides.")  # fmt: skip
@click.option("--pccs", metavar="URL", default=None, help="An Intel PCCS to fetch Intel collateral from instead of Intel PCS.")
@click.option("--kds", metavar="URL", default=None, help="AMD KDS base URL (default https://kdsintf.amd.com).")
@click.option("--pcs", metavar="URL", default=None, help="Intel PCS base URL (default https://api.trustedservices.intel.com).")
@click.option("--collateral-warn-hours", type=click.IntRange(0, 24 * 365), default=48, show_default=True,
              help="/readyz says degraded when collateral is this close to its nextUpdate.")  # fmt: skip
@handle_errors
def serve_cmd(
    data: Path | None, db: str | None, host: str, port: int, tls: bool, workers: int,
    accept_attester_collateral: bool, trusted_proxies: tuple[str, ...], issuer: str | None,
    log_level: str, access_log: bool, attest_self: str | None, attest_state: Path | None,
    collateral_fetch: bool, pccs: str | None, kds: str | None, pcs: str | None, collateral_warn_hours: int,
) -> None:
    """Run the Certifier Service under uvicorn."""
    # prometheus-client picks its mode when first imported: one process counts alone (a shared
    # folder given from outside is not ours to use); several get a private one (_metrics_dir).
    os.environ.pop(MULTIPROC_ENV, None)
    import uvicorn

    from veritee.service.app import create_app
    from veritee.service.serving import log_config, start_line
    from veritee.service.settings import DEFAULT_ISSUER, Settings, fetch_settings

    path = _data_dir(data)
    if issuer is not None and not issuer.strip():
        raise UsageError("--issuer must not be empty")
    fetch = fetch_settings(collateral_fetch, pccs=pccs, kds=kds, pcs=pcs)
    ssl: dict[str, Any] = {}
    cert_file: Path | None = None
    if tls:
        from veritee.service.tls import server_certificate_files

        cert_file, key_file = server_certificate_files(path, host)
        # TLS 1.2 suites: AEAD only (veritee.tls); TLS 1.3's are AEAD anyway.
        ssl = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file), "ssl_ciphers": AEAD_CIPHERS}
    attest_state = attest_state.resolve() if attest_state is not None else None
    settings = Settings(data_dir=path, database_url=db, accept_attester_collateral=accept_attester_collateral,
                        issuer=issuer or DEFAULT_ISSUER, access_log=access_log, attest_self=attest_self,
                        attest_state_dir=attest_state, tls_certificate=cert_file, collateral_fetch=fetch,
                        collateral_warn_before=dt.timedelta(hours=collateral_warn_hours))  # fmt: skip
    scheme = "https" if tls else "http"
    shown_host = f"[{host}]" if ":" in host else host
    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "access_log": False,
                              "log_config": log_config(log_level, access_log), **ssl}  # fmt: skip
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
            {"on": collateral_fetch, "pccs": pccs, "kds": kds, "pcs": pcs, "warn_hours": collateral_warn_hours}
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


NOT_REPORTED = "not reported"


def shown(value: Any) -> str:
    """A claim value for people: ``not reported`` for an absent one (None), never ``None``."""
    if value is None:
        return NOT_REPORTED
    return str(value)


def _print_verify(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=False))
        return
    verdict = "ACCEPTED" if result["accepted"] else "NOT ACCEPTED"
    click.echo(f"{verdict}  format={result['format']}  authentic={result['authentic']}")
    for r in result["reasons"]:
        click.echo(f"  - [{r['code']}] {r['message']}")
    claims = result.get("claims") or {}
    for k in ("platform", "measurement", "debug", "tcb_status", "profile", "report_data"):
        if k in claims:
            click.echo(f"  {k}: {shown(claims[k])}")


MAX_KEY_FILE_BYTES = 64 * 1024


def load_platform_key(path: Path) -> Any:
    """The public key in ``path``: a PEM ``PUBLIC KEY``, or the PEM private key the simulated
    platform writes (``<data>/simulated-platform/platform_key.pem``; only its public half is
    kept). UsageError, never the file's content, when it is neither."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if not path.is_file():
        raise UsageError(f"--platform-key file not found: {path}")
    if path.stat().st_size > MAX_KEY_FILE_BYTES:
        raise UsageError(f"--platform-key {path} is larger than {MAX_KEY_FILE_BYTES} bytes")
    pem = path.read_bytes()
    try:
        if b"-----BEGIN PUBLIC KEY-----" in pem:
            return serialization.load_pem_public_key(pem)
        if b"PRIVATE KEY-----" in pem:
            return serialization.load_pem_private_key(pem, password=None).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    raise UsageError(f"--platform-key {path} is not a PEM public key or an unencrypted PEM "
                     "private key")  # fmt: skip


def verify_evidence(
    data: bytes,
    *,
    format: str,
    collateral_paths: list[Path],
    at: dt.datetime,
    policy_text: bytes | None,
    nonce: bytes | None,
    platform_keys: list[Path] | None = None,
    spki: bytes = b"",
) -> dict[str, Any]:
    """The work of `veritee verify`, as a function returning DESIGN.md's JSON object: the
    appraisal workflow the service runs too (:func:`veritee.appraisal.attest.appraise_evidence`),
    with the baseline when no policy is given and the caller's whole nonce
    (:class:`veritee.binding.ExpectedBinding` ``whole_value``).

    ``spki``: the DER public key the report data binds with ``nonce`` (``veritee attest
    --public-key``), empty for none."""
    import dataclasses

    from veritee import evidence
    from veritee.appraisal.attest import appraise_evidence
    from veritee.appraisal.policy import ENVELOPE_FORMAT, load_policy, parse_policy
    from veritee.binding import ExpectedBinding
    from veritee.collateral import Collateral
    from veritee.evidence import tpm as tpm_evidence
    from veritee.evidence.trust import TrustRoot

    collateral = Collateral.from_paths(collateral_paths)
    keys = tuple(load_platform_key(p) for p in platform_keys or ())
    collateral = dataclasses.replace(collateral, public_keys=collateral.public_keys + keys)
    policy = None
    if policy_text is not None:
        import yaml

        try:
            doc = yaml.safe_load(policy_text) if policy_text.strip() else None
        except yaml.YAMLError as e:
            raise PolicyError(f"the policy is not valid YAML/JSON: {_yaml_problem(e)}", code="policy_malformed") from None
        except (RecursionError, ValueError):
            raise PolicyError("the policy is not valid YAML/JSON", code="policy_malformed") from None
        if isinstance(doc, dict) and doc.get("format") == ENVELOPE_FORMAT:
            try:
                inner = json.loads(doc["policy"])
            except (TypeError, ValueError, RecursionError):
                raise PolicyError("the signed policy envelope's 'policy' is not JSON", code="policy_malformed") from None
            policy = parse_policy(inner)
        else:
            policy = load_policy(policy_text)
    fmt = format
    result: dict[str, Any] = {
        "format": fmt, "authentic": False, "accepted": False, "claims": None,
        "reasons": [], "verified_at": at.isoformat().replace("+00:00", "Z"),
    }
    if fmt == "auto":
        try:
            fmt = result["format"] = evidence.detect_format(data)
        except VeriteeError:
            pass  # appraise_evidence refuses it with the same error
    trust = TrustRoot.default()
    if fmt == "tpm":  # AK chains may end at a CA the relying party names in its own collateral
        trust = trust.with_tpm_roots(tpm_evidence.relying_party_roots(collateral))
    expected = None if nonce is None else ExpectedBinding(nonce, spki or None, whole_value=True)
    appraisal = appraise_evidence(
        data, collateral=collateral, at=at, format=fmt, trust=trust, policy=policy, baseline=True,
        binding=expected,
    )  # fmt: skip
    decision = appraisal.decision
    result["reasons"] = [r.to_json() for r in decision.reasons]
    if appraisal.evidence is None:
        try:
            result["claims"] = evidence.parse_claims(data, format=fmt)
            result["claims_verified"] = False
        except VeriteeError:
            pass
        return result
    result["authentic"] = True
    result["claims"] = appraisal.evidence.claims
    result["accepted"] = decision.accepted
    result["warnings"] = [r.to_json() for r in decision.warnings]
    result["status"] = decision.status
    result["trustworthiness_vector"] = decision.vector
    return result


def _yaml_problem(e: Exception) -> str:
    """One line for a YAML error: what and where (line and column, 1-based)."""
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or type(e).__name__
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


@click.command("verify")
@click.argument("evidence_file", metavar="EVIDENCE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--collateral", "collateral", multiple=True, type=click.Path(path_type=Path), help="Collateral file or folder (repeatable).")
@click.option("--at", "at", default=None, help="Verification time, ISO-8601 (default: now).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Appraisal policy (YAML/JSON); default: the baseline.")
@click.option("--nonce", default=None, help="Hex nonce the evidence must bind: veritee's report-data binding, or the whole report data or nonce claim (never a prefix).")
@click.option(
    "--platform-key", "platform_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
    help="A platform key to trust (repeatable): PEM public key, or the simulated platform's "
         "platform_key.pem. Simulated evidence is refused unless its key is given here (or, "
         "with --policy, listed in platform_keys); an Arm CCA CPAK may be given here too. "
         "Keystone device keys are not taken here: only a policy's keystone.device_keys.",
)
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --nonce: the PEM public key the evidence binds with it (veritee attest --public-key).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify_cmd(
    evidence_file: Path, fmt: str, collateral: tuple[Path, ...], at: str | None,
    policy_file: Path | None, nonce: str | None, platform_keys: tuple[Path, ...], public_key: Path | None,
    as_json: bool,
) -> None:
    """Verify evidence offline with collateral at an explicit time, and appraise it."""
    try:
        from veritee.evidence import MAX_EVIDENCE_BYTES

        if not evidence_file.is_file():
            raise UsageError(f"evidence file not found: {evidence_file}")
        if evidence_file.stat().st_size > MAX_EVIDENCE_BYTES:
            data = evidence_file.read_bytes()[: MAX_EVIDENCE_BYTES + 1]
        else:
            data = evidence_file.read_bytes()
        nonce_bytes = None
        if nonce is not None:
            try:
                nonce_bytes = bytes.fromhex(nonce)
            except ValueError:
                raise UsageError("--nonce must be hex") from None
            if not nonce_bytes:
                raise UsageError("--nonce must be at least one byte")
        if public_key is not None and nonce_bytes is None:
            raise UsageError("--public-key needs --nonce")
        spki = b""
        if public_key is not None:
            from veritee.cli.attest import public_key_spki

            spki = public_key_spki(public_key)
        policy_text = policy_file.read_bytes() if policy_file else None
        result = verify_evidence(
            data, format=fmt, collateral_paths=list(collateral), at=parse_time(at),
            policy_text=policy_text, nonce=nonce_bytes, platform_keys=list(platform_keys), spki=spki,
        )
    except (UsageError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_USAGE)
    except VeriteeError as e:  # a malformed policy or collateral file
        where = f" (--policy {policy_file})" if policy_file is not None and e.code.startswith("policy") else ""
        click.echo(f"error [{e.code}]: {e.message}{where}", err=True)
        sys.exit(EXIT_USAGE)
    _print_verify(result, as_json)
    sys.exit(EXIT_OK if result["accepted"] else EXIT_NOT_ACCEPTED)


@click.command("measure")
@click.argument("targets", nargs=-1, required=True)
@click.option("--list", "show_list", is_flag=True, help="Print the manifest (sha256sum lines) that is hashed.")
@click.option("--formula", type=click.Choice(["2", "1"]), default="2", show_default=True,
              help="1: the formula before issue 18 (files in the order given, bytecode included).")
@handle_errors
def measure_cmd(targets: tuple[str, ...], show_list: bool, formula: str) -> None:
    """Print the simulated-platform measurement (SHA-384) of TARGETS, as Trust(measure=...) does.

    A target is a file or folder, a module or package name (as Python imports it), or a
    pyproject.toml (its [tool.veritee] measure list, else the project's package and lock
    files). Bytecode and caches are skipped; files are sorted by relative path.
    """
    from veritee.platforms.measure import manifest, measure, measure_v1

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # module names resolve as under `python -m`, here
    if formula == "1":
        click.echo(measure_v1(targets))
        return
    if show_list:
        click.echo(manifest(targets), nl=False)
    click.echo(measure(targets))


@click.command("platform-key")
@click.option("--platform-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The simulated platform's folder, as Trust(platform_dir=...) (default: "
                   "$VERITEE_SIMULATED_DIR, else ~/.local/share/veritee/simulated-platform).")
@handle_errors
def platform_key_cmd(platform_dir: Path | None) -> None:
    """Print the simulated platform's key id: what a policy lists in
    platforms.simulated.platform_keys (SHA-256 of the key's SubjectPublicKeyInfo). The key is
    created there if there is none yet, as the first Trust would."""
    from veritee.platforms.simulated import (
        KEY_FILE,
        default_directory,
        load_or_create_platform_key,
        platform_key_id,
    )

    folder = platform_dir or default_directory()
    if not (folder / KEY_FILE).exists():
        click.echo(f"no simulated platform key in {folder} yet: created one", err=True)
    click.echo(platform_key_id(load_or_create_platform_key(folder)))


@click.group("policy")
def policy_group() -> None:
    """Sign, install and show appraisal policies."""


@policy_group.command("sign")
@click.argument("policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_data_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@handle_errors
def policy_sign(policy_file: Path, data: Path | None, output: Path | None) -> None:
    """Sign a policy with the domain's policy key (prints the signed envelope)."""
    from veritee.appraisal import load_policy, sign_policy
    from veritee.domain import Domain

    domain = Domain.open(_data_dir(data))
    envelope = sign_policy(load_policy(policy_file.read_bytes()), domain.policy_key)
    if output:
        output.write_bytes(envelope)
        click.echo(f"signed policy written to {output}", err=True)
    else:
        click.echo(envelope.decode(), nl=False)


@policy_group.command("install")
@click.argument("signed_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_data_option
@click.option("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", show_default=True,
              help="Certifier Service (https://... when it runs with --tls).")
@click.option("--admin-token", envvar="VERITEE_ADMIN_TOKEN", default=None, help="Default: the data folder's admin_token.")
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), default=None, help="CA to trust for HTTPS (default: the data folder's domain CA).")
@handle_errors
def policy_install(signed_file: Path, data: Path | None, url: str, admin_token: str | None, ca: Path | None) -> None:
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
        raise UsageError(f"service refused the policy [{e.code}]: {e.message}", code=e.code) from None
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
        new = parse_policy(json.loads(doc["policy"])) if doc.get("format") == ENVELOPE_FORMAT else None
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


@click.group("audit")
def audit_group() -> None:
    """Inspect the audit log."""


@audit_group.command("verify")
@_data_option
@click.option("--db", default=None, help="Database URL (default: the data folder's SQLite).")
@click.option(
    "--anchor", "anchors", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
    help="An anchor from `veritee audit head` (repeatable): the log must still hold that entry.",
)
@handle_errors
def audit_verify(data: Path | None, db: str | None, anchors: tuple[Path, ...]) -> None:
    """Check the audit hash chain; name the first broken entry.

    With --anchor, also check that the log was neither truncated nor rewritten since each
    anchor was signed.
    """
    from veritee.anchors import check_log_against
    from veritee.service.storage import Storage

    path = _data_dir(data)
    signed = _read_anchors(path, anchors)
    store = Storage(db or _domain_database(path))
    try:
        report = _audit_report(store, path, db)
        if report.ok:
            try:
                check_log_against(store, signed)
            except VeriteeError as e:
                click.echo(f"audit chain intact ({report.count} entries) but {e.message}")
                sys.exit(EXIT_NOT_ACCEPTED)
    finally:
        store.close()
    if report.ok:
        held = f"; holds {len(signed)} anchor(s)" if signed else ""
        click.echo(f"audit chain intact: {report.count} entries{held}")
    else:
        click.echo(f"audit chain BROKEN at entry {report.first_broken}: {report.message}")
        sys.exit(EXIT_NOT_ACCEPTED)


def _domain_database(path: Path) -> str:
    """The SQLite URL of the domain in ``path``; "no domain here" (not a database error, and no
    empty database left behind) when the folder holds none."""
    database = path / "veritee.db"
    if not database.is_file():
        raise UsageError(f"no domain here: {path} holds no veritee domain (no {database.name}); pass "
                         f"--data DOMAIN_DIR or --db URL, or create one with `veritee init --data {path}`",
                         code="no_domain")  # fmt: skip
    return f"sqlite:///{database}"


def _audit_report(store: Any, path: Path, db: str | None) -> Any:
    """:func:`verify_audit_chain`, saying "no domain here" for a database without an audit log."""
    from veritee.errors import StorageError
    from veritee.service.storage import verify_audit_chain

    try:
        return verify_audit_chain(store)
    except StorageError as e:
        if "no such table" in e.message or "does not exist" in e.message:
            where = db or str(path)
            raise UsageError(f"no domain here: {where} has no audit log (not a veritee domain's database)",
                             code="no_domain") from None  # fmt: skip
        raise


def _read_anchors(path: Path, files: tuple[Path, ...]) -> list[Any]:
    """Each file's anchor, verified with the domain's token key (errors name the file)."""
    from veritee.anchors import MAX_ANCHOR_BYTES, read_anchor
    from veritee.domain import Domain

    if not files:
        return []
    public = Domain.open(path).token_key.public_key()
    out = []
    for f in files:
        try:
            with f.open("rb") as fh:
                text = fh.read(MAX_ANCHOR_BYTES + 1)
        except OSError as e:
            raise UsageError(f"cannot read anchor {f}: {e.strerror}") from None
        try:
            out.append(read_anchor(text, public))
        except VeriteeError as e:
            e.message = f"anchor {f}: {e.message}"
            raise
    return out


@audit_group.command("head")
@_data_option
@click.option("--db", default=None, help="Database URL (default: the data folder's SQLite).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the anchor here (default: print it).")
@handle_errors
def audit_head(data: Path | None, db: str | None, output: Path | None) -> None:
    """Sign the audit log's head with the domain's token key: an anchor to keep elsewhere.

    `veritee audit verify --anchor FILE` later shows whether the log was truncated or
    rewritten since.
    """
    from veritee.anchors import sign_anchor
    from veritee.domain import Domain
    from veritee.service.storage import Storage

    path = _data_dir(data)
    domain = Domain.open(path)
    store = Storage(db or domain.database_url)
    try:
        with store.transaction(readonly=True) as tx:
            seq, digest = tx.audit_head()
    finally:
        store.close()
    anchor = sign_anchor(domain.token_key, kid=domain.token_kid, issuer=domain.name, seq=seq,
                         entry_hash=digest, now=dt.datetime.now(dt.UTC))  # fmt: skip
    if output is None:
        click.echo(anchor)
    else:
        output.write_text(anchor + "\n")
        click.echo(f"anchor of entry {seq} written to {output}")


@click.command("demo")
@click.argument("which", required=False, type=click.Choice(["attest", "cleanroom"]), default="attest")
@handle_errors
def demo_cmd(which: str) -> None:
    """End-to-end walkthrough on a temporary embedded database."""
    if which == "cleanroom":
        from veritee.demo_cleanroom import run_cleanroom_demo

        run_cleanroom_demo()
        return
    from veritee.demo import run_demo

    run_demo()


def register(group: click.Group) -> None:
    for cmd in (init_cmd, serve_cmd, verify_cmd, measure_cmd, platform_key_cmd, policy_group, audit_group,
                demo_cmd):
        group.add_command(cmd)
