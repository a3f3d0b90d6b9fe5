"""Refusals that say what to do: what would admit this workload, appended to the service's error.

When the Certifier Service or the key broker refuses a workload, its error lists every reason
(:func:`veritee.sdk.http.error_from_problem`). For the reasons a policy change would lift (the
platform, measurement, platform key, profile or debug state is not admitted), :func:`explaining`
appends what to add to the appraisal policy, with this workload's whole values, and the
commands that sign and install it::

    attestation refused (2 reasons):
      - platform_key_not_trusted: the simulated platform key 3f5a... is not trusted: ...
      - measurement_not_allowed: measurement 9c1e... is not in the policy's allow-list
    to admit this workload, add to the appraisal policy 'shop':
        platforms.simulated.measurements: ["9c1e..."]
        platforms.simulated.platform_keys: ["3f5a..."]
      then sign and install it: veritee policy sign POLICY.yaml --data DOMAIN_DIR -o policy.json
      && veritee policy install policy.json --data DOMAIN_DIR --url https://certifier:8400

A new version of an admitted workload (only its measurement is missing) gets one command::

    to admit this workload, add its measurement to the appraisal policy 'shop' and to the
    release policies of the secrets its earlier versions get:
        veritee admit --policy shop --measurement 9c1e... --platform simulated --data DOMAIN_DIR
        --url https://certifier:8400
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from veritee.appraisal.evaluate import MEASUREMENT_PINS
from veritee.errors import VeriteeError
from veritee.platforms.base import Platform

__all__ = ["admission_hint", "explaining"]


def admission_hint(
    reasons: list[dict[str, Any]], platform: Platform, service_url: str, policy: str | None = None
) -> str | None:
    """What to add to the appraisal policy (``policy``: the one the service says came closest)
    to lift ``reasons`` for ``platform``'s workload, or ``None`` when no policy entry would (a
    bad signature, a replayed nonce, a revoked TCB). When only the measurement is missing, that
    is one ``veritee admit`` command."""
    codes = {str(r.get("code")) for r in reasons}
    name = platform.name
    field, what = MEASUREMENT_PINS.get(name, ("measurements", "measurement"))
    for r in reasons:  # the allow-list is a reference-value set: register the measurement there
        found = re.search(r"reference-value set '([a-z0-9._-]+)'", str(r.get("message", "")))
        if found and str(r.get("code")) in (f"{what}_not_allowed", "refvalues_unavailable"):
            return (
                f"the policy takes its {what}s from reference-value set {found.group(1)!r}: register a CoRIM "
                f"carrying {platform.measurement} there (from the workload's builder or vendor):\n"
                f"    veritee refvalues add CORIM_FILE --set {found.group(1)} --key SIGNER_KEY"
                f" --data DOMAIN_DIR --url {service_url}"
            )
    add: list[str] = []
    if "platform_not_allowed" in codes:
        add.append(f"platforms.{name}: a section for this platform, with:")
    if "platform_not_allowed" in codes or f"{what}_not_allowed" in codes:
        add.append(f'platforms.{name}.{field}: ["{platform.measurement}"]')
    key_id = getattr(platform, "key_id", None)
    if key_id and (
        "platform_key_not_trusted" in codes
        or ("platform_not_allowed" in codes and name == "simulated")
    ):
        add.append(f'platforms.{name}.platform_keys: ["{key_id}"]')
    if "profile_not_allowed" in codes and platform.profile is not None:
        add.append(f"profiles: [{platform.profile.value}]")
    if "debug" in codes:
        add.append(f"platforms.{name}.allow_debug: true   (insecure: a debuggable workload)")
    if not add:
        return None
    if f"{what}_not_allowed" in codes and len(add) == 1:
        # Only the measurement is missing (a new version): one command admits it.
        return (
            f"to admit this workload, add its {what} to the appraisal policy {policy or 'POLICY'!r} and to "
            "the release policies of the secrets its earlier versions get:\n"
            f"    veritee admit --policy {policy or 'POLICY'} --measurement {platform.measurement}"
            f" --platform {name} --data DOMAIN_DIR --url {service_url}"
        )
    return (
        f"to admit this workload, add to the appraisal policy{'' if policy is None else f' {policy!r}'}:\n"
        + "".join(f"    {line}\n" for line in add)
        + "  then sign and install it: veritee policy sign POLICY.yaml --data DOMAIN_DIR -o policy.json"
        + f" && veritee policy install policy.json --data DOMAIN_DIR --url {service_url}"
    )


@contextmanager
def explaining(
    platform: Platform, service_url: str, *, policy: str | None = None
) -> Iterator[None]:
    """Re-raise a refusal with reasons a policy entry would lift, with :func:`admission_hint`
    appended to its message (same class, code and ``reasons``)."""
    try:
        yield
    except VeriteeError as e:
        reasons = e.reasons
        named = e.policy  # the service's word, else the workload's own policy
        hint = (
            admission_hint(
                reasons, platform, service_url, named if isinstance(named, str) else policy
            )
            if isinstance(reasons, list)
            else None
        )
        if hint is None:
            raise
        e.message = f"{e.message}\n{hint}"
        e.args = (e.message,)
        raise
