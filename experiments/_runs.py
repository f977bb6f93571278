"""Helpers for experiments that redo part of a finished run."""

from __future__ import annotations

from pathlib import Path


def shadow_run(run: Path, name: str) -> Path:
    """``run.parent / name``: a run folder that shares everything of ``run`` (symlinks) but its
    ``jobs/`` records. Finetune records are keyed by architecture and seed within a run, so
    finetunes at another budget or seed must not land among the run's own; a rerun resumes from
    the shadow's records."""
    shadow = run.parent / name
    (shadow / "jobs").mkdir(parents=True, exist_ok=True)
    for entry in run.iterdir():
        if entry.name != "jobs" and not (shadow / entry.name).exists():
            (shadow / entry.name).symlink_to(entry.resolve())
    return shadow
