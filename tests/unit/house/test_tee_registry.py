"""One registry of platforms (veritee.tee.Tee): every list that names platforms follows it."""

from __future__ import annotations

import typing

from veritee import evidence
from veritee.appraisal import evaluate
from veritee.appraisal.policy import Platforms
from veritee.tee import Tee


def test_every_platform_has_a_verifier_a_policy_section_and_checks() -> None:
    sections = typing.get_type_hints(Platforms)
    for tee in Tee:
        assert evidence.FORMATS[tee.value] == tee.module, tee
        assert tee.policy_section in sections, tee
        section_type = next(
            a for a in typing.get_args(sections[tee.policy_section]) if a is not type(None)
        )
        assert section_type in evaluate._CHECKS, tee
    assert len(evaluate._CHECKS) == len(Tee)


def test_the_exported_lists_are_the_registry() -> None:
    assert evidence.PLATFORMS == tuple(t.value for t in Tee)
    assert set(evaluate.HARDWARE) == {t.value for t in Tee} - {"simulated"}
    assert set(evaluate.ISOLATED) == {"sev-snp", "tdx", "sgx", "nitro", "cca", "keystone"}


def test_a_policy_finds_each_platforms_section_by_name() -> None:
    empty = Platforms()
    for tee in Tee:
        assert empty.for_platform(tee.value) is None
    assert empty.for_platform("az-snp-vtpm") is None and empty.for_platform("nonsense") is None
