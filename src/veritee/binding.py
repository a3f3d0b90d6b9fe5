"""How evidence binds a nonce, a workload key and a profile (DESIGN.md, flow step 2 and
"Profiles are attested"). The one place that defines these rules.

Report data
    ``report_data = SHA-512(b"veritee-v1" || nonce || SHA-256(SubjectPublicKeyInfo DER))``

    The 64-byte result is exactly the report-data field of SEV-SNP, TDX, SGX and the simulated
    platform. For Nitro the same 64 bytes go into the document's ``user_data``.

The attested profile
    A profile is what the verifier establishes from the evidence, never what a workload says
    (:func:`attested_profile`):

    1. the simulated platform signs the profile into its evidence;
    2. on SEV-SNP, TDX and Arm CCA the host binds it at launch into data the hardware measures
       and reports: HOSTDATA (32 bytes), MRCONFIGID (48 bytes), the Realm Personalization
       Value (64 bytes), set to :func:`profile_launch_data` of the profile;
    3. anything else (no such launch data, other launch data, a platform with no such field)
       attests ``development``;
    4. a debug launch never attests a profile that forbids a debugger (staging, production):
       it attests ``development``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from veritee.profiles import Profile

__all__ = [
    "DOMAIN_TAG",
    "LAUNCH_DATA_CLAIMS",
    "PROFILE_LAUNCH_TAG",
    "attested_profile",
    "profile_launch_data",
    "report_data_for",
    "spki_der",
]

DOMAIN_TAG = b"veritee-v1"
PROFILE_LAUNCH_TAG = b"veritee-profile-v1"

#: Platform -> (claim holding the launch data the host binds, its size in bytes).
LAUNCH_DATA_CLAIMS: dict[str, tuple[str, int]] = {
    "sev-snp": ("host_data", 32),
    "tdx": ("mr_config_id", 48),
    "cca": ("personalization", 64),
}


def spki_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def report_data_for(nonce: bytes, spki: bytes) -> bytes:
    """The 64 bytes a workload puts in its report to bind ``nonce`` and its key ``spki`` (DER)."""
    return hashlib.sha512(DOMAIN_TAG + nonce + hashlib.sha256(spki).digest()).digest()


def profile_launch_data(profile: Profile, size: int = 32) -> bytes:
    """Launch data that attests ``profile``: ``SHA-256("veritee-profile-v1" || 0x00 || name)``,
    zero-padded to ``size`` bytes (32 HOSTDATA, 48 MRCONFIGID, 64 CCA personalization)."""
    if size < 32:
        raise ValueError("launch data fields are at least 32 bytes")
    digest = hashlib.sha256(PROFILE_LAUNCH_TAG + b"\x00" + profile.value.encode()).digest()
    return digest + bytes(size - 32)


_BY_LAUNCH_DATA: dict[str, Profile] = {
    profile_launch_data(p, size).hex(): p
    for p in Profile
    for size in {s for _, s in LAUNCH_DATA_CLAIMS.values()}
}


def attested_profile(claims: Mapping[str, Any]) -> Profile:
    """The profile the evidence behind ``claims`` attests (module docstring, rules 1-4)."""
    platform = claims.get("platform")
    profile = Profile.DEVELOPMENT
    if platform == "simulated":
        try:
            profile = Profile(str(claims.get("profile")))
        except ValueError:
            profile = Profile.DEVELOPMENT
    elif isinstance(platform, str) and platform in LAUNCH_DATA_CLAIMS:
        name, size = LAUNCH_DATA_CLAIMS[platform]
        value = claims.get(name)
        if isinstance(value, str) and len(value) == 2 * size:
            profile = _BY_LAUNCH_DATA.get(value.lower(), Profile.DEVELOPMENT)
    if claims.get("debug") is not False and not profile.allows_debug:
        return Profile.DEVELOPMENT
    return profile
