"""Property tests: any change to what is signed in a real vector, or to its collateral, is refused
(issue 11, "Also deliver"), for every evidence format.

Each format lists its regions: byte strings that a signature (or a hash a signature covers, or
a pinned fingerprint) vouches for, each with how to put a changed copy back into evidence and
collateral. Hypothesis picks a region, a byte and a non-zero XOR; the verifier must refuse (any
MalformedError or VerificationError). Regions are decoded values, not their text encodings (a
hex digit's case or a base64 character's unused bits change no byte). What no signature covers
is left out on purpose: an unprotected COSE header, an Azure HCL report's header, event data the
digest is not defined over (see test_event_data_binding.py). Runs are derandomized and bounded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import TESTVECTORS
from tests.fakes.tpm_sample import encode_fields  # at import: not inside a running @given
from tests.fakes.vectors import sample

from veritee import evidence
from veritee.collateral import Collateral
from veritee.errors import CollateralError, MalformedError, VerificationError
from veritee.evidence import amd, tcg_log, tpm

pytestmark = [
    pytest.mark.skipif(not (TESTVECTORS / "manifest.json").is_file(),
                       reason="test vectors absent (../shared/testvectors)"),
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
]  # fmt: skip
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

Rebuild = Callable[[bytes], tuple[bytes, Collateral]]


@dataclass(frozen=True)
class Region:
    """A signed byte string of a vector, and how a changed copy goes back into evidence."""

    name: str
    original: bytes
    rebuild: Rebuild
    #: True where the verifier must refuse before it needs collateral the vectors lack.
    before_collateral: bool = False


def _b64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64u_enc(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _pem(ders: list[bytes]) -> bytes:
    return b"".join(b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(d) + b"-----END CERTIFICATE-----\n"
                    for d in ders)  # fmt: skip


def _ders(pem: bytes) -> list[bytes]:
    return [
        c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem)
    ]


def _chain_regions(
    name: str, ders: list[bytes], put: Callable[[list[bytes]], tuple[bytes, Collateral]]
) -> list[Region]:
    def at(i: int) -> Rebuild:
        return lambda changed: put([*ders[:i], changed, *ders[i + 1 :]])

    return [Region(f"{name}[{i}]", d, at(i)) for i, d in enumerate(ders)]


# --- per format ------------------------------------------------------------------------------------


def _sev_snp() -> list[Region]:
    s = sample("sev-snp")
    vcek = (TESTVECTORS / "sev-snp" / "virtee_milan_vcek.der").read_bytes()
    chain = _ders((TESTVECTORS / "sev-snp" / "amd_milan_vcek_ask_ark.pem").read_bytes())

    def coll(ders: list[bytes]) -> Collateral:
        return Collateral.from_blobs([("vcek.der", ders[0]), ("chain.pem", _pem(ders[1:]))])

    return [Region("report", s.data, lambda d: (d, s.collateral)),
            *_chain_regions("collateral", [vcek, *chain], lambda ds: (s.data, coll(ds)))]  # fmt: skip


def _dcap(fmt: str) -> list[Region]:
    s = sample(fmt)
    raw = s.data
    begin = raw.index(b"-----BEGIN CERTIFICATE-----")
    end = raw.rindex(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----")
    size_at = begin - 4
    doc = json.loads((TESTVECTORS / s.collateral_files[0]).read_text())

    def quote_with(chain: list[bytes]) -> bytes:
        pem = _pem(chain)
        delta = len(pem) - (end - begin)
        b = bytearray(raw[:size_at] + (int.from_bytes(raw[size_at:begin], "little") + delta).to_bytes(4, "little")
                      + pem + raw[end:])  # fmt: skip
        sig_len_at = 48 + (584 if fmt == "tdx" else 384)
        for at in [sig_len_at] + ([sig_len_at + 4 + 64 + 64 + 2] if fmt == "tdx" else []):
            b[at : at + 4] = (int.from_bytes(raw[at : at + 4], "little") + delta).to_bytes(
                4, "little"
            )
        return bytes(b)

    def with_doc(key: str, encode: Callable[[bytes], str]) -> Rebuild:
        return lambda changed: (
            raw,
            Collateral.from_blobs(
                [("c.json", json.dumps(dict(doc, **{key: encode(changed)})).encode())]
            ),
        )

    regions = [Region("quote up to the PCK chain", raw[:size_at - 6], lambda d: (d + raw[size_at - 6 :], s.collateral)),
               *_chain_regions("pck_chain", _ders(raw[begin:end]), lambda ds: (quote_with(ds), s.collateral))]  # fmt: skip
    for key, value in doc.items():
        if key in ("tcb_info", "qe_identity"):
            regions.append(
                Region(key, value.encode(), with_doc(key, lambda b: b.decode("latin-1")))
            )
        elif key.endswith(("signature", "crl")):
            regions.append(Region(key, bytes.fromhex(value), with_doc(key, bytes.hex)))
        elif key.endswith("issuer_chain"):
            ders = _ders(value.encode())
            for i, d in enumerate(ders):

                def put(
                    changed: bytes, i: int = i, ders: list[bytes] = ders, key: str = key
                ) -> tuple[bytes, Collateral]:
                    pem = _pem([*ders[:i], changed, *ders[i + 1 :]]).decode()
                    return raw, Collateral.from_blobs(
                        [("c.json", json.dumps(dict(doc, **{key: pem})).encode())]
                    )

                regions.append(Region(f"{key}[{i}]", d, put))
    return regions


def _nitro() -> list[Region]:
    s = sample("nitro")
    obj = cbor2.loads(s.data)
    arr = list(obj.value if isinstance(obj, cbor2.CBORTag) else obj)

    def member(i: int) -> Rebuild:
        return lambda changed: (
            bytes(cbor2.dumps(cbor2.CBORTag(18, [*arr[:i], changed, *arr[i + 1 :]]))),
            s.collateral,
        )

    return [
        Region(n, arr[i], member(i))
        for i, n in ((0, "protected"), (2, "payload"), (3, "signature"))
    ]


def _tpm() -> list[Region]:
    s = sample("tpm")
    roots = s.collateral
    top = list(tpm._fields(s.data, "test"))
    regions = []
    for i, (number, value) in enumerate(top):
        if not isinstance(value, bytes):
            continue

        def put(changed: bytes, i: int = i, number: int = number) -> tuple[bytes, Collateral]:
            return encode_fields([*top[:i], (number, changed), *top[i + 1 :]]), roots

        if number == 2:  # a quote: its TPMS_ATTEST, signature and PCRs
            parts = list(tpm._fields(value, "quote"))
            for j, (n, v) in enumerate(parts):

                def put_q(
                    changed: bytes, j: int = j, n: int = n, put: Any = put, parts: Any = parts
                ) -> tuple[bytes, Collateral]:
                    return put(encode_fields([*parts[:j], (n, changed), *parts[j + 1 :]]))

                if isinstance(v, bytes):
                    regions.append(Region(f"quote field {n}", v, put_q))
        elif number == 3:  # the event log: the digests of the quoted banks
            log = tcg_log.parse(value, max_index=23)
            for e in log.events[1:6]:
                for alg, digest in e.digests.items():
                    at = value.index(digest, e.offset)

                    def put_d(
                        changed: bytes, at: int = at, put: Any = put, value: bytes = value
                    ) -> tuple[bytes, Collateral]:
                        return put(value[:at] + changed + value[at + len(changed) :])

                    regions.append(Region(f"event {e.offset} digest {alg:#x}", digest, put_d))
        elif number == 1:  # ak_pub: the AK certificate binds its key (authPolicy and the
            # attribute bits that do not make an AK are bound by nothing; see test_tpm.py)
            key = tpm._public_key(value)[1]
            raw = (
                key.public_numbers().n.to_bytes(key.key_size // 8, "big")
                if isinstance(key, rsa.RSAPublicKey)
                else key.public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                )[1:]
            )
            at = value.rindex(raw[-16:]) + 16 - len(raw)

            def put_k(
                changed: bytes, at: int = at, put: Any = put, value: bytes = value
            ) -> tuple[bytes, Collateral]:
                return put(value[:at] + changed + value[at + len(changed) :])

            regions.append(Region("ak_pub key", value[at : at + len(raw)], put_k))
        elif number == 6:  # ak_cert
            regions.append(Region(f"field {number}", value, put))
    # The collateral certificates on the AK's path (those it cannot verify without): any other
    # certificate in the folder is only a path candidate the chain does not use.
    certs = list(roots.certificates)
    for i, cert in enumerate(certs):
        others = Collateral(certificates=tuple(certs[:i] + certs[i + 1 :]))
        try:
            tpm.verify(s.data, collateral=others, at=s.at)
            continue
        except VerificationError:
            pass

        def put_c(changed: bytes, i: int = i) -> tuple[bytes, Collateral]:
            ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
            return s.data, Collateral.from_blobs(
                [(f"c{j}.der", d) for j, d in enumerate([*ders[:i], changed, *ders[i + 1 :]])]
            )

        regions.append(Region(f"collateral {cert.subject.rfc4514_string()[:30]}",
                              cert.public_bytes(serialization.Encoding.DER), put_c))  # fmt: skip
    return regions


def _az_snp() -> list[Region]:
    s = sample("az-snp-vtpm")
    doc = json.loads(s.data)
    hcl = _b64u(doc["hcl_report"])
    start = 32 + 1184 + 20
    size = int.from_bytes(hcl[start - 4 : start], "little")

    def hcl_with(lo: int, hi: int) -> Rebuild:
        return lambda c: (
            json.dumps(dict(doc, hcl_report=_b64u_enc(hcl[:lo] + c + hcl[hi:]))).encode(),
            s.collateral,
        )

    def quote_member(key: str, index: int | None = None) -> Rebuild:
        def put(changed: bytes) -> tuple[bytes, Collateral]:
            q = dict(doc["tpm_quote"])
            if index is None:
                q[key] = changed.hex()
            else:
                q[key] = [*q[key][:index], changed.hex(), *q[key][index + 1 :]]
            return json.dumps(dict(doc, tpm_quote=q)).encode(), s.collateral

        return put

    q = doc["tpm_quote"]
    return [
        Region("snp report", hcl[32 : 32 + 1184], hcl_with(32, 32 + 1184)),
        Region("runtime data", hcl[start : start + size], hcl_with(start, start + size)),
        Region("quote message", bytes.fromhex(q["message"]), quote_member("message")),
        Region("quote signature", bytes.fromhex(q["signature"]), quote_member("signature")),
        *[Region(f"pcr{i}", bytes.fromhex(p), quote_member("pcrs", i)) for i, p in enumerate(q["pcrs"][:8])],
        Region("vcek", _b64u(doc["vcek"]),
               lambda c: (json.dumps(dict(doc, vcek=_b64u_enc(c))).encode(), s.collateral)),
    ]  # fmt: skip


def _az_tdx() -> list[Region]:
    s = sample("az-tdx-vtpm")
    doc = json.loads(s.data)
    hcl = _b64u(doc["hcl_report"])
    start = 32 + 1184 + 20
    size = int.from_bytes(hcl[start - 4 : start], "little")
    td = _b64u(doc["td_quote"])
    q = doc["tpm_quote"]

    def quote_member(key: str) -> Rebuild:
        return lambda c: (
            json.dumps(dict(doc, tpm_quote=dict(q, **{key: c.hex()}))).encode(),
            s.collateral,
        )

    return [
        Region("runtime data",
               hcl[start : start + size],
               lambda c: (json.dumps(dict(doc, hcl_report=_b64u_enc(hcl[:start] + c + hcl[start + size :]))).encode(),
                          s.collateral), before_collateral=True),
        Region("quote message", bytes.fromhex(q["message"]), quote_member("message"), before_collateral=True),
        Region("quote signature", bytes.fromhex(q["signature"]), quote_member("signature"), before_collateral=True),
        # The report data's first 32 bytes are HASH(runtime data), checked before any collateral;
        # the rest only the TD quote's signature covers (collateral the vectors lack for its FMSPC).
        Region("td quote report data: the runtime hash", td[48 + 520 : 48 + 552],
               lambda c: (json.dumps(dict(doc, td_quote=_b64u_enc(td[: 48 + 520] + c + td[48 + 552 :]))).encode(),
                          s.collateral), before_collateral=True),
        Region("td quote report data: the rest", td[48 + 552 : 48 + 584],
               lambda c: (json.dumps(dict(doc, td_quote=_b64u_enc(td[: 48 + 552] + c + td[48 + 584 :]))).encode(),
                          s.collateral)),
        Region("td quote", td[: 48 + 584],
               lambda c: (json.dumps(dict(doc, td_quote=_b64u_enc(c + td[48 + 584 :]))).encode(), s.collateral)),
    ]  # fmt: skip


def _cca() -> list[Region]:
    from veritee.evidence import cca

    s = sample("cca")
    outer = cbor2.loads(s.data)
    tokens = {k: list(cbor2.loads(v).value) for k, v in outer.value.items()}
    key_der = serialization.load_pem_public_key(
        (TESTVECTORS / "arm-cca" / "veraison_tfrmm_cca_platform.pub").read_bytes()
    ).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def member(which: int, i: int) -> Rebuild:
        def put(changed: bytes) -> tuple[bytes, Collateral]:
            value = dict(outer.value)
            t = tokens[which]
            value[which] = cbor2.dumps(cbor2.CBORTag(18, [*t[:i], changed, *t[i + 1 :]]))
            return bytes(cbor2.dumps(cbor2.CBORTag(cca.CCA_TOKEN_TAG, value))), s.collateral

        return put

    def key(changed: bytes) -> tuple[bytes, Collateral]:
        pem = (
            b"-----BEGIN PUBLIC KEY-----\n"
            + base64.encodebytes(changed)
            + b"-----END PUBLIC KEY-----\n"
        )
        return s.data, Collateral.from_blobs([("cpak.pem", pem)])

    regions = [
        Region(f"{'platform' if w == cca.PLATFORM else 'realm'} {n}", tokens[w][i], member(w, i))
        for w in (cca.PLATFORM, cca.REALM)
        for i, n in ((0, "protected"), (2, "payload"), (3, "signature"))
    ]
    # The CPAK's point (the SPKI's last 97 bytes): another key, or none, is not trusted.
    regions.append(Region("cpak point", key_der[-97:], lambda c: key(key_der[:-97] + c)))
    return regions


def _nvidia() -> list[Region]:
    s = sample("nvidia-gpu")
    doc = json.loads(s.data)
    report = bytes.fromhex(doc["report"])
    chain = _ders(doc["certificate_chain"].encode())
    return [
        Region("report", report, lambda c: (json.dumps(dict(doc, report=c.hex())).encode(), s.collateral)),
        *_chain_regions("certificate_chain", chain, lambda ds: (
            json.dumps(dict(doc, certificate_chain=_pem(ds).decode())).encode(), s.collateral)),
    ]  # fmt: skip


def _keystone() -> list[Region]:
    # Every byte: the signatures cover all but the data field's tail, which must be zero.
    s = sample("keystone")
    return [Region("report", s.data, lambda d: (d, s.collateral))]


def _simulated() -> list[Region]:
    s = sample("simulated")
    return [Region("report", s.data, lambda d: (d, s.collateral))]


REGIONS: dict[str, Callable[[], list[Region]]] = {
    "sev-snp": _sev_snp, "tdx": lambda: _dcap("tdx"), "sgx": lambda: _dcap("sgx"), "nitro": _nitro,
    "tpm": _tpm, "az-snp-vtpm": _az_snp, "az-tdx-vtpm": _az_tdx, "cca": _cca, "nvidia-gpu": _nvidia,
    "keystone": _keystone, "simulated": _simulated,
}  # fmt: skip


def _verify(fmt: str, data: bytes, coll: Collateral) -> evidence.VerifiedEvidence:
    # A fresh chain cache for SEV-SNP: a cached chain is reused by certificate signature, so a
    # changed certificate that keeps its signature bytes would stand for the one verified before.
    trust = amd.AmdTrust(cache=None) if fmt in ("sev-snp", "az-snp-vtpm") else None
    return evidence.verify(data, collateral=coll, at=sample(fmt).at, format=fmt, trust=trust)


def test_every_format_has_regions_and_they_rebuild_the_vector() -> None:
    assert set(REGIONS) == set(evidence.FORMATS)
    for fmt, regions in REGIONS.items():
        for r in regions():
            data, coll = r.rebuild(r.original)
            if fmt == "az-tdx-vtpm":  # no Intel collateral for its FMSPC among the vectors
                with pytest.raises(CollateralError):
                    _verify(fmt, data, coll)
            else:
                assert _verify(fmt, data, coll).claims["platform"], (fmt, r.name)


@pytest.mark.parametrize("fmt", sorted(REGIONS))
@PROPERTY
@given(data=st.data())
def test_any_change_to_a_signed_region_is_refused(fmt: str, data: st.DataObject) -> None:
    region = data.draw(st.sampled_from(REGIONS[fmt]()), label="region")
    pos = data.draw(st.integers(0, len(region.original) - 1), label="byte")
    changed = bytearray(region.original)
    changed[pos] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        evidence_bytes, coll = region.rebuild(bytes(changed))
    except MalformedError:
        return  # refused while the collateral was read (e.g. a certificate that no longer parses)
    with pytest.raises((MalformedError, VerificationError)) as e:
        _verify(fmt, evidence_bytes, coll)
    if region.before_collateral:
        assert not isinstance(e.value, CollateralError), (region.name, e.value)
