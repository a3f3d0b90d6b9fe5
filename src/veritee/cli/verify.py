"""``veritee verify``: verify evidence offline with collateral at an explicit time and appraise
it; :func:`verify_evidence` is the same work as a function (``policy dry-run`` uses it too)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click

from veritee.cli.exits import INPUTS, exit_code_for, exit_for
from veritee.cli.options import FORMATS, parse_time
from veritee.errors import PolicyError, UsageError, VeriteeError

__all__ = ["load_platform_key", "register", "shown", "verify_cmd", "verify_evidence"]


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
            raise PolicyError(
                f"the policy is not valid YAML/JSON: {_yaml_problem(e)}", code="policy_malformed"
            ) from None
        except (RecursionError, ValueError):
            raise PolicyError(
                "the policy is not valid YAML/JSON", code="policy_malformed"
            ) from None
        if isinstance(doc, dict) and doc.get("format") == ENVELOPE_FORMAT:
            try:
                inner = json.loads(doc["policy"])
            except (TypeError, ValueError, RecursionError):
                raise PolicyError(
                    "the signed policy envelope's 'policy' is not JSON", code="policy_malformed"
                ) from None
            policy = parse_policy(inner)
        else:
            policy = load_policy(policy_text)
    fmt = format
    result: dict[str, Any] = {
        "format": fmt,
        "authentic": False,
        "accepted": False,
        "claims": None,
        "reasons": [],
        "verified_at": at.isoformat().replace("+00:00", "Z"),
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
@click.argument(
    "evidence_file", metavar="EVIDENCE", type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option(
    "--collateral",
    "collateral",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Collateral file or folder (repeatable).",
)
@click.option("--at", "at", default=None, help="Verification time, ISO-8601 (default: now).")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Appraisal policy (YAML/JSON); default: the baseline.",
)
@click.option(
    "--nonce",
    default=None,
    help="Hex nonce the evidence must bind: veritee's report-data binding, or the whole report data or nonce claim (never a prefix).",
)
@click.option(
    "--platform-key",
    "platform_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A platform key to trust (repeatable): PEM public key, or the simulated platform's "
    "platform_key.pem. Simulated evidence is refused unless its key is given here (or, "
    "with --policy, listed in platform_keys); an Arm CCA CPAK may be given here too. "
    "Keystone device keys are not taken here: only a policy's keystone.device_keys.",
)
@click.option(
    "--public-key",
    "public_key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --nonce: the PEM public key the evidence binds with it (veritee attest --public-key).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify_cmd(
    evidence_file: Path,
    fmt: str,
    collateral: tuple[Path, ...],
    at: str | None,
    policy_file: Path | None,
    nonce: str | None,
    platform_keys: tuple[Path, ...],
    public_key: Path | None,
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
            data,
            format=fmt,
            collateral_paths=list(collateral),
            at=parse_time(at),
            policy_text=policy_text,
            nonce=nonce_bytes,
            platform_keys=list(platform_keys),
            spki=spki,
        )
    except (UsageError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(exit_code_for(e, INPUTS))
    except VeriteeError as e:  # a malformed policy or collateral file
        where = (
            f" (--policy {policy_file})"
            if policy_file is not None and e.code.startswith("policy")
            else ""
        )
        click.echo(f"error [{e.code}]: {e.message}{where}", err=True)
        sys.exit(exit_code_for(e, INPUTS))
    _print_verify(result, as_json)
    sys.exit(exit_for(result["accepted"]))


def register(group: click.Group) -> None:
    group.add_command(verify_cmd)
