"""Logging/debugging profiles. The profile is part of what is attested.

A workload runs in exactly one profile, which the verifier establishes from its evidence
(:func:`veritee.binding.attested_profile`: the simulated platform signs it; on hardware the host
binds it at launch, and a debug launch is never above development). The report data binds the
profile the workload runs as, so a verifier always sees which profile runs, a workload cannot
claim another, and a policy can require ``production``.

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

__all__ = ["Profile"]


class Profile(enum.StrEnum):
    """The profile a workload runs in (module docstring: what each allows)."""

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
