"""The dcap-qvl comparison cannot skip unseen in CI (issue 11 item 12): without dcap-qvl the
module is skipped on a developer's machine but fails to import when ``CI=true``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

COMPARE = Path(__file__).with_name("test_dcap_qvl_compare.py")


def _load() -> None:
    spec = importlib.util.spec_from_file_location("_compare_without_dcap_qvl", COMPARE)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_missing_dcap_qvl_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dcap_qvl", None)  # import dcap_qvl raises ImportError
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ImportError, match="must be installed in CI"):
        _load()


def test_missing_dcap_qvl_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dcap_qvl", None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _load()
