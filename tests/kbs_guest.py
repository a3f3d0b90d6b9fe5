"""The guest's side of the Trustee KBS protocol, written from guest-components and kbs-types.

Not veritee code: what ``kbs_protocol``'s RCAR client sends (protocol 0.4.0, CompositeEvidence,
init-data as TOML) and how ``TeeKeyPair::decrypt_response`` opens a resource: the CEK from the
protected header's ``alg``/``epk``, the AAD from the *re-serialized* header
(``ProtectedHeader::generate_aad``: ``alg``, ``enc``, then the other members from a serde_json
map, ordered by key at every level), never from the bytes received.

Example::

    sk = ec.generate_private_key(ec.SECP256R1())
    body = attestation(platform.evidence, challenge, tee_jwk(sk))
    ...
    assert guest_decrypt(resource_json, sk) == secret
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PROTOCOL = "0.4.0"
_CURVES = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64ud(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def tee_jwk(sk: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> dict[str, str]:
    """``TeeKeyPair::export_pubkey``: EC keys with ``alg`` ECDH-ES+A256KW, RSA with RSA-OAEP-256."""
    if isinstance(sk, rsa.RSAPrivateKey):
        n = sk.public_key().public_numbers()
        return {"kty": "RSA", "alg": "RSA-OAEP-256", "n": b64u(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
                "e": b64u(n.e.to_bytes(3, "big"))}  # fmt: skip
    crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[sk.curve.name]
    size = _CURVES[crv][1]
    n = sk.public_key().public_numbers()
    return {"kty": "EC", "crv": crv, "alg": "ECDH-ES+A256KW",
            "x": b64u(n.x.to_bytes(size, "big")), "y": b64u(n.y.to_bytes(size, "big"))}  # fmt: skip


def canonical(value: Any) -> bytes:
    """serde_json_canonicalizer for these documents: keys sorted, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request(tee: str = "sample", version: str = PROTOCOL) -> dict[str, Any]:
    return {"version": version, "tee": tee,
            "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512", "sm3"]}}  # fmt: skip


def attestation(
    make_evidence: Callable[[bytes], bytes],
    challenge: dict[str, Any],
    jwk: dict[str, str],
    *,
    additional: str = "",
    bind_additional: str | None = None,
    bind_jwk: dict[str, str] | None = None,
    init_data: str | None = None,
) -> dict[str, Any]:
    """The Attestation a guest sends: its primary evidence binds HASH(canonical({nonce,
    tee-pubkey, additional-evidence})) in report data (``make_evidence(report_data)``)."""
    extra = challenge.get("extra-params")
    alg = extra.get("selected-hash-algorithm", "sha384") if isinstance(extra, dict) else "sha384"
    bound = {"nonce": challenge["nonce"], "tee-pubkey": bind_jwk or jwk,
             "additional-evidence": additional if bind_additional is None else bind_additional}  # fmt: skip
    report_data = hashlib.new(alg, canonical(bound)).digest().ljust(64, b"\0")
    primary = {"evidence": base64.b64encode(make_evidence(report_data)).decode()}
    doc: dict[str, Any] = {
        "runtime-data": {"nonce": challenge["nonce"], "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": primary, "additional_evidence": additional},
        "init-data": None if init_data is None else {"format": "toml", "body": init_data},
    }
    return doc


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return (
            "{"
            + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _value(v[k]) for k in sorted(v))
            + "}"
        )
    if isinstance(v, list):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def generate_aad(header: dict[str, Any]) -> bytes:
    """``kbs_types::ProtectedHeader::generate_aad`` over a decoded header."""
    rest = {k: header[k] for k in header if k not in ("alg", "enc")}
    text = '{"alg":' + _value(header["alg"]) + ',"enc":' + _value(header["enc"])
    text += (
        "".join(
            "," + json.dumps(k, ensure_ascii=False) + ":" + _value(rest[k]) for k in sorted(rest)
        )
        + "}"
    )
    return b64u(text.encode()).encode()


def guest_decrypt(
    response: dict[str, str], sk: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
) -> bytes:
    """``TeeKeyPair::decrypt_response`` (ECDH-ES+A256KW on the key's curve, or RSA-OAEP-256)."""
    header = json.loads(b64ud(response["protected"]))
    assert header["enc"] == "A256GCM"
    if header["alg"] == "ECDH-ES+A256KW":
        assert isinstance(sk, ec.EllipticCurvePrivateKey)
        epk = header["epk"]
        curve, _ = _CURVES[epk["crv"]]
        assert curve.name == sk.curve.name, "Unmatched curve"
        pub = ec.EllipticCurvePublicNumbers(int.from_bytes(b64ud(epk["x"]), "big"),
                                            int.from_bytes(b64ud(epk["y"]), "big"), curve).public_key()  # fmt: skip
        z = sk.exchange(ec.ECDH(), pub)
        alg = b"ECDH-ES+A256KW"
        other = (
            struct.pack(">I", len(alg)) + alg + struct.pack(">II", 0, 0) + struct.pack(">I", 256)
        )
        kek = hashlib.sha256(b"\0\0\0\1" + z + other).digest()
        cek = keywrap.aes_key_unwrap(kek, b64ud(response["encrypted_key"]))
    elif header["alg"] == "RSA-OAEP-256":
        assert isinstance(sk, rsa.RSAPrivateKey)
        oaep = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
        cek = sk.decrypt(b64ud(response["encrypted_key"]), oaep)
    else:
        raise AssertionError(f"Unsupported algorithm: {header['alg']}")
    return AESGCM(cek).decrypt(b64ud(response["iv"]), b64ud(response["ciphertext"]) + b64ud(response["tag"]),
                               generate_aad(header))  # fmt: skip


def token_claims(token: str) -> dict[str, Any]:
    """The token's claims, read as Trustee's KBS token verifier reads them (after its check)."""
    return dict(json.loads(b64ud(token.split(".")[1])))


def pointer(doc: Any, path: str) -> Any:
    """serde_json's ``Value::pointer`` (RFC 6901)."""
    for part in path.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


#: Where Trustee's KBS looks for the TEE key in an EAR (kbs/src/token/mod.rs).
TEE_PUBKEY_PATH_EAR = "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey"
