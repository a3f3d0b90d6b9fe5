"""Shared fixtures: where the test vectors are, and a fixed verification time helper."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Property tests measure correctness, not speed: no per-example deadline (this machine is shared
# and noisy). In CI the examples are derandomized so a run is reproducible.
settings.register_profile("veritee", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("veritee"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "veritee")

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
