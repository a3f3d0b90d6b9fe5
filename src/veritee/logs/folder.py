"""A workload's log folder as its tenant reads it: every run, and the signed links between them.

A workload's log folder (``<store>/logs/<log id>/``) holds one folder per run (:mod:`.runs`).
Each run is a complete log, checked by :func:`veritee.logs.tenant.check_log`. What joins them
is the signed run start of each run (:class:`veritee.logs.segment.RunStart`): it records what
that run found stored of the run before it (records, last signed head and root, closed or
torn). So a run that ended without its final head (the process was killed, or crashed) is
*accounted for* when the next run's signed start saw it as it is stored now; the tenant then
knows exactly where it ended. :func:`check_folder` checks, for each run after the first whose
start names an earlier run:

1. that run is stored (else ``truncation``: a whole run was removed);
2. it still holds every record the next run's start saw, and the head it saw verifies with
   the same root (else ``truncation`` or ``fork``).

The folder's verdict: ``OK`` when the last run is complete and every earlier run is complete or
accounted for; ``FAILED`` on any error; else ``INCOMPLETE`` (the last run is not closed: it
may still be running, or its end was cut away).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veritee.errors import MalformedError
from veritee.logs.merkle import MerkleTree, leaf_hash
from veritee.logs.runs import RunFolder, read_run_start, runs_in
from veritee.logs.segment import RunStart, RunState, SignedTreeHead, VerifyingKey
from veritee.logs.signer import AdmittedSigner
from veritee.logs.tenant import CheckedLog, Finding, check_log
from veritee.profiles import Profile

__all__ = ["FolderReport", "RunReport", "check_folder", "is_run_folder_parent"]

#: For one run folder: its signing key, and what binds that key to an attested workload.
SignerFor = Callable[[Path], tuple[VerifyingKey, AdmittedSigner | None]]


@dataclass(frozen=True)
class RunReport:
    run: int
    path: Path
    start: RunStart | None
    checked: CheckedLog
    signer: VerifyingKey
    accounted: bool  # not closed, but the next run's signed start saw it as it is stored

    @property
    def label(self) -> str:
        return self.path.name if self.run else "the version-1 log (before runs)"

    @property
    def verdict(self) -> str:
        v = self.checked.report.verdict
        return "ENDED" if v == "INCOMPLETE" and self.accounted else v


@dataclass(frozen=True)
class FolderReport:
    runs: tuple[RunReport, ...]
    findings: tuple[Finding, ...]  # about the links between runs

    @property
    def ok(self) -> bool:
        return all(r.checked.report.ok for r in self.runs) and not any(
            f.is_error for f in self.findings
        )

    @property
    def verdict(self) -> str:
        if not self.runs or not self.ok:
            return "FAILED"
        *earlier, last = self.runs
        if last.checked.report.complete and all(r.verdict in ("OK", "ENDED") for r in earlier):
            return "OK"
        return "INCOMPLETE"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "ok": self.ok,
            "runs": [
                {**r.checked.report.to_dict(), "run": r.run, "verdict": r.verdict}
                for r in self.runs
            ],
            "findings": [f.to_dict() for f in self.findings],
        }


def is_run_folder_parent(directory: Path) -> bool:
    """True for a workload's log folder: it holds run folders (and, if an earlier release wrote
    to it, that release's log of its own, checked as run 0)."""
    return bool(runs_in(directory))


def check_folder(
    directory: Path,
    signer_for: SignerFor,
    last_tree_head: SignedTreeHead | None = None,
    *,
    require_profile: Profile | None = None,
    require_final: bool = False,
) -> FolderReport:
    """Check every run of a workload's log folder and the links between them (module
    docstring). ``last_tree_head`` is checked against the run it names; ``require_final``
    applies to the last run."""
    folders = runs_in(directory)
    if any(directory.glob("segment-*.vtlog")):  # a version-1 log, before runs: run 0
        folders.insert(0, RunFolder(0, directory))
    out: list[Finding] = []
    kept_run = None
    if last_tree_head is not None:
        kept_run = next((r.run for r in folders if r.path.name == last_tree_head.log_id
                         .rsplit("/", 1)[-1]), None)  # fmt: skip
        if kept_run is None:
            out.append(Finding("truncation", f"the kept head is of run {last_tree_head.log_id!r}, "
                               "which is not stored"))  # fmt: skip
    runs: list[RunReport] = []
    for i, f in enumerate(folders):
        key, admitted = signer_for(f.path)
        checked = check_log(f.path, key, last_tree_head if f.run == kept_run else None,
                            require_profile=require_profile, admitted=admitted,
                            require_final=require_final and i == len(folders) - 1)  # fmt: skip
        try:
            start = read_run_start(f.path)
        except MalformedError:
            start = None  # named by check_log
        runs.append(RunReport(f.run, f.path, start, checked, key, False))
    for r in runs:  # a run's signed log id names its folder: no run moved into another's place
        lid = r.checked.report.log_id
        if r.run and lid is not None and lid.rsplit("/", 1)[-1] != r.path.name:
            out.append(Finding("wrong_log", f"{r.path.name} holds the log {lid!r}"))
    by_log_id = {r.checked.report.log_id: i for i, r in enumerate(runs)}
    for r in runs:
        prev = r.start.previous if r.start is not None else None
        if prev is None or not r.checked.report.ok:
            continue
        found = by_log_id.get(prev.log_id)
        if found is None:
            out.append(Finding("truncation", f"run {r.run}'s signed start saw {prev.log_id!r} "
                               f"({prev.stored} records), which is not stored"))  # fmt: skip
            continue
        finding = _matches(runs[found].checked, prev, r.run)
        if finding is not None:
            out.append(finding)
        elif not runs[found].checked.report.complete:
            e = runs[found]
            runs[found] = RunReport(e.run, e.path, e.start, e.checked, e.signer, True)
    return FolderReport(tuple(runs), tuple(out))


def _matches(earlier: CheckedLog, seen: RunState, by_run: int) -> Finding | None:
    """Whether the stored ``earlier`` run still holds what run ``by_run``'s start saw."""
    records: Mapping[int, Any] = earlier.records
    if earlier.report.records < seen.stored:
        return Finding("truncation", f"run {by_run}'s signed start saw {seen.stored} records of "
                       f"{seen.log_id!r}; {earlier.report.records} are stored")  # fmt: skip
    if seen.signed:
        if seen.signed > len(records):
            return Finding("truncation", f"run {by_run}'s signed start saw a head of size "
                           f"{seen.signed} in {seen.log_id!r}; fewer records are readable")  # fmt: skip
        tree = MerkleTree([leaf_hash(records[i].body) for i in range(seen.signed)])
        if tree.root() != seen.root_hash:
            return Finding("fork", f"the records of {seen.log_id!r} do not hash to the root run "
                           f"{by_run}'s signed start saw")  # fmt: skip
    return None
