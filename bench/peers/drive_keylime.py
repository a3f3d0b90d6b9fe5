"""Keylime 7.14.3 (pure Python) ``Tpm.check_quote`` for bench_peers.py, in its own venv.

Per call: ``Tpm().check_quote(None, nonce, None, quote, aik, hash_alg=SHA256,
skip_pcr_check=True)``: the quote string ``r<TPMS_ATTEST>:<TPMT_SIGNATURE>:<PCR blob>`` (base64,
tpm2-tools' PCR file format) split and decoded, the AK's TPM2B_PUBLIC turned into a PEM key and
loaded, the signature checked (RSASSA, prehashed SHA-256), the nonce in extraData compared and
the PCR digest recomputed from the blob. The AK is known from registration (Keylime checks its
certificate once, at the registrar). ``skip_pcr_check``: no TPM policy to compare PCRs against,
as veritee's verify() leaves policy to the appraisal. Keylime's verdict is its ``Failure``,
read as Keylime's verifier reads it (``if not failure``: accepted). Keylime needs tpm2-tools and python3-gpg from Debian.
"""

from __future__ import annotations

import base64
import logging
import sys
from pathlib import Path

logging.disable(logging.CRITICAL)  # before the peer is imported (see _driver)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _driver import Refused, serve
from keylime.common.algorithms import Hash
from keylime.mba import mba
from keylime.tpm.tpm_main import Tpm

mba.load_imports(skip_custom_policies=True)
TPM = Tpm()


def prepare(case):  # type: ignore[no-untyped-def]
    quote = Path(case["quote"]).read_text()
    aik = base64.b64decode(Path(case["aik_b64"]).read_text())
    nonce = bytes.fromhex(case["nonce_hex"])

    def call() -> None:
        failure = TPM.check_quote(None, nonce, None, quote, aik, hash_alg=Hash.SHA256,
                                  skip_pcr_check=True)  # fmt: skip
        if failure:  # Keylime's own test (cloud_verifier_common: `if not failure:` passes)
            raise Refused(", ".join(failure.get_event_ids()) or "irrecoverable")

    return call


if __name__ == "__main__":
    serve(prepare)
