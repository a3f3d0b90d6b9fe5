"""Malformed X.509 certificates and CRLs made from real ones, by rewriting their DER.

``cryptography`` checks some parts of a certificate when it loads it (the version) and others
only when they are first used (extensions, the public key, the signature algorithm), each with
its own exception type. :func:`certificate_mutations` gives one malformed variant per such part,
so a test can put each where a verifier meets certificates and see only veritee's errors::

    for name, der in certificate_mutations(real_der).items():
        with pytest.raises((MalformedError, VerificationError)):
            verify(evidence_with(der))
"""

from __future__ import annotations

__all__ = ["certificate_mutations", "children", "crl_mutations", "encode", "read"]


def read(b: bytes, i: int = 0) -> tuple[int, bytes, int]:
    """(tag, value, next offset) of the DER TLV at ``i``."""
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        size = n & 0x7F
        n, i = int.from_bytes(b[i : i + size], "big"), i + size
    return tag, b[i : i + n], i + n


def children(b: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(b):
        tag, value, i = read(b, i)
        out.append((tag, value))
    return out


def encode(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + value


def _seq(items: list[tuple[int, bytes]]) -> bytes:
    return b"".join(encode(t, v) for t, v in items)


def _signed(tbs: list[tuple[int, bytes]], alg: tuple[int, bytes], sig: tuple[int, bytes]) -> bytes:
    return encode(0x30, encode(0x30, _seq(tbs)) + encode(*alg) + encode(*sig))


def _extension_variants(
    items: list[tuple[int, bytes]], index: int
) -> dict[str, list[tuple[int, bytes]]]:
    """Duplicate the first extension; or give every extension an undecodable value."""
    _, seq, _ = read(items[index][1])
    exts = children(seq)
    if not exts:
        return {}
    dup = list(items)
    dup[index] = (items[index][0], encode(0x30, _seq([*exts, exts[0]])))
    garbled = [
        (t, _seq([(pt, b"\x05\x00" if pt == 0x04 else pv) for pt, pv in children(v)]))
        for t, v in exts
    ]
    bad = list(items)
    bad[index] = (items[index][0], encode(0x30, _seq(garbled)))
    return {"duplicate_extension": dup, "undecodable_extension_values": bad}


def certificate_mutations(der: bytes) -> dict[str, bytes]:
    """Malformed variants of the certificate ``der``, by name (signatures left as they were)."""
    _, body, _ = read(der)
    tbs, alg, sig = children(body)
    items = children(tbs[1])
    v1 = items[0][0] != 0xA0  # no explicit version: serial first
    serial = 0 if v1 else 1
    out: dict[str, bytes] = {}
    if not v1:
        bad = list(items)
        bad[0] = (0xA0, encode(0x02, b"\x05"))  # version 6: cryptography's InvalidVersion
        out["invalid_version"] = _signed(bad, alg, sig)
    ext = [i for i, (t, _) in enumerate(items) if t == 0xA3]
    if ext:
        out.update({k: _signed(v, alg, sig) for k, v in _extension_variants(items, ext[0]).items()})
    spki = serial + 5
    algo = children(items[spki][1])[0]
    bad = list(items)
    bad[spki] = (0x30, encode(*algo) + encode(0x03, b"\x00\x04\x01\x02"))  # not a point
    out["undecodable_public_key"] = _signed(bad, alg, sig)
    out["unknown_signature_algorithm"] = _signed(items, (0x30, encode(0x06, b"\x2a\x03\x04")), sig)
    bad = list(items)
    bad[serial] = (0x02, b"\x80" + b"\x01" * 30)  # negative, too long
    out["bad_serial"] = _signed(bad, alg, sig)
    bad = list(items)
    bad[serial + 3] = (0x30, encode(0x17, b"99999999999999Z") + encode(0x17, b"zzzz"))
    out["bad_validity"] = _signed(bad, alg, sig)
    out["truncated"] = der[: len(der) // 2]
    out["trailing_garbage"] = der + b"\x00\x01"
    return out


def crl_mutations(der: bytes) -> dict[str, bytes]:
    """Malformed variants of the CRL ``der``, by name."""
    _, body, _ = read(der)
    tbs, alg, sig = children(body)
    items = children(tbs[1])
    out: dict[str, bytes] = {}
    if items[0][0] == 0x02:
        bad = list(items)
        bad[0] = (0x02, b"\x07")
        out["invalid_version"] = _signed(bad, alg, sig)
    ext = [i for i, (t, _) in enumerate(items) if t == 0xA0]
    if ext:
        out.update({k: _signed(v, alg, sig) for k, v in _extension_variants(items, ext[0]).items()})
    out["unknown_signature_algorithm"] = _signed(items, (0x30, encode(0x06, b"\x2a\x03\x04")), sig)
    out["truncated"] = der[: len(der) // 2]
    return out
