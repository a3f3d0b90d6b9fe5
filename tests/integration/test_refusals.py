"""Refusals that say what to do (issue 18 item 8), against a real service (uvicorn in a thread):
the error names every reason with the whole measurement and the platform key id, and the policy
entries and commands that admit the workload; following them admits it. ``veritee platform-key``
prints the key id the refusal names."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from veritee.appraisal import load_policy, sign_policy
from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.errors import VerificationError
from veritee.sdk.trust import Trust
from veritee.service.app import create_app
from veritee.service.runner import RunningServer, start_in_thread
from veritee.service.settings import Settings

OTHER = "0c" * 48
_register()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[RunningServer, Domain]]:
    domain = Domain.create(tmp_path / "domain", now=dt.datetime.now(dt.UTC))
    server = start_in_thread(create_app(Settings(data_dir=domain.path, policy_cache_seconds=0)))
    doc = {
        "version": 1,
        "name": "shop",
        "platforms": {
            "simulated": {
                "measurements": [OTHER],
                "platform_keys": ["11" * 32],
                "allow_debug": True,
            }
        },
    }
    httpx.put(server.url + "/v1/admin/policy", content=sign_policy(load_policy(json.dumps(doc)), domain.policy_key),
              headers={"Authorization": f"Bearer {domain.admin_token()}"}).raise_for_status()  # fmt: skip
    try:
        yield server, domain
    finally:
        server.stop()


def test_a_refusal_names_every_reason_whole_and_what_admits_it(
    service: tuple[RunningServer, Domain], tmp_path: Path
) -> None:
    server, domain = service
    sim = tmp_path / "sim"
    key_id = CliRunner().invoke(cli, ["platform-key", "--platform-dir", str(sim)])
    assert key_id.exit_code == 0, key_id.output
    key_id_hex = key_id.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key_id_hex)

    app = tmp_path / "shop.py"
    app.write_text("print('shop')\n")
    trust = Trust(server.url, domain.ca_pem, platform="simulated", measure=app, platform_dir=sim,
                  store=tmp_path / "store")  # fmt: skip
    m = trust.platform.measurement
    with pytest.raises(VerificationError) as e:
        trust.certify()
    msg = str(e.value)
    assert e.value.code == "attestation_refused"
    # every reason, each with its code and whole values
    assert "- platform_key_not_trusted:" in msg and "- measurement_not_allowed:" in msg, msg
    assert f"measurement {m} is not in" in msg and key_id_hex in msg
    assert {r["code"] for r in e.value.reasons} == {
        "platform_key_not_trusted",
        "measurement_not_allowed",
    }  # type: ignore[attr-defined]
    # what would admit it, in the one policy in force (the service names it)
    assert "add to the appraisal policy 'shop':" in msg
    assert f'platforms.simulated.measurements: ["{m}"]' in msg
    assert f'platforms.simulated.platform_keys: ["{key_id_hex}"]' in msg
    assert f"veritee policy install policy.json --data DOMAIN_DIR --url {server.url}" in msg

    # Following the hint admits it.
    policy = tmp_path / "shop.yaml"
    policy.write_text(
        json.dumps(
            {
                "version": 1,
                "name": "shop",
                "platforms": {
                    "simulated": {
                        "measurements": [OTHER, m],
                        "platform_keys": [key_id_hex],
                        "allow_debug": True,
                    }
                },
            }
        )
    )
    runner = CliRunner()
    signed = tmp_path / "policy.json"
    r = runner.invoke(
        cli, ["policy", "sign", str(policy), "--data", str(domain.path), "-o", str(signed)]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli, ["policy", "install", str(signed), "--data", str(domain.path), "--url", server.url]
    )
    assert r.exit_code == 0, r.output
    assert trust.certify() is not None
    trust.close()


def test_a_refusal_no_policy_entry_lifts_gets_no_admission_hint(
    service: tuple[RunningServer, Domain], tmp_path: Path
) -> None:
    """A replayed nonce is refused with its reason alone: no policy change admits it."""
    from veritee.sdk.http import error_from_problem

    server, _ = service
    nonce = httpx.post(server.url + "/v1/challenge").json()["nonce"]
    body = {"evidence": "AAAA", "nonce": nonce, "format": "simulated"}
    r = httpx.post(server.url + "/v1/attest", json=body)
    err = error_from_problem(r)
    assert "to admit this workload" not in str(err)
    assert str(server.url) in str(error_from_problem(httpx.Response(503, json={"detail": "down"},
                                                                    request=httpx.Request("POST", server.url))))  # fmt: skip


def test_a_new_version_refused_is_admitted_by_the_admit_command_its_refusal_names(
    service: tuple[RunningServer, Domain], tmp_path: Path
) -> None:
    """Issue 18 item 7, end to end with the SDK: a workload admitted by policy "shop" gets its
    secret; after a code edit its new version is refused, and the refusal names the one command
    that admits it (`veritee admit --policy shop --measurement <new>`). Running that command
    (with a second policy "batch" in force, left unchanged) admits the new version: it is
    certified and gets the secret, whose release policy now lists both versions."""
    server, domain = service
    sim = tmp_path / "sim"
    key_id = CliRunner().invoke(cli, ["platform-key", "--platform-dir", str(sim)]).stdout.strip()
    h = {"Authorization": f"Bearer {domain.admin_token()}"}
    app = tmp_path / "shop.py"
    app.write_text("print('shop v1')\n")
    v1 = Trust(
        server.url,
        domain.ca_pem,
        platform="simulated",
        measure=app,
        platform_dir=sim,
        store=tmp_path / "s1",
    )
    m1 = v1.platform.measurement
    for name, m in (("shop", m1), ("batch", OTHER)):
        doc = {"version": 1, "name": name, "platforms": {"simulated": {
            "measurements": [m], "platform_keys": [key_id], "allow_debug": True}}}  # fmt: skip
        env = sign_policy(load_policy(json.dumps(doc)), domain.policy_key)
        httpx.put(server.url + "/v1/admin/policy", content=env, headers=h).raise_for_status()
    httpx.put(
        server.url + "/v1/admin/secrets/shop/key",
        headers=h,
        json={
            "value": "c2hvcC1rZXk=",
            "policy": {"allOf": [{"claim": "measurement", "equals": m1}]},
        },
    ).raise_for_status()
    assert v1.get_secret("shop/key") == b"shop-key"
    v1.close()

    app.write_text("print('shop v2')\n")  # a code edit: a new measurement
    unnamed = Trust(server.url, domain.ca_pem, platform="simulated", measure=app, platform_dir=sim,
                    store=tmp_path / "s2")  # fmt: skip
    m2 = unnamed.platform.measurement
    assert m2 != m1
    with pytest.raises(VerificationError) as e:
        unnamed.certify()
    # Two policies in force refuse it equally (neither lists it): no policy is named for it.
    assert f"veritee admit --policy POLICY --measurement {m2} --platform simulated" in str(e.value)
    unnamed.close()
    # A workload that names its policy gets the command to run as it is.
    v2 = Trust(server.url, domain.ca_pem, platform="simulated", measure=app, platform_dir=sim,
               store=tmp_path / "s2", appraisal_policy="shop")  # fmt: skip
    with pytest.raises(VerificationError) as e:
        v2.certify()
    msg = str(e.value)
    command = f"veritee admit --policy shop --measurement {m2} --platform simulated --data DOMAIN_DIR --url {server.url}"
    assert command in msg, msg
    assert "veritee policy sign" not in msg  # one command, not four

    args = command.split()[1:]
    args[args.index("DOMAIN_DIR")] = str(domain.path)
    r = CliRunner().invoke(cli, [*args, "--yes"])
    assert r.exit_code == 0, r.output
    assert v2.certify() is not None
    assert v2.get_secret("shop/key") == b"shop-key"
    v2.close()
    batch = httpx.get(server.url + "/v1/admin/policy", params={"name": "batch"}, headers=h).json()
    assert (batch["version"], batch["policy"]["platforms"]["simulated"]["measurements"]) == (
        1,
        [OTHER],
    )
    listed = httpx.get(server.url + "/v1/admin/policies", headers=h).json()["policies"]
    assert [(p["name"], p["version"]) for p in listed] == [
        ("batch", 1),
        ("shop", 3),
    ]  # fixture, here, admit
