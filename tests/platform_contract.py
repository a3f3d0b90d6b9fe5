"""What every platform driver must do (veritee.platforms.base), as a check drivers' tests call.

Example, for a driver whose instances can be made in any state::

    from tests.platform_contract import check_platform_contract

    def test_my_driver_meets_the_contract(tmp_path):
        check_platform_contract(lambda measurement, profile, debug: MyDriver(...))

``make(measurement, profile, debug)`` returns a driver of ONE platform instance (same chip or
install every call) in that state. A hardware driver that cannot be put in another state in a
test checks what it can with :func:`check_sealing_key_shape`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from veritee.platforms.base import Platform, SealingMode
from veritee.profiles import Profile

Make = Callable[[str, Profile, bool], Platform]


def check_sealing_key_shape(p: Platform) -> None:
    """32 bytes, deterministic, different per context; identity properties are present."""
    assert isinstance(p, Platform)
    assert isinstance(p.sealing_mode, SealingMode)
    assert isinstance(p.profile, Profile)
    assert isinstance(p.debug, bool)
    k1, k2 = p.sealing_key(b"context-1"), p.sealing_key(b"context-1")
    assert isinstance(k1, bytes) and len(k1) == 32 and k1 == k2
    assert p.sealing_key(b"context-2") != k1
    if p.debug:
        assert p.profile.allows_debug, "a debug launch never has a profile above development"


def check_platform_contract(make: Make) -> None:
    """The sealing key differs whenever measurement, profile or debug state differs."""
    m1 = hashlib.sha384(b"contract-1").hexdigest()
    m2 = hashlib.sha384(b"contract-2").hexdigest()
    base = make(m1, Profile.PRODUCTION, False)
    check_sealing_key_shape(base)
    assert base.measurement == m1 and base.profile is Profile.PRODUCTION and not base.debug
    key = base.sealing_key(b"veritee-seal-v2")
    assert make(m1, Profile.PRODUCTION, False).sealing_key(b"veritee-seal-v2") == key
    others = {
        "measurement": make(m2, Profile.PRODUCTION, False),
        "profile": make(m1, Profile.STAGING, False),
        "debug state": make(m1, Profile.DEVELOPMENT, True),
    }
    dev = make(m1, Profile.DEVELOPMENT, False)
    assert dev.sealing_key(b"veritee-seal-v2") != others["debug state"].sealing_key(
        b"veritee-seal-v2"
    ), "the debug state must change the sealing key"
    for what, other in others.items():
        check_sealing_key_shape(other)
        assert other.sealing_key(b"veritee-seal-v2") != key, f"the {what} must change the key"
