"""Atomic, durable file writes: a crash mid-write never leaves a half-written table or checkpoint.

``atomic_path`` writes to a temporary file ``.NAME.XXXX.tmp`` next to the target, fsyncs it,
gives it the mode a plain ``open()`` would (``0o666 & ~umask``; ``mkstemp`` alone makes 0600),
renames it over the target and fsyncs the directory, so the new file survives a power cut.
A kill between creating and renaming the temporary file leaves it behind; ``remove_stale_temp``
(called when a run directory is opened) deletes such leftovers.

``DONNA_NAS_KILL_AT`` (tests only) SIGKILLs the process at a named point, e.g.
``write:last.safetensors`` while that file's temporary copy is written but not yet renamed, or
``write:last.safetensors#2`` at the second such write; see ``kill_point``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_text_atomic", "write_bytes_atomic", "write_json_atomic", "fsync_dir", "file_mode",
           "remove_stale_temp", "kill_point", "as_os_error"]

_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")
_kill_counts: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process if ``DONNA_NAS_KILL_AT`` names ``name`` (fault-injection tests).

    The variable holds ``KIND:PATH`` or ``KIND:PATH#N`` (the N-th time the point is reached); it
    matches a point of that kind whose path ends with PATH, so ``write:last.safetensors`` matches
    every run's checkpoint and ``write:teacher/checkpoints/last.safetensors`` only the teacher's.
    """
    want = os.environ.get("DONNA_NAS_KILL_AT")
    if not want:
        return
    point, _, nth = want.partition("#")
    kind, _, target = point.partition(":")
    here_kind, _, here = name.partition(":")
    if kind != here_kind or not (here == target or here.endswith("/" + target.lstrip("/"))):
        return
    _kill_counts[point] = _kill_counts.get(point, 0) + 1
    if _kill_counts[point] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0o644 under umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or unlink in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], keep_previous: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    ``keep_previous``: first rename an existing ``path`` to this name (e.g. ``prev.safetensors``),
    so one older complete copy is always on disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except Exception as exc:
            os_exc = as_os_error(exc, path)
            if os_exc is None:
                raise
            raise os_exc from exc
        os.chmod(tmp_path, file_mode())
        _fsync_file(tmp_path)
        kill_point(f"write:{path}")
        if keep_previous is not None and path.is_file():
            os.replace(path, keep_previous)
            kill_point(f"rotate:{path}")
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")
#: numpy's ``tofile`` on a full disk: ``OSError: 140824 requested and 41984 written`` (no errno, no path)
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def as_os_error(exc: BaseException, path: str | os.PathLike[str]) -> OSError | None:
    """An ``OSError`` naming ``path`` for an error that wraps one in its text (safetensors reports
    a full disk as ``SafetensorError: ... (os error 28)``), or for an ``OSError`` that names no
    file (numpy's short write on a full disk becomes ``ENOSPC``); None for any other error."""
    if isinstance(exc, OSError):
        if exc.filename is not None:
            return None
        if exc.errno is None and _SHORT_WRITE.match(str(exc)):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        if exc.errno is not None:
            return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
        return None
    m = _OS_ERROR_IN_TEXT.search(str(exc))
    if not m:
        return None
    code = int(m.group(1))
    return OSError(code, os.strerror(code), str(path))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def remove_stale_temp(root: str | os.PathLike[str], min_age_s: float = 0.0) -> list[Path]:
    """Delete ``.NAME.XXXX.tmp`` files that ``atomic_path`` left under ``root`` (a killed write).

    Call it when a run directory is opened by the one process that writes it; ``min_age_s``
    spares files younger than that (a writer that may still be running). Returns what was removed.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    now = time.time()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            if not _TEMP.match(name):
                continue
            p = Path(dirpath) / name
            try:
                if min_age_s and now - p.stat().st_mtime < min_age_s:
                    continue
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                continue
    return removed
