"""``veritee token verify``: check an EAR token as a relying party would (docs/tokens.md).

The token's signature is checked with the domain's JWKS (``--jwks FILE``, or fetched from the
service ``--url``), then ``typ``, ``iss`` (``--issuer``, else the issuer the service's discovery
document names), ``aud`` (``--audience``; not checked without it, which the output says),
``iat``/``nbf``/``exp`` at ``--at`` (default now) and the EAR profile
(:func:`veritee.tokens.decode_ear`). The EAR status of every appraisal is printed in words.

With ``--require-service-evidence --service-policy P`` (and ``--url``, ``--ca``) the service is
verified first (:mod:`veritee.service_proof`): its own evidence must be accepted by the service
policy P and bind the domain CA of ``--ca``, every key of its JWKS (the token's among them) and
its TLS key; a refusal is exit 1 with its code (``service_evidence_missing``,
``service_evidence_refused``, ``service_measurement_not_allowed``, ``service_binding_mismatch``,
``service_evidence_stale``) and the token is not trusted.

Exit status: 0 a valid token whose appraisals are not ``contraindicated``; 1 an invalid token
(malformed, truncated, tampered, expired, signed by a key not in the JWKS, issued by someone
else, for another audience) or a valid one that records a refusal (``contraindicated``); 2 a
usage or I/O error (no JWKS, an unreachable service, a bad option).
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import sys
from pathlib import Path
from typing import Any

import click
import httpx

from veritee.cli.exits import exit_code_for, exit_for
from veritee.errors import (
    MalformedError,
    OversizedError,
    UsageError,
    VerificationError,
    VeriteeError,
)

__all__ = ["check_token", "read_token", "register", "token_group"]

#: A token, a JWKS or a discovery document larger than this is refused (an EAR is a few KiB).
MAX_TOKEN_BYTES = 256 * 1024
MAX_DOCUMENT_BYTES = 256 * 1024
#: Severity of EAR statuses (the EAR draft's tiers: none 0, affirming 2, warning 32,
#: contraindicated 96); the token's status is its most severe appraisal's.
_SEVERITY = {"none": 0, "affirming": 2, "warning": 32, "contraindicated": 96}
_SHOWN_CLAIMS = ("platform", "measurement", "profile", "debug", "tcb_status", "report_data")


def read_token(arg: str) -> str:
    """``arg`` itself, ``@FILE``'s content, or stdin for ``-``; surrounding whitespace dropped."""
    if arg == "-":
        raw = sys.stdin.buffer.read(MAX_TOKEN_BYTES + 1)
    elif arg.startswith("@"):
        path = Path(arg[1:])
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_TOKEN_BYTES + 1)
        except OSError as e:
            raise UsageError(f"cannot read the token file {path}: {e.strerror or e}") from None
    else:
        raw = arg.encode("utf-8", "replace")
    if len(raw) > MAX_TOKEN_BYTES:
        raise OversizedError(f"the token is larger than {MAX_TOKEN_BYTES} bytes", code="oversized")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise MalformedError(
            "a compact JWT is ASCII (base64url parts joined by '.')", field="token"
        ) from None
    if not token:
        raise MalformedError("the token is empty", field="token")
    return token


def _load_json(data: bytes, what: str) -> Any:
    """A JSON document the relying party is given (a JWKS, a discovery document): what does not
    parse is a usage error (exit 2), not a verdict on the token."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise UsageError(f"the {what} is larger than {MAX_DOCUMENT_BYTES} bytes")
    from veritee import _json

    try:
        doc = json.loads(data)
        _json.check_depth(doc, what=what)
    except (ValueError, RecursionError, MalformedError):
        raise UsageError(f"the {what} is not JSON (or nests too deeply)") from None
    return doc


class ServiceClient:
    """GETs from the Certifier Service at ``url`` (``--ca`` for https); errors name the URL."""

    def __init__(self, url: str, ca: Path | None, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.ca = ca
        verify: ssl.SSLContext | bool = True
        if self.url.startswith("https://"):
            if ca is None:
                raise UsageError("an https:// --url needs --ca (the domain CA, domain_ca.pem)")
            from veritee.tls import client_context

            try:
                verify = client_context(cafile=str(ca))
            except (OSError, ssl.SSLError) as e:
                raise UsageError(f"--ca {ca} is not a readable PEM certificate: {e}") from None
        elif not self.url.startswith("http://"):
            raise UsageError(f"--url {url!r} is not an http:// or https:// URL")
        self.http = httpx.Client(base_url=self.url, verify=verify, timeout=timeout)

    def get(self, path: str) -> httpx.Response:
        try:
            return self.http.get(path)
        except httpx.HTTPError as e:
            raise UsageError(self._why(e, path)) from None

    def get_json(self, path: str, what: str) -> Any:
        r = self.get(path)
        if r.status_code != 200:
            from veritee.sdk.http import error_from_problem

            err = error_from_problem(r)
            raise UsageError(
                f"{what} at {self.url}{path}: HTTP {r.status_code} [{err.code}] {err.message}"
            )
        return _load_json(r.content, what)

    def _why(self, e: httpx.HTTPError, path: str) -> str:
        """The diagnosis every client gives (:func:`veritee.sdk.http.explain_unreachable`): the
        CA a certificate did not verify against, a scheme mismatch, nothing listening."""
        from veritee.sdk.http import explain_unreachable

        ca = str(self.ca) if self.url.startswith("https://") and self.ca is not None else None
        return explain_unreachable(e, self.url + path, ca)[1]

    def close(self) -> None:
        self.http.close()


def check_token(
    token: str,
    keys: dict[str, Any],
    *,
    issuer: str | None,
    audience: str | None,
    at: dt.datetime,
    leeway: dt.timedelta = dt.timedelta(0),
) -> dict[str, Any]:
    """Verify ``token`` against ``keys`` (a JWKS by kid, :func:`veritee.tokens.jwks_keys`);
    the result ``veritee token verify --json`` prints. Never raises for a bad token: its
    reasons say why (codes of docs/reason-codes.md)."""
    import jwt

    from veritee.tokens import decode_ear, token_key

    result: dict[str, Any] = {
        "valid": False, "status": None, "reasons": [], "kid": None, "issuer_checked": issuer is not None,
        "audience_checked": audience is not None, "checked_at": at.isoformat().replace("+00:00", "Z"),
        "claims": None, "submods": {},
    }  # fmt: skip
    try:
        kid, key = token_key(token, keys)
        result["kid"] = kid
        unverified: dict[str, Any] = {}
        if issuer is None or audience is None:
            try:
                unverified = jwt.decode(token, options={"verify_signature": False})
            except jwt.PyJWTError:
                raise MalformedError(
                    "the token's payload is not a JSON object (base64url)", field="token"
                ) from None
        aud = unverified.get("aud")
        own_aud = (
            aud
            if isinstance(aud, str)
            else aud[0]
            if isinstance(aud, list) and aud and isinstance(aud[0], str)
            else ""
        )
        claims = decode_ear(
            token, key, issuer=issuer if issuer is not None else str(unverified.get("iss", "")),
            audience=audience if audience is not None else own_aud, now=at, leeway=leeway,
            allow_contraindicated=True,
        )  # fmt: skip
    except (MalformedError, VerificationError) as e:
        result["reasons"].append({"code": e.code, "message": e.message})
        return result
    except jwt.PyJWTError:
        result["reasons"].append(
            {"code": "malformed", "message": "the token does not parse as a JWT"}
        )
        return result
    result["claims"] = claims
    statuses = []
    for name, sub in claims["submods"].items():
        status = sub["ear.status"]
        statuses.append(status)
        result["submods"][name] = {
            "status": status,
            "policy": sub.get("ear.appraisal-policy-id"),
            "reasons": [r for r in sub.get("ear.veritee.reasons", []) if isinstance(r, dict)],
        }
    result["status"] = max(statuses, key=lambda s: _SEVERITY[s])
    if result["status"] == "contraindicated":
        refused = sorted(
            str(n)[:32] for n, s in result["submods"].items() if s["status"] == "contraindicated"
        )
        result["reasons"].append({
            "code": "ear_contraindicated",
            "message": "the token records a refused appraisal (contraindicated: " + ", ".join(refused) + ")",
        })  # fmt: skip
    else:
        result["valid"] = True
    return result


def _service_keys(client: ServiceClient, ca: Path, policy_file: Path, token: str,
                  issuer: str | None) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Verify the service's own evidence (``--require-service-evidence``); the token's key as the
    evidence binds it, by kid, and the proof. Raises the refusal (:mod:`veritee.service_proof`)."""
    from veritee import certs
    from veritee.sdk.service_check import ServiceVerifier

    try:
        ca_certificate = certs.load_pem_certificate(ca.read_bytes(), str(ca))
    except OSError as e:
        raise UsageError(f"cannot read --ca {ca}: {e.strerror or e}") from None
    try:
        policy_text = policy_file.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read --service-policy {policy_file}: {e.strerror or e}") from None
    from veritee.errors import PolicyError

    try:
        verifier = ServiceVerifier(client.http, ca_certificate, policy_text, issuer=issuer)
    except (PolicyError, MalformedError) as e:
        raise UsageError(f"--service-policy {policy_file}: {e.message}") from None
    try:
        verifier.check()
        kid, key = verifier.token_key(token)
    except VeriteeError as e:
        if isinstance(e, MalformedError | VerificationError):
            raise
        raise UsageError(e.message) from None
    assert verifier.proof is not None
    return {kid: key}, verifier.proof.to_json()


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return "?"
    try:
        return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return "?"


def _print(result: dict[str, Any]) -> None:
    if "service" in result:
        service = result["service"]
        if service is None:
            click.echo("SERVICE NOT VERIFIED: the token is not trusted")
            for r in result.get("service_reasons", []):
                click.echo(f"  - [{r.get('code')}] {r.get('message')}")
        else:
            click.echo(f"service verified: {service['platform']} measurement {service['measurement']} "
                       f"({service['status']}), its keys bound by its evidence")  # fmt: skip
    claims = result["claims"]
    if claims is None:
        click.echo("INVALID EAR token")
        for r in result["reasons"]:
            click.echo(f"  - [{r['code']}] {r['message']}")
        return
    verdict = "VALID" if result["valid"] else "INVALID"
    click.echo(f"{verdict} EAR token  status: {result['status']}")
    for r in result["reasons"]:
        click.echo(f"  - [{r['code']}] {r['message']}")
    aud = claims.get("aud")
    click.echo(
        f"  issuer:   {claims.get('iss')}"
        + ("" if result["issuer_checked"] else "  (not checked: --issuer or --url)")
    )
    click.echo(f"  audience: {', '.join(aud) if isinstance(aud, list) else aud}"
               + ("" if result["audience_checked"] else "  (not checked: --audience)"))  # fmt: skip
    click.echo(f"  key:      {result['kid']}")
    click.echo(f"  issued:   {_when(claims.get('iat'))}   expires: {_when(claims.get('exp'))}")
    if "cnf" in claims:
        from veritee.tokens import jwk_thumbprint

        try:
            bound = jwk_thumbprint(claims["cnf"]["jwk"])
        except (VeriteeError, KeyError, TypeError):
            bound = "(unreadable)"
        click.echo(f"  bound to key (cnf, JWK thumbprint): {bound}")
    for name, sub in result["submods"].items():
        click.echo(f"  appraisal {name}: {sub['status']}  ({sub['policy']})")
        for r in sub["reasons"]:
            click.echo(f"    - [{r.get('code')}] {r.get('message')}")
        evidence = claims["submods"][name].get("ear.veraison.annotated-evidence")
        if isinstance(evidence, dict):
            for k in _SHOWN_CLAIMS:
                if k in evidence and evidence[k] is not None:
                    click.echo(f"    {k}: {evidence[k]}")


@click.group("token")
def token_group() -> None:
    """Check attestation-result tokens (EAR) as a relying party."""


@token_group.command("verify")
@click.argument("token")
@click.option(
    "--url", default=None, help="The Certifier Service: its JWKS and issuer are fetched from it."
)
@click.option("--jwks", "jwks_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The domain's JWKS as a file (/.well-known/jwks.json), instead of --url.")  # fmt: skip
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CA to trust for an https:// --url (the domain CA, domain_ca.pem).")  # fmt: skip
@click.option(
    "--issuer",
    default=None,
    help="The iss the token must carry (default: the service's, with --url).",
)
@click.option(
    "--audience", default=None, help="An aud the token must carry (default: not checked)."
)
@click.option(
    "--at", "at", default=None, help="Check expiry at this time, ISO-8601 (default: now)."
)
@click.option("--leeway", default=0, show_default=True, type=click.IntRange(0, 3600),
              help="Seconds of clock skew allowed on iat/nbf/exp.")  # fmt: skip
@click.option("--require-service-evidence", "require_evidence", is_flag=True,
              help="Trust the token only if the service's own evidence (/v1/domain/evidence) is accepted "
              "by --service-policy and binds the keys it uses (needs --url and --ca).")  # fmt: skip
@click.option("--service-policy", "service_policy", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Appraisal policy (YAML) of the service itself: its allowed measurements, platform keys.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify_token_cmd(
    token: str,
    url: str | None,
    jwks_file: Path | None,
    ca: Path | None,
    issuer: str | None,
    audience: str | None,
    at: str | None,
    leeway: int,
    require_evidence: bool,
    service_policy: Path | None,
    as_json: bool,
) -> None:
    """Verify TOKEN (the token itself, @FILE, or - for stdin): signature by the domain's JWKS,
    typ, issuer, audience, expiry, the EAR profile; print every appraisal's status and claims.

    Exit 0 valid, 1 invalid or contraindicated, 2 usage or I/O error."""
    from veritee.cli.options import parse_time

    client: ServiceClient | None = None
    try:
        if (url is None) == (jwks_file is None):
            raise UsageError("give the domain's keys: --url SERVICE or --jwks FILE (one of them)")
        when = parse_time(at)
        if require_evidence and (url is None or ca is None or service_policy is None):
            raise UsageError("--require-service-evidence needs --url, --ca (the domain CA that the "
                             "evidence must bind) and --service-policy")  # fmt: skip
        if service_policy is not None and not require_evidence:
            raise UsageError("--service-policy goes with --require-service-evidence")
        if jwks_file is not None:
            try:
                raw = jwks_file.read_bytes()
            except OSError as e:
                raise UsageError(f"cannot read --jwks {jwks_file}: {e.strerror or e}") from None
            jwks_doc = _load_json(raw, "jwks")
        else:
            assert url is not None
            client = ServiceClient(url, ca)
            jwks_doc = client.get_json("/.well-known/jwks.json", "jwks")
            if issuer is None:
                discovery = client.get_json(
                    "/.well-known/openid-configuration", "discovery document"
                )
                found = discovery.get("issuer") if isinstance(discovery, dict) else None
                if not isinstance(found, str) or not found:
                    raise UsageError(
                        f"the discovery document of {url} names no issuer: give --issuer"
                    )
                issuer = found
        from veritee.tokens import jwks_keys

        try:
            keys = jwks_keys(jwks_doc)
        except MalformedError as e:
            raise UsageError(f"the domain's JWKS is not usable: {e.message}") from None
        if not keys:
            raise UsageError("the domain's JWKS holds no EC P-256/P-384 signing key")
        token_text = read_token(token)
        proof: dict[str, Any] | None = None
        if require_evidence:
            assert client is not None and ca is not None and service_policy is not None
            keys, proof = _service_keys(client, ca, service_policy, token_text, issuer)
        result = check_token(token_text, keys, issuer=issuer, audience=audience, at=when,
                             leeway=dt.timedelta(seconds=leeway))  # fmt: skip
        if require_evidence:
            result["service"] = proof
    except UsageError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(exit_code_for(e))
    except (MalformedError, VerificationError) as e:  # the token itself, or the service's evidence
        result = {"valid": False, "status": None, "reasons": [{"code": e.code, "message": e.message}],
                  "kid": None, "claims": None, "submods": {}}  # fmt: skip
        if require_evidence:
            result["service"] = None
            result["service_reasons"] = list(e.reasons or [])
    except VeriteeError as e:
        click.echo(f"error [{e.code}]: {e.message}", err=True)
        sys.exit(exit_code_for(e))
    finally:
        if client is not None:
            client.close()
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print(result)
    sys.exit(exit_for(result["valid"]))


def register(cli: click.Group) -> None:
    cli.add_command(token_group)
