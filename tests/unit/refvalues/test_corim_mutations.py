"""Malformed, truncated, oversized, tampered and wrongly signed CoRIMs: each refused with a reason,
none raising. Signed CoRIMs are made here with real keys (the peers' published ES256 test key, and
fresh P-256, P-384, Ed25519 and RSA keys) around the peers' unsigned CoRIMs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from tests.conftest import TESTVECTORS

from veritee.refvalues import _cbor, corim

CORIM = TESTVECTORS / "corim"
PSA_VALID = "psa-iot/services_corim-psa-valid.cbor"
JWK = "generic/veraison-corim_src_ec-p256.jwk"


def _vector(name: str) -> bytes:
    path = CORIM / name
    if not path.is_file():
        pytest.skip(f"CoRIM test vectors not found at {CORIM} (../shared/testvectors is absent)")
    return path.read_bytes()


def _b64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jwk_private() -> ec.EllipticCurvePrivateKey:
    jwk = json.loads(_vector(JWK))
    d = int.from_bytes(_b64u(jwk["d"]), "big")
    return ec.derive_private_key(d, ec.SECP256R1())


def _meta(name: str = "ACME Ltd signing key", validity: tuple[int, int] | None = None) -> bytes:
    meta: dict[int, Any] = {0: {0: name, 1: cbor2.CBORTag(32, "https://acme.example")}}
    if validity is not None:
        meta[1] = {0: cbor2.CBORTag(1, validity[0]), 1: cbor2.CBORTag(1, validity[1])}
    return cbor2.dumps(meta)


def _sign(payload: bytes, key: Any, alg: int = -7, protected: dict[int, Any] | None = None,
          tag: bool = True) -> bytes:  # fmt: skip
    hdr: dict[int, Any] = {1: alg, 3: "application/rim+cbor", 4: b"1", 8: _meta()}
    if protected is not None:
        hdr = {k: v for k, v in (hdr | protected).items() if v is not None}
    prot = cbor2.dumps(hdr)
    tbs = cbor2.dumps(["Signature1", prot, b"", payload])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        h = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(h)))
        size = (key.curve.key_size + 7) // 8
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(tbs)
    else:
        sig = key.sign(
            tbs, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
        )
    body = [prot, {}, payload, sig]
    return cbor2.dumps(cbor2.CBORTag(18, body) if tag else body)


def _public_pem(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _signed_psa() -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = _jwk_private()
    return _sign(_vector(PSA_VALID), key), key


def test_resigned_corim_verifies_and_records_its_signer() -> None:
    signed, key = _signed_psa()
    result = corim.inspect(signed, key=corim.load_key(_vector(JWK)))
    assert result.valid, result.reasons
    assert result.kind == "signed-corim" and result.profile == "tag:arm.com,2025:psa#1.0.0"
    assert result.signer is not None and result.signer.name == "ACME Ltd signing key"
    assert result.signer.uri == "https://acme.example" and result.signer.key_id == "31"
    assert len(result.reference_values) == 1
    # the same key as PEM, as a certificate and as 500(502(...)) wrapped
    assert corim.inspect(signed, key=corim.load_key(_public_pem(key))).valid
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corim signer")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))  # fmt: skip
    assert corim.inspect(
        signed, key=corim.load_key(cert.public_bytes(serialization.Encoding.PEM))
    ).valid
    wrapped = cbor2.dumps(cbor2.CBORTag(500, cbor2.CBORTag(502, cbor2.loads(signed))))
    assert corim.inspect(wrapped, key=corim.load_key(_public_pem(key))).valid


@pytest.mark.parametrize("kind", ["p384", "ed25519", "rsa"])
def test_other_algorithms_verify(kind: str) -> None:
    key: Any
    if kind == "p384":
        key, alg = ec.generate_private_key(ec.SECP384R1()), -35
    elif kind == "ed25519":
        key, alg = ed25519.Ed25519PrivateKey.generate(), -8
    else:
        key, alg = rsa.generate_private_key(public_exponent=65537, key_size=2048), -37
    signed = _sign(_vector(PSA_VALID), key, alg)
    assert corim.inspect(signed, key=corim.load_key(_public_pem(key))).valid
    other = ec.generate_private_key(ec.SECP256R1())
    refused = corim.inspect(signed, key=corim.load_key(_public_pem(other)))
    assert refused.reasons[0][0] == "corim_signer_untrusted"


def test_wrong_key_and_tampered_signature_refused() -> None:
    signed, _ = _signed_psa()
    stranger = corim.load_key(_public_pem(ec.generate_private_key(ec.SECP256R1())))
    assert corim.inspect(signed, key=stranger).reasons[0][0] == "corim_signature_invalid"
    good = corim.load_key(_vector(JWK))
    for pos in (1, 20, 40, 63):  # flip a bit in r and in s
        sign1 = cbor2.loads(signed).value
        sig = bytearray(sign1[3])
        sig[pos] ^= 0x01
        tampered = cbor2.dumps(cbor2.CBORTag(18, [sign1[0], sign1[1], sign1[2], bytes(sig)]))
        assert corim.inspect(tampered, key=good).reasons[0][0] == "corim_signature_invalid"
    # a byte of the signed payload changed: still a well-formed CoRIM, but not the one signed
    sign1 = cbor2.loads(signed).value
    payload = sign1[2].replace(b"ACME", b"ACMF")
    assert payload != sign1[2]
    tampered = cbor2.dumps(cbor2.CBORTag(18, [sign1[0], sign1[1], payload, sign1[3]]))
    assert corim.inspect(tampered, key=good).reasons[0][0] == "corim_signature_invalid"
    # the protected header changed (another signer name)
    prot = cbor2.loads(sign1[0])
    prot[8] = _meta("Mallory")
    tampered = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps(prot), sign1[1], sign1[2], sign1[3]]))
    assert corim.inspect(tampered, key=good).reasons[0][0] == "corim_signature_invalid"
    # no key at all
    assert corim.inspect(signed).reasons[0][0] == "corim_signer_untrusted"


@pytest.mark.parametrize(
    ("protected", "code"),
    [
        ({3: None}, "corim_content_type"),
        ({3: "application/cbor"}, "corim_content_type"),
        ({8: None}, "corim_meta_invalid"),
        ({8: cbor2.dumps({1: 2})}, "corim_meta_invalid"),
        ({8: b"\xff"}, "corim_meta_invalid"),
        ({1: -999}, "algorithm_unsupported"),
        ({1: None}, "corim_malformed"),
        ({4: "text kid"}, "corim_malformed"),
        ({33: b"not a certificate"}, "corim_malformed"),
    ],
)
def test_bad_headers_refused(protected: dict[int, Any], code: str) -> None:
    signed = _sign(_vector(PSA_VALID), _jwk_private(), protected=protected)
    result = corim.inspect(signed, key=corim.load_key(_vector(JWK)))
    assert [c for c, _ in result.reasons] == [code]


def test_signature_validity_enforced_with_at() -> None:
    key = _jwk_private()
    hdr = {8: _meta(validity=(1_700_000_000, 1_800_000_000))}
    signed = _sign(_vector(PSA_VALID), key, protected=hdr)
    pub = corim.load_key(_vector(JWK))
    inside = dt.datetime.fromtimestamp(1_750_000_000, dt.UTC)
    assert corim.inspect(signed, key=pub, at=inside).valid
    late = dt.datetime.fromtimestamp(1_800_000_001, dt.UTC)
    assert corim.inspect(signed, key=pub, at=late).reasons[0][0] == "corim_expired"
    early = dt.datetime.fromtimestamp(1_600_000_000, dt.UTC)
    assert corim.inspect(signed, key=pub, at=early).reasons[0][0] == "corim_not_yet_valid"


def test_truncated_everywhere_refused_without_raising() -> None:
    for name in (PSA_VALID, "sevsnp/services_corim-sevsnp-valid.cbor"):
        data = _vector(name)
        for cut in range(0, len(data), max(1, len(data) // 150)):
            result = corim.inspect(data[:cut])
            assert not result.valid, cut
            assert result.reasons[0][0] in {
                "truncated",
                "empty",
                "corim_malformed",
                "corim_tag_unknown",
            }
    signed, _ = _signed_psa()
    for cut in range(1, len(signed), 7):
        assert not corim.inspect(signed[:cut], key=corim.load_key(_vector(JWK))).valid


def test_oversized_refused() -> None:
    data = _vector(PSA_VALID)
    big = data + b"\x00" * (corim.MAX_CORIM_BYTES + 1 - len(data))
    assert corim.inspect(big).reasons[0][0] == "oversized"


def test_deeply_nested_cbor_refused() -> None:
    deep = b"\x81" * 100_000 + b"\x00"
    assert corim.inspect(deep).reasons[0][0] == "corim_too_deep"
    deep_maps = b"\xa1\x00" * 50 + b"\x00"
    assert corim.inspect(deep_maps).reasons[0][0] == "corim_too_deep"
    # nesting hidden inside a CoMID tag's bytes
    inner = b"\x81" * 1000 + b"\x00"
    corim_map = {0: "id", 1: [cbor2.CBORTag(506, inner)]}
    result = corim.inspect(cbor2.dumps(cbor2.CBORTag(501, corim_map)))
    assert result.reasons[0][0] == "corim_too_deep"
    # nested tags
    assert corim.inspect(b"\xc1" * 1000 + b"\x00").reasons[0][0] == "corim_too_deep"


def _retag(data: bytes, old: int, new: int) -> bytes:
    def walk(x: Any) -> Any:
        if isinstance(x, cbor2.CBORTag):
            return cbor2.CBORTag(new if x.tag == old else x.tag, walk(x.value))
        return x

    return bytes(cbor2.dumps(walk(cbor2.loads(data))))


def test_wrong_tags_refused() -> None:
    data = _vector(PSA_VALID)
    assert corim.inspect(data).valid
    assert corim.inspect(_retag(data, 501, 999)).reasons[0][0] == "corim_tag_unknown"
    assert corim.inspect(_retag(data, 501, 506)).reasons[0][0] == "corim_malformed"
    assert corim.inspect(cbor2.dumps(cbor2.loads(data).value)).reasons[0][0] == "corim_untagged"
    decoded = cbor2.loads(data)
    tags = [cbor2.CBORTag(507, t.value) for t in decoded.value[1]]
    bad = cbor2.dumps(cbor2.CBORTag(501, {**decoded.value, 1: tags}))
    assert corim.inspect(bad).reasons[0][0] == "corim_malformed"
    signed, _ = _signed_psa()
    pub = corim.load_key(_vector(JWK))
    assert corim.inspect(_retag(signed, 18, 17), key=pub).reasons[0][0] == "corim_tag_unknown"
    untagged = cbor2.dumps(cbor2.loads(signed).value)
    assert corim.inspect(untagged, key=pub).reasons[0][0] == "corim_tag_unknown"
    assert corim.inspect(cbor2.dumps(cbor2.CBORTag(502, "x"))).reasons[0][0] == "corim_tag_unknown"
    # a signed payload that carries another tag than 501
    sign1 = cbor2.loads(signed).value
    payload = _retag(sign1[2], 501, 500)
    assert (
        corim.inspect(_sign(payload, _jwk_private()), key=pub).reasons[0][0] == "corim_tag_unknown"
    )


def test_structural_mutations_refused() -> None:
    data = _vector(PSA_VALID)
    top = cbor2.loads(data).value
    cases = {
        "trailing": (data + b"\x00", "trailing_bytes"),
        "empty": (b"", "empty"),
        "dup-key": (b"\xd9\x01\xf5\xa2\x00\x61a\x00\x61b", "corim_malformed"),
        "no-id": (cbor2.dumps(cbor2.CBORTag(501, {1: top[1]})), "corim_malformed"),
        "no-tags": (cbor2.dumps(cbor2.CBORTag(501, {0: "x"})), "corim_malformed"),
        "empty-tags": (cbor2.dumps(cbor2.CBORTag(501, {0: "x", 1: []})), "corim_malformed"),
        "tag-not-bytes": (
            cbor2.dumps(cbor2.CBORTag(501, {0: "x", 1: [cbor2.CBORTag(506, {})]})),
            "corim_malformed",
        ),
        "bad-profile": (cbor2.dumps(cbor2.CBORTag(501, {**top, 3: 5})), "corim_malformed"),
        "break": (b"\xff", "corim_malformed"),
        "reserved-ai": (b"\x1c", "corim_malformed"),
        "bad-utf8": (cbor2.dumps(cbor2.CBORTag(501, {0: "x"}))[:-1] + b"\xff", "corim_malformed"),
    }
    for name, (blob, code) in cases.items():
        result = corim.inspect(blob)
        assert [c for c, _ in result.reasons] == [code], name


def _comid_corim(comid: dict[int, Any]) -> bytes:
    return bytes(
        cbor2.dumps(cbor2.CBORTag(501, {0: "x", 1: [cbor2.CBORTag(506, cbor2.dumps(comid))]}))
    )


def test_comid_field_mutations_refused() -> None:
    env = {0: {1: "ACME"}}
    meas = {0: "fw", 1: {2: [[1, b"\x11" * 32]]}}
    ok = {1: {0: "tag"}, 4: {0: [[env, [meas]]]}}
    assert corim.inspect(_comid_corim(ok)).valid
    bad = {
        "digest-length": {1: {0: "tag"}, 4: {0: [[env, [{1: {2: [[1, b"\x11" * 31]]}}]]]}},
        "digest-zero-alg": {1: {0: "tag"}, 4: {0: [[env, [{1: {2: [[0, b"\x11"]]}}]]]}},
        "empty-env": {1: {0: "tag"}, 4: {0: [[{}, [meas]]]}},
        "empty-class": {1: {0: "tag"}, 4: {0: [[{0: {}}, [meas]]]}},
        "no-measurements": {1: {0: "tag"}, 4: {0: [[env, []]]}},
        "empty-mval": {1: {0: "tag"}, 4: {0: [[env, [{1: {}}]]]}},
        "no-mval": {1: {0: "tag"}, 4: {0: [[env, [{0: "x"}]]]}},
        "empty-triples": {1: {0: "tag"}, 4: {}},
        "no-identity": {4: {0: [[env, [meas]]]}},
        "bad-mkey": {1: {0: "tag"}, 4: {0: [[env, [{0: 1.5, 1: {11: "x"}}]]]}},
        "bad-mac": {1: {0: "tag"}, 4: {0: [[env, [{1: {6: b"\x00" * 5}}]]]}},
        "bad-key-tag": {1: {0: "tag"}, 4: {0: [[env, [{1: {13: [cbor2.CBORTag(999, b"x")]}}]]]}},
        "bad-pem-key": {
            1: {0: "tag"},
            4: {0: [[env, [{1: {13: [cbor2.CBORTag(554, "garbage")]}}]]]},
        },
        "bad-uuid": {1: {0: "tag"}, 4: {0: [[{0: {0: cbor2.CBORTag(37, b"\x00" * 3)}}, [meas]]]}},
        "triple-shape": {1: {0: "tag"}, 4: {0: [[env]]}},
        "bad-flags": {1: {0: "tag"}, 4: {0: [[env, [{1: {3: {3: "yes"}}}]]]}},
        "mask-length": {
            1: {0: "tag"},
            4: {0: [[env, [{1: {4: cbor2.CBORTag(563, [b"ab", b"a"])}}]]]},
        },
    }
    for name, comid in bad.items():
        result = corim.inspect(_comid_corim(comid))
        assert not result.valid, name
        assert result.reasons[0][0] == "corim_malformed", (name, result.reasons)


def test_random_byte_flips_never_raise() -> None:
    rng = random.Random(17)
    data = bytearray(_vector("sevsnp/services_corim-sevsnp-valid.cbor"))
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        result = corim.inspect(bytes(mutated))
        assert result.valid or result.reasons


def test_scanner_accepts_indefinite_lengths() -> None:
    # [_ 1, {_ "a": h'01' (_ h'02', h'03')}] with an indefinite byte string
    blob = bytes.fromhex("9f01bf61615f41024103ffffff")
    _cbor.scan(blob)
    assert cbor2.loads(blob) == [1, {"a": b"\x02\x03"}]
    with pytest.raises(_cbor.CborError):
        _cbor.scan(bytes.fromhex("5f6161ff"))  # a text chunk inside a byte string


def test_load_key_refuses_garbage(tmp_path: Path) -> None:
    for blob in (b"", b"{}", b'{"kty": "EC", "crv": "P-999"}', b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                 b'{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}', b"[1]"):  # fmt: skip
        with pytest.raises(ValueError):
            corim.load_key(blob)
    ed = ed25519.Ed25519PrivateKey.generate()
    jwk = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(
            ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        .decode()
        .rstrip("="),
    }
    assert isinstance(corim.load_key(json.dumps(jwk).encode()), ed25519.Ed25519PublicKey)


def _edit_first_comid(data: bytes, edit: Any) -> bytes:
    top = cbor2.loads(data)
    body = dict(top.value)
    tags = list(body[1])
    comid = cbor2.loads(tags[0].value)
    comid = _thaw(comid)
    edit(comid)
    tags[0] = cbor2.CBORTag(506, cbor2.dumps(comid))
    body[1] = tags
    return bytes(cbor2.dumps(cbor2.CBORTag(501, body)))


def _thaw(x: Any) -> Any:
    if isinstance(x, cbor2.CBORTag):
        return cbor2.CBORTag(x.tag, _thaw(x.value))
    if hasattr(x, "items"):
        return {k: _thaw(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_thaw(v) for v in x]
    return x


def test_earlier_veraison_profiles_keep_their_rules() -> None:
    """The services' end-to-end inputs name the earlier profiles (http://arm.com/cca/ssd/1,
    http://arm.com/cca/realm/1, http://arm.com/psa/iot/1): valid as they are; an instance in a
    platform reference value, a missing digest or personalization value is refused."""
    platform = _vector("arm-cca/services-e2e_cca-endorsements.cbor")
    realm = _vector("arm-cca/services-e2e_cca-realm-endorsements.cbor")
    psa = _vector("psa-iot/services-e2e_psa-endorsements.cbor")
    for blob in (platform, realm, psa):
        assert corim.inspect(blob).valid
        assert corim.inspect(blob, scheme="arm-cca" if blob is not psa else "psa-iot").valid

    def with_instance(comid: dict[int, Any]) -> None:
        for triple in comid[4].get(0, []):
            triple[0][1] = cbor2.CBORTag(550, b"\x01" + b"\x02" * 32)

    def without_digests(comid: dict[int, Any]) -> None:
        for triple in comid[4].get(0, []):
            for m in triple[1]:
                if m[1].pop(2, None) is not None:
                    m[1][11] = "no digest"

    def without_raw_value(comid: dict[int, Any]) -> None:
        for triple in comid[4].get(0, []):
            for m in triple[1]:
                m[1].pop(4, None)

    cases = [
        (platform, with_instance, "instance set for reference value"),
        (platform, without_digests, "no digests"),
        (psa, with_instance, "instance set for reference value"),
        (realm, without_raw_value, "personalization (raw value) not set"),
    ]
    checked = 0
    for blob, edit, text in cases:
        first = cbor2.loads(cbor2.loads(blob).value[1][0].value)
        assert 0 in first[4], "the first CoMID of each input holds its reference values"
        result = corim.inspect(_edit_first_comid(blob, edit))
        assert [c for c, _ in result.reasons] == ["corim_profile_violation"], (text, result.reasons)
        assert text in result.reasons[0][1]
        checked += 1
    assert checked == len(cases)


def test_profile_in_the_list_form_is_not_applied() -> None:
    result = corim.inspect(_vector("generic/cocli_data_corim_signed-corim.cbor"),
                           key=corim.load_key(_vector("generic/cocli_cmd_testcases_ec-p256.jwk")))  # fmt: skip
    assert result.valid
    assert {c for c, _ in result.warnings} == {"corim_untagged", "corim_profile_unchecked"}
