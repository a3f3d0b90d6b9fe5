"""veritee side by side with the Python verifiers a user would otherwise pick (issue 15).

Each peer is installed, at a pinned version, into its own virtual environment under a cache
folder (default ``~/.cache/veritee-bench/peers``, or ``$VERITEE_BENCH_CACHE``), and runs in a
subprocess of that environment's Python: a small driver (``bench/peers/drive_*.py``) that loads
the cases, times calls for a given number of seconds and gives its verdicts, as JSON lines.
veritee runs in the same way in a subprocess of this Python (``peers/drive_veritee.py``).

  FORMAT        PEER                          vector (../shared/testvectors)
  nvidia-gpu    nv-local-gpu-verifier 2.7.3   nvtrust H100 report and chain
  tpm           keylime 7.14.3                GCE vTPM sample, its SHA-256 quote (RSA-2048)
  tdx           dcap-qvl 0.7.0                dcap-qvl TDX v4 quote and collateral
  sgx           dcap-qvl 0.7.0                dcap-qvl SGX v3 quote and collateral
  sev-snp       omne-attest 0.1.0             virtee Milan report, VCEK, Milan ASK/ARK (chain
                                              cached on both sides)
  sev-snp-cold  omne-attest 0.1.0             the same, chain checked on every call
  nitro         epsilon-attestation-verifier  the nitrite sample document (agreement); timed:
                1.1.0                         the sample re-signed by a chain of the same shape
                                              with user_data and nonce cut to 512 bytes (epsilon
                                              refuses the sample's 1,024: resign_nitro); veritee
                                              keeps the chain's verified links after the first call
  nitro-cold    epsilon-attestation-verifier  the same, every link's signature checked on every
                1.1.0                         call

What each side does per call is written in each driver's docstring and in docs/benchmarks.md.

Both sides are pinned to one core (this process's first allowed CPU, inherited by the drivers);
only one of them runs at a time. Each round times the peer and veritee for ``--seconds`` each,
the order alternating from round to round (peer first in even rounds). Printed per comparison:

  peer-ratio FORMAT PEER RATIO   veritee's throughput over the peer's, median of the rounds'
                                 ratios
  peer-agree FORMAT PEER A/N     verdicts that agree, on the good vector and on mutated ones
                                 (bytes flipped in the signed region, signatures, keys;
                                 truncated; appended)
  peer-disagree FORMAT PEER CASE veritee=... peer=...   each disagreement
  peer-skip FORMAT PEER REASON   a peer that cannot be installed or run here (the bench goes on)

    .venv/bin/python bench/bench_peers.py [--rounds 7] [--seconds 0.3] [--only tdx,tpm]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DRIVERS = HERE / "peers"
TV = ROOT.parent / "shared" / "testvectors"
DEFAULT_CACHE = (
    Path(os.environ.get("VERITEE_BENCH_CACHE", Path.home() / ".cache" / "veritee-bench")) / "peers"
)
INSTALL_TIMEOUT = 900

sys.path.insert(0, str(ROOT))
from tests.fakes.tpm_sample import encode_fields  # noqa: E402  (the tests' protobuf encoder)


@dataclass(frozen=True)
class Peer:
    name: str
    driver: str
    #: Every package of the venv, pinned (the peer and what it pulls in).
    requirements: tuple[str, ...]
    #: Debian packages the peer needs (installed with apt-get when missing and we are root).
    debian: tuple[str, ...] = ()
    #: Python packages taken from Debian (linked into the venv's site-packages).
    debian_modules: tuple[str, ...] = ()


PEERS: dict[str, Peer] = {p.name: p for p in (
    Peer("dcap-qvl", "drive_dcap_qvl.py", ("dcap-qvl==0.7.0",)),
    Peer("omne-attest", "drive_omne_attest.py",
         ("omne-attest==0.1.0", "cryptography==50.0.2", "cffi==2.1.1", "pycparser==3.12")),
    Peer("epsilon-attestation-verifier", "drive_epsilon.py",
         ("epsilon-attestation-verifier==1.1.0", "cbor2==6.3.0", "cryptography==50.0.2",
          "cffi==2.1.1", "pycparser==3.12", "requests==2.34.2", "certifi==2026.10.19.post1",
          "charset-normalizer==3.5.3", "idna==3.20", "urllib3==2.8.0")),
    Peer("nv-local-gpu-verifier", "drive_nv_gpu_verifier.py",
         ("nv-local-gpu-verifier==2.7.3", "asn1==2.7.0", "certifi==2026.10.19.post1",
          "cffi==2.1.1", "cryptography==43.0.1", "ecdsa==0.18.0", "elementpath==4.8.0",
          "enum-compat==0.0.3", "lxml==4.9.4", "nvidia-ml-py==12.550.52", "pycparser==3.12",
          "PyJWT==2.7.0", "pyOpenSSL==24.2.1", "signxml==3.2.0", "six==1.17.0",
          "urllib3==2.6.3", "xmlschema==2.2.3")),
    # keylime on PyPI declares no dependencies: these are the ones check_quote's imports need.
    # gpg (GPGME's bindings) is not on PyPI in a buildable form: Debian's python3-gpg is linked
    # in; keylime's measured-boot module runs tpm2-tools at import.
    Peer("keylime", "drive_keylime.py",
         ("keylime==7.14.3", "cryptography==50.0.2", "cffi==2.1.1", "pycparser==3.12",
          "pyasn1==0.6.5", "pyasn1-modules==0.4.2", "PyYAML==6.0.3", "jsonschema==4.26.0",
          "jsonschema-specifications==2025.9.1", "referencing==0.37.0", "rpds-py==2026.9.1",
          "attrs==26.1.0", "typing-extensions==4.16.0", "lark==1.3.1", "packaging==26.4"),
         debian=("python3-gpg", "tpm2-tools"), debian_modules=("gpg",)),
)}  # fmt: skip

#: (format, peer) in the order they run.
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("nvidia-gpu", "nv-local-gpu-verifier"),
    ("tpm", "keylime"),
    ("tdx", "dcap-qvl"),
    ("sgx", "dcap-qvl"),
    ("sev-snp", "omne-attest"),
    ("sev-snp-cold", "omne-attest"),
    ("nitro", "epsilon-attestation-verifier"),
    ("nitro-cold", "epsilon-attestation-verifier"),
)


# --- pure helpers (tests/unit/bench) ------------------------------------------------------------


def parse_reply(line: str) -> dict[str, Any]:
    """One driver answer: a JSON object on one line. Raises ValueError otherwise (a driver that
    died answers with an empty line)."""
    if not line.strip():
        raise ValueError("the driver gave no answer (it exited)")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ValueError("a driver answer must be a JSON object")
    if "error" in reply:
        raise ValueError(f"driver error: {reply['error']}")
    return reply


def rate(reply: dict[str, Any]) -> float:
    """Calls per second of a ``time`` answer."""
    calls, seconds = reply.get("calls"), reply.get("seconds")
    if not isinstance(calls, int) or isinstance(calls, bool) or calls <= 0:
        raise ValueError("a time answer needs a positive integer 'calls'")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not seconds > 0:
        raise ValueError("a time answer needs positive 'seconds'")
    return calls / float(seconds)


def peer_first(round_index: int) -> bool:
    """Alternated rounds: the peer runs first in even rounds, veritee first in odd ones."""
    return round_index % 2 == 0


def median_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """Median over rounds of veritee's throughput over the peer's in the same round."""
    if not ours or len(ours) != len(theirs):
        raise ValueError("one veritee rate and one peer rate per round")
    if min(*ours, *theirs) <= 0:
        raise ValueError("rates must be positive")
    return statistics.median(o / t for o, t in zip(ours, theirs, strict=True))


def ratio_line(fmt: str, peer: str, ratio: float) -> str:
    return f"peer-ratio {fmt} {peer} {ratio:.2f}"


def verdict_text(v: dict[str, Any]) -> str:
    return "accept" if v["ok"] else f"refuse ({v.get('why') or '?'})"


def agreement(
    ours: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]]
) -> tuple[int, int, list[str]]:
    """(agreeing, compared, disagreeing case names): verdicts compared by acceptance alone."""
    names = sorted(set(ours) | set(theirs))
    missing = [n for n in names if n not in ours or n not in theirs]
    if missing:
        raise ValueError(f"cases without a verdict on one side: {missing}")
    differ = [n for n in names if bool(ours[n]["ok"]) != bool(theirs[n]["ok"])]
    return len(names) - len(differ), len(names), differ


def flip(data: bytes, offset: int) -> bytes:
    """``data`` with the low bit of the byte at ``offset`` (negative: from the end) flipped."""
    b = bytearray(data)
    b[offset] ^= 0x01
    return bytes(b)


def pcr_blob(bank: int, pcrs: dict[int, bytes]) -> bytes:
    """PCR values in tpm2-tools' PCR output format (what Keylime's agent sends): a
    TPML_PCR_SELECTION of 16 entries as in memory (little-endian, padded), the number of
    TPML_DIGESTs, then each TPML_DIGEST (count, 8 TPM2B_DIGESTs padded to 64 bytes)."""
    if not pcrs or max(pcrs) > 23 or min(pcrs) < 0:
        raise ValueError("PCR indices 0..23, at least one")
    mask = sum(1 << i for i in pcrs)
    out = struct.pack("<I", 1) + struct.pack("<HB", bank, 3) + mask.to_bytes(3, "little") + bytes(2)
    out += bytes(8 * 15)
    values = [pcrs[i] for i in sorted(pcrs)]
    chunks = [values[i : i + 8] for i in range(0, len(values), 8)]
    out += struct.pack("<I", len(chunks))
    for chunk in chunks:
        out += struct.pack("<I", len(chunk))
        for j in range(8):
            v = chunk[j] if j < len(chunk) else b""
            out += struct.pack("<H", len(v)) + v.ljust(64, b"\0")
    return out


def proto(fields: Iterable[tuple[int, int | bytes]]) -> bytes:
    """Protobuf wire encoding of (field number, varint or bytes) pairs (the tests' encoder)."""
    return encode_fields(list(fields))


# --- the cases: the same inputs rendered for each side ------------------------------------------


@dataclass
class Cases:
    """Per case name, veritee's inputs and the peer's; "good" is the case that is timed."""

    ours: dict[str, dict[str, Any]] = field(default_factory=dict)
    theirs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _write(folder: Path, name: str, data: bytes | str) -> str:
    path = folder / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return str(path)


def dcap_cases(fmt: str, out: Path) -> Cases:
    from veritee.evidence import dcap

    folder = TV / ("tdx" if fmt == "tdx" else "sgx")
    stem = "dcapqvl_tdx_quote_v4" if fmt == "tdx" else "dcapqvl_sgx_quote_v3"
    quote = (folder / f"{stem}.bin").read_bytes()
    coll = str(folder / f"{stem}_collateral.json")
    at = datetime(2025, 6, 20, tzinfo=UTC)
    parsed = dcap.parse_quote(quote)
    body = 584 if fmt == "tdx" else 384
    sig = 48 + body + 4  # header, report body, signature data length
    qe = quote.find(parsed.signature_data.qe_report.raw)
    end = sig + int.from_bytes(
        quote[sig - 4 : sig], "little"
    )  # the TDX sample has zero padding after
    variants = {
        "good": quote,
        "header-byte": flip(quote, 30),
        "report-body-byte": flip(quote, 48 + 100),
        "quote-signature": flip(quote, sig + 3),
        "attestation-key": flip(quote, sig + 64 + 3),
        "qe-report-byte": flip(quote, qe + 64),
        "qe-report-signature": flip(quote, qe + 384 + 3),
        "truncated-half": quote[: len(quote) // 2],
        "truncated-pck-chain": quote[: end - 16],
        "appended-zeros": quote + bytes(16),
    }
    cases = Cases()
    for name, data in variants.items():
        path = _write(out, f"{fmt}-{name}.bin", data)
        cases.ours[name] = {
            "kind": fmt,
            "evidence": path,
            "collateral": [coll],
            "at": at.isoformat(),
        }
        cases.theirs[name] = {"evidence": path, "collateral": [coll], "now": int(at.timestamp())}
    return cases


def snp_cases(fmt: str, out: Path) -> Cases:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    folder = TV / "sev-snp"
    report = (folder / "virtee_milan_report.bin").read_bytes()
    chain_pem = folder / "amd_milan_vcek_ask_ark.pem"
    certs = x509.load_pem_x509_certificates(chain_pem.read_bytes())
    ark = next(c for c in certs if c.subject == c.issuer)
    ask = next(c for c in certs if c.subject != c.issuer and c.issuer == ark.subject)
    ark_der, ask_der = ark.public_bytes(Encoding.DER), ask.public_bytes(Encoding.DER)
    ark_path, ask_path = (
        _write(out, "milan-ark.der", ark_der),
        _write(out, "milan-ask.der", ask_der),
    )
    at = datetime(2026, 1, 15, tzinfo=UTC)
    good_vcek = str(folder / "virtee_milan_vcek.der")
    variants: dict[str, tuple[bytes, str]] = {
        "good": (report, good_vcek),
        "report-data-byte": (flip(report, 0x50), good_vcek),
        "measurement-byte": (flip(report, 0x90), good_vcek),
        "reported-tcb-byte": (flip(report, 0x180), good_vcek),
        "chip-id-byte": (flip(report, 0x1A0), good_vcek),
        "signature-r": (flip(report, 0x2A0 + 3), good_vcek),
        "truncated-signed": (report[:0x2A0], good_vcek),
        "appended": (report + bytes(8), good_vcek),
        "other-chip-vcek": (report, str(folder / "gosevguest_milan_vcek.der")),
    }
    cases = Cases()
    for name, (data, vcek) in variants.items():
        path = _write(out, f"{fmt}-{name}.bin", data)
        cases.ours[name] = {"kind": fmt, "evidence": path, "collateral": [vcek, str(chain_pem)],
                            "at": at.isoformat()}  # fmt: skip
        cases.theirs[name] = {"kind": fmt, "evidence": path, "vcek_der": vcek,
                              "ask_der": ask_path, "ark_der": ark_path,
                              "ark_sha256": hashlib.sha256(ark_der).hexdigest()}  # fmt: skip
    return cases


def resign_nitro(doc: bytes, user_data_max: int = 512) -> tuple[bytes, bytes]:
    """(document, root DER): the sample with its user_data and nonce cut to ``user_data_max`` bytes and
    re-signed by a fresh P-384 chain of the same shape (root, 3 intermediates, leaf; each
    certificate's names, windows and extensions copied, key identifiers recomputed).

    epsilon-attestation-verifier refuses the real sample (its user_data and nonce are 1,024 bytes,
    the AWS limit; epsilon allows 512): this document, which both accept, is the one timed. Same work
    per call as the real sample: five P-384 certificate signatures and the COSE signature."""
    import cbor2
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.hazmat.primitives.serialization import Encoding

    protected, unprotected, payload, _sig = cbor2.loads(doc)
    fields = cbor2.loads(payload)
    originals = [
        x509.load_der_x509_certificate(d) for d in [*fields["cabundle"], fields["certificate"]]
    ]
    keys = [ec.generate_private_key(ec.SECP384R1()) for _ in originals]
    ders: list[bytes] = []
    for i, (cert, key) in enumerate(zip(originals, keys, strict=True)):
        issuer_key = keys[max(i - 1, 0)]
        b = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
             .public_key(key.public_key()).serial_number(cert.serial_number if cert.serial_number.bit_length() < 160 else x509.random_serial_number())
             .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))  # fmt: skip
        for ext in cert.extensions:
            value: x509.ExtensionType = ext.value
            if isinstance(value, x509.SubjectKeyIdentifier):
                value = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
            elif isinstance(value, x509.AuthorityKeyIdentifier):
                value = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
            b = b.add_extension(value, ext.critical)
        ders.append(b.sign(issuer_key, hashes.SHA384()).public_bytes(Encoding.DER))
    fields["cabundle"], fields["certificate"] = ders[:-1], ders[-1]
    for name in ("user_data", "nonce"):
        if fields.get(name) is not None:
            fields[name] = fields[name][:user_data_max]
    payload = cbor2.dumps(fields)
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(keys[-1].sign(to_sign, ec.ECDSA(hashes.SHA384())))
    signature = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    return cbor2.dumps([protected, unprotected, payload, signature]), ders[0]


def nitro_cases(fmt: str, out: Path) -> Cases:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from veritee.evidence import nitro

    folder = TV / "nitro"
    doc = (folder / "nitrite_attestation.cbor").read_bytes()
    _envelope, parsed = nitro.parse(doc)
    pcr0 = doc.find(dict(parsed.pcrs)[0])
    leaf = doc.find(parsed.certificate)
    module = doc.find(parsed.module_id.encode())
    at = datetime(2024, 9, 7, 14, 40, tzinfo=UTC)
    resigned, resigned_root = resign_nitro(doc)
    root_pem = x509.load_der_x509_certificate(resigned_root).public_bytes(Encoding.PEM)
    variants = {
        "good": (resigned, resigned_root),  # timed: see resign_nitro
        "aws-sample": (doc, None),
        "cose-signature": (flip(doc, -10), None),
        "pcr0-byte": (flip(doc, pcr0 + 1), None),
        "module-id-byte": (flip(doc, module + 2), None),
        "leaf-certificate-signature": (flip(doc, leaf + len(parsed.certificate) - 10), None),
        "truncated-half": (doc[: len(doc) // 2], None),
        "truncated-tail": (doc[:-1], None),
        "appended": (doc + b"\x00", None),
        "resigned-cose-signature": (flip(resigned, -10), resigned_root),
    }
    aws_root = str(folder / "aws_nitro_root.pem")
    own_root = _write(out, "nitro-resigned-root.pem", root_pem)
    cases = Cases()
    for name, (data, root) in variants.items():
        path = _write(out, f"nitro-{name}.cbor", data)
        cases.ours[name] = {"kind": fmt, "evidence": path, "at": at.isoformat()}
        if root is not None:
            cases.ours[name]["root_sha256"] = hashlib.sha256(root).hexdigest()
        cases.theirs[name] = {"evidence": path, "root_pem": aws_root if root is None else own_root}
    return cases


def nvidia_cases(fmt: str, out: Path) -> Cases:
    folder = TV / "nvidia-gpu"

    def report(name: str) -> bytes:
        return bytes.fromhex("".join((folder / name).read_text().split()))

    main, main_chain = (
        report("nvtrust_hopperAttestationReport.txt"),
        (folder / "nvtrust_hopperCertChain.pem").read_text(),
    )
    other, other_chain = (
        report("trustee_hopper_coco_report1.txt"),
        (folder / "trustee_hopper_coco_certs1.pem").read_text(),
    )
    # the signature is the last 96 bytes of the response (the second sample has 1 trailing byte)
    variants: dict[str, tuple[bytes, str, bytes]] = {
        "good": (main, main_chain, main),
        "second-gpu-good": (other, other_chain, other),
        "request-nonce-byte": (flip(main, 4 + 3), main_chain, main),
        "measurement-record-byte": (flip(main, 37 + 60), main_chain, main),
        "opaque-data-byte": (flip(main, len(main) - 96 - 40), main_chain, main),
        "signature-byte": (flip(main, -10), main_chain, main),
        "truncated-signature": (main[:-48], main_chain, main),
        "other-gpu-chain": (main, other_chain, main),
    }
    root = str(folder / "nvidia_device_identity_root.pem")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    cases = Cases()
    for name, (data, chain, good) in variants.items():
        doc = json.dumps({"report": data.hex(), "certificate_chain": chain})
        cases.ours[name] = {
            "kind": fmt,
            "evidence": _write(out, f"nv-{name}.json", doc),
            "at": at.isoformat(),
        }
        cases.theirs[name] = {"report_hex": _write(out, f"nv-{name}.hex", data.hex()),
                              "chain_pem": _write(out, f"nv-{name}.pem", chain),
                              "good_report_hex": _write(out, f"nv-{name}-good.hex", good.hex()),
                              "root_pem": root}  # fmt: skip
    return cases


def tpm_cases(fmt: str, out: Path) -> Cases:
    from veritee.evidence import tpm

    folder = TV / "tpm"
    sample = (folder / "gotpmtools_gce-cos-85-nonce9009.pb").read_bytes()
    top = list(tpm._fields(sample, "attestation"))
    quote_parts: dict[int, bytes] = {}
    for number, value in top:
        if number == 2 and isinstance(value, bytes):
            parts = {n: v for n, v in tpm._fields(value, "quote") if isinstance(v, bytes)}
            if tpm._quote(value, "quote").bank == 0x000B:
                quote_parts = parts
    ak_pub = next(v for n, v in top if n == 1 and isinstance(v, bytes))
    rest = [(n, v) for n, v in top if n in (6, 7)]  # AK certificate, intermediates
    good = tpm._quote(
        proto([(1, quote_parts[1]), (2, quote_parts[2]), (3, quote_parts[3])]), "quote"
    )
    attest, raw_sig, pcrs = good.attest, quote_parts[2], dict(good.pcrs)
    extra = 6 + 2 + len(good.signer_name) + 2  # magic, type, qualifiedSigner, extraData size
    flipped_pcrs = dict(pcrs)
    flipped_pcrs[0] = flip(pcrs[0], 5)
    variants: dict[str, tuple[bytes, bytes, bytes, dict[int, bytes]]] = {
        "good": (ak_pub, attest, raw_sig, pcrs),
        "attest-extra-data": (ak_pub, flip(attest, extra), raw_sig, pcrs),
        "attest-clock": (ak_pub, flip(attest, extra + len(good.extra_data) + 3), raw_sig, pcrs),
        "attest-pcr-digest": (ak_pub, flip(attest, -3), raw_sig, pcrs),
        "truncated-attest": (ak_pub, attest[:-8], raw_sig, pcrs),
        "signature-byte": (ak_pub, attest, flip(raw_sig, -5), pcrs),
        "pcr0-value": (ak_pub, attest, raw_sig, flipped_pcrs),
        "ak-modulus-byte": (flip(ak_pub, -10), attest, raw_sig, pcrs),
    }
    at = datetime(2026, 1, 1, tzinfo=UTC)
    cases = Cases()
    for name, (ak, att, sig, values) in variants.items():
        pcr_proto = proto(
            [(1, good.bank)] + [(2, proto([(1, i), (2, v)])) for i, v in sorted(values.items())]
        )
        quote = proto([(1, att), (2, sig), (3, pcr_proto)])
        evidence = proto([(1, ak), (2, quote), *rest])
        cases.ours[name] = {"kind": fmt, "evidence": _write(out, f"tpm-{name}.pb", evidence),
                            "collateral": [str(folder)], "at": at.isoformat(),
                            "nonce_hex": good.extra_data.hex()}  # fmt: skip
        text = "r" + ":".join(
            base64.b64encode(x).decode() for x in (att, sig, pcr_blob(good.bank, values))
        )
        aik = struct.pack(">H", len(ak)) + ak  # TPM2B_PUBLIC
        cases.theirs[name] = {"quote": _write(out, f"tpm-{name}.quote", text),
                              "aik_b64": _write(out, f"tpm-{name}.aik", base64.b64encode(aik).decode()),
                              "nonce_hex": good.extra_data.hex()}  # fmt: skip
    return cases


BUILDERS: dict[str, Callable[[str, Path], Cases]] = {
    "nvidia-gpu": nvidia_cases, "tpm": tpm_cases, "tdx": dcap_cases, "sgx": dcap_cases,
    "sev-snp": snp_cases, "sev-snp-cold": snp_cases, "nitro": nitro_cases,
    "nitro-cold": nitro_cases,
}  # fmt: skip


# --- installing the peers ---------------------------------------------------------------------


class Skip(Exception):
    """A peer that cannot be installed or run here; its message is the reason."""


class VeriteeFailed(Exception):
    """veritee's side failed (a bug to fix, not a peer to skip): reported, the bench goes on."""


def _base_python() -> str:
    return str(getattr(sys, "_base_executable", None) or sys.executable)


def _debian_missing(packages: Iterable[str]) -> list[str]:
    missing = []
    for p in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    return missing


def ensure_debian(peer: Peer) -> None:
    if not peer.debian:
        return
    if shutil.which("dpkg-query") is None:
        raise Skip(f"needs Debian packages {' '.join(peer.debian)} (no dpkg here)")
    missing = _debian_missing(peer.debian)
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Skip(f"needs Debian packages {' '.join(missing)} (apt-get install them as root)")
    print(f"installing Debian packages for {peer.name}: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, capture_output=True,
                       text=True, timeout=INSTALL_TIMEOUT)  # fmt: skip
    if r.returncode != 0 or _debian_missing(missing):
        raise Skip(f"apt-get could not install {' '.join(missing)}")


def install(peer: Peer, cache: Path, allow_install: bool = True) -> Path:
    """The peer's venv Python, installing the venv first when it is not there yet."""
    ensure_debian(peer)
    key = hashlib.sha256("\n".join((_base_python(), *peer.requirements)).encode()).hexdigest()[:12]
    venv = cache / f"{peer.name}-{key}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.is_file() and python.exists():
        return python
    if not allow_install:
        raise Skip(f"not installed under {cache} (run without --no-install)")
    shutil.rmtree(venv, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"installing {peer.name} into {venv}", flush=True)
    try:
        subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True, capture_output=True,
                       timeout=INSTALL_TIMEOUT)  # fmt: skip
        r = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--no-deps", *peer.requirements],
                           capture_output=True, text=True, timeout=INSTALL_TIMEOUT)  # fmt: skip
    except (subprocess.SubprocessError, OSError) as e:
        raise Skip(f"install failed: {type(e).__name__}") from None
    if r.returncode != 0:
        last = [
            ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip() and "WARNING" not in ln
        ]
        raise Skip(f"pip install failed: {(last[-1] if last else 'no output')[:160]}")
    site = next((venv / "lib").glob("python3*/site-packages"))
    for module in peer.debian_modules:
        src = Path("/usr/lib/python3/dist-packages") / module
        if not src.exists():
            raise Skip(f"Debian's Python module {module} is not in /usr/lib/python3/dist-packages")
        (site / module).symlink_to(src)
    marker.write_text("\n".join(peer.requirements) + "\n")
    return python


# --- running the drivers ----------------------------------------------------------------------


class Driver:
    """One driver subprocess: JSON requests on stdin, JSON answers on stdout."""

    def __init__(
        self, python: str, script: Path, workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([python, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, cwd=workdir, text=True, env=env)  # fmt: skip

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        try:
            return parse_reply(line)
        except ValueError as e:
            raise Skip(f"{e}: {self.stderr_tail()}") from None

    def stderr_tail(self) -> str:
        self.log.seek(0)
        lines = [ln.strip() for ln in self.log.read().splitlines() if ln.strip()]
        return lines[-1][:200] if lines else "no output"

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@dataclass
class Result:
    fmt: str
    peer: str
    ours: list[float]
    theirs: list[float]
    ratio: float | None  # None: no ratio (the peer refuses the good vector: ``skip`` says why)
    agree: int
    compared: int
    disagreements: list[str]
    skip: str = ""


def compare(
    fmt: str, peer: Peer, python: Path, cases: Cases, work: Path, rounds: int, seconds: float
) -> Result:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    ours = Driver(sys.executable, DRIVERS / "drive_veritee.py", work, env)
    theirs = Driver(str(python), DRIVERS / peer.driver, work,
                    {k: v for k, v in os.environ.items() if k != "PYTHONPATH"})  # fmt: skip
    try:
        loaded = ours.ask({"op": "load", "cases": cases.ours})
        if loaded.get("failed_to_load"):
            raise VeriteeFailed(f"veritee's driver could not load {loaded['failed_to_load']}")
        theirs.ask({"op": "load", "cases": cases.theirs})
        v_ours = ours.ask({"op": "verdicts"})["verdicts"]
        v_theirs = theirs.ask({"op": "verdicts"})["verdicts"]
        agree, compared, differ = agreement(v_ours, v_theirs)
        lines = [
            f"{n} veritee={verdict_text(v_ours[n])} peer={verdict_text(v_theirs[n])}"
            for n in differ
        ]
        if not v_ours["good"]["ok"]:
            raise VeriteeFailed(f"veritee refuses the good vector: {v_ours['good']['why']}")
        if not v_theirs["good"]["ok"]:
            return Result(
                fmt,
                peer.name,
                [],
                [],
                None,
                agree,
                compared,
                lines,
                skip=f"no ratio: the peer refuses the good vector ({v_theirs['good']['why']})",
            )
        our_rates: list[float] = []
        their_rates: list[float] = []
        request = {"op": "time", "case": "good", "seconds": seconds}
        for i in range(rounds):
            order = (theirs, ours) if peer_first(i) else (ours, theirs)
            got = {id(d): rate(d.ask(request)) for d in order}
            our_rates.append(got[id(ours)])
            their_rates.append(got[id(theirs)])
        return Result(fmt, peer.name, our_rates, their_rates, median_ratio(our_rates, their_rates),
                      agree, compared, lines)  # fmt: skip
    finally:
        ours.close()
        theirs.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument(
        "--rounds", type=int, default=7, help="alternated rounds per comparison (default 7)"
    )
    ap.add_argument(
        "--seconds", type=float, default=0.3, help="seconds per side per round (default 0.3)"
    )
    ap.add_argument("--only", default="", help="comma-separated formats to run (default: all)")
    ap.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help=f"peers' venvs (default {DEFAULT_CACHE})"
    )
    ap.add_argument("--no-install", action="store_true", help="use only peers already installed")
    args = ap.parse_args(argv)
    if not TV.is_dir():
        print(f"test vectors not found at {TV}", file=sys.stderr)
        return 2
    only = {f for f in args.only.split(",") if f}
    unknown = only - {f for f, _ in COMPARISONS}
    if unknown:
        ap.error(f"unknown formats: {sorted(unknown)}")
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})  # the drivers inherit it
        print(f"pinned to CPU {cpu} (both sides)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"rounds={args.rounds}, {args.seconds}s per side per round")  # fmt: skip
    warnings.filterwarnings("ignore")
    results: list[Result] = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="veritee-peers-") as tmp:
        work = Path(tmp)
        pythons: dict[str, Path | Skip] = {}
        for fmt, name in COMPARISONS:
            if only and fmt not in only:
                continue
            peer = PEERS[name]
            try:
                if name not in pythons:
                    try:
                        pythons[name] = install(peer, args.cache, allow_install=not args.no_install)
                    except Skip as e:
                        pythons[name] = e
                python = pythons[name]
                if isinstance(python, Skip):
                    raise python
                folder = work / fmt
                folder.mkdir()
                cases = BUILDERS[fmt](fmt, folder)
                start = time.monotonic()
                r = compare(fmt, peer, python, cases, folder, args.rounds, args.seconds)
            except Skip as e:
                print(f"peer-skip {fmt} {name} {e}", flush=True)
                continue
            except (VeriteeFailed, Exception) as e:  # never end the whole bench on one comparison
                failed += 1
                print(
                    f"peer-skip {fmt} {name} bench error: {type(e).__name__}: {e}"[:300], flush=True
                )
                continue
            results.append(r)
            if r.ratio is not None:
                print(ratio_line(fmt, name, r.ratio))
            print(f"peer-agree {fmt} {name} {r.agree}/{r.compared}")
            for line in r.disagreements:
                print(f"peer-disagree {fmt} {name} {line}")
            if r.ratio is None:
                print(f"peer-skip {fmt} {name} {r.skip}", flush=True)
                continue
            print(f"  veritee {statistics.median(r.ours):9.0f}/s  {name} {statistics.median(r.theirs):9.0f}/s  "
                  f"rounds {', '.join(f'{o / t:.2f}' for o, t in zip(r.ours, r.theirs, strict=True))}  "
                  f"({time.monotonic() - start:.0f}s)", flush=True)  # fmt: skip
    if results:
        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        print(
            f"\n| format | peer | veritee /s | peer /s | ratio | verdicts agree |   (load {load[0]:.2f} at end)"
        )
        print("|---|---|---|---|---|---|")
        for r in results:
            if r.ratio is None:
                print(f"| {r.fmt} | {r.peer} | | | — | {r.agree}/{r.compared} |")
                continue
            print(f"| {r.fmt} | {r.peer} | {statistics.median(r.ours):,.0f} | {statistics.median(r.theirs):,.0f} | "
                  f"**{r.ratio:.2f}x** | {r.agree}/{r.compared} |")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
