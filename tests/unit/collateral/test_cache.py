"""The collateral cache: atomic writes, safe paths, loading through Collateral.from_paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from veritee.collateral import cache as cache_mod
from veritee.collateral.cache import CollateralCache, default_cache_dir
from veritee.errors import UsageError


def test_default_cache_dir_follows_xdg(tmp_path: Path) -> None:
    assert (
        default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "veritee" / "collateral"
    )
    home = default_cache_dir({})
    assert home == Path.home() / ".cache" / "veritee" / "collateral"
    # A relative XDG_CACHE_HOME is invalid per the XDG spec and ignored.
    assert default_cache_dir({"XDG_CACHE_HOME": "relative"}) == home


def test_write_and_load(tmp_path: Path, testvectors: Path) -> None:
    cache = CollateralCache(tmp_path / "c")
    assert cache.load().certificates == ()
    pem = (testvectors / "sev-snp" / "amd_milan_vcek_ask_ark.pem").read_bytes()
    der = (testvectors / "sev-snp" / "virtee_milan_vcek.der").read_bytes()
    paths = cache.write_all({"amd/Milan/vcek_cert_chain.pem": pem, "amd/Milan/vcek/x.der": der})
    assert [p.read_bytes() for p in paths] == [pem, der]
    loaded = cache.load()
    assert len(loaded.certificates) == 3
    assert cache.files() == sorted(paths)
    # Rewriting replaces the file in place.
    cache.write("amd/Milan/vcek/x.der", der)
    assert len(cache.load().certificates) == 3


@pytest.mark.parametrize("bad", ["../x.der", "/etc/x.der", "a/../../x", "", "a//b", "./a"])
def test_bad_paths_refused(tmp_path: Path, bad: str) -> None:
    cache = CollateralCache(tmp_path)
    with pytest.raises(UsageError):
        cache.write(bad, b"x")
    assert list(tmp_path.iterdir()) == []


def test_write_all_checks_every_path_first(tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path)
    with pytest.raises(UsageError):
        cache.write_all({"ok.der": b"x", "../bad.der": b"y"})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = CollateralCache(tmp_path)
    cache.write("a/keep.pem", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.write("a/keep.pem", b"new")
    assert (tmp_path / "a" / "keep.pem").read_bytes() == b"old"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["keep.pem"]
