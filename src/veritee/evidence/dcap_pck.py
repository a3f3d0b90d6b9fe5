"""The SGX extension of Intel PCK certificates (OID 1.2.840.113741.1.13.1), read from DER.

Intel SGX PCK Certificate and CRL Profile: TCB components, PCESVN, CPUSVN, PCE ID, FMSPC,
SGX type. See :mod:`veritee.evidence.dcap` for how verification uses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from veritee._frozen import maker
from veritee.errors import MalformedError
from veritee.evidence.dcap_quote import SGX_EXTENSIONS_OID

__all__ = [
    "PckExtension",
    "parse_pck_extension",
]

# --- DER helpers for the PCK certificate's SGX extension ------------------------------------


def _oid_body(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, value_start, value_end) of the DER element at ``pos``."""
    if pos + 2 > end:
        raise MalformedError("truncated DER element", field="pck_extension", offset=pos)
    tag, ln = data[pos], data[pos + 1]
    pos += 2
    if ln & 0x80:
        n = ln & 0x7F
        if n == 0 or n > 3 or pos + n > end:
            raise MalformedError("bad DER length", field="pck_extension", offset=pos)
        ln = int.from_bytes(data[pos : pos + n], "big")
        if ln < 0x80 or data[pos] == 0:  # DER: the shortest form only (X.690 10.1)
            raise MalformedError(
                "DER length not in its shortest form", field="pck_extension", offset=pos
            )
        pos += n
    if pos + ln > end:
        raise MalformedError("DER element overruns", field="pck_extension", offset=pos)
    return tag, pos, pos + ln


def _pairs(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int, int]]:
    """SEQUENCE OF SEQUENCE { OID, value } -> {oid body: value tlv}."""
    out: dict[bytes, tuple[int, int, int]] = {}
    pos = start
    while pos < end:
        tag, s, e = _tlv(data, pos, end)
        pos = e
        if tag == 0x30 and s < e:
            oid_tag, os_, oe = _tlv(data, s, e)
            if oid_tag == 0x06 and oe < e:
                value = _tlv(data, oe, e)
                if value[2] == e:
                    if data[os_:oe] in out:  # (one value per OID: none may shadow another)
                        raise MalformedError(
                            "SGX extension item repeated", field="pck_extension", offset=s
                        )
                    out[data[os_:oe]] = value
                    continue
        raise MalformedError(
            "SGX extension item is not {OID, value}", field="pck_extension", offset=s
        )
    return out


def _der_int(data: bytes, tlv: tuple[int, int, int], name: str, tag: int = 0x02) -> int:
    """A small non-negative INTEGER (or, ``tag`` 0x0A, ENUMERATED) in DER: the shortest form
    (X.690 8.3.2), no sign bit (an SVN, a type), at most 4 octets."""
    t, s, e = tlv
    if (
        t != tag
        or e - s > 4
        or e == s
        or data[s] & 0x80
        or (e - s > 1 and data[s] == 0 and not data[s + 1] & 0x80)
    ):
        kind = "ENUMERATED" if tag == 0x0A else "INTEGER"
        raise MalformedError(
            f"{name} is not a small non-negative DER {kind}",
            field=f"pck_extension.{name}",
            offset=s,
        )
    return int.from_bytes(data[s:e], "big")


@dataclass(frozen=True)
class PckExtension:
    """SGX extensions of a PCK certificate (OID 1.2.840.113741.1.13.1, PCK Cert Profile)."""

    ppid: bytes
    tcb_components: tuple[int, ...]
    pce_svn: int
    cpu_svn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int


_make_ext = maker(PckExtension)
_SUB = {n: _oid_body(f"{SGX_EXTENSIONS_OID}.{n}") for n in range(1, 8)}
_TCB_SUB = {n: _oid_body(f"{SGX_EXTENSIONS_OID}.2.{n}") for n in range(1, 19)}


#: A non-negative INTEGER's content of one or two octets in DER (the shortest form, no sign bit).
_ONE, _TWO = b"[\\x00-\\x7f]", b"(?:\\x00[\\x80-\\xff]|[\\x01-\\x7f][\\x00-\\xff])"


def _int_item(oid: bytes, capture: bool = True) -> bytes:
    """One ``SEQUENCE { OID, INTEGER }`` of a 1- or 2-byte non-negative DER INTEGER, its content
    captured."""
    o = re.escape(b"\x06\x0b" + oid)
    one, two = (b"(" + _ONE + b")", b"(" + _TWO + b")") if capture else (_ONE, _TWO)
    return b"\\x30(?:\\x10" + o + b"\\x02\\x01" + one + b"|\\x11" + o + b"\\x02\\x02" + two + b")"


def _tcb_pattern(capture: bool) -> bytes:
    return (
        b"".join(_int_item(_TCB_SUB[n], capture) for n in range(1, 18))
        + b"\\x30\\x1f"
        + re.escape(b"\x06\x0b" + _TCB_SUB[18])
        + (b"\\x04\\x10(.{16})" if capture else b"\\x04\\x10.{16}")
    )


#: The TCB SEQUENCE's content as Intel writes it: components 1-16 and PCESVN as 1- or 2-byte
#: INTEGERs, then the 16-byte CPUSVN, in that order, nothing else. For such content the generic
#: reader below gives the same values (tested on every byte of mutated extensions); any other
#: content goes to the generic reader.
_TCB_RE = re.compile(_tcb_pattern(capture=True), re.DOTALL)


def _tcb_values(g: tuple[bytes | None, ...]) -> tuple[tuple[int, ...], int, bytes]:
    """Components, PCESVN and CPUSVN from the 35 groups of a :data:`_TCB_RE` match (each
    INTEGER is its 1-byte group or else its 2-byte group)."""
    ones = g[0:34:2]
    cpu_svn = g[34]
    assert cpu_svn is not None
    if None not in ones:  # every INTEGER one byte long (the usual case): read in one step
        values = b"".join(ones)  # type: ignore[arg-type]
        return tuple(values[:16]), values[16], cpu_svn
    ints = [
        a[0] if a is not None else int.from_bytes(b, "big")  # type: ignore[arg-type]
        for a, b in zip(ones, g[1:34:2], strict=True)
    ]
    return tuple(ints[:16]), ints[16], cpu_svn


def _tcb_fast(der: bytes, start: int, end: int) -> tuple[tuple[int, ...], int, bytes] | None:
    m = _TCB_RE.fullmatch(der, start, end)
    if m is None:
        return None
    return _tcb_values(m.groups())


def _item_re(n: int, value: bytes) -> bytes:
    """The content of ``SEQUENCE { OID sgx.n, value }``: the OID, then the ``value`` pattern."""
    return re.escape(b"\x06\x0a" + _SUB[n]) + value


#: The whole extension as Intel writes it (PCK Cert Profile): PPID, TCB (as :data:`_TCB_RE`),
#: PCE ID, FMSPC, SGX type, in that order, then for a Platform CA leaf PlatformInstanceID and
#: Configuration (read by nobody here: only their framing is checked, as the generic reader
#: does). Every length byte is fixed except the outer SEQUENCE's and the TCB's (two-byte forms,
#: checked after the match). Such an extension reads the same through the generic reader (tested
#: on every one-bit change of real and synthetic extensions); any other goes to it.
_EXT_RE = re.compile(
    b"\\x30\\x82(..)"
    + b"\\x30\\x1e"
    + _item_re(1, b"\\x04\\x10(.{16})")
    + b"\\x30\\x82(..)"
    + _item_re(2, b"\\x30\\x82(..)(")
    + _tcb_pattern(capture=False)  # (read from its one group below)
    + b")\\x30\\x10"
    + _item_re(3, b"\\x04\\x02(..)")
    + b"\\x30\\x14"
    + _item_re(4, b"\\x04\\x06(.{6})")
    + b"\\x30\\x0f"
    + _item_re(5, b"\\x0a\\x01(" + _ONE + b")")
    + b"(?:\\x30\\x1e"
    + _item_re(6, b"\\x04\\x10.{16}")
    + b"\\x30\\x44"
    + _item_re(7, b"\\x30\\x36.{54}")
    + b")?",
    re.DOTALL,
)


#: The TCB content's size when its 17 INTEGERs are one byte each (18-byte items), then CPUSVN.
_TCB_ONE_BYTE = 17 * 18 + 33


def _ext_fast(der: bytes) -> PckExtension | None:
    """The extension in Intel's layout (:data:`_EXT_RE`), else None (the generic reader)."""
    m = _EXT_RE.fullmatch(der)
    if m is None:
        return None
    g = m.groups()
    outer, ppid, item2, tcb_len, tcb = g[0], g[1], g[2], g[3], g[4]
    n = len(tcb)
    if (
        int.from_bytes(outer, "big") != len(der) - 4
        or int.from_bytes(item2, "big") != n + 16
        or int.from_bytes(tcb_len, "big") != n
    ):
        return None
    if n == _TCB_ONE_BYTE:  # every INTEGER one byte long: each value closes its 18-byte item
        values = tcb[17 : 17 * 18 : 18]
        comps, pce_svn, cpu_svn = tuple(values[:16]), values[16], tcb[-16:]
    else:
        fast = _tcb_fast(tcb, 0, n)  # (the same pattern, matched: read from its groups)
        assert fast is not None
        comps, pce_svn, cpu_svn = fast
    return _make_ext(ppid, comps, pce_svn, cpu_svn, g[5], g[6], g[7][0])


def parse_pck_extension(der: bytes) -> PckExtension:
    """Parse the DER value of the SGX extensions; raises :class:`MalformedError`."""
    whole = _ext_fast(der)
    if whole is not None:
        return whole
    tag, s, e = _tlv(der, 0, len(der))
    if tag != 0x30 or e != len(der):
        raise MalformedError("SGX extension is not one SEQUENCE", field="pck_extension", offset=0)
    items = _pairs(der, s, e)

    def need(n: int, name: str) -> tuple[int, int, int]:
        if _SUB[n] not in items:
            raise MalformedError(f"SGX extension lacks {name}", field=f"pck_extension.{name}")
        return items[_SUB[n]]

    def octets(tlv: tuple[int, int, int], name: str, size: int) -> bytes:
        t, vs, ve = tlv
        if t != 0x04 or ve - vs != size:
            raise MalformedError(
                f"{name} is not a {size}-byte OCTET STRING",
                field=f"pck_extension.{name}",
                offset=vs,
            )
        return der[vs:ve]

    ppid = octets(need(1, "ppid"), "ppid", 16)
    t, ts, te = need(2, "tcb")
    fast = _tcb_fast(der, ts, te) if t == 0x30 else None
    if fast is not None:
        comps, pce_svn, cpu_svn = fast
        pce_id = octets(need(3, "pceid"), "pceid", 2)
        fmspc = octets(need(4, "fmspc"), "fmspc", 6)
        sgx_type = _der_int(der, need(5, "sgx_type"), "sgx_type", 0x0A)
        return PckExtension(ppid, comps, pce_svn, cpu_svn, pce_id, fmspc, sgx_type)
    tcb = _pairs(der, ts, te)
    missing = [n for n in _TCB_SUB if _TCB_SUB[n] not in tcb]
    if t != 0x30 or missing:
        raise MalformedError(
            f"SGX TCB lacks components {missing}", field="pck_extension.tcb", offset=ts
        )
    comps = tuple(_der_int(der, tcb[_TCB_SUB[n]], f"tcb.comp{n:02d}") for n in range(1, 17))
    pce_svn = _der_int(der, tcb[_TCB_SUB[17]], "tcb.pcesvn")
    cpu_svn = octets(tcb[_TCB_SUB[18]], "tcb.cpusvn", 16)
    pce_id = octets(need(3, "pceid"), "pceid", 2)
    fmspc = octets(need(4, "fmspc"), "fmspc", 6)
    sgx_type = _der_int(der, need(5, "sgx_type"), "sgx_type", 0x0A)
    return PckExtension(ppid, comps, pce_svn, cpu_svn, pce_id, fmspc, sgx_type)
