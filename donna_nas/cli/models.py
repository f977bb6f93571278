"""``donna-nas models list|show``: the trained models shipped inside the package."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Trained models shipped with donna-nas (depth teachers, segmentation teacher).",
                  no_args_is_help=True)


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print the cards as JSON.")) -> None:
    """Name, kind, backbone, params, training steps and test metrics of every shipped model."""
    from rich.table import Table

    from donna_nas.cli import console
    from donna_nas.tasks.depth.zoo import list_models, models_dir

    models = list_models()
    if as_json:
        print(json.dumps([m.card for m in models], indent=1, sort_keys=True))
        return
    if not models:
        console.print(f"no shipped models in {models_dir()}")
        return
    table = Table(title=f"shipped models ({models_dir()})")
    for col in ("name", "kind", "backbone", "params", "steps", "abs_rel", "sq_rel", "a1", "MB"):
        table.add_column(col, justify="left" if col in ("name", "kind", "backbone") else "right")
    for m in models:
        met = (m.card.get("metrics_fp16") or m.card.get("metrics_fp32") or {}).get("own", {}).get("metrics", {})
        cells = [f"{met[k]:.3f}" if k in met else "–" for k in ("abs_rel", "sq_rel", "a1")]
        table.add_row(m.name, m.kind, str(m.card.get("backbone", "–")), f"{m.card.get('params', 0) / 1e6:.2f}M",
                      str(m.card.get("steps", "–")), *cells,
                      f"{m.card.get('bytes', 0) / 2**20:.1f}")
    console.print(table)


@app.command("show")
def show_cmd(name: str = typer.Argument(..., help="A shipped model name.")) -> None:
    """The model card (world, recipe, command, metrics, sha256), after checking the weights' sha256."""
    from donna_nas.tasks.depth.zoo import resolve_model

    print(json.dumps(resolve_model(name).card, indent=1, sort_keys=True))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="models")
