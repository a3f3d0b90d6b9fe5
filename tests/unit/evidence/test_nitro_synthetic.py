"""Nitro verifier against documents signed by a fake Nitro-like chain (our own P-384 keys).

Reaches what the public sample cannot: an unpinned root, debug mode (zeroed PCR0..2), other
algorithms, missing or ill-typed fields, substituted leaf and intermediate certificates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veritee import evidence
from veritee.collateral import Collateral
from veritee.errors import MalformedError, VerificationError
from veritee.evidence import nitro

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fake"),
        ]
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    path_length: int | None = None,
    lifetime: timedelta = timedelta(days=30),
) -> bytes:
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW - timedelta(hours=1) + lifetime)
        .add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
        .sign(issuer_key, hashes.SHA384())
    )
    return cert.public_bytes(Encoding.DER)


@dataclass
class FakeChain:
    root_key: ec.EllipticCurvePrivateKey
    inter_key: ec.EllipticCurvePrivateKey
    leaf_key: ec.EllipticCurvePrivateKey
    root: bytes
    inter: bytes
    leaf: bytes

    @classmethod
    def make(cls, curve: ec.EllipticCurve | None = None) -> FakeChain:
        rk, ik = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
        lk = ec.generate_private_key(curve or ec.SECP384R1())
        root = _cert("fake.nitro-enclaves", rk, "fake.nitro-enclaves", rk, ca=True)
        inter = _cert("zonal.fake", ik, "fake.nitro-enclaves", rk, ca=True, path_length=0)
        leaf = _cert("i-0123-enc0123", lk, "zonal.fake", ik, ca=False, lifetime=timedelta(hours=3))
        return cls(rk, ik, lk, root, inter, leaf)

    @property
    def trust(self) -> nitro.NitroTrust:
        return nitro.NitroTrust((hashlib.sha256(self.root).hexdigest(),))

    def payload(self, **overrides: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "module_id": "i-0123-enc0123",
            "digest": "SHA384",
            "timestamp": int(NOW.timestamp() * 1000),
            "pcrs": {i: bytes([i + 1]) * 48 for i in range(16)},
            "certificate": self.leaf,
            "cabundle": [self.root, self.inter],
            "public_key": None,
            "user_data": bytes(range(64)),
            "nonce": b"\x42" * 32,
        }
        for k, v in overrides.items():
            if v is _DROP:
                del doc[k]
            else:
                doc[k] = v
        return doc

    def sign(
        self,
        payload: dict[str, Any] | bytes,
        *,
        protected: dict[int, Any] | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        tagged: bool = False,
    ) -> bytes:
        body = payload if isinstance(payload, bytes) else cbor2.dumps(payload)
        prot = cbor2.dumps(protected if protected is not None else {1: -35})
        to_sign = nitro.sig_structure(prot, body)
        der = (key or self.leaf_key).sign(to_sign, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(48, "big") + s.to_bytes(48, "big")
        doc: Any = [prot, {}, body, sig]
        if tagged:
            doc = cbor2.CBORTag(18, doc)
        return bytes(cbor2.dumps(doc))


_DROP = object()


@pytest.fixture(scope="module")
def chain() -> FakeChain:
    return FakeChain.make()


def _verify(data: bytes, chain: FakeChain, at: datetime = NOW) -> evidence.VerifiedEvidence:
    return nitro.verify(data, collateral=Collateral.empty(), at=at, trust=chain.trust)


@pytest.mark.parametrize("tagged", [False, True])
def test_fake_chain_verifies_with_its_own_root(chain: FakeChain, tagged: bool) -> None:
    data = chain.sign(chain.payload(), tagged=tagged)
    claims = _verify(data, chain).claims
    assert claims["measurement"] == claims["pcr0"] == ("01" * 48)
    assert claims["report_data"] == bytes(range(64)).hex()
    assert claims["nonce"] == "42" * 32
    assert claims["public_key"] is None
    assert claims["debug"] is False


def test_unpinned_root_is_refused_by_default(chain: FakeChain) -> None:
    data = chain.sign(chain.payload())
    with pytest.raises(VerificationError) as e:
        evidence.verify(data, at=NOW)
    assert e.value.code == "root_not_pinned"


def test_debug_mode_zeroed_pcrs(chain: FakeChain) -> None:
    pcrs = {i: (b"\x00" * 48 if i < 3 else bytes([i]) * 48) for i in range(16)}
    data = chain.sign(chain.payload(pcrs=pcrs))
    claims = _verify(data, chain).claims
    assert claims["debug"] is True
    assert claims["measurement"] == "00" * 48
    # Only all three zero means debug.
    pcrs[2] = b"\x01" + b"\x00" * 47
    assert _verify(chain.sign(chain.payload(pcrs=pcrs)), chain).claims["debug"] is False


def test_debug_mode_refused_by_baseline(chain: FakeChain) -> None:
    appraisal = pytest.importorskip("veritee.appraisal", reason="appraisal not built yet")
    if not hasattr(appraisal, "appraise_baseline"):
        pytest.skip("veritee.appraisal.appraise_baseline not available yet")
    debug = _verify(chain.sign(chain.payload(pcrs={i: b"\x00" * 48 for i in range(16)})), chain)
    refused = appraisal.appraise_baseline(debug)
    assert not refused.accepted
    assert [r.code for r in refused.reasons] == ["debug"]
    normal = appraisal.appraise_baseline(_verify(chain.sign(chain.payload()), chain))
    assert normal.accepted, normal.reasons


@pytest.mark.parametrize("alg", [-7, -36, -8, 1])
def test_wrong_alg(chain: FakeChain, alg: int) -> None:
    data = chain.sign(chain.payload(), protected={1: alg})
    with pytest.raises(VerificationError) as e:
        _verify(data, chain)
    assert e.value.code == "algorithm_unsupported"


@pytest.mark.parametrize(
    ("protected", "field"),
    [({}, "protected.alg"), ({1: "ES384"}, "protected.alg"), ({1: -35, 2: [1]}, "protected.crit")],
)
def test_bad_protected_header(chain: FakeChain, protected: dict[int, Any], field: str) -> None:
    with pytest.raises(MalformedError) as e:
        _verify(chain.sign(chain.payload(), protected=protected), chain)
    assert e.value.field == field


@pytest.mark.parametrize("label", [True, 1.0])
def test_a_header_label_that_only_equals_alg_in_python_is_refused(
    chain: FakeChain, label: object
) -> None:
    """``{true: -35}`` and ``{1.0: -35}``: RFC 9052 labels are integers or text, so a COSE reader
    finds no alg there; a Python map found alg 1 under either key and the document was accepted."""
    with pytest.raises(MalformedError) as e:
        _verify(chain.sign(chain.payload(), protected={label: -35}), chain)  # type: ignore[dict-item]
    assert e.value.field == "protected"
    parts = list(cbor2.loads(chain.sign(chain.payload())))
    parts[1] = {label: "x"}
    with pytest.raises(MalformedError) as e:
        _verify(cbor2.dumps(parts), chain)
    assert e.value.field == "unprotected"


def test_alg_in_unprotected_header(chain: FakeChain) -> None:
    parts = list(cbor2.loads(chain.sign(chain.payload())))
    parts[1] = {1: -35}
    with pytest.raises(MalformedError) as e:
        _verify(bytes(cbor2.dumps(parts)), chain)
    assert e.value.field == "unprotected.alg"


@pytest.mark.parametrize(
    "name", ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"]
)
def test_missing_required_field(chain: FakeChain, name: str) -> None:
    with pytest.raises(MalformedError) as e:
        _verify(chain.sign(chain.payload(**{name: _DROP})), chain)
    assert e.value.field == name


@pytest.mark.parametrize("name", ["public_key", "user_data", "nonce"])
def test_optional_fields_may_be_absent(chain: FakeChain, name: str) -> None:
    claims = _verify(chain.sign(chain.payload(**{name: _DROP})), chain).claims
    assert claims[name] is None


BAD_FIELDS = [
    ("module_id", "", "module_id"),
    ("module_id", b"bytes", "module_id"),
    ("digest", "MD5", "digest"),
    ("timestamp", -1, "timestamp"),
    ("timestamp", "now", "timestamp"),
    ("timestamp", True, "timestamp"),
    ("pcrs", {}, "pcrs"),
    ("pcrs", [b"\x00" * 48], "pcrs"),
    ("pcrs", {i: b"\x00" * 48 for i in range(33)}, "pcrs"),
    ("pcrs", {0: b"\x00" * 48, 1: b"\x00" * 48, 2: b"\x00" * 32}, "pcrs[2]"),
    ("pcrs", {0: b"\x00" * 48, 1: b"\x00" * 48}, "pcrs[2]"),
    ("pcrs", {0: b"\x00" * 48, 1: b"\x00" * 48, 2: b"\x00" * 48, 32: b"\x00" * 48}, "pcrs"),
    ("pcrs", {0: b"\x00" * 48, 1: b"\x00" * 48, 2: b"\x00" * 48, "3": b"\x00" * 48}, "pcrs"),
    ("certificate", b"", "certificate"),
    ("certificate", b"\x00" * 1025, "certificate"),
    ("certificate", "pem", "certificate"),
    ("cabundle", [], "cabundle"),
    ("cabundle", b"\x30", "cabundle"),
    ("cabundle", [b"\x30"] * 9, "cabundle"),
    ("cabundle", ["x"], "cabundle[0]"),
    ("public_key", b"\x01" * 1025, "public_key"),
    ("user_data", b"\x01" * 1025, "user_data"),
    ("nonce", b"\x01" * 1025, "nonce"),
    ("nonce", 7, "nonce"),
    ("extra", b"", "extra"),
]


@pytest.mark.parametrize(
    ("name", "value", "field"),
    BAD_FIELDS,
    ids=[f"{n}-{f}-{i}" for i, (n, _, f) in enumerate(BAD_FIELDS)],
)
def test_bad_field(chain: FakeChain, name: str, value: Any, field: str) -> None:
    data = chain.sign(chain.payload(**{name: value}))
    with pytest.raises(MalformedError) as e:
        _verify(data, chain)
    assert e.value.field == field
    assert field in str(e.value)


@pytest.mark.parametrize(("digest", "size"), [("SHA256", 32), ("SHA512", 64)])
def test_other_digest_sizes(chain: FakeChain, digest: str, size: int) -> None:
    data = chain.sign(chain.payload(digest=digest, pcrs={i: b"\x07" * size for i in range(4)}))
    assert _verify(data, chain).claims["digest"] == digest


def test_max_sizes_accepted(chain: FakeChain) -> None:
    big = b"\x05" * 1024
    data = chain.sign(
        chain.payload(
            user_data=big, nonce=big, public_key=big, pcrs={i: b"\x01" * 48 for i in range(32)}
        )
    )
    assert _verify(data, chain).claims["pcr31"] == "01" * 48


def test_duplicate_payload_key_is_refused(chain: FakeChain) -> None:
    body = bytearray(cbor2.dumps(chain.payload()))
    # Append a second "digest" entry by hand and bump the map length (0xa9 -> 0xaa).
    assert body[0] == 0xA9
    body[0] = 0xAA
    body += cbor2.dumps("digest") + cbor2.dumps("SHA384")
    with pytest.raises(MalformedError, match="preferred CBOR") as e:
        _verify(chain.sign(bytes(body)), chain)
    assert e.value.field == "payload"


def test_payload_not_a_map(chain: FakeChain) -> None:
    with pytest.raises(MalformedError) as e:
        _verify(chain.sign(cbor2.dumps([1, 2, 3])), chain)
    assert e.value.field == "payload"


def test_signed_by_another_key(chain: FakeChain) -> None:
    data = chain.sign(chain.payload(), key=ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(VerificationError) as e:
        _verify(data, chain)
    assert e.value.code == "signature_invalid"


def test_leaf_from_another_issuer(chain: FakeChain) -> None:
    other = FakeChain.make()
    data = other.sign(chain.payload(certificate=other.leaf), key=other.leaf_key)
    with pytest.raises(VerificationError) as e:
        _verify(data, chain)
    assert e.value.code == "chain_invalid"


def test_intermediate_with_same_name_other_key(chain: FakeChain) -> None:
    # An attacker's intermediate with the real name, signed by the attacker's root.
    evil_root = ec.generate_private_key(ec.SECP384R1())
    evil_inter = _cert(
        "zonal.fake", chain.inter_key, "fake.nitro-enclaves", evil_root, ca=True, path_length=0
    )
    data = chain.sign(chain.payload(cabundle=[chain.root, evil_inter]))
    with pytest.raises(VerificationError) as e:
        _verify(data, chain)
    assert e.value.code == "chain_invalid"


def test_intermediate_that_is_not_a_ca(chain: FakeChain) -> None:
    inter = _cert("zonal.fake", chain.inter_key, "fake.nitro-enclaves", chain.root_key, ca=False)
    data = chain.sign(chain.payload(cabundle=[chain.root, inter]))
    with pytest.raises(VerificationError, match="may not issue") as e:
        _verify(data, chain)
    assert e.value.code == "chain_invalid"


def test_path_length_exceeded(chain: FakeChain) -> None:
    # inter has pathLen 0, so it may not issue another CA below it.
    k2 = ec.generate_private_key(ec.SECP384R1())
    inter2 = _cert("sub.fake", k2, "zonal.fake", chain.inter_key, ca=True)
    leaf = _cert("i-0123-enc0123", chain.leaf_key, "sub.fake", k2, ca=False)
    data = chain.sign(chain.payload(cabundle=[chain.root, chain.inter, inter2], certificate=leaf))
    with pytest.raises(VerificationError, match="may not issue"):
        _verify(data, chain)


def test_leaf_not_p384() -> None:
    chain = FakeChain.make(curve=ec.SECP256R1())
    data = chain.sign(chain.payload(), key=ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(VerificationError, match="P-384"):
        _verify(data, chain)


def test_garbage_certificate(chain: FakeChain) -> None:
    data = chain.sign(chain.payload(certificate=b"\x30\x03\x02\x01\x00"))
    with pytest.raises(MalformedError) as e:
        _verify(data, chain)
    assert e.value.field == "certificate"


@pytest.mark.parametrize("delta", [timedelta(hours=-2), timedelta(hours=3)])
def test_leaf_outside_validity(chain: FakeChain, delta: timedelta) -> None:
    data = chain.sign(chain.payload())
    with pytest.raises(VerificationError) as e:
        _verify(data, chain, at=NOW + delta)
    assert e.value.code == "certificate_expired"


def test_untrusted_trust_argument(chain: FakeChain) -> None:
    from veritee.errors import UsageError

    with pytest.raises(UsageError):
        nitro.verify(chain.sign(chain.payload()), collateral=Collateral.empty(), at=NOW, trust="x")


# --- verified certificate links, kept by their exact bytes ------------------------------------


def _flip_signature_bit(der: bytes) -> bytes:
    """The certificate with one bit of its signature value flipped (the value ends the DER)."""
    return der[:-3] + bytes([der[-3] ^ 0x01]) + der[-2:]


def test_links_are_kept_only_after_they_verify(chain: FakeChain) -> None:
    nitro.clear_caches()
    _verify(chain.sign(chain.payload()), chain)
    assert len(nitro._LINKS._data) == 2  # root -> intermediate, intermediate -> leaf
    bad_leaf = _flip_signature_bit(chain.leaf)
    with pytest.raises(VerificationError) as e:
        _verify(chain.sign(chain.payload(certificate=bad_leaf)), chain)
    assert e.value.code == "chain_invalid"
    assert len(nitro._LINKS._data) == 2  # the failure is not remembered
    with pytest.raises(VerificationError) as e:  # and refused again
        _verify(chain.sign(chain.payload(certificate=bad_leaf)), chain)
    assert e.value.code == "chain_invalid"


def test_a_warm_cache_refuses_substitutes_and_old_windows(chain: FakeChain) -> None:
    """With the real chain's links kept, every substitute is still refused: a leaf with the same
    names and key signed by another intermediate key, an intermediate with the real name and key
    signed by another root, a tampered intermediate signature; and windows are checked at each
    call's own time."""
    nitro.clear_caches()
    _verify(chain.sign(chain.payload()), chain)
    evil = ec.generate_private_key(ec.SECP384R1())
    forged_leaf = _cert("i-0123-enc0123", chain.leaf_key, "zonal.fake", evil, ca=False)
    forged_inter = _cert(
        "zonal.fake", chain.inter_key, "fake.nitro-enclaves", evil, ca=True, path_length=0
    )
    for payload in (
        chain.payload(certificate=forged_leaf),
        chain.payload(cabundle=[chain.root, forged_inter]),
        chain.payload(cabundle=[chain.root, _flip_signature_bit(chain.inter)]),
    ):
        with pytest.raises(VerificationError) as e:
            _verify(chain.sign(payload), chain)
        assert e.value.code == "chain_invalid"
    with pytest.raises(VerificationError) as e:
        _verify(chain.sign(chain.payload()), chain, at=NOW + timedelta(hours=3))
    assert e.value.code == "certificate_expired"
    assert _verify(chain.sign(chain.payload()), chain).claims["nonce"] == "42" * 32


def test_the_kept_links_are_bounded(chain: FakeChain) -> None:
    nitro.clear_caches()
    limit = nitro._LINKS._max
    for i in range(limit + 3):
        nitro._LINKS.put((b"issuer", i.to_bytes(4, "big")), True)
    assert len(nitro._LINKS._data) == limit
    nitro.clear_caches()
    assert len(nitro._LINKS._data) == 0


def _usage(*, cert_sign: bool, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _with(der: bytes, issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool,
          usage: x509.KeyUsage | None) -> bytes:  # fmt: skip
    """``der`` issued again by ``issuer_key``: basic constraints ``ca``, key usage ``usage``."""
    old = x509.load_der_x509_certificate(der)
    b = (
        x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.issuer)
        .public_key(old.public_key()).serial_number(old.serial_number)
        .not_valid_before(old.not_valid_before_utc).not_valid_after(old.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if usage is not None:
        b = b.add_extension(usage, critical=True)
    return b.sign(issuer_key, hashes.SHA384()).public_bytes(Encoding.DER)


def test_the_signing_certificate_must_not_be_a_ca(chain: FakeChain) -> None:
    """The AWS document's ``certificate`` is the enclave's own: a CA's key (the zonal or
    instance CA) signing a document directly was accepted."""
    leaf = _with(chain.leaf, chain.inter_key, ca=True, usage=_usage(cert_sign=True, sign=True))
    with pytest.raises(VerificationError) as e:
        _verify(chain.sign(chain.payload(certificate=leaf)), chain)
    assert e.value.code == "chain_invalid" and "not an end-entity" in str(e.value)
    fine = _with(chain.leaf, chain.inter_key, ca=False, usage=_usage(cert_sign=False, sign=True))
    assert _verify(chain.sign(chain.payload(certificate=fine)), chain).claims["nonce"] == "42" * 32


def test_an_issuer_whose_key_usage_forbids_certificate_signing_is_refused(
    chain: FakeChain,
) -> None:
    inter = _with(chain.inter, chain.root_key, ca=True, usage=_usage(cert_sign=False, sign=True))
    with pytest.raises(VerificationError) as e:
        _verify(chain.sign(chain.payload(cabundle=[chain.root, inter])), chain)
    assert e.value.code == "chain_invalid" and "key usage" in str(e.value)
