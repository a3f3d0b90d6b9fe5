"""The browser test cannot skip unseen in CI (issue 16): without Playwright or Chromium the
module is skipped on a developer's machine but fails to import when ``CI=true``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BROWSER_TEST = Path(__file__).with_name("test_console_browser.py")


def _load() -> None:
    spec = importlib.util.spec_from_file_location("_console_browser_without_parts", BROWSER_TEST)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_missing_playwright_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # the import raises ImportError
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ImportError, match="must be installed in CI"):
        _load()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _load()


def test_missing_chromium_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("VERITEE_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(RuntimeError, match="missing in CI"):
        _load()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _load()
