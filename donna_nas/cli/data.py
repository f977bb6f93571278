"""`donna-nas data ...`: make the synthetic KITTI-layout dataset and export ground-truth depth."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Datasets: synthetic KITTI-layout world, ground-truth export.", no_args_is_help=True)


@app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Output directory (KITTI raw layout)."),
    drives: int = typer.Option(3, "--drives", help="Number of drives; >= 3 gives drive-disjoint test drives."),
    frames: int = typer.Option(60, "--frames", help="Frames per drive (10 Hz)."),
    size: str = typer.Option("192x640", "--size", help="Native image size HEIGHTxWIDTH."),
    seed: int = typer.Option(0, "--seed", help="World seed; same seed -> byte-identical files."),
    workers: int = typer.Option(1, "--workers", help="Render frames in this many processes (same files)."),
    world_version: int = typer.Option(2, "--world-version",
                                      help="2: the learnable world (view-independent texture, area sampling, static "
                                           "drives); 1: the original world, byte for byte."),
    movers: bool = typer.Option(False, "--movers", help="Add moving cars (version 2 drives are static otherwise)."),
) -> None:
    """Render procedural street drives with images, stereo, velodyne, calibration, labels and splits."""
    from donna_nas.cli import console
    from donna_nas.cli.common import parse_size
    from donna_nas.cli.common import check_out_dir
    from donna_nas.data.synth import synthesize

    check_out_dir(out)
    path = synthesize(out, drives=drives, frames=frames, size=parse_size(size), seed=seed, progress=True,
                      workers=workers, world_version=world_version, movers=movers)
    console.print(f"synthetic dataset ready: {path} (splits in {path / 'splits'})")


@app.command("export-gt")
def export_gt_cmd(
    data: Path = typer.Option(..., "--data", help="KITTI raw root (real or synthetic)."),
    split: str = typer.Option(None, "--split",
                              help="Split file, built-in name (eigen, eigen_benchmark) or NAME of DATA/splits/NAME_files.txt "
                                   "[default: test for the synthetic world, else eigen]."),
    out: Path = typer.Option(None, "--out", help="Output .npz (default DATA/gt/SPLIT/gt_depths.npz)."),
    protocol: str = typer.Option("auto", "--protocol",
                                 help="kitti (velodyne depth, devkit -1 pixel shift: published GT), exact "
                                      "(camera z, no shift), auto (exact for synthetic data)."),
) -> None:
    """Project velodyne scans into image_02 with the calibration and save gt_depths.npz."""
    from donna_nas.cli import console
    from donna_nas.data.gt import default_split, export_gt

    path = export_gt(data, split or default_split(data), out, protocol=protocol, progress=True)
    console.print(f"ground truth written: {path}")


def register(root: typer.Typer) -> None:
    """Add the ``data`` group and the top-level ``evaluate`` command."""
    from donna_nas.cli import evaluate

    root.add_typer(app, name="data")
    evaluate.register(root)
