"""epsilon-attestation-verifier 1.1.0 (pure Python, AWS Nitro) for bench_peers.py, own venv.

Per call: ``verify_attestation(base64 document, aws_root_cert_path=root PEM,
allow_expired=True)``: base64 and CBOR decoding, field checks, the chain from the leaf through
the cabundle to the given root (validity against the current clock: ``allow_expired`` because
the sample's leaf lived three hours in 2024; veritee checks the windows at the document's own
time instead), every certificate signature including the root's self-signature, the COSE
ES384 signature. It reads and parses the root PEM file on every call (its API).
"""

from __future__ import annotations

import base64
import logging
import sys
from pathlib import Path

logging.disable(logging.CRITICAL)  # before the peer is imported (see _driver)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _driver import Refused, serve
from epsilon_verifier import verify_attestation


def prepare(case):  # type: ignore[no-untyped-def]
    doc = base64.b64encode(Path(case["evidence"]).read_bytes()).decode()
    root = case["root_pem"]

    def call() -> None:
        result = verify_attestation(doc, aws_root_cert_path=root, allow_expired=True)
        if not result.valid:
            raise Refused(result.error or "not valid")

    return call


if __name__ == "__main__":
    serve(prepare)
