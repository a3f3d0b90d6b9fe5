"""Secrets stored and released through the in-process service (``tests/service``'s ``Env``):
the admin ``PUT /v1/admin/secrets/{name}`` and the body of a ``POST .../release`` carrying
simulated evidence that binds the caller's nonce and public key.

Example::

    assert put_secret(env).status_code == 200
    key = x25519.X25519PrivateKey.generate()
    r = env.client.post("/v1/secrets/db/password/release", json=release_body(env, key))
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import x25519
from tests.service.conftest import GOOD

from veritee.binding import report_data_for, spki_der
from veritee.keybroker.release import x25519_jwk

if TYPE_CHECKING:
    from tests.service.conftest import Env

__all__ = ["SECRET_VALUE", "put_secret", "release_body", "release_policy"]

#: The value :func:`put_secret` stores unless told otherwise.
SECRET_VALUE = b"postgres://analytics:correct-horse-battery@db/prod"


def release_policy(measurement: str = GOOD) -> dict[str, Any]:
    """A release policy: the simulated platform with ``measurement``."""
    return {
        "version": 1,
        "anyOf": [
            {
                "allOf": [
                    {"claim": "platform", "equals": "simulated"},
                    {"claim": "measurement", "equals": measurement},
                ]
            }
        ],
    }


def put_secret(env: Env, name: str = "db/password", value: bytes = SECRET_VALUE, **kw: Any) -> Any:
    """Store ``value`` as secret ``name`` through the admin API (``policy=``: its release policy,
    default :func:`release_policy`); the HTTP response."""
    body = {
        "value": base64.b64encode(value).decode(),
        "policy": kw.get("policy", release_policy()),
    }
    return env.client.put(f"/v1/admin/secrets/{name}", json=body, headers=env.admin)


def release_body(
    env: Env, key: Any, *, platform: Any = None, nonce: bytes | None = None, bind_key: Any = None
) -> dict[str, Any]:
    """A release request for ``key`` (X25519 or another key the broker wraps for): evidence from
    ``platform`` (default the Env's) binding ``nonce`` (default a fresh challenge) and
    ``bind_key``'s public key (default ``key``'s)."""
    nonce = nonce or env.nonce()
    pub = key.public_key()
    bound = (bind_key or key).public_key()
    ev = (platform or env.platform).evidence(
        report_data_for(nonce, spki_der(bound), profile=(platform or env.platform).profile)
    )
    if isinstance(pub, x25519.X25519PublicKey):
        public_key: Any = x25519_jwk(pub)
    else:
        from veritee.keybroker.wrap import jwk_from_public_key

        public_key = jwk_from_public_key(pub)
    return {
        "evidence": base64.b64encode(ev).decode(),
        "nonce": nonce.hex(),
        "format": "simulated",
        "public_key": public_key,
    }
