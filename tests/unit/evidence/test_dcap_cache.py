"""The DCAP verifier's cache belongs to its trust (HOUSE-REVIEW, "hidden state in the pure core"):
``DcapTrust(cache=DcapCache())`` keeps what it verified to itself, as ``AmdTrust`` keeps its
``ChainCache``; a trust not given one shares ``dcap.DEFAULT_CACHE``, which ``dcap.clear_caches()``
clears. Entries of different pins never answer for each other."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
from tests.fakes.intel import AT, Spec, build
from tests.threads import differing_from_threads

from veritee.errors import VerificationError
from veritee.evidence import dcap, tdx
from veritee.evidence.trust import TrustRoot


def _sizes(cache: dcap.DcapCache) -> tuple[int, ...]:
    return tuple(
        len(lru.items())
        for lru in (cache.pck_chains, cache.att_keys, cache.ca_links, cache.collateral,
                    cache.collateral_cheap, cache.ranks)
    )  # fmt: skip


def test_a_trust_with_its_own_cache_fills_it_and_not_the_default() -> None:
    syn = build()
    dcap.clear_caches()
    own = dcap.DcapCache()
    trust = replace(syn.trust, cache=own)
    claims = tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=trust).claims
    assert _sizes(dcap.DEFAULT_CACHE) == (0, 0, 0, 0, 0, 0)
    pck_chains, att_keys, ca_links, collateral, cheap, _ = _sizes(own)
    assert (pck_chains, att_keys, collateral, cheap) == (1, 1, 1, 1) and ca_links >= 1
    # The same verdict as with the shared cache, cold and cached.
    for _ in range(2):
        assert (
            tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=syn.trust).claims
            == claims
        )
    assert _sizes(dcap.DEFAULT_CACHE)[0] == 1
    assert tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=trust).claims == claims


def test_clear_caches_leaves_a_trusts_own_cache_and_its_clear_empties_it() -> None:
    syn = build()
    own = dcap.DcapCache()
    trust = replace(syn.trust, cache=own)
    tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=trust)
    before = _sizes(own)
    dcap.clear_caches()
    assert _sizes(own) == before
    own.clear(keep_collateral=True)
    pck_chains, att_keys, ca_links, collateral, _, _ = _sizes(own)
    assert (pck_chains, att_keys) == (0, 0) and collateral == 1 and ca_links >= 1
    own.clear()
    assert _sizes(own) == (0, 0, 0, 0, 0, 0)
    # Empty again, the trust verifies as before (a refusal stays one too).
    tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=trust)
    other = build(Spec(pck_serial=77))
    with pytest.raises(VerificationError) as e:
        tdx.verify(other.quote, collateral=syn.collateral, at=AT, trust=trust)
    assert e.value.code == "root_not_pinned"


def test_one_cache_shared_by_two_pins_never_answers_for_the_other() -> None:
    """A chain verified under one pin, in a cache shared with a trust pinning another root, is
    not a hit for that trust: the quote is refused under the pin that does not hold."""
    syn = build()
    shared = dcap.DcapCache()
    pinned = replace(syn.trust, cache=shared)
    tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=pinned)
    elsewhere = dcap.DcapTrust(frozenset({bytes(32)}), cache=shared)
    with pytest.raises(VerificationError) as e:
        tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=elsewhere)
    assert e.value.code == "root_not_pinned"


def test_the_cache_is_not_part_of_the_trusts_identity() -> None:
    syn = build()
    a = replace(syn.trust, cache=dcap.DcapCache())
    assert a == syn.trust and hash(a) == hash(syn.trust)
    assert syn.trust.cache is dcap.DEFAULT_CACHE and a.cache is not dcap.DEFAULT_CACHE
    assert "cache" not in repr(a)
    assert TrustRoot().intel.cache is dcap.DEFAULT_CACHE
    with pytest.raises(ValueError):
        dcap.DcapCache(0)
    for wrong in (None, {}, dcap.DEFAULT_CACHE.pck_chains):
        with pytest.raises(TypeError, match="must be a DcapCache"):
            dcap.DcapTrust(syn.trust.root_sha256, cache=wrong)  # type: ignore[arg-type]


def test_verifications_from_threads_agree_while_their_cache_is_cleared() -> None:
    """Threads verifying under one trust while its cache is emptied again and again (each call
    cold, cached or in between) all get the same verdict, and none raises."""
    syn = build()
    trust = replace(syn.trust, cache=dcap.DcapCache())
    want = tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=trust).claims
    stop = threading.Event()

    def verify() -> Any:
        try:
            return tdx.verify(syn.quote, collateral=syn.collateral, at=AT, trust=trust).claims
        except Exception as e:  # (an answer that differs, not a thread that dies unseen)
            return e

    def clear() -> None:
        keep = False
        while not stop.wait(0.0005):  # (a new platform, then cold, in turn)
            trust.cache.clear(keep_collateral=keep)
            keep = not keep

    clearer = threading.Thread(target=clear)
    clearer.start()
    try:
        differing = differing_from_threads(verify, want, threads=4, calls=40)
    finally:
        stop.set()
        clearer.join()
    assert differing == []
