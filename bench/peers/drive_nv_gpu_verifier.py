"""NVIDIA nv-local-gpu-verifier 2.7.3 (pure Python) for bench_peers.py, in its own venv.

Per call, the steps of ``verifier.cc_admin.attest`` that need no network (OCSP and the RIM
service off, as in its ``--test_no_gpu`` mode without RIMs): the hex report decoded
(``convert_string_to_blob``), parsed (``AttestationReport``), the PEM chain split and loaded
(``GpuCertificateChains.extract_cert_chain``; its root replaced by the pinned NVIDIA Device
Identity CA, loaded once), ``CcAdminUtils.verify_gpu_certificate_chain`` (FWID of the leaf
against the report, OpenSSL chain verification) and ``CcAdminUtils.verify_attestation_report``
(nonce, driver and VBIOS versions against the expected ones, the ECDSA-P384 signature with the
pure-Python ``ecdsa`` package). The expected nonce and versions are those of the good report
(what NVML would return for the GPU). Run with a scratch working directory: the verifier
writes verifier.log there.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

logging.disable(logging.CRITICAL)  # before the peer is imported (see _driver)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _driver import Refused, serve
from OpenSSL import crypto
from verifier.attestation import AttestationReport
from verifier.cc_admin_utils import CcAdminUtils
from verifier.config import HopperSettings
from verifier.nvml.gpu_cert_chains import GpuCertificateChains
from verifier.utils import convert_string_to_blob, format_vbios_version

SETTINGS = HopperSettings()


def _expected(report: AttestationReport) -> tuple[bytes, str, str]:
    opaque = report.get_response_message().get_opaque_data()
    driver = opaque.get_data("OPAQUE_FIELD_ID_DRIVER_VERSION").decode().rstrip("\0")
    vbios = format_vbios_version(opaque.get_data("OPAQUE_FIELD_ID_VBIOS_VERSION"))
    return report.get_request_message().get_nonce(), driver, vbios


def prepare(case):  # type: ignore[no-untyped-def]
    text = Path(case["report_hex"]).read_text()
    pem = Path(case["chain_pem"]).read_bytes()
    root = crypto.load_certificate(crypto.FILETYPE_PEM, Path(case["root_pem"]).read_bytes())
    good = AttestationReport(
        convert_string_to_blob(Path(case["good_report_hex"]).read_text()), SETTINGS
    )
    nonce, driver, vbios = _expected(good)

    def call() -> None:
        report = AttestationReport(convert_string_to_blob(text), SETTINGS)
        chain = [*GpuCertificateChains.extract_cert_chain(pem)[:-1], root]
        fwid = (
            report.get_response_message().get_opaque_data().get_data("OPAQUE_FIELD_ID_FWID").hex()
        )
        ok, _expired, _ = CcAdminUtils.verify_gpu_certificate_chain(chain, SETTINGS, fwid)
        if not ok:
            raise Refused("certificate chain")
        if not CcAdminUtils.verify_attestation_report(
            report, chain[0], nonce, driver, vbios, SETTINGS
        ):
            raise Refused("attestation report signature")

    return call


if __name__ == "__main__":
    serve(prepare)
