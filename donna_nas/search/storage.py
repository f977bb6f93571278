"""Study storage for NSGA-II: an optuna journal file written at in-memory speed.

optuna's storages write every trial as many small operations (a create, one per parameter, one
per attribute, the values, the state), each followed by a sync; into a file or a database that is
tens of times slower than the in-memory search (``experiments/results/bench_search_storage.md``).
So the default run-directory storage is split in two:

* the search runs on optuna's in-memory storage;
* each finished trial is mirrored into an **optuna journal file** (``RUN/studies/STUDY.log``) as
  *one* journal operation (``create_new_trial`` with the finished trial as template), buffered and
  appended once per generation and at the end of the run, with one ``fsync``.

The file is an ordinary ``JournalStorage`` file, so ``optuna.load_study`` and ``optuna-dashboard``
open it (``open_journal``), with the objectives named (``Study.set_metric_names``).

Crash safety. The file only ever holds finished trials, one line each; a kill loses at most the
trials since the last append. A kill or a full disk *during* an append can leave a torn last line:
opening the file cuts that tail off (and fsyncs) before anything is appended, so new trials never
land on a torn line. A damaged line in the middle is refused with its line number.

One process writes a journal study at a time (the run directory's search holds an advisory lock
on the file; a second one is refused); for several workers on one study use an RDB URL
(``--storage sqlite:///...``).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import optuna
from optuna.distributions import distribution_to_json
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from donna_nas.errors import UserError
from donna_nas.runtime.io import file_mode, fsync_dir, kill_point

__all__ = ["BufferedJournalFile", "JournalStudy", "open_journal", "STUDY_ATTR"]

try:  # the journal's operation code for "create trial" (with a template), as optuna writes it
    from optuna.storages.journal._storage import JournalOperation as _JournalOperation

    _CREATE_TRIAL = int(_JournalOperation.CREATE_TRIAL)
except (ImportError, AttributeError):  # pragma: no cover - an optuna that moved it
    _CREATE_TRIAL = 4

STUDY_ATTR = "donna_nas"          # study user attribute identifying the search (space, format)
JOURNAL_FORMAT = "donna-nas-journal/1"


class BufferedJournalFile(BaseJournalBackend):
    """A journal backend for one writer: logs are kept in memory and appended on ``flush``.

    Opening an existing file drops a torn last line (a write cut short) from the file itself, so
    that the next append starts on a fresh line.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._logs: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self.repaired_bytes = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()                      # b"" when the file ends with a newline
        torn = len(tail)
        # a last complete line that does not parse is the torn end of an interrupted write too
        if lines and not _parses(lines[-1]):
            torn += len(lines.pop()) + 1
        for k, line in enumerate(lines, start=1):
            try:
                self._logs.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{self.path}: line {k} is not valid JSON (a damaged study journal); "
                                f"delete the file to start the study afresh") from None
        if torn:
            with open(self.path, "r+b") as f:
                f.truncate(len(data) - torn)
                f.flush()
                os.fsync(f.fileno())
            self.repaired_bytes = torn

    # ---- BaseJournalBackend
    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self._logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._logs.extend(logs)
        self._pending.extend(logs)

    def append_unreplayed(self, logs: list[dict[str, Any]]) -> None:
        """Queue logs for the file without handing them to the JournalStorage on top."""
        self._pending.extend(logs)

    # ---- durability
    def flush(self) -> None:
        """Append the buffered logs to the file (one write, fsynced)."""
        if not self._pending:
            return
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in self._pending).encode()
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, file_mode())
        try:
            if os.environ.get("DONNA_NAS_KILL_AT"):   # fault injection: a write torn mid-line
                half = max(1, len(data) // 2)
                os.write(fd, data[:half])
                os.fsync(fd)
                kill_point(f"journal:{self.path.name}")
                data = data[half:]
            while data:
                n = os.write(fd, data)
                data = data[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.path.parent)
        self._pending.clear()


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


class JournalStudy:
    """The journal mirror of one study: open (or create) it, read its trials, append new ones."""

    def __init__(self, path: str | os.PathLike[str], study_name: str, directions: list[str],
                 metric_names: list[str], fingerprint: str):
        self.path = Path(path)
        self._lock_fd = _lock_writer(self.path)  # before reading: never cut a live writer's line
        try:
            self._open(study_name, directions, metric_names, fingerprint)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the file for other writers (the search keeps it from start to end)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open(self, study_name: str, directions: list[str], metric_names: list[str],
              fingerprint: str) -> None:
        self.backend = BufferedJournalFile(self.path)
        _check_not_old_log(self.path, self.backend)
        self.storage = JournalStorage(self.backend)
        ident = {"space": fingerprint, "format": JOURNAL_FORMAT}
        try:
            study = optuna.load_study(study_name=study_name, storage=self.storage)
        except KeyError:
            study = None
        if study is None:
            names = [s.study_name for s in self.storage.get_all_studies()]
            if names:
                raise UserError(f"{self.path}: journal of study {names[0]!r}, not of {study_name!r}; "
                                f"use another --study-name or delete the file")
            study = optuna.create_study(study_name=study_name, storage=self.storage,
                                        directions=directions)
            study.set_user_attr(STUDY_ATTR, ident)
            study.set_metric_names(metric_names)
            self.backend.flush()
        else:
            have = [d.name.lower() for d in study.directions]
            if have != directions or study.user_attrs.get(STUDY_ATTR) != ident:
                raise UserError(f"{self.path}: study {study_name!r} was written for another search "
                                f"({study.user_attrs.get(STUDY_ATTR)}, {have}); this search is "
                                f"{ident}, {directions}; use another --study-name or delete the file")
        self.study_id = study._study_id
        self._worker = f"donna-nas-{uuid.uuid4()}"
        self._dist_json: dict[str, str] = {}
        self._dist_obj: dict[str, Any] = {}

    def completed(self) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False,
                                           states=(TrialState.COMPLETE,))

    def append(self, trials: list[FrozenTrial]) -> None:
        """Write finished trials, one journal ``CREATE_TRIAL`` operation each, and fsync.

        The operation is the one optuna's ``JournalStorage.create_new_trial(template_trial=t)``
        writes (a test reads it back through optuna and compares every field), built here
        without replaying it into this storage's in-memory state (the search holds its trials in
        memory already; the replay would parse every distribution back). So ``completed()``
        does not see them; a later run reads the file afresh.
        """
        self.backend.append_unreplayed([self._create_trial_op(t) for t in trials])
        self.backend.flush()

    def _create_trial_op(self, t: FrozenTrial) -> dict[str, Any]:
        values = list(t.values) if t.values is not None else None
        op: dict[str, Any] = {
            "op_code": _CREATE_TRIAL, "worker_id": self._worker, "study_id": self.study_id,
            "datetime_start": _iso(t.datetime_start), "state": int(t.state),
            "value": values[0] if values is not None and len(values) == 1 else None,
            "values": values if values is not None and len(values) > 1 else None,
        }
        if t.datetime_complete is not None:
            op["datetime_complete"] = _iso(t.datetime_complete)
        dists = {}
        for k, d in t.distributions.items():
            text = self._dist_json.get(k)
            if text is None or self._dist_obj.get(k) != d:
                text = self._dist_json[k] = distribution_to_json(d)
                self._dist_obj[k] = d
            dists[k] = text
        op["distributions"] = dists
        op["params"] = {k: t.distributions[k].to_internal_repr(v) for k, v in t.params.items()}
        op["user_attrs"] = t.user_attrs
        op["system_attrs"] = t.system_attrs
        op["intermediate_values"] = dict(t.intermediate_values)
        return op


def _iso(d: datetime | None) -> str | None:
    return d.astimezone(timezone.utc).isoformat(timespec="microseconds") if d is not None else None


def _lock_writer(path: Path) -> int | None:
    """An exclusive advisory lock (``flock``) on the journal for this writer; a second search on
    the same study is refused instead of interleaving its trials (optuna's readers and its own
    append lock, a separate ``.lock`` file, are not affected)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on this platform: single writer by contract
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, file_mode())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"{path}: another search is writing this study now; wait for it, or "
                        f"search one study from several workers with --storage sqlite:///FILE.db") from None
    if new:
        fsync_dir(path.parent)
    return fd


def _check_not_old_log(path: Path, backend: BufferedJournalFile) -> None:
    first = backend._logs[0] if backend._logs else None
    if isinstance(first, dict) and str(first.get("format", "")).startswith("donna-nas-trials/"):
        raise UserError(f"{path}: a trial log of an older donna-nas, not an optuna journal; "
                        f"delete or move it to start the study afresh")
    if first is not None and "op_code" not in first:
        raise UserError(f"{path}: not an optuna journal file (first line has no op_code); "
                        f"pass another --storage or delete the file")


def open_journal(path: str | os.PathLike[str]) -> JournalStorage:
    """optuna's own reader of a study journal: ``optuna.load_study(study_name=..., storage=it)``."""
    return JournalStorage(JournalFileBackend(str(path)))
