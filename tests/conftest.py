"""Shared fixtures: where the test vectors are, and a fixed verification time helper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTVECTORS = ROOT.parent / "shared" / "testvectors"


def testvectors_dir() -> Path:
    """The shared test vectors folder, or skip the test with a clear message."""
    if not (TESTVECTORS / "manifest.json").is_file():
        pytest.skip(f"test vectors not found at {TESTVECTORS} (../shared/testvectors is absent)")
    return TESTVECTORS


@pytest.fixture
def testvectors() -> Path:
    return testvectors_dir()


def manifest_cases(fmt: str | None = None) -> list[dict[str, Any]]:
    """Cases of the manifest (for parametrize); empty where the vectors are absent."""
    path = TESTVECTORS / "manifest.json"
    if not path.is_file():
        return []
    cases: list[dict[str, Any]] = json.loads(path.read_text())["cases"]
    return [c for c in cases if fmt is None or c["format"] == fmt]
