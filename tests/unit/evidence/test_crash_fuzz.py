"""Crash fuzzing of every evidence format and of collateral (issue 11, item 12).

Whatever the input, a parser or verifier may raise only veritee's own errors (MalformedError,
VerificationError and their subclasses): never a ``cryptography`` error from a certificate or
CRL inside evidence or collateral (``InvalidVersion``, ``DuplicateExtension``, ``ValueError`` on
a bad encoding), a ``RecursionError`` from deeply nested JSON or CBOR, or a ``TypeError`` from
a value of the wrong type. Each format is fuzzed from a real vector of ../shared/testvectors:
truncated and flipped bytes, every embedded certificate replaced by each malformed variant of
:mod:`tests.fakes.der`, values of the wrong type at any place of a JSON or CBOR document, deep
nesting, and the same for its collateral. Hypothesis runs are derandomized and bounded
(``max_examples``), so the whole file takes a few seconds per format.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import TESTVECTORS
from tests.fakes.der import certificate_mutations, crl_mutations
from tests.fakes.vectors import SAMPLES, sample

from veritee import evidence
from veritee.collateral import Collateral
from veritee.errors import MalformedError, VerificationError

pytestmark = [
    pytest.mark.skipif(not (TESTVECTORS / "manifest.json").is_file(),
                       reason="test vectors absent (../shared/testvectors)"),
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
]  # fmt: skip
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
#: The only errors a parser or verifier may raise on any input.
ALLOWED = (MalformedError, VerificationError)


JSON_FORMATS = ("az-snp-vtpm", "az-tdx-vtpm", "nvidia-gpu")
CBOR_FORMATS = ("nitro", "cca")


def exercise(data: bytes, fmt: str, collateral: Collateral, at: datetime) -> None:
    """parse_claims and verify, in the format and by detection: only veritee's errors."""
    for f in (fmt, "auto"):
        for call in (lambda: evidence.parse_claims(data, format=f),
                     lambda: evidence.verify(data, collateral=collateral, at=at, format=f)):  # fmt: skip
            try:
                call()
            except ALLOWED:
                pass


def test_every_format_has_a_sample() -> None:
    assert set(SAMPLES) == set(evidence.FORMATS)
    for fmt in SAMPLES:
        assert evidence.detect_format(sample(fmt).data) == fmt


# --- bytes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
@FUZZ
@given(data=st.data())
def test_truncated_and_flipped_bytes(fmt: str, data: st.DataObject) -> None:
    s = sample(fmt)
    raw = bytearray(s.data[: data.draw(st.integers(1, len(s.data)), label="length")])
    for _ in range(data.draw(st.integers(0, 4), label="flips")):
        pos = data.draw(st.integers(0, len(raw) - 1), label="position")
        raw[pos] ^= data.draw(st.integers(1, 255), label="xor")
    exercise(bytes(raw), fmt, s.collateral, s.at)


# --- documents: values of the wrong type, deep nesting --------------------------------------------

#: JSON values of every type, small and nested.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(["", "00", "AAAA", "-----BEGIN CERTIFICATE-----"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)  # fmt: skip
CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.binary(max_size=40) | st.text(max_size=20)
    | st.floats(allow_nan=False) | st.builds(cbor2.CBORTag, st.integers(0, 500), st.integers()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.integers(-5, 70000) | st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indices) into a decoded document."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc = copy.copy(doc)
    doc[path[0]] = _replace(doc[path[0]], path[1:], value)
    return doc


@pytest.mark.parametrize("fmt", JSON_FORMATS)
@FUZZ
@given(data=st.data())
def test_json_values_of_any_type_anywhere(fmt: str, data: st.DataObject) -> None:
    s = sample(fmt)
    doc = json.loads(s.data)
    path = data.draw(st.sampled_from(_paths(doc)), label="path")
    value = data.draw(JSON_VALUES, label="value")
    exercise(json.dumps(_replace(doc, path, value)).encode(), fmt, s.collateral, s.at)


@pytest.mark.parametrize("fmt", JSON_FORMATS)
@pytest.mark.parametrize("depth", [100, 5000, 50000])
def test_deeply_nested_json(fmt: str, depth: int) -> None:
    s = sample(fmt)
    doc = json.loads(s.data)
    for key in doc:
        nested = "[" * depth + "]" * depth
        text = json.dumps(dict(doc, **{key: "@@"})).replace('"@@"', nested)
        exercise(text.encode(), fmt, s.collateral, s.at)
    exercise(("[" * depth + "]" * depth).encode(), fmt, s.collateral, s.at)
    exercise(('{"a":' * depth + "1" + "}" * depth).encode(), fmt, s.collateral, s.at)


Patch = Callable[[bytes], bytes]


def _cbor_layers(fmt: str) -> tuple[Any, Callable[..., bytes]]:
    """The innermost decoded claims map of a CBOR format, and ``encode(claims, patch)`` that
    re-encodes changed claims into evidence (``patch`` edits the encoded claims bytes; the
    signatures then no longer hold, but parsing reaches every claim)."""
    raw = sample(fmt).data
    outer = cbor2.loads(raw)
    same: Patch = lambda b: b  # noqa: E731
    if fmt == "nitro":
        arr = list(outer.value if isinstance(outer, cbor2.CBORTag) else outer)

        def encode_nitro(p: Any, patch: Patch = same) -> bytes:
            body = patch(cbor2.dumps(p))
            return bytes(cbor2.dumps(cbor2.CBORTag(18, [arr[0], arr[1], body, arr[3]])))

        return cbor2.loads(arr[2]), encode_nitro
    from veritee.evidence import cca

    tokens = {k: list(cbor2.loads(v).value) for k, v in outer.value.items()}
    claims = {k: cbor2.loads(t[2]) for k, t in tokens.items()}

    def encode_cca(c: Any, patch: Patch = same) -> bytes:
        value = {}
        for k in (cca.PLATFORM, cca.REALM):
            t = tokens[k]
            body = c.get(k, claims[k]) if isinstance(c, dict) else c
            value[k] = cbor2.dumps(cbor2.CBORTag(18, [t[0], t[1], patch(cbor2.dumps(body)), t[3]]))
        return bytes(cbor2.dumps(cbor2.CBORTag(cca.CCA_TOKEN_TAG, value)))

    return claims, encode_cca


@pytest.mark.parametrize("fmt", CBOR_FORMATS)
@FUZZ
@given(data=st.data())
def test_cbor_values_of_any_type_anywhere(fmt: str, data: st.DataObject) -> None:
    s = sample(fmt)
    doc, encode = _cbor_layers(fmt)
    path = data.draw(st.sampled_from(_paths(doc)), label="path")
    value = data.draw(CBOR_VALUES, label="value")
    try:
        blob = encode(_replace(doc, path, value))
    except (TypeError, ValueError, cbor2.CBOREncodeError):
        return  # not encodable (e.g. a map that became a list at the top): nothing to send
    exercise(blob, fmt, s.collateral, s.at)


WRONG_TYPES = [None, 5, -1, 2**70, "s", b"b", [], [1], [b"x"] * 4, {}, {1: 2}, {2: b"x"}, [[]], [{}], 1.5,
               True, cbor2.CBORTag(1, 2)]  # fmt: skip


@pytest.mark.parametrize("fmt", CBOR_FORMATS)
def test_every_claim_of_the_wrong_type(fmt: str) -> None:
    """Each top-level claim (each claim of both CCA tokens) replaced by each type in turn."""
    s = sample(fmt)
    doc, encode = _cbor_layers(fmt)
    paths = [p for p in _paths(doc) if len(p) == (1 if fmt == "nitro" else 2)]
    for path in paths:
        for value in WRONG_TYPES:
            exercise(encode(_replace(doc, path, value)), fmt, s.collateral, s.at)


@pytest.mark.parametrize("fmt", CBOR_FORMATS)
@pytest.mark.parametrize("depth", [100, 2000, 200000])
def test_deeply_nested_cbor(fmt: str, depth: int) -> None:
    """Deep arrays spliced in as bytes (cbor2's encoder itself cannot build them)."""
    s = sample(fmt)
    doc, encode = _cbor_layers(fmt)
    marker = b"\xfe" * 16
    deep = b"\x81" * depth + b"\x00"
    for path in [p for p in _paths(doc) if len(p) == (1 if fmt == "nitro" else 2)]:
        blob = encode(_replace(doc, path, marker), lambda b: b.replace(cbor2.dumps(marker), deep))
        exercise(blob, fmt, s.collateral, s.at)
    exercise(deep, fmt, s.collateral, s.at)


# --- certificates inside evidence ------------------------------------------------------------------


def _pem(der: bytes) -> bytes:
    return (
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _with_certificates(fmt: str) -> list[tuple[str, bytes]]:
    """(where, evidence) with each embedded certificate replaced by each malformed variant."""
    s = sample(fmt)
    out: list[tuple[str, bytes]] = []
    if fmt == "nitro":
        payload, encode = _cbor_layers("nitro")
        places = [("certificate",)] + [("cabundle", i) for i in range(len(payload["cabundle"]))]
        for place in places:
            original = payload["certificate"] if len(place) == 1 else payload["cabundle"][place[1]]
            out += [(f"{place}:{n}", encode(_replace(payload, place, m)))
                    for n, m in certificate_mutations(original).items()]  # fmt: skip
    elif fmt == "tpm":
        from tests.fakes.tpm_sample import encode_fields

        from veritee.evidence import tpm

        top = list(tpm._fields(s.data, "test"))
        for i, (number, value) in enumerate(top):
            if number in (6, 7) and isinstance(value, bytes):
                for n, m in certificate_mutations(value).items():
                    out.append(
                        (
                            f"field {number}:{n}",
                            encode_fields([*top[:i], (number, m), *top[i + 1 :]]),
                        )
                    )
    elif fmt == "nvidia-gpu":
        doc = json.loads(s.data)
        chain = [
            _der(c) for c in x509.load_pem_x509_certificates(doc["certificate_chain"].encode())
        ]
        for i, original in enumerate(chain):
            for n, m in certificate_mutations(original).items():
                pem = b"".join(_pem(d) for d in [*chain[:i], m, *chain[i + 1 :]]).decode()
                out.append(
                    (f"chain[{i}]:{n}", json.dumps(dict(doc, certificate_chain=pem)).encode())
                )
    elif fmt == "az-snp-vtpm":
        doc = json.loads(s.data)
        vcek = base64.urlsafe_b64decode(doc["vcek"] + "=" * (-len(doc["vcek"]) % 4))
        out += [(f"vcek:{n}", json.dumps(dict(doc, vcek=base64.urlsafe_b64encode(m).decode())).encode())
                for n, m in certificate_mutations(vcek).items()]  # fmt: skip
    elif fmt in ("tdx", "sgx"):
        out += _dcap_chain_mutations(s.data, fmt)
    return out


def _dcap_chain_mutations(raw: bytes, fmt: str) -> list[tuple[str, bytes]]:
    """The quote with each PCK chain certificate replaced (size fields fixed up: Intel's quote
    layout, signature data length at the end of the body, then certification data sizes)."""
    begin, end_marker = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start, end = raw.index(begin), raw.rindex(end_marker) + len(end_marker)
    size_at = start - 4
    old_size = int.from_bytes(raw[size_at:start], "little")
    chain = [_der(c) for c in x509.load_pem_x509_certificates(raw[start:end])]
    sig_len_at = 48 + (584 if fmt == "tdx" else 384)
    out = []
    for i, original in enumerate(chain):
        for n, m in certificate_mutations(original).items():
            pem = b"".join(_pem(d) for d in [*chain[:i], m, *chain[i + 1 :]])
            delta = len(pem) - (end - start)
            b = bytearray(
                raw[:size_at] + (old_size + delta).to_bytes(4, "little") + pem + raw[end:]
            )
            for at in [sig_len_at] + ([sig_len_at + 4 + 64 + 64 + 2] if fmt == "tdx" else []):
                b[at : at + 4] = (int.from_bytes(raw[at : at + 4], "little") + delta).to_bytes(
                    4, "little"
                )
            out.append((f"pck_chain[{i}]:{n}", bytes(b)))
    return out


CERT_FORMATS = ("nitro", "tpm", "nvidia-gpu", "az-snp-vtpm", "tdx", "sgx")


@pytest.mark.parametrize("fmt", CERT_FORMATS)
def test_malformed_certificates_inside_evidence(fmt: str) -> None:
    s = sample(fmt)
    cases = _with_certificates(fmt)
    assert len(cases) >= 8
    for _where, data in cases:
        exercise(data, fmt, s.collateral, s.at)


# --- collateral ------------------------------------------------------------------------------------


def _collateral_blobs(fmt: str) -> list[tuple[str, bytes]]:
    s = sample(fmt)
    blobs = []
    for f in s.collateral_files:
        p = TESTVECTORS / f
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        blobs += [
            (str(x.name), x.read_bytes())
            for x in files
            if x.suffix in (".pem", ".der", ".crt", ".cer", ".json", ".pub")
        ]
    return blobs


def _certificate_variants(name: str, blob: bytes) -> list[tuple[str, bytes]]:
    """Each certificate or CRL of a collateral file replaced by each malformed variant."""
    out = []
    if blob.lstrip().startswith(b"{"):
        doc = json.loads(blob)
        for key, value in doc.items():
            if isinstance(value, str) and "BEGIN CERTIFICATE" in value:
                chain = [_der(c) for c in x509.load_pem_x509_certificates(value.encode())]
                for i, original in enumerate(chain):
                    for n, m in certificate_mutations(original).items():
                        pem = b"".join(_pem(d) for d in [*chain[:i], m, *chain[i + 1 :]]).decode()
                        out.append(
                            (f"{name}.{key}[{i}]:{n}", json.dumps(dict(doc, **{key: pem})).encode())
                        )
            elif isinstance(value, str) and key.endswith("crl"):
                for n, m in crl_mutations(bytes.fromhex(value)).items():
                    out.append(
                        (f"{name}.{key}:{n}", json.dumps(dict(doc, **{key: m.hex()})).encode())
                    )
    elif b"BEGIN CERTIFICATE" in blob:
        chain = [_der(c) for c in x509.load_pem_x509_certificates(blob)]
        for i, original in enumerate(chain):
            out += [(f"{name}[{i}]:{n}", b"".join(_pem(d) for d in [*chain[:i], m, *chain[i + 1 :]]))
                    for n, m in certificate_mutations(original).items()]  # fmt: skip
    elif not blob.startswith(b"-----"):
        try:
            x509.load_der_x509_certificate(blob)
        except ValueError:
            return out
        out += [(f"{name}:{n}", m) for n, m in certificate_mutations(blob).items()]
    return out


@pytest.mark.parametrize("fmt", ["sev-snp", "tdx", "sgx", "tpm", "az-snp-vtpm"])
def test_malformed_certificates_and_crls_in_collateral(fmt: str) -> None:
    s = sample(fmt)
    blobs = _collateral_blobs(fmt)
    tried = 0
    for i, (name, blob) in enumerate(blobs):
        for where, variant in _certificate_variants(name, blob):
            tried += 1
            try:
                coll = Collateral.from_blobs([*blobs[:i], (name, variant), *blobs[i + 1 :]])
            except MalformedError:
                continue  # refused where it is read: the right place
            exercise(s.data, fmt, coll, s.at)
    assert tried >= 8


@pytest.mark.parametrize("fmt", ["tdx", "sgx"])
@FUZZ
@given(data=st.data())
def test_collateral_json_of_any_type_anywhere(fmt: str, data: st.DataObject) -> None:
    s = sample(fmt)
    name, blob = _collateral_blobs(fmt)[0]
    doc = json.loads(blob)
    for key in ("tcb_info", "qe_identity"):  # JSON text inside JSON: fuzz the inner documents too
        if data.draw(st.booleans(), label=f"inner {key}") and isinstance(doc.get(key), str):
            inner = json.loads(doc[key])
            path = data.draw(st.sampled_from(_paths(inner)), label="inner path")
            doc[key] = json.dumps(
                _replace(inner, path, data.draw(JSON_VALUES, label="inner value"))
            )
    path = data.draw(st.sampled_from(_paths(doc)), label="path")
    if data.draw(st.booleans(), label="replace"):
        doc = _replace(doc, path, data.draw(JSON_VALUES, label="value"))
    try:
        coll = Collateral.from_blobs([(name, json.dumps(doc).encode())])
    except MalformedError:
        return
    exercise(s.data, fmt, coll, s.at)


@pytest.mark.parametrize("depth", [5000, 50000])
def test_deeply_nested_collateral_json(depth: int) -> None:
    s = sample("tdx")
    name, blob = _collateral_blobs("tdx")[0]
    doc = json.loads(blob)
    nested = "[" * depth + "]" * depth
    for key in doc:
        for text in (json.dumps(dict(doc, **{key: "@@"})).replace('"@@"', nested),
                     json.dumps(dict(doc, **{key: nested}))):  # fmt: skip
            try:
                coll = Collateral.from_blobs([(name, text.encode())])
            except MalformedError:
                continue
            exercise(s.data, "tdx", coll, s.at)
    with pytest.raises(MalformedError):
        Collateral.from_blobs([("deep.json", nested.encode())])
