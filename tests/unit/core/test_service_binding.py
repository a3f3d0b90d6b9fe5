"""The service's report-data binding (veritee.binding.service_report_data) and its key statement
(veritee.service_proof.key_statement): the formula docs/tokens.md gives, computed independently."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.binding import SERVICE_TAG, service_report_data
from veritee.errors import MalformedError
from veritee.service_proof import KeysInUse, key_statement, thumbprint


def _keys() -> dict[str, ec.EllipticCurvePublicKey]:
    return {n: ec.generate_private_key(ec.SECP384R1() if n == "ca" else ec.SECP256R1()).public_key()
            for n in ("ca", "broker", "token", "token2", "tls")}  # fmt: skip


def test_formula_as_documented() -> None:
    k = _keys()
    st = key_statement(issuer="https://c.example", admission=k["ca"], broker=k["broker"],
                       tokens=[k["token2"], k["token"], k["token"]], tls=k["tls"])  # fmt: skip
    assert st["keys"]["tokens"] == sorted({thumbprint(k["token"]), thumbprint(k["token2"])})
    t1, t2 = st["keys"]["tokens"]
    text = ('{"issuer":"https://c.example","keys":{"admission":"' + thumbprint(k["ca"]) + '","broker":"'
            + thumbprint(k["broker"]) + '","tls":"' + thumbprint(k["tls"]) + '","tokens":["' + t1 + '","' + t2
            + '"]},"version":1}')  # fmt: skip
    assert json.loads(text) == st
    assert (
        service_report_data(st)
        == hashlib.sha512(b"veritee-service-v1\x00" + text.encode()).digest()
    )
    assert SERVICE_TAG == b"veritee-service-v1"
    # the member order of the statement does not matter; every member does
    reordered = {
        "version": 1,
        "keys": dict(reversed(list(st["keys"].items()))),
        "issuer": st["issuer"],
    }
    assert service_report_data(reordered) == service_report_data(st)
    for change in ({"issuer": "veritee"}, {"version": 2}):
        assert service_report_data({**st, **change}) != service_report_data(st)
    assert len(service_report_data(st)) == 64  # the report-data field of SNP, TDX, SGX, simulated


def test_without_tls_and_non_json_refused() -> None:
    k = _keys()
    st = key_statement(
        issuer="veritee", admission=k["ca"], broker=k["broker"], tokens=[k["token"]], tls=None
    )
    assert st["keys"]["tls"] is None
    with pytest.raises(MalformedError):
        service_report_data({"x": float("nan")})
    with pytest.raises(MalformedError):
        service_report_data({"x": b"bytes"})


def test_keys_in_use_by_thumbprint() -> None:
    k = _keys()
    r = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    used = KeysInUse.of(admission=k["ca"], tokens=[k["token"]], tls=r, issuer="i")
    assert used.admission == thumbprint(k["ca"]) and used.tls == thumbprint(r)
    assert used.tokens == frozenset({thumbprint(k["token"])})
