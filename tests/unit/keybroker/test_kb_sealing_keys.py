"""The key broker's sealing root and the keys derived from it (veritee.keybroker.sealing_keys)."""

from __future__ import annotations

import secrets

import pytest

from veritee.errors import VerificationError
from veritee.keybroker import sealing_keys
from veritee.keybroker.kek import AesGcmKek
from veritee.keybroker.vault import secret_aad
from veritee.profiles import Profile

DOMAIN = bytes(32)


def test_keys_differ_per_domain_workload_and_profile_only() -> None:
    kek = AesGcmKek(secrets.token_bytes(32))
    wrapped = sealing_keys.new_wrapped_root(kek)
    root = sealing_keys.open_root(kek, 1, kek.kek_id, wrapped)
    again = sealing_keys.open_root(kek, 1, kek.kek_id, wrapped)

    def key(root: sealing_keys.SealingRoot, domain: bytes = DOMAIN, workload: str = "app",
            profile: Profile = Profile.PRODUCTION) -> bytes:  # fmt: skip
        return root.derive(domain_id=domain, workload=workload, profile=profile).reveal()

    assert key(root) == key(again) and len(key(root)) == 32
    others = {key(root, domain=b"\x01" * 32), key(root, workload="app2"),
              key(root, profile=Profile.STAGING), key(root, profile=Profile.DEVELOPMENT)}  # fmt: skip
    assert key(root) not in others and len(others) == 4
    fresh = sealing_keys.open_root(kek, 1, kek.kek_id, sealing_keys.new_wrapped_root(kek))
    assert key(fresh) != key(root)  # a root is random: another domain, another key
    assert "reveal" not in repr(root) and wrapped.hex() not in repr(root)


def test_the_root_opens_only_under_its_kek_and_generation() -> None:
    kek = AesGcmKek(secrets.token_bytes(32))
    wrapped = sealing_keys.new_wrapped_root(kek)
    other = AesGcmKek(secrets.token_bytes(32))
    for args in ((other, 1, other.kek_id, wrapped), (kek, 2, kek.kek_id, wrapped),
                 (kek, 1, other.kek_id, wrapped), (kek, 1, kek.kek_id, wrapped[:-1] + b"\x00")):  # fmt: skip
        with pytest.raises(VerificationError) as e:
            sealing_keys.open_root(*args)  # type: ignore[arg-type]
        assert e.value.code == "sealing_root_unavailable"
    # A secret's wrapped data key put in the root's place does not open as a root.
    dek = kek.wrap(secrets.token_bytes(32), secret_aad("db", 1))
    with pytest.raises(VerificationError):
        sealing_keys.open_root(kek, 1, kek.kek_id, dek)
