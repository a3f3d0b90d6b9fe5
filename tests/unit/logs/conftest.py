"""Fixtures for the confidential log tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.logs._logs_helpers import WrittenLog, write_log


@pytest.fixture
def written(tmp_path: Path) -> WrittenLog:
    return write_log(tmp_path / "log", records=100, per_head=10, per_segment_rotation=30)
