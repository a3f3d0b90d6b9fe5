"""A secret version past what the database stores is a 400, not a 500 (issue 12 item 10).

Found beside the audit position: a release with valid evidence and ``version`` 2**70 reached
the database (SQLite: ``OverflowError``, an HTTP 500)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from tests.fakes.secrets import put_secret, release_body
from tests.service.conftest import Env


@pytest.mark.parametrize("version", [2**63, 2**70, 0, -1])
def test_a_version_out_of_range_is_400(env: Env, version: int) -> None:
    env.install_policy()
    assert put_secret(env).status_code == 200
    body = release_body(env, x25519.X25519PrivateKey.generate())
    body["version"] = version
    r = env.client.post("/v1/secrets/db/password/release", json=body)
    assert r.status_code == 400, r.text
    body = release_body(env, x25519.X25519PrivateKey.generate())
    body["version"] = 1
    assert env.client.post("/v1/secrets/db/password/release", json=body).status_code == 200
