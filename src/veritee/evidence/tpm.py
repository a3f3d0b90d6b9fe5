"""TPM 2.0 quotes of a (v)TPM-backed VM, as go-tpm-tools' ``attest.Attestation`` carries them.

Layout (protobuf, ``proto/attest.proto`` and ``proto/tpm.proto`` of google/go-tpm-tools; the
wire format is decoded here by hand, only the fields below are read):

* ``Attestation``: 1 ``ak_pub`` (TPMT_PUBLIC), 2 ``quotes`` (repeated ``Quote``), 3 ``event_log``,
  6 ``ak_cert`` (DER), 7 ``intermediate_certs`` (repeated DER);
* ``Quote``: 1 ``quote`` (TPMS_ATTEST), 2 ``raw_sig`` (TPMT_SIGNATURE), 3 ``pcrs`` (``PCRs``);
* ``PCRs``: 1 ``hash`` (TPM_ALG_ID), 2 ``pcrs`` (map<uint32, bytes>: entries of 1 index, 2 value).

TPM structures (TPM 2.0 Library, Part 2; big-endian): TPMT_PUBLIC (RSA or ECC), TPMS_ATTEST with
``magic`` TPM_GENERATED_VALUE and ``type`` TPM_ST_ATTEST_QUOTE, TPMS_QUOTE_INFO (PCR selection
and ``pcrDigest``), TPMT_SIGNATURE (RSASSA, RSAPSS or ECDSA).

:func:`verify` checks, each step raising on failure:

1. the AK certificate chains to a pinned Google TPM EK/AK root (:data:`PINNED_ROOTS`, SHA-256 of
   the root's DER; intermediates from the evidence or the collateral) or to another root the
   caller trusts (``trust``: a veritee domain CA that enrolled the TPM, :mod:`veritee.enrollment`),
   every certificate valid at ``at``, and certifies exactly the AK public key ``ak_pub``; under
   any root but the pinned ones the AK certificate must carry the TCG AIK extended key usage
   (2.23.133.8.3), so that no other certificate of that CA (an admission certificate for a
   software key) passes for an AK certificate (claim ``ak_root``: the root's SHA-256);
   The AK certificate binds the key only: of the rest of ``ak_pub`` (a TPMT_PUBLIC) nothing
   vouches for ``authPolicy`` or the attribute bits that do not make an AK, but ``ak_pub`` must
   at least describe an AK (checked first, without signature work): a restricted signing key
   created in the TPM (fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign; no
   decrypt; no reserved bit set), else ``ak_attributes_invalid``;
2. every quote is signed by the AK and is a quote (magic, type); its ``qualifiedSigner`` is not
   checked: it depends on the AK's place in the TPM hierarchy, which the evidence does not give;
3. every quote's ``pcrDigest`` is the hash (the signature's hash) of the PCR values it carries,
   in the order of its PCR selection, and selects exactly those PCRs;
4. all quotes carry the same ``extraData`` (the nonce: veritee binds its report data there);
5. when the attestation carries a TCG event log (:mod:`veritee.evidence.tcg_log`), replaying it
   gives the quoted value of every PCR it extends, in every quoted bank it has digests for,
   and every event whose digest the PC Client PFP defines over its data hashes to it (claim
   ``event_log``: ``verified``, ``events``, the extended ``pcrs``, the ``banks``, and
   ``entries``: per event its PCR, type, ``data_verified`` and text, as ``unverified_text``
   where the data is not bound to the digest).

The PCR values are the claims (the events themselves are not interpreted). ``measurement`` is
SHA-384 over the SHA-256 bank's PCRs 0-9 in order (firmware, boot loader, kernel and command
line on a GRUB-booted VM), or None when that bank lacks one of them; policies pin it or single
PCRs (claims ``pcr0`` ... ``pcr23``, SHA-256 bank).
"""

from __future__ import annotations

import functools
import hashlib
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veritee import certs, tpm2
from veritee._lru import Lru
from veritee.collateral import Collateral
from veritee.errors import MalformedError, UsageError, VerificationError
from veritee.evidence import tcg_log
from veritee.evidence._reader import Reader
from veritee.evidence.claims import VerifiedEvidence
from veritee.evidence.nitro import verify_chain

__all__ = [
    "GOOGLE_EK_AK_CA_ROOT_SHA256",
    "GOOGLE_TPM_EK_ROOT_1_SHA256",
    "PINNED_ROOTS",
    "TpmAttestation",
    "clear_caches",
    "detect",
    "parse",
    "parse_claims",
    "relying_party_roots",
    "verify",
]

#: Google "tpm_ek_v1_cloud_host_root" (2018-2118): roots the AK certificates of GCE vTPMs.
GOOGLE_TPM_EK_ROOT_1_SHA256 = "9bd5285f8fb18502a7947e621ffd470266f49fcd3b73e19a190f690ad32a7caf"
#: Google Cloud "EK/AK CA Root" (2022-2122), for newer GCE VMs.
GOOGLE_EK_AK_CA_ROOT_SHA256 = "594759594b9b61524f6c8ef668f7177f7b9066bc0674f2f49fe9e052be78beb2"
PINNED_ROOTS = frozenset({GOOGLE_TPM_EK_ROOT_1_SHA256, GOOGLE_EK_AK_CA_ROOT_SHA256})
#: TCG "tcg-kp-AIKCertificate": required of AK certificates under roots other than the pinned.
AIK_CERTIFICATE_EKU = x509.ObjectIdentifier("2.23.133.8.3")

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
ALG_RSA, ALG_ECC, ALG_NULL = 0x0001, 0x0023, 0x0010
ALG_RSASSA, ALG_RSAPSS, ALG_ECDSA = 0x0014, 0x0016, 0x0018
HASHES: dict[int, tuple[str, type[hashes.HashAlgorithm], int]] = {
    0x0004: ("sha1", hashes.SHA1, 20),
    0x000B: ("sha256", hashes.SHA256, 32),
    0x000C: ("sha384", hashes.SHA384, 48),
    0x000D: ("sha512", hashes.SHA512, 64),
}
CURVES: dict[int, ec.EllipticCurve] = {0x0003: ec.SECP256R1(), 0x0004: ec.SECP384R1()}
MAX_QUOTES = 8
MAX_PCRS = 24
MAX_CHAIN = 5
_MEASURED_PCRS = range(10)
_DER, _SPKI = Encoding.DER, PublicFormat.SubjectPublicKeyInfo


# --- protobuf wire format ----------------------------------------------------------------------


def _varint(data: bytes, i: int, field: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data):
            raise MalformedError("truncated protobuf varint", field=field, offset=i)
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise MalformedError("protobuf varint too long", field=field, offset=i)


def _fields(data: bytes, what: str) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field: varints as int, length-delimited as bytes; fixed
    32/64-bit fields (not used by these messages) are skipped."""
    i, end = 0, len(data)
    while i < end:
        key = data[i]  # one-byte varints (every key and most sizes here) read inline
        if key < 0x80:
            i += 1
        else:
            key, i = _varint(data, i, what)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise MalformedError("protobuf field number 0", field=what, offset=i)
        if wire == 0:
            value, i = _varint(data, i, what)
            yield number, value
        elif wire == 2:
            if i < end and data[i] < 0x80:
                size = data[i]
                i += 1
            elif i + 1 < end and data[i + 1] < 0x80:  # two bytes: certificates, quotes, keys
                size = (data[i] & 0x7F) | data[i + 1] << 7
                i += 2
            else:
                size, i = _varint(data, i, what)
            if size > end - i:
                raise MalformedError(f"truncated protobuf field {number}", field=what, offset=i)
            yield number, data[i : i + size]
            i += size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            if i > len(data):
                raise MalformedError("truncated protobuf fixed field", field=what, offset=i)
        else:
            raise MalformedError(f"unsupported protobuf wire type {wire}", field=what, offset=i)


def _bytes_field(value: int | bytes, field: str) -> bytes:
    if not isinstance(value, bytes):
        raise MalformedError("expected a length-delimited field", field=field)
    return value


# --- TPM structures (big-endian) ---------------------------------------------------------------


class _Be:
    """Big-endian reads over the bounds-checked :class:`Reader`."""

    def __init__(self, data: bytes, what: str) -> None:
        self.r, self.what = Reader(data), what

    def u(self, n: int, field: str) -> int:
        return int.from_bytes(self.r.bytes(n, f"{self.what}.{field}"), "big")

    def tpm2b(self, field: str) -> bytes:
        return self.r.bytes(self.u(2, field + ".size"), f"{self.what}.{field}")

    def end(self) -> None:
        if self.r.remaining:
            raise MalformedError(f"{self.r.remaining} trailing bytes", field=self.what)


#: (nameAlg, key, whether it is an RSA key, SHA-256 of the TPMT_PUBLIC in hex): all a pure
#: function of the TPMT_PUBLIC's bytes.
_AkKey = tuple[int, rsa.RSAPublicKey | ec.EllipticCurvePublicKey, bool, str]
#: AK public keys by their exact TPMT_PUBLIC bytes (a key object costs more than the parse);
#: a TPMT_PUBLIC that does not parse raises and is not kept.
_AK_KEYS: Lru[bytes, _AkKey] = Lru(1024)


def _public_key(blob: bytes) -> _AkKey:
    """(nameAlg, key, is RSA, SHA-256 hex) of a TPMT_PUBLIC."""
    hit = _AK_KEYS.get(blob)
    if hit is None:
        name_alg, key = _public_key_uncached(blob)
        hit = (name_alg, key, isinstance(key, rsa.RSAPublicKey), hashlib.sha256(blob).hexdigest())
        _AK_KEYS.put(bytes(blob), hit)
    return hit


def _public_key_uncached(blob: bytes) -> tuple[int, rsa.RSAPublicKey | ec.EllipticCurvePublicKey]:
    b = _Be(blob, "ak_pub")
    kind, name_alg = b.u(2, "type"), b.u(2, "nameAlg")
    b.u(4, "objectAttributes")
    b.tpm2b("authPolicy")
    if b.u(2, "symmetric") != ALG_NULL:
        b.u(2, "symmetric.keyBits")
        b.u(2, "symmetric.mode")
    if b.u(2, "scheme") != ALG_NULL:
        b.u(2, "scheme.hashAlg")
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    try:
        if kind == ALG_RSA:
            b.u(2, "keyBits")
            exponent = b.u(4, "exponent") or 65537
            modulus = int.from_bytes(b.tpm2b("unique.rsa"), "big")
            key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
        elif kind == ALG_ECC:
            curve = CURVES.get(b.u(2, "curveID"))
            if b.u(2, "kdf") != ALG_NULL:
                b.u(2, "kdf.hashAlg")
            x, y = b.tpm2b("unique.x"), b.tpm2b("unique.y")
            if curve is None:
                raise MalformedError("unsupported ECC curve", field="ak_pub.curveID")
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()
        else:
            raise MalformedError(f"unsupported key type 0x{kind:04x}", field="ak_pub.type")
    except ValueError as e:
        raise MalformedError(f"AK public key is invalid: {e}", field="ak_pub") from None
    b.end()
    if name_alg not in HASHES:
        raise MalformedError(f"unsupported nameAlg 0x{name_alg:04x}", field="ak_pub.nameAlg")
    return name_alg, key


class _PcrSet:
    """A ``PCRs`` message that parsed, and what the checks and the claims read of it, a pure
    function of its bytes: kept by them in :data:`_PCR_SETS` (the PCR values of a boot come
    again with every quote of that boot). Read only: whatever leaves it is a copy."""

    __slots__ = ("bank", "claims", "hexes", "indices", "joined", "measurement", "values")

    def __init__(self, bank: int, values: dict[int, bytes]) -> None:
        self.bank, self.values = bank, values
        #: The PCR indices in order, and their values concatenated in that order (what the
        #: quote's ``pcrDigest`` hashes: it is recomputed from them on every verification).
        self.indices = indices = tuple(sorted(values))
        ordered = list(map(values.__getitem__, indices))
        self.joined = b"".join(ordered)
        hexes = list(map(bytes.hex, ordered))
        #: The bank's claim ``pcrs[bank]`` and, in the SHA-256 bank, the claims ``pcrN``.
        self.hexes = dict(zip(map(_PCR_KEYS.__getitem__, indices), hexes, strict=True))
        self.claims = dict(zip(map(_PCR_CLAIMS.__getitem__, indices), hexes, strict=True))
        #: SHA-384 over PCRs 0-9 of the SHA-256 bank; None unless the bank has every one of
        #: them (no stand-in value to pin). The indices are sorted and distinct: PCRs 0-9 are
        #: all there iff they come first.
        self.measurement: str | None = None
        if bank == 0x000B and self.indices[: len(_MEASURED_PCRS)] == tuple(_MEASURED_PCRS):
            self.measurement = hashlib.sha384(self.joined[: 32 * len(_MEASURED_PCRS)]).hexdigest()


#: Parsed PCRs messages by their exact bytes; a message that does not parse raises and is not
#: kept.
_PCR_SETS: Lru[bytes, _PcrSet] = Lru(256)


def _pcr_set(blob: bytes, field: str) -> _PcrSet:
    hit = _PCR_SETS.get(blob)
    if hit is None:
        hit = _PcrSet(*_pcrs(blob, field))
        _PCR_SETS.put(bytes(blob), hit)
    return hit


@dataclass(frozen=True)
class Quote:
    """One quote: the signed TPMS_ATTEST bytes, what they say, the signature and the PCRs."""

    attest: bytes
    signer_name: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    selection: tuple[tuple[int, tuple[int, ...]], ...]
    pcr_digest: bytes
    sig_alg: int
    sig_hash: int
    signature: bytes
    bank: int
    pcrs: dict[int, bytes]
    #: What the checks and claims read of ``pcrs`` (the same values, computed once per bytes).
    pcr_set: _PcrSet = field(compare=False, repr=False)


_ATTEST_HEAD = struct.Struct(">IH")
_CLOCK_INFO = struct.Struct(
    ">QIIBQI"
)  # clock, resetCount, restartCount, safe, firmwareVersion, count
_U16 = struct.Struct(">H")
_SELECTION = struct.Struct(">HB")


@functools.lru_cache(maxsize=256)
def _selected(bitmap: bytes) -> tuple[int, ...]:
    """The PCR indices a TPMS_PCR_SELECTION bitmap selects (a fleet has few bitmaps)."""
    return tuple(i for i in range(len(bitmap) * 8) if bitmap[i >> 3] >> (i & 7) & 1)


#: What :func:`_attest_fields` reads of a TPMS_ATTEST, in order (the fields of :class:`Quote`
#: from ``signer_name`` to ``pcr_digest``).
_ATTEST_FIELDS = ("signer_name", "extra_data", "clock", "reset_count", "restart_count", "safe",
                  "firmware_version", "selection", "pcr_digest")  # fmt: skip
_Attest = tuple[
    bytes, bytes, int, int, int, bool, int, tuple[tuple[int, tuple[int, ...]], ...], bytes
]


def _attest(blob: bytes, field: str) -> dict[str, Any]:
    """A TPMS_ATTEST of a quote, by field name (:data:`_ATTEST_FIELDS`)."""
    return dict(zip(_ATTEST_FIELDS, _attest_fields(blob, field), strict=True))


def _attest_fields(blob: bytes, field: str) -> _Attest:
    """A TPMS_ATTEST of a quote, read with ``struct`` over the bytes; anything out of the
    ordinary (magic, type, a bound, a count, trailing bytes) is judged by :func:`_attest_checked`,
    which names it."""
    try:
        out = _attest_fast(blob)
    except (struct.error, IndexError):
        out = None
    return out if out is not None else _attest_checked(blob, field)


def _attest_fast(blob: bytes) -> _Attest | None:
    magic, kind = _ATTEST_HEAD.unpack_from(blob, 0)
    if magic != TPM_GENERATED_VALUE or kind != TPM_ST_ATTEST_QUOTE:
        return None
    (n,) = _U16.unpack_from(blob, 6)
    signer = blob[8 : 8 + n]
    if len(signer) != n:
        return None
    at = 8 + n
    (n,) = _U16.unpack_from(blob, at)
    extra = blob[at + 2 : at + 2 + n]
    if len(extra) != n:
        return None
    at += 2 + n
    clock, reset, restart, safe, firmware, count = _CLOCK_INFO.unpack_from(blob, at)
    at += _CLOCK_INFO.size
    if count > len(HASHES):
        return None
    selection = []
    for _ in range(count):
        alg, size = _SELECTION.unpack_from(blob, at)
        bitmap = blob[at + 3 : at + 3 + size]
        if len(bitmap) != size:
            return None
        at += 3 + size
        selection.append((alg, _selected(bitmap)))
    (n,) = _U16.unpack_from(blob, at)
    digest = blob[at + 2 : at + 2 + n]
    if len(digest) != n or at + 2 + n != len(blob):
        return None
    return (signer, extra, clock, reset, restart, bool(safe), firmware, tuple(selection), digest)


def _attest_checked(blob: bytes, field: str) -> _Attest:
    b = _Be(blob, field)
    if b.u(4, "magic") != TPM_GENERATED_VALUE:
        raise VerificationError("quote is not TPM-generated (magic)", code="tpm_not_generated")
    if b.u(2, "type") != TPM_ST_ATTEST_QUOTE:
        raise VerificationError("attestation is not a quote (type)", code="tpm_not_quote")
    head = (b.tpm2b("qualifiedSigner"), b.tpm2b("extraData"), b.u(8, "clock"),
            b.u(4, "resetCount"), b.u(4, "restartCount"), bool(b.u(1, "safe")),
            b.u(8, "firmwareVersion"))  # fmt: skip
    selection = []
    count = b.u(4, "pcrSelect.count")
    if count > len(HASHES):
        raise MalformedError("too many PCR selections", field=f"{field}.pcrSelect")
    for _ in range(count):
        alg, size = b.u(2, "pcrSelect.hash"), b.u(1, "pcrSelect.sizeofSelect")
        bitmap = b.r.bytes(size, f"{field}.pcrSelect.pcrSelect")
        indices = tuple(i for i in range(size * 8) if bitmap[i // 8] >> (i % 8) & 1)
        selection.append((alg, indices))
    digest = b.tpm2b("pcrDigest")
    b.end()
    return (*head, tuple(selection), digest)


_SIG_HEAD = struct.Struct(">HHH")


def _signature(blob: bytes, field: str) -> tuple[int, int, bytes]:
    """(sigAlg, hashAlg, signature as `cryptography` verifies it: raw RSA or DER ECDSA)."""
    if len(blob) >= 6:  # the usual RSA signature, read inline; anything else below
        alg, hash_alg, n = _SIG_HEAD.unpack_from(blob)
        if (alg == ALG_RSASSA or alg == ALG_RSAPSS) and len(blob) == 6 + n and hash_alg in HASHES:
            return alg, hash_alg, blob[6:]
    return _signature_checked(blob, field)


def _signature_checked(blob: bytes, field: str) -> tuple[int, int, bytes]:
    b = _Be(blob, field)
    alg, hash_alg = b.u(2, "sigAlg"), b.u(2, "hash")
    if alg in (ALG_RSASSA, ALG_RSAPSS):
        sig = b.tpm2b("sig")
    elif alg == ALG_ECDSA:
        r, s = b.tpm2b("signatureR"), b.tpm2b("signatureS")
        sig = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
    else:
        raise MalformedError(
            f"unsupported signature algorithm 0x{alg:04x}", field=f"{field}.sigAlg"
        )
    b.end()
    if hash_alg not in HASHES:
        raise MalformedError(f"unsupported signature hash 0x{hash_alg:04x}", field=f"{field}.hash")
    return alg, hash_alg, sig


def _pcrs(blob: bytes, field: str) -> tuple[int, dict[int, bytes]]:
    """The ``PCRs`` message: bank and values. The usual encoding (one-byte keys and sizes,
    ``hash`` then entries ``{index, value}`` in this order) is read inline; any other goes to
    :func:`_pcrs_checked`, which also names what is wrong."""
    fast = _pcrs_fast(blob)
    return fast if fast is not None else _pcrs_checked(blob, field)


def _pcrs_fast(blob: bytes) -> tuple[int, dict[int, bytes]] | None:
    end = len(blob)
    if end < 2 or blob[0] != 0x08 or blob[1] >= 0x80:
        return None
    bank, i = blob[1], 2
    size = HASHES[bank][2] if bank in HASHES else -1
    if size < 0:
        return None
    # Every entry ``0x12 size+4 0x08 index 0x12 size digest`` (go-tpm-tools writes them so):
    # the columns of their headers are compared at once.
    step = size + 6
    body = blob[2:]
    count = len(body) // step
    if count * step == len(body) and body[0::step] == b"\x12" * count and body[2::step] == b"\x08" * count \
            and body[1::step] == bytes((size + 4,)) * count and body[4::step] == b"\x12" * count \
            and body[5::step] == bytes((size,)) * count:  # fmt: skip
        indices = body[3::step]
        uniform = dict(zip(indices, map(body.__getitem__, _value_slices(step, count)), strict=True))
        if len(uniform) == count and (not indices or max(indices) < MAX_PCRS):  # none repeated
            return bank, uniform
        return None
    values: dict[int, bytes] = {}
    while i < end:
        # 0x12 len [0x08 index] 0x12 size digest
        if end - i < 2 or blob[i] != 0x12 or blob[i + 1] >= 0x80:
            return None
        n, i = blob[i + 1], i + 2
        stop = i + n
        if stop > end:
            return None
        index = 0
        if n >= 2 and blob[i] == 0x08 and blob[i + 1] < 0x80:
            index, i = blob[i + 1], i + 2
        if (
            stop - i != size + 2
            or blob[i] != 0x12
            or blob[i + 1] != size
            or index >= MAX_PCRS
            or index in values
        ):
            return None
        values[index] = blob[i + 2 : stop]
        i = stop
    return bank, values


@functools.lru_cache(maxsize=64)
def _value_slices(step: int, count: int) -> tuple[slice, ...]:
    """Where the values of ``count`` uniform PCR entries of ``step`` bytes are."""
    return tuple(slice(j * step + 6, (j + 1) * step) for j in range(count))


def _pcrs_checked(blob: bytes, field: str) -> tuple[int, dict[int, bytes]]:
    bank, values = 0, {}
    for number, value in _fields(blob, field):
        if number == 1 and isinstance(value, int):
            bank = value
        elif number == 2:
            index, digest = 0, b""  # proto3 defaults of an absent key / value
            for n, v in _fields(_bytes_field(value, field), f"{field}.entry"):
                if n == 1 and isinstance(v, int):
                    index = v
                elif n == 2:
                    digest = _bytes_field(v, f"{field}.entry")
            if not 0 <= index < MAX_PCRS or index in values:
                raise MalformedError(f"bad or repeated PCR index {index}", field=field)
            values[index] = digest
    if bank not in HASHES:
        raise MalformedError(f"unsupported PCR bank 0x{bank:04x}", field=f"{field}.hash")
    size = HASHES[bank][2]
    if any(len(v) != size for v in values.values()):
        raise MalformedError(f"a PCR value is not {size} bytes", field=field)
    return bank, values


def _quote_parts(blob: bytes, field: str) -> tuple[bytes, bytes, bytes]:
    """A ``Quote`` message's ``quote``, ``raw_sig`` and ``pcrs``. The usual encoding (each once,
    in this order, sizes of one or two bytes) is split inline; any other goes to :func:`_fields`
    (the last of a repeated field wins, unknown fields are skipped, a missing one is named)."""
    out = []
    i, end = 0, len(blob)
    for key in (0x0A, 0x12, 0x1A):
        if end - i < 3 or blob[i] != key:
            break
        size = blob[i + 1]
        if size < 0x80:
            i += 2
        elif blob[i + 2] < 0x80:
            size, i = (size & 0x7F) | blob[i + 2] << 7, i + 3
        else:
            break
        if size > end - i:
            break
        out.append(blob[i : i + size])
        i += size
    else:
        if i == end:
            return out[0], out[1], out[2]
    parts: dict[int, bytes] = {}
    for number, value in _fields(blob, field):
        if number in (1, 2, 3):
            parts[number] = _bytes_field(value, field)
    for number, name in ((1, "quote"), (2, "raw_sig"), (3, "pcrs")):
        if number not in parts:
            raise MalformedError(f"{name} is missing", field=f"{field}.{name}")
    return parts[1], parts[2], parts[3]


def _quote(blob: bytes, field: str) -> Quote:
    attest, raw_sig, pcrs = _quote_parts(blob, field)
    head, sig = _attest_fields(attest, f"{field}.quote"), _signature(raw_sig, f"{field}.raw_sig")
    values = _pcr_set(pcrs, f"{field}.pcrs")
    return Quote(attest, *head, *sig, values.bank, dict(values.values), values)


@dataclass(frozen=True)
class TpmAttestation:
    """A parsed go-tpm-tools attestation (nothing verified)."""

    ak_pub: bytes
    quotes: tuple[Quote, ...]
    ak_cert: bytes | None
    intermediates: tuple[bytes, ...]
    event_log: bytes


def parse(data: bytes) -> TpmAttestation:
    """Parse strictly enough that every later check has its input (no signatures checked)."""
    return _parse(data)[0]


def _parse(data: bytes) -> tuple[TpmAttestation, _AkKey]:
    """:func:`parse`, and what ``ak_pub`` is as a key (:func:`_public_key`)."""
    ak_pub, ak_cert, event_log = b"", None, b""
    quotes: list[Quote] = []
    intermediates: list[bytes] = []
    for number, value in _fields(data, "attestation"):
        if number == 1:
            ak_pub = _bytes_field(value, "ak_pub")
        elif number == 2:
            if len(quotes) == MAX_QUOTES:
                raise MalformedError(f"more than {MAX_QUOTES} quotes", field="quotes")
            quotes.append(_quote(_bytes_field(value, "quotes"), f"quotes[{len(quotes)}]"))
        elif number == 3:
            event_log = _bytes_field(value, "event_log")
        elif number == 6:
            ak_cert = _bytes_field(value, "ak_cert")
        elif number == 7:
            intermediates.append(_bytes_field(value, "intermediate_certs"))
    if not ak_pub:
        raise MalformedError("ak_pub is missing", field="ak_pub")
    if not quotes:
        raise MalformedError("no quotes", field="quotes")
    key = _public_key(ak_pub)  # parses, or raises naming the field
    return TpmAttestation(ak_pub, tuple(quotes), ak_cert, tuple(intermediates[:MAX_CHAIN]),
                          event_log), key  # fmt: skip


def detect(data: bytes) -> bool:
    """Field 1 (length-delimited) first, holding a TPMT_PUBLIC of an RSA or ECC key."""
    if data[:1] != b"\x0a":
        return False
    try:
        size, i = _varint(data, 1, "ak_pub")
    except MalformedError:
        return False
    return 10 < size <= len(data) - i and data[i : i + 2] in (b"\x00\x01", b"\x00\x23")


#: PCR index -> its key in ``pcrs`` and its claim name.
_PCR_KEYS = tuple(str(i) for i in range(MAX_PCRS))
_PCR_CLAIMS = tuple(f"pcr{i}" for i in range(MAX_PCRS))


def _claims(att: TpmAttestation, ak_sha256: str | None = None) -> dict[str, Any]:
    """The claims (``ak_sha256``: of ``ak_pub``, computed here when not given)."""
    banks = {HASHES[q.bank][0]: dict(q.pcr_set.hexes) for q in att.quotes}
    sha256 = next((q.pcr_set for q in att.quotes if q.bank == 0x000B), None)
    first = att.quotes[0]
    claims: dict[str, Any] = {
        "platform": "tpm",
        "measurement": None if sha256 is None else sha256.measurement,
        "report_data": first.extra_data.hex(),
        "debug": False,
        "ak_pub_sha256": ak_sha256 or hashlib.sha256(att.ak_pub).hexdigest(),
        "pcrs": banks,
        "firmware_version": first.firmware_version,
        "reset_count": first.reset_count,
        "restart_count": first.restart_count,
        "clock_safe": first.safe,
        "event_log": {"bytes": len(att.event_log), "verified": False},
    }
    if sha256 is not None:
        claims.update(sha256.claims)
    return claims


def parse_claims(data: bytes) -> dict[str, Any]:
    """UNVERIFIED claims, for display."""
    return _claims(parse(data))


def _load(der: bytes, name: str) -> x509.Certificate:
    return certs.load_der_certificate(der, name)


@dataclass(frozen=True)
class _AkChain:
    """An AK certificate chain that verified: for the ``ak_pub`` it certified, to ``root``,
    every certificate valid within ``span``."""

    ak_pub: bytes
    root: str
    span: tuple[datetime, datetime]


#: Verified AK chains by (roots, AK certificate, intermediates, the collateral's candidates):
#: the same bytes chain the same way, so only the time is checked again on a hit.
_AK_CHAINS: Lru[tuple[Any, ...], _AkChain] = Lru(1024)


def clear_caches() -> None:
    """Forget verified AK chains, AK keys, parsed PCRs and checked event logs (tests,
    benchmarks)."""
    _AK_CHAINS.clear()
    _CANDIDATES.clear()
    _AK_KEYS.clear()
    _PCR_SETS.clear()
    _EVENT_LOGS.clear()


#: Collateral object -> (that object, the SHA-256 of its path candidates' DERs). Keyed by
#: identity (the entry holds the object, so its id is not reused while it lives): collateral
#: is loaded once and passed again with every verification. Emptied when full.
_CANDIDATES: dict[int, tuple[Collateral, str]] = {}


def _candidates_digest(collateral: Collateral) -> str:
    """SHA-256 over the DER of every path candidate, each prefixed by its length (so a key of
    :data:`_AK_CHAINS` names the whole of every certificate); once per collateral object."""
    entry = _CANDIDATES.get(id(collateral))
    if entry is not None and entry[0] is collateral:
        return entry[1]
    h = hashlib.sha256()
    for cert in collateral.path_candidates:
        der = cert.public_bytes(_DER)
        h.update(len(der).to_bytes(4, "big") + der)
    digest = h.hexdigest()
    if len(_CANDIDATES) >= 64:
        _CANDIDATES.clear()
    _CANDIDATES[id(collateral)] = (collateral, digest)
    return digest


def _ak_chain(
    att: TpmAttestation, collateral: Collateral, at: datetime, roots: frozenset[str], key: Any
) -> str:
    """Step 1: the AK certificate, chained to a pinned root, certifying ``key`` (ak_pub) as an
    AK; returns the root's SHA-256. The cheap checks (windows, CA constraints, the certified
    key, the AIK usage) refuse before any signature (:func:`verify_chain`). A chain that
    verified before for the same ``ak_pub`` is reused while ``at`` is inside its windows."""
    if att.ak_cert is None:
        raise VerificationError("no AK certificate: the AK is not certified by a trusted CA",
                                code="ak_not_certified")  # fmt: skip
    # The whole of every candidate certificate is in the key (the SHA-256 of their DERs):
    # keyed by signatures alone, a changed TBS behind the same signature was a hit.
    cache_key = (roots, att.ak_cert, att.intermediates, _candidates_digest(collateral))
    hit = _AK_CHAINS.get(cache_key)
    if hit is not None and hit.ak_pub == att.ak_pub and hit.span[0] <= at <= hit.span[1]:
        return hit.root
    chain = _ak_chain_uncached(att, collateral, at, roots, key)
    certs_ = [c for _, c in chain]
    span = (max(c.not_valid_before_utc for c in certs_), min(c.not_valid_after_utc for c in certs_))
    root = hashlib.sha256(certs_[-1].public_bytes(_DER)).hexdigest()
    _AK_CHAINS.put(cache_key, _AkChain(att.ak_pub, root, span))
    return root


def _ak_chain_uncached(
    att: TpmAttestation, collateral: Collateral, at: datetime, roots: frozenset[str], key: Any
) -> list[tuple[str, x509.Certificate]]:
    assert att.ak_cert is not None
    leaf = _load(att.ak_cert, "ak_cert")
    pool = [_load(d, f"intermediate_certs[{i}]") for i, d in enumerate(att.intermediates)]
    pool += list(collateral.path_candidates)  # candidates only: `roots` decides what is trusted
    chain = [("ak_cert", leaf)]
    while len(chain) <= MAX_CHAIN:
        top = chain[-1][1]
        fp = hashlib.sha256(top.public_bytes(_DER)).hexdigest()
        if fp in roots:
            break
        with warnings.catch_warnings():
            # Google's TPM CA names have attributes longer than X.520's 64 characters.
            warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
            issuer = next((c for c in pool if c.subject == top.issuer and c != top), None)
        if issuer is None:
            raise VerificationError(
                "the AK certificate does not chain to a pinned TPM root (no issuer for "
                f"{chain[-1][0]}; give the intermediates and root as collateral)",
                code="root_not_pinned",
            )
        chain.append((f"issuer of {chain[-1][0]}", issuer))
    else:
        raise VerificationError("AK certificate chain is too long", code="chain_invalid")
    also: list[VerificationError] = []
    if fp not in PINNED_ROOTS:
        try:
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = None
        if eku is None or AIK_CERTIFICATE_EKU not in eku:
            also.append(VerificationError(
                "the AK certificate lacks the TCG AIK extended key usage (2.23.133.8.3): "
                "it certifies no TPM attestation key",
                code="ak_not_certified",
            ))  # fmt: skip
    if not _same_key(leaf.public_key(), key):
        also.append(
            VerificationError(
                "the AK certificate certifies another key than ak_pub", code="ak_mismatch"
            )
        )
    verify_chain(list(reversed(chain)), at, then=("quote_signatures", "event_log"), also=also)
    return chain


def relying_party_roots(collateral: Collateral) -> frozenset[str]:
    """The pinned roots plus every self-signed CA certificate in ``collateral``: for callers whose
    collateral is the relying party's own (``veritee verify --collateral domain_ca.pem``), never
    for collateral an attester supplied."""
    out = set(PINNED_ROOTS)
    for cert in collateral.certificates:
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if ca and cert.issuer == cert.subject:
            try:
                cert.verify_directly_issued_by(cert)
            except (ValueError, TypeError, InvalidSignature):
                continue
            out.add(hashlib.sha256(cert.public_bytes(_DER)).hexdigest())
    return frozenset(out)


def _same_key(a: Any, b: Any) -> bool:
    return bool(a.public_bytes(_DER, _SPKI) == b.public_bytes(_DER, _SPKI))


_PKCS1V15 = padding.PKCS1v15()


#: One (immutable) instance of each hash algorithm, by TPM_ALG_ID.
_HASH_ALGORITHMS: dict[int, hashes.HashAlgorithm] = {a: h[1]() for a, h in HASHES.items()}


def _verify_quote(q: Quote, key: Any, index: int, is_rsa: bool) -> None:
    """Steps 2 and 3 for one quote."""
    algorithm = _HASH_ALGORITHMS[q.sig_hash]
    try:
        if is_rsa:
            if q.sig_alg == ALG_RSASSA:
                key.verify(q.signature, q.attest, _PKCS1V15, algorithm)
            elif q.sig_alg == ALG_RSAPSS:
                pss = padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO)
                key.verify(q.signature, q.attest, pss, algorithm)
            else:
                raise InvalidSignature
        elif q.sig_alg == ALG_ECDSA:
            key.verify(q.signature, q.attest, ec.ECDSA(algorithm))
        else:
            raise InvalidSignature
    except InvalidSignature:
        raise VerificationError(f"{_where(q, index)}: signature does not verify with the AK",
                                code="signature_invalid") from None  # fmt: skip
    values = q.pcr_set
    given = (q.bank, values.indices)
    selection = q.selection
    if not (values.indices and len(selection) == 1 and selection[0] == given):  # else: the rule
        if [(alg, idx) for alg, idx in selection if idx] != [given]:
            raise VerificationError(
                f"{_where(q, index)}: the quote selects other PCRs than those given",
                code="tpm_pcr_selection",
            )
    if tcg_log.HASH_FUNCS[q.sig_hash](values.joined).digest() != q.pcr_digest:
        raise VerificationError(f"{_where(q, index)}: PCR values do not match the signed pcrDigest",
                                code="tpm_pcr_mismatch")  # fmt: skip


#: TPMA_OBJECT bits an AK must have (TPM 2.0 Part 2 §8.3), and those it must not.
_AK_REQUIRED = (tpm2.ATTR_FIXED_TPM | tpm2.ATTR_FIXED_PARENT | tpm2.ATTR_SENSITIVE_DATA_ORIGIN
                | tpm2.ATTR_RESTRICTED | tpm2.ATTR_SIGN)  # fmt: skip
#: Defined TPMA_OBJECT bits: 1 fixedTPM, 2 stClear, 4 fixedParent, 5 sensitiveDataOrigin,
#: 6 userWithAuth, 7 adminWithPolicy, 10 noDA, 11 encryptedDuplication, 16 restricted,
#: 17 decrypt, 18 sign, 19 x509sign; every other bit is reserved and must be clear.
_DEFINED_ATTRIBUTES = sum(1 << b for b in (1, 2, 4, 5, 6, 7, 10, 11, 16, 17, 18, 19))


def _check_ak_attributes(ak_pub: bytes) -> None:
    """``ak_pub`` describes an AK: a restricted signing key created in the TPM (``ak_pub`` has
    parsed, so its attributes are at offset 4)."""
    (attributes,) = struct.unpack_from(">I", ak_pub, 4)
    if attributes & ~_DEFINED_ATTRIBUTES:
        raise VerificationError(f"ak_pub sets reserved TPMA_OBJECT bits ({attributes:#010x})",
                                code="ak_attributes_invalid")  # fmt: skip
    if attributes & _AK_REQUIRED != _AK_REQUIRED or attributes & tpm2.ATTR_DECRYPT:
        raise VerificationError(
            "ak_pub is not a restricted signing key created in the TPM (fixedTPM, fixedParent, "
            f"sensitiveDataOrigin, restricted, sign; no decrypt): attributes {attributes:#010x}",
            code="ak_attributes_invalid",
        )


def _where(q: Quote, index: int) -> str:
    return f"quote {index} ({HASHES[q.bank][0]} bank)"


def verify(
    data: bytes, *, collateral: Collateral, at: datetime, trust: Any = None
) -> VerifiedEvidence:
    """Verify a go-tpm-tools attestation at ``at``; return its claims (see the module docstring).

    ``trust``: a set of root SHA-256 fingerprints to pin instead of :data:`PINNED_ROOTS` (see
    :func:`relying_party_roots`).
    """
    if at.tzinfo is None:
        raise UsageError("verification time must be timezone-aware")
    roots = PINNED_ROOTS if trust is None else frozenset(str(t).lower() for t in trust)
    att, (_name_alg, key, is_rsa, ak_sha256) = _parse(data)
    _check_ak_attributes(att.ak_pub)
    root = _ak_chain(att, collateral, at, roots, key)
    quotes = att.quotes
    for i, q in enumerate(quotes):
        _verify_quote(q, key, i, is_rsa)
    if len(quotes) > 1:
        if len({q.extra_data for q in quotes}) != 1:
            raise VerificationError("the quotes carry different extraData (nonces)",
                                    code="tpm_nonce_mismatch")  # fmt: skip
        if len({q.bank for q in quotes}) != len(quotes):
            raise MalformedError("two quotes of the same PCR bank", field="quotes")
    claims = _claims(att, ak_sha256)
    claims["ak_root"] = root
    if att.event_log:
        claims["event_log"] = _check_event_log(att)
    return VerifiedEvidence(format="tpm", claims=claims, verified_at=at)


class _CheckedLog:
    """A TCG event log that parsed and whose data-bound events hash to their digests, with what
    step 5 reads of it: a pure function of its bytes, so it is kept by their SHA-256 (the log
    of a boot is sent again with every quote of that boot)."""

    __slots__ = ("_replays", "entries", "events", "extended", "log", "whole_banks")

    def __init__(self, log: tcg_log.TcgLog) -> None:
        self.log = log
        self.events = len(log.events)
        self.extended = sorted({e.index for e in log.events if e.type != tcg_log.EV_NO_ACTION})
        whole = set(log.sizes)
        for e in log.events:
            whole.intersection_update(e.digests)
        #: The banks every event has a digest of.
        self.whole_banks = frozenset(whole)
        self.entries = [tcg_log.event_claims(e) for e in log.events]
        self._replays: dict[int, list[bytes]] = {}

    def replay(self, bank: int) -> list[bytes]:
        out = self._replays.get(bank)
        if out is None:
            out = self._replays[bank] = self.log.replay(bank, MAX_PCRS)
        return out


_EVENT_LOGS: Lru[bytes, _CheckedLog] = Lru(256)


def _checked_log(event_log: bytes) -> _CheckedLog:
    key = hashlib.sha256(event_log).digest()
    hit = _EVENT_LOGS.get(key)
    if hit is None:
        log = tcg_log.parse(event_log, max_index=MAX_PCRS - 1)
        tcg_log.check_bound_events(log)
        hit = _CheckedLog(log)
        _EVENT_LOGS.put(key, hit)
    return hit


def _check_event_log(att: TpmAttestation) -> dict[str, Any]:
    """Step 5: replaying the event log gives the quoted value of every PCR it extends, in
    every quoted bank it has digests for. Returns the ``event_log`` claim."""
    checked = _checked_log(att.event_log)
    log, extended = checked.log, checked.extended
    banks = []
    for q in att.quotes:
        if q.bank not in log.sizes or q.bank not in tcg_log.HASH_NAMES:
            continue
        if q.bank not in checked.whole_banks:
            raise MalformedError("an event lacks a digest of a quoted bank", field="event_log")
        replayed = checked.replay(q.bank)
        wrong = [i for i in extended if replayed[i] != q.pcrs.get(i)]
        if wrong:
            raise VerificationError(
                f"event log replay disagrees with the quoted {HASHES[q.bank][0]} PCRs {wrong}",
                code="event_log_mismatch",
            )
        banks.append(HASHES[q.bank][0])
    if not banks:
        raise VerificationError("the event log has no digests of any quoted bank",
                                code="event_log_mismatch")  # fmt: skip
    return {"bytes": len(att.event_log), "verified": True, "events": checked.events,
            "pcrs": list(extended), "banks": banks,
            "entries": [dict(e) for e in checked.entries]}  # fmt: skip
