"""The runs of a workload's log folder (format: :mod:`.segment`, "Runs").

A workload's log folder holds one folder per run, ``run-NNNNNN``; a run is one process lifetime
and a complete log of its own. The writer allocates a run with an exclusive ``mkdir`` (so
concurrent processes, such as forked workers, never share one) and notes, in the run's signed
first frame, what it found stored of the run before it. Nothing here needs a key.

::

    <log folder>/
        run-000001/segment-00000000.vtlog ...   the first run
        run-000001/tenant-key.json               its log key sealed (HPKE) to the tenant
        run-000001/admission.pem                 the admission certificate of its signing key
        run-000002/...                           a restart, or a forked child
        pending-<hex>.sealed                     records held before the control plane was up
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from veritee.errors import MalformedError
from veritee.logs.segment import (
    FRAME_RECORD,
    NO_ROOT,
    ParsedSegment,
    RunStart,
    RunState,
    SignedTreeHead,
    parse_segment,
    segment_name,
)

__all__ = [
    "ADMISSION_FILE",
    "KEY_FILE",
    "RUN_DIR_RE",
    "RunFolder",
    "allocate_run",
    "observe",
    "read_run_start",
    "run_dir_name",
    "runs_in",
]

RUN_DIR_RE = re.compile(r"^run-(\d{6})$")
KEY_FILE = "tenant-key.json"
#: The admission certificate of a run's signing key, which the workload puts beside the run's
#: segments: the tenant may take it from there, as its chain is checked (:mod:`.signer`).
ADMISSION_FILE = "admission.pem"
_MAX_RUN = 999_999


def run_dir_name(run: int) -> str:
    return f"run-{run:06d}"


@dataclass(frozen=True)
class RunFolder:
    run: int
    path: Path


def runs_in(directory: Path) -> list[RunFolder]:
    """The run folders of a workload's log folder, by run number."""
    if not directory.is_dir():
        return []
    out = []
    for p in directory.iterdir():
        m = RUN_DIR_RE.match(p.name)
        if m and p.is_dir():
            out.append(RunFolder(int(m.group(1)), p))
    return sorted(out, key=lambda r: r.run)


def allocate_run(directory: Path) -> RunFolder:
    """Create the next run folder (exclusively: two processes never get the same run)."""
    directory.mkdir(parents=True, exist_ok=True)
    n = max((r.run for r in runs_in(directory)), default=0) + 1
    while n <= _MAX_RUN:
        path = directory / run_dir_name(n)
        try:
            path.mkdir()
        except FileExistsError:
            n += 1
            continue
        return RunFolder(n, path)
    raise OSError(f"{directory}: no run numbers left")


def observe(directory: Path, log_id: str) -> RunState:
    """What is stored of the log in ``directory`` (a run folder, or a version-1 log folder).

    Reads the last two segment files only: every segment but the last ends with a signed head,
    so the last signed head is in one of them. ``log_id`` is used when no segment names one.
    """
    files = sorted(directory.glob("segment-*.vtlog"))
    parsed: list[ParsedSegment] = []
    unreadable = False
    for path in files[-2:]:
        try:
            parsed.append(parse_segment(path.read_bytes()))
        except (MalformedError, OSError):
            unreadable = True
    if not parsed:
        return RunState(log_id, 0, 0, NO_ROOT, False, False, unreadable)
    last = parsed[-1]
    stored = last.header.first_leaf + sum(1 for f in last.frames if f.kind == FRAME_RECORD)
    head: SignedTreeHead | None = None
    for seg in reversed(parsed):
        head = next((f.head for f in reversed(seg.frames) if f.head is not None), None)
        if head is not None:
            break
    return RunState(
        last.header.log_id,
        stored,
        head.tree_size if head else 0,
        head.root_hash if head else NO_ROOT,
        bool(head and head.final),
        last.truncated_at is not None,
        unreadable,
    )


def read_run_start(run_directory: Path) -> RunStart | None:
    """The run-start frame of a run folder (unverified: check it with :meth:`RunStart.verify`);
    None for a version-1 log. Raises :class:`MalformedError` when segment 0 does not parse."""
    path = run_directory / segment_name(0)
    if not path.is_file():
        return None
    seg = parse_segment(path.read_bytes())
    return seg.frames[0].run if seg.frames else None
