"""The block-quality table (NSR of every (block, choice) on held-out frames) and its heat maps."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from donna_nas.distill.bkd import quality_columns
from donna_nas.errors import UserError
from donna_nas.runtime.io import atomic_path
from donna_nas.space.space import SearchSpace

__all__ = ["write_quality_table", "read_quality_table", "nsr_lookup", "plot_heatmaps"]


def write_quality_table(rows: list[dict], path: Path) -> pd.DataFrame:
    """Rows sorted by block then choice token, so equal inputs give byte-identical files."""
    df = pd.DataFrame(rows, columns=quality_columns)
    df = df.sort_values(["block", "choice"], kind="stable").reset_index(drop=True)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")
    return df


def read_quality_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: block-quality table not found; run `donna-nas build-supernet` first")
    df = pd.read_csv(path)
    missing = [c for c in quality_columns if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}")
    return df


def nsr_lookup(df: pd.DataFrame, space: SearchSpace) -> dict[str, dict[str, float]]:
    """block name -> choice token -> NSR; raises if any choice of the space has no row."""
    table: dict[str, dict[str, float]] = {}
    for block, tok, v in zip(df["block"], df["choice"], df["nsr"]):
        table.setdefault(str(block), {})[str(tok)] = float(v)
    for b in space.blocks:
        have = table.get(b.name, {})
        missing = [c.token() for c in b.all_choices() if c.token() not in have]
        if missing:
            raise UserError(f"block-quality table lacks {len(missing)} choice(s) of block {b.name}, "
                            f"e.g. {missing[0]}; rerun build-supernet with --resume")
    return table


def plot_heatmaps(df: pd.DataFrame, path: Path) -> Path:
    """One heat map per block: rows op·act·se, columns depth·kernel·expand·width, colour NSR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = list(dict.fromkeys(df["block"]))
    fig, axes = plt.subplots(len(blocks), 1, figsize=(12, 2.2 * len(blocks) + 0.5), squeeze=False)
    for ax, b in zip(axes[:, 0], blocks):
        d = df[df["block"] == b].copy()
        d["row"] = d["op"] + "·" + d["act"] + d["se"].map(lambda s: "·se" if s else "")
        d["col"] = ("d" + d["depth"].astype(str) + "k" + d["kernel"].astype(str) + "e"
                    + d["expand"].astype(str) + "c" + d["out_channels"].astype(str))
        piv = d.pivot_table(index="row", columns="col", values="nsr", aggfunc="mean")
        im = ax.imshow(piv.values, aspect="auto", cmap="viridis_r")
        ax.set_yticks(range(len(piv.index)), piv.index, fontsize=7)
        step = max(1, len(piv.columns) // 24)
        ax.set_xticks(range(0, len(piv.columns), step), list(piv.columns)[::step], rotation=90,
                      fontsize=6)
        ax.set_title(f"block {b}: held-out NSR ({len(d)} choices, best {d['nsr'].min():.3f})",
                     fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
