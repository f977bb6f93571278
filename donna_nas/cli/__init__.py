"""The ``donna-nas`` command line: a thin layer over the Python API.

Each command group lives in its own module here and is registered below. User mistakes raise
``UserError`` and are printed as one line (exit status 2), never as a traceback.
"""

from __future__ import annotations

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


def _register() -> None:
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
    for register in _REGISTRARS:
        register(app)


_REGISTRARS: list = []


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
