"""Keys a domain derives for the service: one per purpose, the same in every process."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from veritee.domain import Domain


def test_derived_keys_are_per_purpose_and_shared_by_every_opener(tmp_path: Path) -> None:
    d = Domain.create(tmp_path / "d", name="t", now=dt.datetime.now(dt.UTC))
    again = Domain.open(d.path)  # another worker or replica with the same data folder
    assert d.nonce_key == again.nonce_key == d.derive_key("nonce key")
    assert len(d.nonce_key) == 32
    assert d.derive_key("kbs session cookie") == again.derive_key("kbs session cookie")
    assert d.derive_key("kbs session cookie") != d.nonce_key
    other = Domain.create(tmp_path / "o", name="t", now=dt.datetime.now(dt.UTC))
    assert other.nonce_key != d.nonce_key
