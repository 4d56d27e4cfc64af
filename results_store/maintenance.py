"""What `ResultsStore.verify()` and `ResultsStore.repair()` report."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunProblem:
    """One run (or a chip's index, run_id 'index.json') and what is wrong with it."""

    chip_id: str
    run_id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.chip_id}/{self.run_id}: {self.problem}"


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    """Committed runs checked."""
    damaged: list[RunProblem]
    """Committed runs that do not load intact."""
    partial: list[RunProblem]
    """Run directories without a run document: a save in progress or a killed writer."""
    damaged_indexes: list[RunProblem]
    """Chip indexes that are damaged (lookups ignore them; `repair` rewrites them)."""

    @property
    def ok(self) -> bool:
        """No damaged run and no damaged index (partial runs are not damage)."""
        return not self.damaged and not self.damaged_indexes


@dataclass(frozen=True)
class RepairReport:
    quarantined: list[RunProblem]
    """Damaged runs moved to the quarantine."""
    removed_partial: list[RunProblem]
    """Runs never committed, older than the given age, removed."""
    removed_temporary: list[str]
    """Temporary files of killed writers, older than the given age, removed (store paths)."""
