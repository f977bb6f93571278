"""`donna-nas space ...`: look at, sample and validate search spaces."""

from __future__ import annotations

import random

import typer
from rich.table import Table

from donna_nas.space import load_space

app = typer.Typer(help="Inspect search spaces (YAML files or shipped names: donna_depth, tiny, ...).",
                  no_args_is_help=True)


def _fmt_values(values) -> str:
    return ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)


@app.command("show")
def show(space_file: str = typer.Argument(..., help="Space YAML file or shipped space name.")) -> None:
    """Print the blocks, their choices and the exact size of the space."""
    from donna_nas.cli import console

    space = load_space(space_file)
    strides = space.strides()
    table = Table(title=f"search space {space.name!r}  input {space.input_size[0]}x{space.input_size[1]}"
                        f"  stem {space.stem.channels}ch/{space.stem.stride}")
    for col in ("block", "stride", "tap", "op", "kernel", "expand", "depth", "width", "se", "act",
                "choices"):
        table.add_column(col, justify="right" if col in ("stride", "tap", "choices") else "left")
    for block, tap in zip(space.blocks, strides):
        o = block.options()
        table.add_row(block.name, str(block.stride), f"1/{tap}", _fmt_values(o["op"]),
                      _fmt_values(o["kernel"]), _fmt_values(o["expand"]), _fmt_values(o["depth"]),
                      _fmt_values(o["out_channels"]), _fmt_values(o["se"]), _fmt_values(o["act"]),
                      f"{block.size():,}")
    console.print(table)
    console.print(f"size: {space.size():,} architectures ({space.size():.3e})")


@app.command("sample")
def sample(space_file: str = typer.Argument(..., help="Space YAML file or shipped space name."),
           n: int = typer.Option(5, "-n", "--num", min=1, help="How many architectures."),
           seed: int = typer.Option(0, help="Random seed."),
           size: str = typer.Option("", help="Input size HxW for MACs (default: the space's)."),
           ) -> None:
    """Print random architecture strings with their params and MACs (computed analytically)."""
    from donna_nas.cli import console
    from donna_nas.cli.common import parse_size

    space = load_space(space_file)
    input_size = parse_size(size) if size else space.input_size
    rng = random.Random(seed)
    # plain aligned lines, not a table: architecture strings must stay whole to be copy-pasted
    console.print(f"# {n} architectures of {space.name!r} at {input_size[0]}x{input_size[1]}")
    console.print(f"{'params(M)':>10} {'MACs(G)':>9}  arch", highlight=False)
    for _ in range(n):
        arch = space.sample(rng)
        ops = space.ops(arch, input_size)
        console.print(f"{sum(o.params for o in ops) / 1e6:>10.3f} {sum(o.macs for o in ops) / 1e9:>9.3f}"
                      f"  {arch.encode()}", highlight=False, soft_wrap=True)


@app.command("validate")
def validate(space_file: str = typer.Argument(..., help="Space YAML file.")) -> None:
    """Check a space file; prints its size, or one line naming what is wrong (exit 2)."""
    from donna_nas.cli import console

    space = load_space(space_file)
    arch = space.sample(0)
    assert space.decode(arch.encode()) == arch
    console.print(f"ok: {space.source} defines space {space.name!r} with {len(space.blocks)} blocks, "
                  f"{space.size():,} architectures")
