"""Logging/debugging profiles. The profile is part of what is attested.

A workload runs in exactly one profile. The simulated platform puts it in its signed report, and
for hardware platforms the SDK binds it into the report data (see :mod:`veritee.binding`), so a
verifier always sees which profile runs and a policy can require ``production``.

=============  ================  ===========================  ======================
profile        debugger allowed  free-form text to the host   records to the host
=============  ================  ===========================  ======================
development    yes               yes                          plaintext
testing        yes               yes                          plaintext
staging        no                catalogue codes only         encrypted
production     no                catalogue codes only         encrypted
=============  ================  ===========================  ======================
"""

from __future__ import annotations

import enum
import hashlib

__all__ = ["LAUNCH_TAG", "Profile", "launch_binding", "profile_from_launch_binding"]

#: Prefix of the launch-time profile binding (see :func:`launch_binding`).
LAUNCH_TAG = b"veritee-profile-v1:"


class Profile(enum.StrEnum):
    DEVELOPMENT = "development"
    TESTING = "testing"
    STAGING = "staging"
    PRODUCTION = "production"

    @property
    def allows_debug(self) -> bool:
        """A build in this profile may run with a debugger attached / debug TEE attributes."""
        return self in (Profile.DEVELOPMENT, Profile.TESTING)

    @property
    def free_form_to_host(self) -> bool:
        """Free-form messages may cross untrusted channels (stderr, host files, error bodies)."""
        return self in (Profile.DEVELOPMENT, Profile.TESTING)

    @property
    def encrypts_logs(self) -> bool:
        return self in (Profile.STAGING, Profile.PRODUCTION)

    @classmethod
    def parse(cls, value: str) -> Profile:
        try:
            return cls(value)
        except ValueError:
            from veritee.errors import UsageError

            raise UsageError(
                f"unknown profile {value!r}; known: {', '.join(p.value for p in cls)}",
                code="profile_unknown",
            ) from None


def launch_binding(profile: Profile, size: int) -> bytes:
    """The value a host sets at launch to run a workload in ``profile`` on hardware.

    ``SHA-512(b"veritee-profile-v1:" || name)`` truncated to the field's size: SEV-SNP HOST_DATA
    (32 bytes), TDX MRCONFIGID (48), Arm CCA Realm Personalization Value (64). The hardware signs
    that field, so a workload reads its profile from its own report and cannot raise it.
    """
    if not 16 <= size <= 64:
        raise ValueError("a launch binding is 16..64 bytes")
    return hashlib.sha512(LAUNCH_TAG + profile.value.encode()).digest()[:size]


def profile_from_launch_binding(value: bytes) -> Profile | None:
    """The profile a launch field binds (:func:`launch_binding`), or None if it binds none."""
    for profile in Profile:
        if len(value) >= 16 and value == launch_binding(profile, len(value)):
            return profile
    return None
