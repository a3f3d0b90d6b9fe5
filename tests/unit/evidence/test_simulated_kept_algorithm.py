"""Simulated evidence is verified with a kept ECDSA-P384/SHA-384 algorithm object, and EAR tokens
are signed with a kept deterministic ECDSA object per digest: neither remembers anything."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.collateral import Collateral
from veritee.errors import VeriteeError
from veritee.evidence import simulated
from veritee.platforms.simulated import SimulatedPlatform
from veritee.tokens import sign_jwt

AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_tampered_simulated_evidence_is_refused_after_good_evidence(tmp_path: Path) -> None:
    platform = SimulatedPlatform(tmp_path / "sim", measurement="ab" * 48)
    good = platform.evidence(bytes(64))
    collateral = Collateral.empty()
    for _ in range(2):
        assert (
            simulated.verify(good, collateral=collateral, at=AT).claims["platform"] == "simulated"
        )
    report = simulated.SimulatedReport.from_bytes(good)
    for where in (16, 0x80 - 1, len(report.signed) - 1, len(good) - 1):  # signed part, signature
        bad = bytearray(good)
        bad[where] ^= 0x01
        with pytest.raises(VeriteeError):
            simulated.verify(bytes(bad), collateral=collateral, at=AT)
        assert simulated.verify(good, collateral=collateral, at=AT).claims["platform"]


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_tokens_signed_with_the_kept_algorithm_verify_and_stay_deterministic(
    curve: ec.EllipticCurve,
) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    key = ec.generate_private_key(curve)
    first, again = (sign_jwt({"n": 1}, key, kid="k") for _ in range(2))
    assert first == again  # RFC 6979: one payload, one token
    assert sign_jwt({"n": 2}, key, kid="k") != first
    head, body, sig = first.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    half = len(raw) // 2
    der = encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
    digest = hashes.SHA256() if curve.key_size == 256 else hashes.SHA384()
    key.public_key().verify(der, f"{head}.{body}".encode(), ec.ECDSA(digest))
