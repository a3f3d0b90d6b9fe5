"""What several command groups share: the ``--data`` option, ``--at`` times, the evidence
formats ``--format`` takes and the service's default port."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from veritee.errors import UsageError

__all__ = ["DEFAULT_PORT", "FORMATS", "data_dir", "data_option", "parse_time"]

DEFAULT_PORT = 8400
FORMATS = [
    "auto",
    "sev-snp",
    "tdx",
    "sgx",
    "nitro",
    "tpm",
    "az-snp-vtpm",
    "az-tdx-vtpm",
    "cca",
    "nvidia-gpu",
    "keystone",
    "simulated",
]


def data_option(f: Any) -> Any:
    return click.option(
        "--data",
        "data",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Domain data folder (default: $XDG_DATA_HOME/veritee).",
    )(f)


def data_dir(data: Path | None) -> Path:
    from veritee.domain import default_data_dir

    return data if data is not None else default_data_dir()


def parse_time(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {value!r} is not an ISO-8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
