"""Benchmark: TDX quote verification (veritee.evidence.tdx) against the crypto floor and dcap-qvl.

Run from the repository root on one core::

    .venv/bin/python bench/bench_dcap.py [--runs 7] [--seconds 0.5]

Measures, in the same process, per TDX quote (dcap-qvl sample v4 with its collateral, at
2025-06-20T00:00:00Z):

  floor-cached    the 2 ECDSA P-256 verifications a quote needs when collateral is cached
                  (quote by the attestation key, QE report by the PCK key), keys preloaded
  floor-new-pck   what a platform not seen before cannot skip: its PCK certificate's signature by
                  the (known) PCK CA key, its key and the attestation key built, the QE report
                  and the quote verified (3 ECDSA P-256 verifications, 2 key builds)
  floor-uncached  all 11 ECDSA verifications of a cold verification (+ PCK chain, CRLs,
                  TCB signing chains, TCB info, QE identity), through cryptography's own
                  certificate and CRL checks (which re-encode the signed parts)
  floor-exact     the 9 distinct ECDSA verifications a cold verification makes, over the exact
                  signed bytes with keys preloaded, as veritee makes them (the TCB signing and
                  PCK CA certificates appear in two chains each and are checked once): what a
                  cold verification costs when reading the documents costs nothing
  veritee-cached  tdx.verify() with verified collateral and PCK chain cached
  veritee-new-pck tdx.verify() with collateral cached but the PCK chain / attestation key not
                  (a quote from a platform not seen before; its PCK CA and root, which the
                  collateral shares, stay known: dcap.clear_caches(keep_collateral=True))
  veritee-cold    tdx.verify() with every cache cleared before each call
  dcap-qvl        dcap_qvl.verify() on the same quote, collateral object and time
  refuse-cached   tdx.verify() at 2025-09-20, when the collateral has expired (refused), caches warm
  refuse-cold     the same with every cache cleared before each call
  dcap-qvl-refuse dcap_qvl.verify() at 2025-09-20 (refused)

A refusal must never cost more than an acceptance (issue 15 item 3): the ratios
refuse-cached/veritee-cached and refuse-cold/veritee-cold are printed (time; goal < 1).

Prints the median over runs of per-quote time and throughput, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from _common import rate
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import certs as certs_mod
from veritee.collateral import Collateral
from veritee.evidence import dcap, tdx

TV = Path(__file__).resolve().parents[1].parent / "shared" / "testvectors" / "tdx"
AT = datetime(2025, 6, 20, tzinfo=UTC)
EXPIRED = datetime(2025, 9, 20, tzinfo=UTC)  # TCB info, QE identity and PCK CRL past nextUpdate


def signed(der: bytes, crl: bool = False) -> tuple[bytes, bytes]:
    """(signature, signed bytes) of a certificate's or CRL's exact DER."""
    raw = certs_mod._walk(der, crl)
    assert raw is not None
    return raw.signature, raw.tbs


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    if not TV.is_dir():
        print(f"test vectors not found at {TV}", file=sys.stderr)
        return 2
    quote = (TV / "dcapqvl_tdx_quote_v4.bin").read_bytes()
    coll_path = TV / "dcapqvl_tdx_quote_v4_collateral.json"
    collateral = Collateral.from_paths([coll_path])
    doc = json.loads(coll_path.read_text())

    # --- the floor: the ECDSA verifications themselves -------------------------------------
    parsed = dcap.parse_quote(quote)
    sig = parsed.signature_data
    certs = x509.load_pem_x509_certificates(sig.pck_chain_pem.rstrip(b"\0"))
    pck_key = certs[0].public_key()
    att_key = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + sig.attestation_key
    )
    assert isinstance(pck_key, ec.EllipticCurvePublicKey)
    qsig = dcap._raw_sig_to_der(sig.signature)
    qe_sig = dcap._raw_sig_to_der(sig.qe_report_signature)
    alg = ec.ECDSA(hashes.SHA256())
    tcb_chain = x509.load_pem_x509_certificates(doc["tcb_info_issuer_chain"].encode())
    crl_chain = x509.load_pem_x509_certificates(doc["pck_crl_issuer_chain"].encode())
    root_crl = x509.load_der_x509_crl(bytes.fromhex(doc["root_ca_crl"]))
    pck_crl = x509.load_der_x509_crl(bytes.fromhex(doc["pck_crl"]))
    tcb_key = tcb_chain[0].public_key()
    assert isinstance(tcb_key, ec.EllipticCurvePublicKey)
    tcb_sig = dcap._raw_sig_to_der(bytes.fromhex(doc["tcb_info_signature"]))
    qe_id_sig = dcap._raw_sig_to_der(bytes.fromhex(doc["qe_identity_signature"]))
    root_key = crl_chain[-1].public_key()
    ca_key = crl_chain[0].public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey) and isinstance(
        ca_key, ec.EllipticCurvePublicKey
    )

    def floor_cached() -> None:
        att_key.verify(qsig, parsed.signed, alg)
        pck_key.verify(qe_sig, sig.qe_report.raw, alg)

    leaf_der = certs[0].public_bytes(serialization.Encoding.DER)
    point = b"\x04" + sig.attestation_key
    pck_ca_key = certs[1].public_key()  # known: it comes with the collateral
    assert isinstance(pck_ca_key, ec.EllipticCurvePublicKey)

    def floor_new_pck() -> None:
        leaf = x509.load_der_x509_certificate(leaf_der)
        pck_ca_key.verify(leaf.signature, leaf.tbs_certificate_bytes, alg)
        leaf_key = leaf.public_key()
        assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
        leaf_key.verify(qe_sig, sig.qe_report.raw, alg)
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        key.verify(qsig, parsed.signed, alg)

    def floor_uncached() -> None:
        floor_cached()
        certs[0].verify_directly_issued_by(certs[1])
        certs[1].verify_directly_issued_by(certs[2])
        crl_chain[0].verify_directly_issued_by(crl_chain[1])
        tcb_chain[0].verify_directly_issued_by(tcb_chain[1])
        tcb_chain[0].verify_directly_issued_by(tcb_chain[1])  # QE identity chain (same certs)
        root_crl.is_signature_valid(root_key)
        pck_crl.is_signature_valid(ca_key)
        tcb_key.verify(tcb_sig, doc["tcb_info"].encode(), alg)
        tcb_key.verify(qe_id_sig, doc["qe_identity"].encode(), alg)

    # The signed parts as loaded (veritee.certs reads them the same way), keys preloaded.
    exact = [
        (ca_key, *signed(der(certs[0]))),  # PCK leaf by the PCK CA
        (root_key, *signed(der(certs[1]))),  # PCK CA by the root
        (root_key, *signed(der(tcb_chain[0]))),  # TCB signing by the root
        (root_key, *signed(bytes.fromhex(doc["root_ca_crl"]), crl=True)),
        (ca_key, *signed(bytes.fromhex(doc["pck_crl"]), crl=True)),
        (tcb_key, tcb_sig, doc["tcb_info"].encode()),
        (tcb_key, qe_id_sig, doc["qe_identity"].encode()),
    ]
    assert certs[1].public_bytes(serialization.Encoding.DER) == der(crl_chain[0])

    def floor_exact() -> None:
        floor_cached()
        for key, signature, data in exact:
            key.verify(signature, data, alg)

    def ours_cached() -> None:
        tdx.verify(quote, collateral=collateral, at=AT)

    def ours_cold() -> None:
        dcap.clear_caches()
        tdx.verify(quote, collateral=collateral, at=AT)

    def ours_new_platform() -> None:
        dcap.clear_caches(keep_collateral=True)
        tdx.verify(quote, collateral=collateral, at=AT)

    def refused(fn: Callable[[], object]) -> Callable[[], None]:
        def call() -> None:
            try:
                fn()
            except Exception:
                return
            raise AssertionError("expired collateral was accepted")

        return call

    def ours_refuse_cached() -> None:
        tdx.verify(quote, collateral=collateral, at=EXPIRED)

    def ours_refuse_cold() -> None:
        dcap.clear_caches()
        tdx.verify(quote, collateral=collateral, at=EXPIRED)

    benches: dict[str, Callable[[], object]] = {
        "floor-cached": floor_cached,
        "floor-new-pck": floor_new_pck,
        "floor-uncached": floor_uncached,
        "floor-exact": floor_exact,
        "veritee-cached": ours_cached,
        "veritee-new-pck": ours_new_platform,
        "veritee-cold": ours_cold,
        "refuse-cached": refused(ours_refuse_cached),
        "refuse-cold": refused(ours_refuse_cold),
    }
    try:
        import dcap_qvl

        qvl_coll = dcap_qvl.QuoteCollateralV3.from_json(coll_path.read_text())
        now = int(AT.timestamp())
        assert str(dcap_qvl.verify(quote, qvl_coll, now).status) == "UpToDate"
        benches["dcap-qvl"] = lambda: dcap_qvl.verify(quote, qvl_coll, now)
        late = int(EXPIRED.timestamp())
        benches["dcap-qvl-refuse"] = refused(lambda: dcap_qvl.verify(quote, qvl_coll, late))
    except ImportError:
        print("dcap-qvl not importable: skipping its row")

    assert tdx.verify(quote, collateral=collateral, at=AT).claims["tcb_status"] == "UpToDate"
    results: dict[str, list[float]] = {k: [] for k in benches}
    for _ in range(args.runs):  # interleave runs so noise hits every row alike
        for name, fn in benches.items():
            results[name].append(1 / rate(fn, args.seconds, batch=20))
    med = {k: statistics.median(v) for k, v in results.items()}
    report(med, args.runs)
    return 0


def report(med: dict[str, float], runs: int) -> None:
    """Print the medians and the ratios the goals are stated on."""
    print(f"{'what':16} {'median us/quote':>16} {'quotes/s':>10}   (runs={runs}, one core)")
    for name, sec in med.items():
        print(f"{name:16} {sec * 1e6:16.1f} {1 / sec:10.0f}")
    print()
    print(
        f"veritee-cached / floor-cached time : {med['veritee-cached'] / med['floor-cached']:.2f}x"
    )
    print(
        f"veritee-cold / floor-uncached time : {med['veritee-cold'] / med['floor-uncached']:.2f}x"
    )
    reading = med["veritee-cold"] - med["floor-exact"]
    print(
        f"veritee-cold beside its signatures (floor-exact): {reading * 1e6:.0f} us of reading and "
        f"checking, {reading / med['veritee-cold']:.0%} of the call"
    )
    print(
        f"refusal / acceptance time, cached: {med['refuse-cached'] / med['veritee-cached']:.2f}x "
        f"(expired collateral; goal < 1)"
    )
    print(f"refusal / acceptance time, cold  : {med['refuse-cold'] / med['veritee-cold']:.2f}x")
    if "dcap-qvl-refuse" in med:
        print(
            f"throughput refuse-cached / dcap-qvl-refuse: {med['dcap-qvl-refuse'] / med['refuse-cached']:.2f}x"
        )
        print(
            f"throughput refuse-cold   / dcap-qvl-refuse: {med['dcap-qvl-refuse'] / med['refuse-cold']:.2f}x"
        )
    if "dcap-qvl" in med:
        print(
            f"throughput veritee-cached / dcap-qvl: {med['dcap-qvl'] / med['veritee-cached']:.2f}x (goal >= 3x)"
        )
        print(
            f"throughput veritee-new-pck/ dcap-qvl: {med['dcap-qvl'] / med['veritee-new-pck']:.2f}x (goal >= 2x)"
        )
        print(
            f"throughput veritee-cold   / dcap-qvl: {med['dcap-qvl'] / med['veritee-cold']:.2f}x (goal >= 0.7x, issue 15)"
        )
        print(
            f"throughput floor-new-pck  / dcap-qvl: {med['dcap-qvl'] / med['floor-new-pck']:.2f}x (ceiling for a new platform)"
        )
        print(
            f"throughput floor-uncached / dcap-qvl: {med['dcap-qvl'] / med['floor-uncached']:.2f}x (ceiling for cold)"
        )
        print(
            f"throughput floor-exact    / dcap-qvl: {med['dcap-qvl'] / med['floor-exact']:.2f}x "
            f"(ceiling for cold, the signatures over the exact bytes)"
        )
        budget = 1 / 0.7 * med["dcap-qvl"] - med["floor-exact"]
        print(
            f"reading and checking a cold verification may cost for 0.7x: {budget * 1e6:.0f} us "
            f"(veritee: {reading * 1e6:.0f} us)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
