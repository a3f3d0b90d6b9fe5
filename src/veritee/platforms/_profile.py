"""How a hardware driver settles the profile it runs in: measured, never claimed.

The hardware decides (DESIGN.md, "Profiles are attested"): a debuggable launch (SEV-SNP policy
DEBUG, TD_ATTRIBUTES.DEBUG, Nitro debug mode) runs in ``development``; otherwise the launch field
the host set (:func:`veritee.profiles.launch_binding`) names the profile. The caller's
``requested`` profile only matters where the hardware binds none, and may never contradict what
it binds.
"""

from __future__ import annotations

from veritee.errors import UsageError
from veritee.profiles import Profile, profile_from_launch_binding

__all__ = ["settle_profile"]


def settle_profile(
    requested: Profile | None, *, launch_field: bytes | None, debug: bool
) -> tuple[Profile, str]:
    """(profile, source): ``source`` is ``"debug"``, ``"launch"`` or ``"requested"``.

    Raises :class:`UsageError` (``profile_mismatch``) when ``requested`` differs from what the
    hardware establishes.
    """
    bound = Profile.DEVELOPMENT if debug else None
    source = "debug"
    if bound is None and launch_field is not None:
        bound = profile_from_launch_binding(launch_field)
        source = "launch"
    if bound is not None:
        if requested is not None and requested != bound:
            raise UsageError(
                f"the hardware runs this workload in profile {bound.value} ({source}); "
                f"{requested.value} was asked for",
                code="profile_mismatch",
            )
        return bound, source
    return (requested or Profile.DEVELOPMENT), "requested"
