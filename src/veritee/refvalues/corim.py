"""CoRIM / CoMID reader (IETF draft-ietf-rats-corim): reference values from their sources.

Pure: takes bytes, an optional signer key and a time, touches no disk or network.

1. Envelope. ``#6.500`` (tagged-corim-type-choice) and ``#6.502`` (signed-corim) wrappers are
   stripped; then the input is a signed CoRIM (COSE_Sign1, ``#6.18``), an unsigned CoRIM
   (``#6.501``), or a CoMID (``#6.506`` or the bare concise-mid-tag map). An unsigned CoRIM map
   without its tag 501 is refused (``corim_untagged``), as Veraison's current library and
   provisioning service refuse it; inside a signed CoRIM the untagged payload of older cocli
   releases is read (the signature covers it) and reported as a warning.
2. Signed CoRIM (draft §4.2): the protected header must carry ``alg`` (1), content type (3)
   ``application/rim+cbor`` and ``corim-meta`` (8: the signer's name and URI, optional validity);
   ``kid`` (4) and ``x5chain`` (33) are read when present. The signature over
   ``Sig_structure = ["Signature1", protected, h'', payload]`` is checked with the key the caller
   trusts (PEM public key, X.509 certificate or JWK). Without a trusted key a signed CoRIM is not
   valid (``corim_signer_untrusted``).
3. Unsigned CoRIM (draft §4.1): ``corim-id`` (0, text or UUID) and a non-empty ``tags`` list (1)
   are mandatory; dependent RIMs (2), profile (3: ``#6.32`` URI or ``#6.111`` OID), rim-validity
   (4) and entities (5) are checked when present. Each ``#6.506`` tag is a CoMID.
4. CoMID (draft §5): tag-identity (1) and a non-empty triples map (4) are mandatory. Reference
   values (triples key 0), endorsed values (1), identity (2) and attestation keys (3) are decoded
   field by field: environment (class id / vendor / model / layer / index, instance, group),
   measurements (mkey; mval: version, svn, digests, flags, raw value and mask, MAC/IP address,
   serial number, UEID, UUID, name, cryptokeys, integrity registers, int range; authorized-by).
   Extension keys (negative, or beyond the draft's) are kept as they are.
5. Profile (:mod:`veritee.refvalues.profiles`): when the CoRIM names a profile of a scheme
   veritee knows (the rules of Veraison's provisioning plugins), its rules apply on top.

Key contents are parsed (PEM keys and certificates, COSE keys) inside CoRIMs, as
``UnmarshalAndValidate`` does; a bare CoMID is only decoded, as ``Comid.FromCBOR`` does.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from veritee.refvalues import _cbor
from veritee.refvalues._cbor import CborError

__all__ = [
    "MAX_CORIM_BYTES",
    "Comid",
    "Environment",
    "Inspection",
    "KeyTriple",
    "Measurement",
    "Typed",
    "ValueTriple",
    "inspect",
    "load_anchors",
    "load_key",
    "sign",
]

MAX_CORIM_BYTES = 4 * 1024 * 1024
CONTENT_TYPE = "application/rim+cbor"

TAG_COSE_SIGN1 = 18
TAG_URI = 32
TAG_UUID = 37
TAG_OID = 111
TAG_CORIM = 500
TAG_UNSIGNED_CORIM = 501
TAG_SIGNED_CORIM = 502
TAG_COSWID = 505
TAG_COMID = 506
TAG_COTS = 508

# IANA Named Information Hash Algorithm Registry: id -> (name, length)
DIGEST_ALGS: dict[int, tuple[str, int]] = {
    1: ("sha-256", 32),
    2: ("sha-256-128", 16),
    3: ("sha-256-120", 15),
    4: ("sha-256-96", 12),
    5: ("sha-256-64", 8),
    6: ("sha-256-32", 4),
    7: ("sha-384", 48),
    8: ("sha-512", 64),
    9: ("sha3-224", 28),
    10: ("sha3-256", 32),
    11: ("sha3-384", 48),
    12: ("sha3-512", 64),
}

# COSE algorithm id -> (name, hash, kind)
_COSE_ALGS: dict[int, tuple[str, hashes.HashAlgorithm | None, str]] = {
    -7: ("ES256", hashes.SHA256(), "ec"),
    -35: ("ES384", hashes.SHA384(), "ec"),
    -36: ("ES512", hashes.SHA512(), "ec"),
    -8: ("EdDSA", None, "okp"),
    -37: ("PS256", hashes.SHA256(), "pss"),
    -38: ("PS384", hashes.SHA384(), "pss"),
    -39: ("PS512", hashes.SHA512(), "pss"),
}
_EC_CURVE_FOR_ALG = {-7: "secp256r1", -35: "secp384r1", -36: "secp521r1"}

# crypto-key-type-choice tags (draft §5.1.4.11.1) -> type name
_CRYPTO_KEY_TAGS = {
    554: "pkix-base64-key",
    555: "pkix-base64-cert",
    556: "pkix-base64-cert-path",
    557: "thumbprint",
    558: "cose-key",
    559: "cert-thumbprint",
    560: "bytes",
    561: "cert-path-thumbprint",
    562: "pkix-asn1der-cert",
}
_FLAG_NAMES = {
    0: "is-configured",
    1: "is-secure",
    2: "is-recovery",
    3: "is-debug",
    4: "is-replay-protected",
    5: "is-integrity-protected",
    6: "is-runtime-meas",
    7: "is-immutable",
    8: "is-tcb",
    9: "is-confidentiality-protected",
}


class Invalid(Exception):
    """A CoRIM is not valid: ``code`` (docs/reason-codes.md) and a message naming the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _malformed(where: str, what: str) -> Invalid:
    return Invalid("corim_malformed", f"{where}: {what}")


# --------------------------------------------------------------------------------------------
# typed values


@dataclass(frozen=True)
class Typed:
    """A type-choice value: ``type`` as the draft / Veraison names it and the decoded value."""

    type: str
    value: Any

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "value": _jsonable(self.value)}

    def bytes_value(self) -> bytes | None:
        return self.value if isinstance(self.value, bytes) else None


def _jsonable(value: Any) -> Any:
    """CBOR-decoded data as JSON: bytes as lowercase hex, tags as ``{"tag": n, "value": v}``."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Typed):
        return value.to_json()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, cbor2.CBORTag):
        return {"tag": value.tag, "value": _jsonable(value.value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted((_jsonable(v) for v in value), key=repr)
    if value is None or isinstance(value, bool | int | str | float):
        return value
    return repr(value)


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _map(v: Any, where: str, *, nonempty: bool = False) -> Mapping[Any, Any]:
    if not isinstance(v, Mapping):
        raise _malformed(where, f"expected a map, got {type(v).__name__}")
    if nonempty and not v:
        raise _malformed(where, "must not be empty")
    return v


def _list(v: Any, where: str, *, nonempty: bool = False) -> list[Any]:
    if not isinstance(v, list | tuple):
        raise _malformed(where, f"expected an array, got {type(v).__name__}")
    if nonempty and not v:
        raise _malformed(where, "must not be empty")
    return list(v)


def _text(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise _malformed(where, f"expected text, got {type(v).__name__}")
    return v


def _bytes(v: Any, where: str, *, nonempty: bool = False) -> bytes:
    if not isinstance(v, bytes):
        raise _malformed(where, f"expected bytes, got {type(v).__name__}")
    if nonempty and not v:
        raise _malformed(where, "must not be empty")
    return v


def _uint(v: Any, where: str) -> int:
    if not _is_uint(v):
        raise _malformed(where, f"expected an unsigned integer, got {type(v).__name__}")
    return int(v)


def _uuid(v: Any, where: str) -> uuid.UUID:
    # cbor2 turns #6.37 into uuid.UUID (and refuses a wrong length); raw 16 bytes are accepted too
    if isinstance(v, uuid.UUID):
        return v
    if isinstance(v, bytes) and len(v) == 16:
        return uuid.UUID(bytes=v)
    raise _malformed(where, "expected a 16-byte UUID")


def _oid(v: Any, where: str) -> str:
    raw = _bytes(v, where, nonempty=True)
    if raw[-1] & 0x80:
        raise _malformed(where, "OID ends inside a sub-identifier")
    return raw.hex()


def _tag_id(v: Any, where: str) -> str:
    """tag-id / corim-id: text or UUID (a #6.37 or 16 raw bytes)."""
    if isinstance(v, str):
        if not v:
            raise _malformed(where, "empty id")
        return v
    if isinstance(v, uuid.UUID | bytes):
        return str(_uuid(v, where))
    raise _malformed(where, f"expected text or UUID, got {type(v).__name__}")


def _tagged(v: Any) -> tuple[int | None, Any]:
    if isinstance(v, cbor2.CBORTag):
        return v.tag, v.value
    if isinstance(v, uuid.UUID):
        return TAG_UUID, v
    return None, v


def _uri(v: Any, where: str) -> str:
    tag, inner = _tagged(v)
    if tag not in (None, TAG_URI):
        raise _malformed(where, f"expected a URI, got tag {tag}")
    text = _text(inner, where)
    if not text:
        raise _malformed(where, "empty URI")
    return text


# --------------------------------------------------------------------------------------------
# crypto keys


def _pem_blocks(text: str, label: str, where: str) -> list[bytes]:
    blocks: list[bytes] = []
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    rest = text
    while begin in rest:
        _, _, after = rest.partition(begin)
        body, found, rest = after.partition(end)
        if not found:
            raise _malformed(where, f"unterminated PEM {label}")
        try:
            blocks.append(base64.b64decode("".join(body.split()), validate=True))
        except ValueError:
            raise _malformed(where, f"PEM {label} is not base64") from None
    if not blocks:
        raise _malformed(where, f"could not decode PEM block ({label})")
    return blocks


def _check_crypto_key(key: Typed, where: str) -> None:
    """Parse the key material of a crypto-key (as Veraison's CryptoKey.Valid does)."""
    v = key.value
    try:
        if key.type == "pkix-base64-key":
            serialization.load_der_public_key(_pem_blocks(v, "PUBLIC KEY", where)[0])
        elif key.type == "pkix-base64-cert":
            x509.load_der_x509_certificate(_pem_blocks(v, "CERTIFICATE", where)[0])
        elif key.type == "pkix-base64-cert-path":
            for der in _pem_blocks(v, "CERTIFICATE", where):
                x509.load_der_x509_certificate(der)
        elif key.type == "pkix-asn1der-cert":
            x509.load_der_x509_certificate(v)
        elif key.type == "cose-key":
            cose_key = _map(
                _cbor.loads(_bytes(v, where, nonempty=True), max_depth=8), where, nonempty=True
            )
            if not _is_int(cose_key.get(1)) and not isinstance(cose_key.get(1), str):
                raise _malformed(where, "COSE_Key lacks kty (1)")
    except (ValueError, TypeError) as e:
        raise _malformed(where, f"{key.type} does not parse: {e}") from None
    except CborError as e:
        raise _malformed(where, f"COSE_Key does not decode: {e.message}") from None


def _crypto_key(v: Any, where: str) -> Typed:
    if isinstance(
        v, Mapping
    ):  # verification-key-map of earlier drafts: {0: key text, ? 1: [+ cert]}
        return Typed("verification-key-map", _text(v.get(0), f"{where}.key"))
    tag, inner = _tagged(v)
    name = _CRYPTO_KEY_TAGS.get(tag) if tag is not None else None
    if name is None:
        raise _malformed(where, f"not a crypto-key type choice (tag {tag})")
    if name == "cose-key" and isinstance(inner, Mapping):  # a COSE_Key map rather than its bytes
        return Typed(name, cbor2.dumps(dict(inner)))
    if name in ("pkix-base64-key", "pkix-base64-cert", "pkix-base64-cert-path"):
        return Typed(name, _text(inner, where))
    if name in ("thumbprint", "cert-thumbprint", "cert-path-thumbprint"):
        return Typed(name, _digest(inner, where))
    return Typed(name, _bytes(inner, where, nonempty=True))


def _crypto_keys(v: Any, where: str) -> list[Typed]:
    return [_crypto_key(k, f"{where}[{i}]") for i, k in enumerate(_list(v, where, nonempty=True))]


# --------------------------------------------------------------------------------------------
# CoMID structures


@dataclass(frozen=True)
class Digest:
    alg: int | str
    value: bytes

    @property
    def alg_name(self) -> str:
        if isinstance(self.alg, int):
            return DIGEST_ALGS.get(self.alg, (f"alg-{self.alg}", 0))[0]
        return self.alg

    def to_json(self) -> dict[str, Any]:
        return {"alg": self.alg_name, "alg_id": self.alg, "value": self.value.hex()}


def _digest(v: Any, where: str) -> Digest:
    pair = _list(v, where)
    if len(pair) != 2:
        raise _malformed(where, "a digest is [alg, value]")
    alg, value = pair
    if not (_is_int(alg) or isinstance(alg, str)):
        raise _malformed(where, "digest algorithm must be an integer or text")
    if alg == 0 or alg == "":
        raise _malformed(where, "zero digest algorithm")
    value = _bytes(value, where, nonempty=True)
    if _is_int(alg) and alg in DIGEST_ALGS and len(value) != DIGEST_ALGS[alg][1]:
        name, want = DIGEST_ALGS[alg]
        raise _malformed(
            where, f"length mismatch for hash algorithm {name}: want {want} bytes, got {len(value)}"
        )
    return Digest(alg, value)


def _digests(v: Any, where: str) -> list[Digest]:
    return [_digest(d, f"{where}[{i}]") for i, d in enumerate(_list(v, where, nonempty=True))]


@dataclass(frozen=True)
class Environment:
    has_class: bool = False
    class_id: Typed | None = None
    vendor: str | None = None
    model: str | None = None
    layer: int | None = None
    index: int | None = None
    instance: Typed | None = None
    group: Typed | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.has_class:
            cls: dict[str, Any] = {}
            if self.class_id is not None:
                cls["class-id"] = self.class_id.to_json()
            for name in ("vendor", "model", "layer", "index"):
                if getattr(self, name) is not None:
                    cls[name] = getattr(self, name)
            out["class"] = cls
        if self.instance is not None:
            out["instance"] = self.instance.to_json()
        if self.group is not None:
            out["group"] = self.group.to_json()
        return out


def _class_id(v: Any, where: str) -> Typed:
    tag, inner = _tagged(v)
    if tag == TAG_OID:
        return Typed("oid", _oid(inner, where))
    if tag == TAG_UUID:
        return Typed("uuid", str(_uuid(inner, where)))
    if tag == 560:
        return Typed("bytes", _bytes(inner, where, nonempty=True))
    if tag == 600:  # PSA implementation id (older cocli; some wrote it as text)
        if isinstance(inner, str) and inner:
            return Typed("psa.impl-id", inner.encode())
        return Typed("psa.impl-id", _bytes(inner, where, nonempty=True))
    if tag == 551:  # tagged-int-type; older cocli wrote the PSA implementation id under 551
        if _is_int(inner):
            return Typed("int", inner)
        return Typed("bytes", _bytes(inner, where, nonempty=True))
    raise _malformed(where, f"not a class-id type choice (tag {tag})")


def _instance(v: Any, where: str) -> Typed:
    tag, inner = _tagged(v)
    if tag == 550:
        return Typed("ueid", _bytes(inner, where, nonempty=True))
    if tag == TAG_UUID:
        return Typed("uuid", str(_uuid(inner, where)))
    if tag == 560:
        return Typed("bytes", _bytes(inner, where, nonempty=True))
    if tag in _CRYPTO_KEY_TAGS:
        return _crypto_key(v, where)
    raise _malformed(where, f"not an instance-id type choice (tag {tag})")


def _group(v: Any, where: str) -> Typed:
    tag, inner = _tagged(v)
    if tag == TAG_UUID:
        return Typed("uuid", str(_uuid(inner, where)))
    if tag == 560:
        return Typed("bytes", _bytes(inner, where, nonempty=True))
    raise _malformed(where, f"not a group-id type choice (tag {tag})")


def _environment(v: Any, where: str) -> Environment:
    env = _map(v, where)
    if not any(k in env for k in (0, 1, 2)):
        raise _malformed(where, "environment must not be empty")
    kw: dict[str, Any] = {}
    if 0 in env:
        cls = _map(env[0], f"{where}.class")
        if not any(k in cls for k in (0, 1, 2, 3, 4)):
            raise _malformed(f"{where}.class", "class must not be empty")
        kw["has_class"] = True
        if 0 in cls:
            kw["class_id"] = _class_id(cls[0], f"{where}.class.class-id")
        if 1 in cls:
            kw["vendor"] = _text(cls[1], f"{where}.class.vendor")
        if 2 in cls:
            kw["model"] = _text(cls[2], f"{where}.class.model")
        if 3 in cls:
            kw["layer"] = _uint(cls[3], f"{where}.class.layer")
        if 4 in cls:
            kw["index"] = _uint(cls[4], f"{where}.class.index")
    if 1 in env:
        kw["instance"] = _instance(env[1], f"{where}.instance")
    if 2 in env:
        kw["group"] = _group(env[2], f"{where}.group")
    return Environment(**kw)


def _mkey(v: Any, where: str) -> Typed:
    if _is_uint(v):
        return Typed("uint", int(v))
    if isinstance(v, str):
        return Typed("string", v)
    tag, inner = _tagged(v)
    if tag == TAG_OID:
        return Typed("oid", _oid(inner, where))
    if tag == TAG_UUID:
        return Typed("uuid", str(_uuid(inner, where)))
    if tag in (600, 601):  # psa.refval-id {? 1 label, ? 4 version, 5 signer-id} (600: older cocli)
        ref = _map(inner, where, nonempty=True)
        if 5 in ref:
            _bytes(ref[5], f"{where}.signer-id", nonempty=True)
        return Typed("psa.refval-id", {str(k): _jsonable(x) for k, x in ref.items()})
    if tag == 602:  # cca.platform-config-id
        return Typed("cca.platform-config-id", _text(inner, where))
    raise _malformed(where, f"not a measured-element type choice ({type(v).__name__}, tag {tag})")


@dataclass
class Measurement:
    """A measurement-map: ``key`` (mkey), the decoded mval fields, authorized-by."""

    key: Typed | None
    fields: dict[str, Any] = field(default_factory=dict)  # JSON-ready mval
    digests: list[Digest] | None = None
    raw_value: bytes | None = None
    raw_value_mask: bytes | None = None
    cryptokeys: list[Typed] | None = None
    version: tuple[str, int | None] | None = None
    integrity_registers: dict[str, list[Digest]] | None = None
    authorized_by: list[Typed] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.key is not None:
            out["mkey"] = self.key.to_json()
        out["mval"] = self.fields
        if self.authorized_by is not None:
            out["authorized-by"] = [k.to_json() for k in self.authorized_by]
        return out

    def all_digests(self) -> list[Digest]:
        found = list(self.digests or [])
        for regs in (self.integrity_registers or {}).values():
            found.extend(regs)
        return found


_KNOWN_MVAL_KEYS = set(range(0, 16)) - {12}


def _measurement(v: Any, where: str) -> Measurement:  # noqa: C901 - one walk over the grammar, case by case
    m = _map(v, where)
    if 1 not in m:
        raise _malformed(where, 'missing mandatory field "mval" (1)')
    key = _mkey(m[0], f"{where}.mkey") if 0 in m else None
    mval = _map(m[1], f"{where}.mval")
    if not mval:
        raise _malformed(f"{where}.mval", "no measurement value set")
    meas = Measurement(key)
    out = meas.fields
    w = f"{where}.mval"
    for k, val in mval.items():
        if k == 0:
            ver = _map(val, f"{w}.version")
            if 0 not in ver:
                raise _malformed(f"{w}.version", 'missing mandatory field "version" (0)')
            vtext = _text(ver[0], f"{w}.version.version")
            vscheme = ver.get(1)
            if vscheme is not None and not _is_int(vscheme):
                raise _malformed(f"{w}.version.version-scheme", "expected an integer")
            meas.version = (vtext, vscheme)
            out["version"] = {
                "version": vtext,
                **({"version-scheme": vscheme} if vscheme is not None else {}),
            }
        elif k == 1:
            tag, inner = _tagged(val)
            kind = {None: "exact", 552: "exact", 553: "min"}.get(tag)
            if kind is None or not _is_uint(inner):
                raise _malformed(f"{w}.svn", "expected uint, #6.552(uint) or #6.553(uint)")
            out["svn"] = {"type": kind, "value": inner}
        elif k == 2:
            meas.digests = _digests(val, f"{w}.digests")
            out["digests"] = [d.to_json() for d in meas.digests]
        elif k == 3 and _is_uint(val):  # operational-flags bit field of earlier drafts
            out["flags"] = {"bits": val}
        elif k == 3:
            flags = _map(val, f"{w}.flags")
            fo: dict[str, Any] = {}
            for fk, fv in flags.items():
                if fk in _FLAG_NAMES and not isinstance(fv, bool):
                    raise _malformed(f"{w}.flags.{_FLAG_NAMES[fk]}", "expected a boolean")
                fo[_FLAG_NAMES.get(fk, str(fk))] = _jsonable(fv)
            out["flags"] = fo
        elif k == 4:
            tag, inner = _tagged(val)
            if tag == 560 or (tag is None and isinstance(inner, bytes)):
                meas.raw_value = _bytes(inner, f"{w}.raw-value")
                out["raw-value"] = meas.raw_value.hex()
            elif tag == 563:
                pair = _list(inner, f"{w}.raw-value")
                if len(pair) != 2:
                    raise _malformed(f"{w}.raw-value", "masked raw value is [value, mask]")
                value, mask = (
                    _bytes(pair[0], f"{w}.raw-value"),
                    _bytes(pair[1], f"{w}.raw-value.mask"),
                )
                if len(value) != len(mask):
                    raise _malformed(f"{w}.raw-value", "value and mask differ in length")
                meas.raw_value, meas.raw_value_mask = value, mask
                out["raw-value"] = value.hex()
                out["raw-value-mask"] = mask.hex()
            else:
                raise _malformed(f"{w}.raw-value", f"not a raw-value type choice (tag {tag})")
        elif k == 5:
            meas.raw_value_mask = _bytes(val, f"{w}.raw-value-mask")
            out["raw-value-mask"] = meas.raw_value_mask.hex()
        elif k == 6:
            mac = _bytes(val, f"{w}.mac-addr")
            if len(mac) not in (6, 8):
                raise _malformed(f"{w}.mac-addr", f"invalid MAC address length {len(mac)}")
            out["mac-addr"] = mac.hex()
        elif k == 7:
            ip = _bytes(val, f"{w}.ip-addr")
            if len(ip) not in (4, 16):
                raise _malformed(f"{w}.ip-addr", f"invalid IP address length {len(ip)}")
            out["ip-addr"] = ip.hex()
        elif k == 8:
            out["serial-number"] = _text(val, f"{w}.serial-number")
        elif k == 9:
            tag, inner = _tagged(val)
            if tag not in (None, 550):
                raise _malformed(f"{w}.ueid", f"unexpected tag {tag}")
            out["ueid"] = _bytes(inner, f"{w}.ueid", nonempty=True).hex()
        elif k == 10:
            out["uuid"] = str(_uuid(_tagged(val)[1], f"{w}.uuid"))
        elif k == 11:
            out["name"] = _text(val, f"{w}.name")
        elif k == 13:
            meas.cryptokeys = _crypto_keys(val, f"{w}.cryptokeys")
            out["cryptokeys"] = [c.to_json() for c in meas.cryptokeys]
        elif k == 14:
            regs = _map(val, f"{w}.integrity-registers", nonempty=True)
            meas.integrity_registers = {}
            for rk, rv in regs.items():
                if not (_is_uint(rk) or isinstance(rk, str)):
                    raise _malformed(
                        f"{w}.integrity-registers", "register index must be uint or text"
                    )
                meas.integrity_registers[str(rk)] = _digests(rv, f"{w}.integrity-registers.{rk}")
            out["integrity-registers"] = {
                r: [d.to_json() for d in ds] for r, ds in meas.integrity_registers.items()
            }
        elif k == 15:
            tag, inner = _tagged(val)
            if tag == 564:
                pair = _list(inner, f"{w}.int-range")
                if len(pair) != 2 or not all(x is None or _is_int(x) for x in pair):
                    raise _malformed(f"{w}.int-range", "expected [min / null, max / null]")
                if pair[0] is not None and pair[1] is not None and pair[0] > pair[1]:
                    raise _malformed(f"{w}.int-range", "min is above max")
                out["int-range"] = {"min": pair[0], "max": pair[1]}
            elif _is_int(inner) and tag is None:
                out["int-range"] = {"min": inner, "max": inner}
            else:
                raise _malformed(f"{w}.int-range", "expected an integer or #6.564")
        else:  # extension (negative keys, profile-defined keys) kept as it is
            out[str(k)] = _jsonable(val)
    if 2 in m:
        meas.authorized_by = _crypto_keys(m[2], f"{where}.authorized-by")
    return meas


@dataclass
class ValueTriple:
    environment: Environment
    measurements: list[Measurement]

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment.to_json(),
            "measurements": [m.to_json() for m in self.measurements],
        }


@dataclass
class KeyTriple:
    environment: Environment
    keys: list[Typed]


def _value_triples(v: Any, where: str) -> list[ValueTriple]:
    out = []
    for i, t in enumerate(_list(v, where, nonempty=True)):
        w = f"{where}[{i}]"
        rec = _list(t, w)
        if len(rec) != 2:
            raise _malformed(w, "a value triple is [environment, [+ measurement]]")
        env = _environment(rec[0], f"{w}.environment")
        ms = _list(rec[1], f"{w}.measurements")
        if not ms:
            raise _malformed(f"{w}.measurements", "no measurement entries")
        out.append(
            ValueTriple(env, [_measurement(m, f"{w}.measurements[{j}]") for j, m in enumerate(ms)])
        )
    return out


def _key_triples(v: Any, where: str) -> list[KeyTriple]:
    out = []
    for i, t in enumerate(_list(v, where, nonempty=True)):
        w = f"{where}[{i}]"
        rec = _list(t, w)
        if len(rec) not in (2, 3):
            raise _malformed(w, "a key triple is [environment, [+ key], ? conditions]")
        env = _environment(rec[0], f"{w}.environment")
        keys = _crypto_keys(rec[1], f"{w}.verification-keys")
        if len(rec) == 3:
            cond = _map(rec[2], f"{w}.conditions", nonempty=True)
            if 0 in cond:
                _mkey(cond[0], f"{w}.conditions.mkey")
            if 1 in cond:
                _crypto_keys(cond[1], f"{w}.conditions.authorized-by")
        out.append(KeyTriple(env, keys))
    return out


def _other_triples(v: Any, where: str) -> int:
    """Domain, CoSWID and conditional-endorsement triples: arrays of records, checked for shape."""
    records = _list(v, where, nonempty=True)
    for i, r in enumerate(records):
        _list(r, f"{where}[{i}]", nonempty=True)
    return len(records)


_TRIPLE_NAMES = {
    0: "reference-values",
    1: "endorsed-values",
    2: "identity-triples",
    3: "attest-key-triples",
    4: "dependency-triples",
    5: "membership-triples",
    6: "coswid-triples",
    8: "conditional-endorsement-series",
    10: "conditional-endorsements",
}


@dataclass
class Comid:
    tag_id: str
    tag_version: int
    reference_values: list[ValueTriple]
    endorsed_values: list[ValueTriple]
    identity_keys: list[KeyTriple]
    attest_keys: list[KeyTriple]
    other_triples: int


def parse_comid(v: Any, where: str = "comid") -> Comid:
    m = _map(v, where)
    if 1 not in m:
        raise _malformed(where, 'missing mandatory field "tag-identity" (1)')
    if 4 not in m:
        raise _malformed(where, 'missing mandatory field "triples" (4)')
    if 0 in m:
        _text(m[0], f"{where}.language")
    ident = _map(m[1], f"{where}.tag-identity")
    if 0 not in ident:
        raise _malformed(f"{where}.tag-identity", 'missing mandatory field "tag-id" (0)')
    tag_id = _tag_id(ident[0], f"{where}.tag-identity.tag-id")
    tag_version = _uint(ident[1], f"{where}.tag-identity.tag-version") if 1 in ident else 0
    if 2 in m:
        _entities(m[2], f"{where}.entities")
    if 3 in m:
        for i, lt in enumerate(_list(m[3], f"{where}.linked-tags", nonempty=True)):
            lm = _map(lt, f"{where}.linked-tags[{i}]")
            if 0 not in lm or 1 not in lm:
                raise _malformed(
                    f"{where}.linked-tags[{i}]", "linked tag needs target (0) and rel (1)"
                )
            _tag_id(lm[0], f"{where}.linked-tags[{i}].target")
            _uint(lm[1], f"{where}.linked-tags[{i}].rel")
    triples = _map(m[4], f"{where}.triples")
    w = f"{where}.triples"
    refs = _value_triples(triples[0], f"{w}.reference-values") if 0 in triples else []
    ends = _value_triples(triples[1], f"{w}.endorsed-values") if 1 in triples else []
    idks = _key_triples(triples[2], f"{w}.identity-triples") if 2 in triples else []
    aks = _key_triples(triples[3], f"{w}.attest-key-triples") if 3 in triples else []
    others = sum(
        _other_triples(triples[k], f"{w}.{_TRIPLE_NAMES[k]}")
        for k in (4, 5, 6, 8, 10)
        if k in triples
    )
    if not (refs or ends or idks or aks or others):
        raise _malformed(w, "triples struct must not be empty")
    return Comid(tag_id, tag_version, refs, ends, idks, aks, others)


def _entities(v: Any, where: str) -> list[dict[str, Any]]:
    out = []
    for i, e in enumerate(_list(v, where, nonempty=True)):
        w = f"{where}[{i}]"
        em = _map(e, w)
        if 0 not in em or 2 not in em:
            raise _malformed(w, "an entity needs name (0) and roles (2)")
        name = _text(em[0], f"{w}.name")
        if not name:
            raise _malformed(f"{w}.name", "empty entity name")
        roles = _list(em[2], f"{w}.roles", nonempty=True)
        if not all(_is_int(r) for r in roles):
            raise _malformed(f"{w}.roles", "roles are integers")
        ent: dict[str, Any] = {"name": name, "roles": roles}
        if 1 in em:
            ent["regid"] = _uri(em[1], f"{w}.regid")
        out.append(ent)
    return out


def _time(v: Any, where: str) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.UTC)
    if _is_int(v):  # untagged epoch seconds
        try:
            return dt.datetime.fromtimestamp(v, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise _malformed(where, "time out of range") from None
    raise _malformed(where, "expected a time (#6.1)")


@dataclass(frozen=True)
class Validity:
    not_before: dt.datetime | None
    not_after: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "not_before": _jsonable(self.not_before) if self.not_before else None,
            "not_after": _jsonable(self.not_after),
        }


def _validity(v: Any, where: str) -> Validity:
    m = _map(v, where)
    if 1 not in m:
        raise _malformed(where, 'missing mandatory field "not-after" (1)')
    nb = _time(m[0], f"{where}.not-before") if 0 in m else None
    na = _time(m[1], f"{where}.not-after")
    if nb is not None and na < nb:
        raise _malformed(where, "not-after is before not-before")
    return Validity(nb, na)


# --------------------------------------------------------------------------------------------
# CoRIM


@dataclass
class Signer:
    name: str
    uri: str | None
    key_id: str | None  # kid, hex
    key_thumbprint: str  # SHA-256 of the verifying key's SubjectPublicKeyInfo, hex
    algorithm: str
    certificate: str | None = None  # the x5chain signing certificate's subject, when one decided

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uri": self.uri,
            "kid": self.key_id,
            "key_sha256": self.key_thumbprint,
            "alg": self.algorithm,
            "certificate": self.certificate,
        }


@dataclass
class Inspection:
    """What :func:`inspect` found. ``valid`` only when ``reasons`` is empty."""

    reasons: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    kind: str = "unknown"
    corim_id: str | None = None
    profile: str | None = None
    scheme: str | None = None
    signer: Signer | None = None
    validity: Validity | None = None
    signer_validity: Validity | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    comids: list[Comid] = field(default_factory=list)
    sha256: str = ""
    profile_rules: bool = True  # False: the profile came in an earlier draft's form

    @property
    def valid(self) -> bool:
        return not self.reasons

    @property
    def reference_values(self) -> list[tuple[Comid, ValueTriple]]:
        return [(c, t) for c in self.comids for t in c.reference_values]

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "reasons": [{"code": c, "message": m} for c, m in self.reasons],
            "warnings": [{"code": c, "message": m} for c, m in self.warnings],
            "kind": self.kind,
            "sha256": self.sha256,
            "corim_id": self.corim_id,
            "profile": self.profile,
            "scheme": self.scheme,
            "signer": self.signer.to_json() if self.signer else None,
            "validity": self.validity.to_json() if self.validity else None,
            "signer_validity": self.signer_validity.to_json() if self.signer_validity else None,
            "entities": self.entities,
            "counts": {
                "comids": len(self.comids),
                "reference_triples": sum(len(c.reference_values) for c in self.comids),
                "endorsed_triples": sum(len(c.endorsed_values) for c in self.comids),
                "attest_key_triples": sum(len(c.attest_keys) for c in self.comids),
                "identity_triples": sum(len(c.identity_keys) for c in self.comids),
            },
            "reference_values": [
                {"comid": c.tag_id, **t.to_json()} for c, t in self.reference_values
            ],
        }


def _profile(v: Any, where: str) -> str:
    tag, inner = _tagged(v)
    if tag == TAG_URI:
        return _uri(v, where)
    if tag == TAG_OID:
        return "oid:" + _oid(inner, where)
    if tag is None and isinstance(inner, str) and inner:  # untagged URI text (older cocli)
        return inner
    raise _malformed(where, f"profile must be a #6.32 URI or #6.111 OID, got {type(v).__name__}")


def _parse_unsigned(m: Any, result: Inspection, *, check_keys: bool, legacy: bool = False) -> None:  # noqa: C901 - one walk over the grammar, case by case
    where = "corim"
    m = _map(m, where)
    if 0 not in m:
        raise _malformed(where, 'missing mandatory field "id" (0)')
    if 1 not in m:
        raise _malformed(where, 'missing mandatory field "tags" (1)')
    result.corim_id = _tag_id(m[0], f"{where}.id")
    if 3 in m:
        prof = m[3]
        if legacy and isinstance(prof, list | tuple) and len(prof) == 1:  # older cocli: [+ profile]
            prof = prof[0]
            result.warnings.append(
                (
                    "corim_profile_unchecked",
                    "the profile is in the list form of earlier drafts: its rules are not applied",
                )
            )
            result.profile_rules = False
        result.profile = _profile(prof, f"{where}.profile")
    if 2 in m:
        for i, loc in enumerate(_list(m[2], f"{where}.dependent-rims", nonempty=True)):
            lw = f"{where}.dependent-rims[{i}]"
            lm = _map(loc, lw)
            if 0 not in lm:
                raise _malformed(lw, 'missing mandatory field "href" (0)')
            hrefs = lm[0] if isinstance(lm[0], list | tuple) else [lm[0]]
            for h in _list(hrefs, f"{lw}.href", nonempty=True):
                _uri(h, f"{lw}.href")
            if 1 in lm:
                _digest(lm[1], f"{lw}.thumbprint")
    if 4 in m:
        result.validity = _validity(m[4], f"{where}.rim-validity")
    if 5 in m:
        result.entities = _entities(m[5], f"{where}.entities")
    tags = _list(m[1], f"{where}.tags")
    if not tags:
        raise _malformed(f"{where}.tags", "tags validation failed: no tags")
    for i, t in enumerate(tags):
        tw = f"{where}.tags[{i}]"
        if legacy and isinstance(t, bytes):  # older cocli: each tag's CBOR as a byte string
            try:
                inner = _cbor.loads(t)
            except CborError as e:
                raise Invalid(e.code, f"{tw}: {e.message}") from None
            if isinstance(inner, cbor2.CBORTag) and inner.tag in (
                TAG_COSWID,
                507,
                TAG_COTS,
            ):  # 507: CoTS then
                _map(inner.value, tw)
                continue
            if isinstance(inner, cbor2.CBORTag) and inner.tag == TAG_COMID:
                inner = inner.value
            comid = parse_comid(inner, f"{tw}(comid)")
            if check_keys:
                _check_comid_keys(comid, f"{tw}(comid)")
            result.comids.append(comid)
            continue
        if not isinstance(t, cbor2.CBORTag):
            raise _malformed(tw, "each tag is a #6.505 CoSWID, #6.506 CoMID or #6.508 CoTS")
        content = _bytes(t.value, tw)
        if not content:
            raise _malformed(tw, "empty tag")
        if t.tag == TAG_COMID:
            try:
                decoded = _cbor.loads(content)
            except CborError as e:
                raise Invalid(e.code, f"{tw}: {e.message}") from None
            comid = parse_comid(decoded, f"{tw}(comid)")
            if check_keys:
                _check_comid_keys(comid, f"{tw}(comid)")
            result.comids.append(comid)
        elif t.tag in (TAG_COSWID, TAG_COTS):
            try:
                _map(_cbor.loads(content), f"{tw}")
            except CborError as e:
                raise Invalid(e.code, f"{tw}: {e.message}") from None
        else:
            raise _malformed(tw, f"unknown tag {t.tag} (expected 505, 506 or 508)")


def _check_comid_keys(comid: Comid, where: str) -> None:
    for i, kt in enumerate(comid.attest_keys + comid.identity_keys):
        for j, k in enumerate(kt.keys):
            _check_crypto_key(k, f"{where}.key-triple[{i}].keys[{j}]")
    for i, vt in enumerate(comid.reference_values + comid.endorsed_values):
        for j, meas in enumerate(vt.measurements):
            for k in (meas.cryptokeys or []) + (meas.authorized_by or []):
                _check_crypto_key(k, f"{where}.value-triple[{i}].measurements[{j}]")


# --------------------------------------------------------------------------------------------
# keys and COSE_Sign1


PublicKey = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)


def _b64url(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"JWK {what} is not a string")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(data: bytes) -> PublicKey:
    """A signer's public key from PEM (public key, private key or certificate), DER, or a JWK.

    Raises ``ValueError`` with a message when the bytes are none of these. A JWK's private
    part, when present, is ignored.
    """
    text = data.strip()
    key: Any
    if text.startswith(b"{"):
        try:
            jwk = json.loads(text)
        except ValueError:
            raise ValueError("key is not valid JSON") from None
        if not isinstance(jwk, dict):
            raise ValueError("JWK is not an object")
        kty = jwk.get("kty")
        if kty == "EC":
            curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
            curve = curves.get(jwk.get("crv", ""))
            if curve is None:
                raise ValueError(f"JWK curve {jwk.get('crv')!r} is not supported")
            size = (curve.key_size + 7) // 8
            x, y = _b64url(jwk.get("x"), "x"), _b64url(jwk.get("y"), "y")
            if len(x) != size or len(y) != size:
                raise ValueError("JWK x / y have the wrong length for the curve")
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
        elif kty == "OKP":
            crv, x = jwk.get("crv"), _b64url(jwk.get("x"), "x")
            if crv == "Ed25519":
                key = ed25519.Ed25519PublicKey.from_public_bytes(x)
            elif crv == "Ed448":
                key = ed448.Ed448PublicKey.from_public_bytes(x)
            else:
                raise ValueError(f"JWK curve {crv!r} is not supported")
        elif kty == "RSA":
            n = int.from_bytes(_b64url(jwk.get("n"), "n"), "big")
            e = int.from_bytes(_b64url(jwk.get("e"), "e"), "big")
            key = rsa.RSAPublicNumbers(e, n).public_key()
        else:
            raise ValueError(f"JWK key type {kty!r} is not supported")
        return key  # type: ignore[no-any-return]
    loaders: list[Callable[[], Any]] = []
    if b"-----BEGIN CERTIFICATE-----" in text:
        loaders.append(lambda: x509.load_pem_x509_certificate(text).public_key())
    elif b"PRIVATE KEY-----" in text:
        loaders.append(lambda: serialization.load_pem_private_key(text, password=None).public_key())
    elif text.startswith(b"-----"):
        loaders.append(lambda: serialization.load_pem_public_key(text))
    else:
        loaders.append(lambda: serialization.load_der_public_key(data))
        loaders.append(lambda: x509.load_der_x509_certificate(data).public_key())
    for load in loaders:
        try:
            key = load()
        except (ValueError, TypeError):
            continue
        if isinstance(key, PublicKey):
            return key
        raise ValueError(f"key type {type(key).__name__} cannot verify a CoRIM")
    raise ValueError("key is not a PEM or DER public key, certificate or JWK")


def load_anchors(data: bytes) -> list[x509.Certificate]:
    """Trust anchors (CA certificates) from PEM (one or more) or DER; ``ValueError`` if none."""
    try:
        certs = (
            x509.load_pem_x509_certificates(data)
            if b"-----BEGIN" in data
            else [x509.load_der_x509_certificate(data)]
        )
    except ValueError as e:
        raise ValueError(f"not a PEM or DER certificate: {e}") from None
    for cert in certs:
        try:
            if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise ValueError(f"{cert.subject.rfc4514_string()} is not a CA certificate")
        except x509.ExtensionNotFound:
            raise ValueError(
                f"{cert.subject.rfc4514_string()} is not a CA certificate (no basicConstraints)"
            ) from None
    return certs


def _key_sha256(key: PublicKey) -> str:
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _verify_signature(alg: int, key: PublicKey, signature: bytes, message: bytes) -> None:
    name, digest, kind = _COSE_ALGS[alg]
    try:
        if kind == "ec":
            if (
                not isinstance(key, ec.EllipticCurvePublicKey)
                or key.curve.name != _EC_CURVE_FOR_ALG[alg]
            ):
                raise Invalid(
                    "corim_signer_untrusted", f"{name} needs an EC key on {_EC_CURVE_FOR_ALG[alg]}"
                )
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                raise Invalid(
                    "signature_malformed",
                    f"{name} signature is {len(signature)} bytes, expected {2 * size}",
                )
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            assert digest is not None
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(digest))
        elif kind == "okp":
            if not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
                raise Invalid("corim_signer_untrusted", "EdDSA needs an Ed25519 or Ed448 key")
            key.verify(signature, message)
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise Invalid("corim_signer_untrusted", f"{name} needs an RSA key")
            if key.key_size < 2048:
                raise Invalid("corim_signer_untrusted", "RSA keys below 2048 bits are refused")
            assert digest is not None
            key.verify(
                signature,
                message,
                padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size),
                digest,
            )
    except InvalidSignature:
        raise Invalid(
            "corim_signature_invalid", "the CoRIM's COSE_Sign1 signature does not verify"
        ) from None


def _chain_key(
    x5chain: list[x509.Certificate], anchors: list[x509.Certificate], at: dt.datetime | None
) -> tuple[PublicKey, str]:
    """The signing certificate's key, once its x5chain leads to one of ``anchors`` at ``at``
    (RFC 5280 path validation by cryptography's verifier: signatures, validity, CA constraints
    and path lengths). The leaf must not be a CA and, when it says, may sign (digitalSignature)."""
    from cryptography.x509 import verification as xv

    if not x5chain:
        raise Invalid(
            "corim_signer_untrusted",
            "no --key, and the CoRIM carries no x5chain to check against a trust anchor",
        )
    if at is None:
        raise Invalid("usage", "checking an x5chain needs the time (at)")
    leaf = x5chain[0]
    try:
        bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise Invalid(
                "corim_signer_untrusted", "the x5chain's signing certificate is a CA certificate"
            )
    except x509.ExtensionNotFound:
        pass
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise Invalid(
                "corim_signer_untrusted",
                "the x5chain's signing certificate may not sign (keyUsage)",
            )
    except x509.ExtensionNotFound:
        pass
    verifier = (
        xv.PolicyBuilder()
        .store(xv.Store(anchors))
        .time(at)
        .extension_policies(
            ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=xv.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, x5chain[1:])
    except xv.VerificationError as e:
        raise Invalid(
            "corim_signer_untrusted",
            f"the x5chain does not lead to a trusted CA at {_jsonable(at)}: {e}",
        ) from None
    key = leaf.public_key()
    if not isinstance(key, PublicKey):
        raise Invalid(
            "corim_signer_untrusted",
            f"the signing certificate's key ({type(key).__name__}) cannot verify a CoRIM",
        )
    return key, leaf.subject.rfc4514_string()


def _parse_signed(  # noqa: C901 - one walk over the grammar, case by case
    sign1: Any,
    result: Inspection,
    key: PublicKey | None,
    anchors: list[x509.Certificate] | None = None,
    at: dt.datetime | None = None,
) -> None:
    where = "COSE_Sign1"
    if not isinstance(sign1, list | tuple) or len(sign1) != 4:
        raise _malformed(where, "expected [protected, unprotected, payload, signature]")
    protected_raw, unprotected, payload, signature = sign1
    protected_raw = _bytes(protected_raw, f"{where}.protected")
    _map(unprotected, f"{where}.unprotected")
    if payload is None:
        raise Invalid("corim_malformed", f"{where}: detached payloads are not supported")
    payload = _bytes(payload, f"{where}.payload")
    signature = _bytes(signature, f"{where}.signature")
    if not protected_raw:
        raise Invalid("corim_malformed", f"{where}: missing mandatory protected header")
    try:
        protected = _cbor.loads(protected_raw, max_depth=8)
    except CborError as e:
        raise Invalid("corim_malformed", f"{where}.protected: {e.message}") from None
    protected = _map(protected, f"{where}.protected")
    # 1. headers
    alg = protected.get(1)
    if alg is None:
        raise Invalid("corim_malformed", f"{where}: protected header lacks alg (1)")
    if alg not in _COSE_ALGS:
        raise Invalid("algorithm_unsupported", f"{where}: COSE algorithm {alg!r} is not supported")
    if 3 not in protected:
        raise Invalid(
            "corim_content_type", "processing COSE headers: missing mandatory content type"
        )
    if protected[3] != CONTENT_TYPE:
        raise Invalid(
            "corim_content_type",
            f"processing COSE headers: expecting content type {CONTENT_TYPE!r}, got {protected[3]!r}",
        )
    kid = protected.get(4)
    if kid is not None and not isinstance(kid, bytes):
        raise Invalid("corim_malformed", f"{where}: kid must be bytes")
    if 8 not in protected:
        raise Invalid(
            "corim_meta_invalid", "processing COSE headers: missing mandatory corim-meta (8)"
        )
    meta_raw = protected[8]
    if not isinstance(meta_raw, bytes):
        raise Invalid("corim_meta_invalid", "corim-meta must be a byte string holding CBOR")
    try:
        meta = _map(_cbor.loads(meta_raw, max_depth=8), "corim-meta")
        if 0 not in meta:
            raise _malformed("corim-meta", 'missing mandatory field "signer" (0)')
        signer = _map(meta[0], "corim-meta.signer")
        if 0 not in signer:
            raise _malformed("corim-meta.signer", 'missing mandatory field "signer-name" (0)')
        signer_name = _text(signer[0], "corim-meta.signer.signer-name")
        if not signer_name:
            raise _malformed("corim-meta.signer.signer-name", "empty signer name")
        signer_uri = _uri(signer[1], "corim-meta.signer.signer-uri") if 1 in signer else None
        if 1 in meta:
            result.signer_validity = _validity(meta[1], "corim-meta.signature-validity")
    except (CborError, Invalid) as e:
        raise Invalid("corim_meta_invalid", f"corim-meta: {e.args[-1]}") from None
    x5chain: list[x509.Certificate] = []
    if 33 in protected:
        chain = protected[33]
        ders = chain if isinstance(chain, list | tuple) else [chain]
        if not ders or len(ders) > 8:
            raise Invalid("corim_malformed", f"{where}.x5chain: 1 to 8 certificates")
        for i, der in enumerate(ders):
            try:
                x5chain.append(
                    x509.load_der_x509_certificate(
                        _bytes(der, f"{where}.x5chain[{i}]", nonempty=True)
                    )
                )
            except ValueError as e:
                raise Invalid("corim_malformed", f"{where}.x5chain[{i}]: {e}") from None
    # 2. payload: a tagged unsigned CoRIM, or an untagged corim-map (older cocli)
    try:
        body = _cbor.loads(payload)
    except CborError as e:
        raise Invalid(e.code, f"failed CBOR decoding of unsigned CoRIM: {e.message}") from None
    if isinstance(body, cbor2.CBORTag):
        if body.tag != TAG_UNSIGNED_CORIM:
            raise Invalid("corim_tag_unknown", f"payload carries tag {body.tag}, expected 501")
        body = body.value
        legacy = False
    else:
        legacy = True
        result.warnings.append(
            (
                "corim_untagged",
                "the signed payload is an untagged corim-map (older cocli), read as tag 501",
            )
        )
    _parse_unsigned(body, result, check_keys=True, legacy=legacy)
    # 3. signature, with the key the caller trusts, or the x5chain's leaf if it leads to a trusted CA
    certificate = None
    if key is None and anchors:
        key, certificate = _chain_key(x5chain, anchors, at)
    if key is None:
        raise Invalid(
            "corim_signer_untrusted",
            "a signed CoRIM needs the signer's key (--key) or a trust anchor for its x5chain",
        )
    message = cbor2.dumps(["Signature1", protected_raw, b"", payload])
    _verify_signature(alg, key, signature, message)
    result.signer = Signer(
        name=signer_name,
        uri=signer_uri,
        key_id=kid.hex() if isinstance(kid, bytes) else None,
        key_thumbprint=_key_sha256(key),
        algorithm=_COSE_ALGS[alg][0],
        certificate=certificate,
    )


def inspect(  # noqa: C901 - one walk over the grammar, case by case
    data: bytes,
    *,
    key: PublicKey | None = None,
    scheme: str | None = None,
    at: dt.datetime | None = None,
    anchors: list[x509.Certificate] | None = None,
    chain_at: dt.datetime | None = None,
) -> Inspection:
    """Read a CoRIM, signed CoRIM or CoMID and judge it; never raises for bad input.

    ``key``: the signer's public key the caller trusts; or ``anchors``: CA certificates the
    signed CoRIM's x5chain must lead to, at ``chain_at`` (default ``at``).

    ``scheme``: when given, a CoRIM whose profile belongs to another scheme is refused.
    ``at``: when given, a CoRIM or signature outside its validity at that time is refused
    (``corim_expired`` / ``corim_not_yet_valid``).
    """
    from veritee.refvalues import profiles

    result = Inspection(sha256=hashlib.sha256(data).hexdigest(), scheme=scheme)
    try:
        if scheme is not None and scheme not in profiles.SCHEMES:
            raise Invalid("usage", f"unknown scheme {scheme!r}")
        if len(data) > MAX_CORIM_BYTES:
            raise Invalid("oversized", f"input is larger than {MAX_CORIM_BYTES} bytes")
        try:
            top = _cbor.loads(data)
        except CborError as e:
            raise Invalid(e.code, e.message) from None
        seen: list[int] = []
        while (
            isinstance(top, cbor2.CBORTag)
            and top.tag in (TAG_CORIM, TAG_SIGNED_CORIM)
            and len(seen) < 2
        ):
            seen.append(top.tag)
            top = top.value
        if isinstance(top, cbor2.CBORTag) and top.tag == TAG_COSE_SIGN1:
            result.kind = "signed-corim"
            _parse_signed(top.value, result, key, anchors, chain_at or at)
        elif TAG_SIGNED_CORIM in seen:
            raise Invalid(
                "corim_tag_unknown", "a #6.502 signed CoRIM must hold a COSE_Sign1 (#6.18)"
            )
        elif isinstance(top, cbor2.CBORTag) and top.tag == TAG_UNSIGNED_CORIM:
            result.kind = "unsigned-corim"
            _parse_unsigned(top.value, result, check_keys=True)
        elif seen:
            raise Invalid("corim_tag_unknown", "a #6.500 CoRIM must hold #6.501 or #6.502")
        elif isinstance(top, cbor2.CBORTag) and top.tag == TAG_COMID:
            result.kind = "comid"
            content = _bytes(top.value, "comid", nonempty=True)
            try:
                result.comids.append(parse_comid(_cbor.loads(content)))
            except CborError as e:
                raise Invalid(e.code, f"comid: {e.message}") from None
        elif isinstance(top, cbor2.CBORTag):
            raise Invalid(
                "corim_tag_unknown",
                f"tag {top.tag} is not a CoRIM (501), signed CoRIM (COSE_Sign1, 18) or CoMID (506)",
            )
        elif isinstance(top, Mapping) and isinstance(top.get(1), list):
            result.kind = "unsigned-corim (untagged)"
            raise Invalid("corim_untagged", "did not see unsigned CoRIM tag (#6.501)")
        elif isinstance(top, Mapping):
            result.kind = "comid"
            result.comids.append(parse_comid(top))
        elif isinstance(top, list | tuple) and len(top) == 4:
            raise Invalid(
                "corim_tag_unknown", "invalid COSE_Sign1_Tagged object: tag 18 is missing"
            )
        else:
            raise Invalid("corim_tag_unknown", f"a {type(top).__name__} is not a CoRIM or CoMID")
        profiles.check(result, scheme)
        if at is not None:
            for what, validity in (
                ("CoRIM", result.validity),
                ("signature", result.signer_validity),
            ):
                if validity is None:
                    continue
                if at > validity.not_after:
                    raise Invalid(
                        "corim_expired",
                        f"the {what} validity ended {_jsonable(validity.not_after)}",
                    )
                if validity.not_before is not None and at < validity.not_before:
                    raise Invalid(
                        "corim_not_yet_valid",
                        f"the {what} validity begins {_jsonable(validity.not_before)}",
                    )
    except Invalid as e:
        result.reasons.append((e.code, e.message))
    return result


def sign(
    payload: bytes,
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    *,
    signer_name: str,
    signer_uri: str | None = None,
    key_id: bytes | None = None,
) -> bytes:
    """Sign an unsigned CoRIM (its tag-501 bytes) as a COSE_Sign1 (tag 18): ES256/384/512 by
    the EC key's curve, or EdDSA; the protected header carries the content type and corim-meta
    (the signer's name and URI), as the draft asks."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": -7, "secp384r1": -35, "secp521r1": -36}.get(key.curve.name)
        if alg is None:
            raise ValueError(f"curve {key.curve.name} cannot sign a CoRIM")
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        alg = -8
    else:
        raise ValueError("a CoRIM is signed with an EC (P-256/384/521) or Ed25519 key")
    signer: dict[int, Any] = {0: signer_name}
    if signer_uri:
        signer[1] = cbor2.CBORTag(TAG_URI, signer_uri)
    protected: dict[int, Any] = {1: alg, 3: CONTENT_TYPE, 8: cbor2.dumps({0: signer})}
    if key_id is not None:
        protected[4] = key_id
    prot = cbor2.dumps(protected)
    tbs = cbor2.dumps(["Signature1", prot, b"", payload])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest = _COSE_ALGS[alg][1]
        assert digest is not None
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(digest)))
        size = (key.curve.key_size + 7) // 8
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        signature = key.sign(tbs)
    return bytes(cbor2.dumps(cbor2.CBORTag(TAG_COSE_SIGN1, [prot, {}, payload, signature])))
