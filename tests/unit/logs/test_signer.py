"""The log signer is the attested workload's key (issue 9, item 6): ``veritee logs`` takes the
admission certificate, checks it against the domain CA and the claims the tenant expects, and
checks it against the log (profile, validity at the latest head)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.unit.logs._logs_helpers import (
    MEASUREMENT,
    WrittenLog,
    admission_certificate,
    run_cli3,
    signer_args,
    tenant_files,
)

from veritee.logs.signer import admitted_signer
from veritee.logs.tenant import verify_log
from veritee.profiles import Profile


def _verify(w: WrittenLog, *args: str) -> tuple[int, str, str]:
    return run_cli3("logs", "verify", str(w.directory), *args)


def _pem(path: Path, cert: object) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))  # type: ignore[attr-defined]
    return str(path)


def test_admission_certificate_of_the_domain_with_the_expected_measurement(
    tmp_path: Path, written: WrittenLog
) -> None:
    f = tenant_files(written, tmp_path)
    code, out, _ = _verify(written, *signer_args(f), "--platform", "simulated",
                           "--require-profile", "production")  # fmt: skip
    assert code == 0 and out.splitlines()[-1] == "OK", out


def test_a_bare_public_key_is_refused_unless_insecure(tmp_path: Path, written: WrittenLog) -> None:
    bare = tmp_path / "key.pem"
    bare.write_bytes(written.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    code, _, err = _verify(written, "--signer", str(bare))
    assert code == 2 and "ties the log to no attested workload" in err
    code, out, err = _verify(written, "--signer", str(bare), "--insecure-signer-key")
    assert code == 0 and out.splitlines()[-1] == "OK"
    assert "warning: --insecure-signer-key" in err


def test_certificate_needs_the_ca_and_an_expected_measurement(
    tmp_path: Path, written: WrittenLog
) -> None:
    f = tenant_files(written, tmp_path)
    code, _, err = _verify(written, "--signer", str(f["signer"]))
    assert code == 2 and "give --ca" in err
    code, _, err = _verify(written, "--signer", str(f["signer"]), "--ca", str(f["ca"]))
    assert code == 2 and "--measurement" in err
    code, out, _ = _verify(written, "--signer", str(f["signer"]), "--ca", str(f["ca"]),
                           "--any-measurement")  # fmt: skip
    assert code == 0, out


def test_certificate_of_another_domain_is_refused(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    cert, _ = admission_certificate(tmp_path / "other-domain", written.public_key)
    code, _, err = _verify(written, "--signer", _pem(tmp_path / "other.pem", cert),
                           "--ca", str(f["ca"]), "--measurement", MEASUREMENT)  # fmt: skip
    assert code == 1 and "certificate_wrong_issuer" in err


def test_certificate_of_another_workload_key_does_not_verify_the_heads(
    tmp_path: Path, written: WrittenLog
) -> None:
    f = tenant_files(written, tmp_path)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    cert, _ = admission_certificate(tmp_path / "domain", other)
    code, out, _ = _verify(written, "--signer", _pem(tmp_path / "other.pem", cert),
                           "--ca", str(f["ca"]), "--measurement", MEASUREMENT)  # fmt: skip
    assert code == 1 and "BAD_SIGNATURE" in out and out.splitlines()[-1] == "FAILED"


def test_unexpected_measurement_platform_or_profile(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    code, _, err = _verify(written, "--signer", str(f["signer"]), "--ca", str(f["ca"]),
                           "--measurement", "cd" * 48)  # fmt: skip
    assert code == 1 and "log_signer_measurement_not_allowed" in err
    code, _, err = _verify(written, *signer_args(f), "--platform", "sev-snp")
    assert code == 1 and "log_signer_platform_not_allowed" in err
    code, _, err = _verify(written, *signer_args(f), "--require-profile", "staging")
    assert code == 1 and "log_signer_profile_not_allowed" in err


def test_log_profile_must_be_the_attested_one(tmp_path: Path, written: WrittenLog) -> None:
    """A development workload (debuggable) cannot pass its log off as a production log."""
    f = tenant_files(written, tmp_path)
    cert, _ = admission_certificate(tmp_path / "domain", written.public_key,
                                    profile=Profile.DEVELOPMENT)  # fmt: skip
    code, out, _ = _verify(written, "--signer", _pem(tmp_path / "dev.pem", cert),
                           "--ca", str(f["ca"]), "--measurement", MEASUREMENT)  # fmt: skip
    assert code == 1 and out.splitlines()[-1] == "FAILED"
    assert (
        "SIGNER: the log says profile 'production', but its signer's admission certificate "
        "attests 'development'" in out
    )


def test_certificate_must_be_valid_at_the_latest_head(tmp_path: Path, written: WrittenLog) -> None:
    f = tenant_files(written, tmp_path)
    then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    cert, ca = admission_certificate(tmp_path / "domain", written.public_key, now=then)
    code, out, _ = _verify(written, "--signer", _pem(tmp_path / "old.pem", cert),
                           "--ca", str(f["ca"]), "--measurement", MEASUREMENT)  # fmt: skip
    assert code == 1 and "is not valid at the latest verified head (size 100" in out
    # the library says the same
    admitted = admitted_signer(cert, ca, measurements=[MEASUREMENT])
    rep = verify_log(written.directory, admitted.public_key, admitted=admitted)
    assert "signer" in rep.kinds and not rep.ok
