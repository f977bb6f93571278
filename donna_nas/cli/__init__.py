"""The ``donna-nas`` command line: a thin layer over the Python API.

Each command group lives in its own module here and is registered below. User mistakes raise
``UserError`` and are printed as one line (exit status 2), never as a traceback; so are the
failures of the machine around them (a full disk, a read-only folder, a file where a folder is
expected, out of memory): ``main`` turns them into one line that names the path and the fix.
"""

from __future__ import annotations

import errno
import sys

import typer
from rich.console import Console

from donna_nas.errors import UserError

app = typer.Typer(
    name="donna-nas",
    help="Hardware-aware neural architecture search (DONNA) and X-Distill depth on a CPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Wide tables when output goes to a file or CI log (rich would otherwise wrap at 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


_registered = False


def _register() -> None:
    """Add every command group to ``app``, once per process: ``main`` may be called many times
    in one process (tests, scripts), and each registration appends its commands again."""
    global _registered
    if _registered:
        return
    _registered = True
    from donna_nas.cli import space as space_cli

    app.add_typer(space_cli.app, name="space")
    # command groups of other subsystems are registered here, one line each
    from donna_nas.cli import depth as _depth; _depth.register(app)
    from donna_nas.cli import latency as _latency; _latency.register(app)
    from donna_nas.cli import search as _search; _search.register(app)
    from donna_nas.cli import data as _data; _data.register(app)
    from donna_nas.cli import supernet as _supernet; _supernet.register(app)
    from donna_nas.cli import export as _export; _export.register(app)
    from donna_nas.cli import quickstart as _quickstart; _quickstart.register(app)
    from donna_nas.cli import classify as _classify; _classify.register(app)
    from donna_nas.cli import models as _models; _models.register(app)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("donna-nas")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"donna-nas {_version()}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Hardware-aware neural architecture search (DONNA) and X-Distill depth on a CPU."""


# what to do about an OSError, by errno
_OS_FIXES = {
    errno.ENOSPC: "the disk is full: free space, then rerun the same command (with --resume where it has one); "
                  "what was written before is kept",
    errno.EDQUOT: "the disk quota is exceeded: free space, then rerun the same command (with --resume where it has one)",
    errno.EACCES: "no permission: write to another folder (--out where the command has one) or fix its permissions",
    errno.EPERM: "not permitted: write to another folder (--out where the command has one) or fix its permissions",
    errno.EROFS: "the file system is read-only: write to a writable disk (--out where the command has one)",
    errno.ENOTDIR: "a file is in the way where a folder is needed: pass a folder or a new name",
    errno.EEXIST: "a file is in the way where a folder is needed: pass a folder or a new name",
    errno.EISDIR: "a folder was given where a file is needed: pass a file path",
    errno.ENOENT: "not found: check the path",
    errno.EMFILE: "too many open files: lower --workers or raise `ulimit -n`",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: the path(s), the system's words for errno, and the fix."""
    where = " → ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = exc.strerror or str(exc) or type(exc).__name__
    fix = _OS_FIXES.get(exc.errno or -1, "")
    head = f"{where}: {what}" if where else what
    return f"{head}; {fix}" if fix else head


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text
                                              or "not enough memory" in text)


def _hide_flag_types(cmd) -> None:
    """Flags take no value: show no ``<bool>`` type after them (and after --help) in --help."""
    try:
        cmd.get_help_option(cmd.context_class(cmd))  # created once and cached by the command
    except Exception:  # another click/typer layout: keep its default rendering
        pass
    for p in [*getattr(cmd, "params", []), getattr(cmd, "_help_option", None)]:
        if p is not None and getattr(p, "is_flag", False) and getattr(p, "metavar", "") is None:
            p.metavar = ""
    for sub in (getattr(cmd, "commands", None) or {}).values():
        _hide_flag_types(sub)


def _fail(message: str) -> None:
    """Print ``error: MESSAGE`` on one line (a message quoting a library's multi-line text is joined)
    and exit 2, the status every failure has."""
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    from rich.markup import escape

    from donna_nas.runtime.progress import install
    from donna_nas.runtime.threads import set_threads_on_import

    _register()
    if not sys.stdout.isatty():
        install()  # progress bars become periodic plain lines in logs
    set_threads_on_import()  # one torch thread unless OMP_NUM_THREADS or a command's --threads says otherwise
    command = typer.main.get_command(app)
    _hide_flag_types(command)
    try:
        command.main(args=argv, prog_name="donna-nas", standalone_mode=True)
    except UserError as exc:
        _fail(escape(str(exc)))
    except UnicodeDecodeError as exc:  # a reader that does not name its file (those that do raise UserError)
        _fail(escape(f"a file that should be text is not UTF-8 (byte {exc.start}); check the paths given "
                     "and restore or re-export the file"))
    except OSError as exc:
        _fail(escape(os_error_message(exc)))
    except (MemoryError, RuntimeError) as exc:
        if not _is_oom(exc):
            raise
        import re

        m = re.search(r"tried to allocate (\d+) bytes", str(exc))
        what = f"an allocation of {int(m.group(1)) / 2**20:,.0f} MiB failed" if m else type(exc).__name__
        _fail(escape(f"out of memory ({what}); lower --batch (or --size, --workers) and rerun "
                     "(with --resume where it has one)"))
    except Exception as exc:  # a library error wrapping an OS error (safetensors: "(os error 28)")
        from donna_nas.runtime.io import as_os_error

        wrapped = as_os_error(exc, "") if type(exc).__name__ == "SafetensorError" else None
        if wrapped is None:
            raise
        wrapped.filename = None
        _fail(escape(os_error_message(wrapped)))
