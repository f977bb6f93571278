"""`donna-nas export RUN`: ONNX fp32 + INT8 of a trained depth run, evaluated and timed."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    run: Path = typer.Argument(..., metavar="RUN", help="A finished depth run directory (donna-nas finetune --out)."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also write a static INT8 QDQ model."),
    calib: int = typer.Option(32, min=1, help="Training frames used to calibrate INT8 activations."),
    size: str = typer.Option("", help="Export size HxW (default: the training size; another size needs --force)."),
    force: bool = typer.Option(False, "--force", help="Export at a --size the model was not trained at."),
    threads: int = typer.Option(1, min=1, help="ONNX Runtime threads for the FPS measurement."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval",
                                  help="Evaluate the ONNX models on the test split (Eigen protocol)."),
    data: str = typer.Option("", help="Dataset folder (default: the run's)."),
    float_first_conv: bool = typer.Option(
        False, "--float-first-conv", help="Keep the stem convolution in float in the INT8 model "
                                          "(a few percent more latency; a phone NPU cannot run it)."),
    stem_weight_bits: int = typer.Option(
        7, "--stem-weight-bits", min=7, max=8,
        help="Bits of the stem convolution's INT8 weights: 7 avoids ONNX Runtime's AVX2 saturation on "
             "bright images, 8 quantises it like every other layer."),
) -> None:
    """Export RUN to RUN/export/model.onnx (+ model_int8.onnx), check it against PyTorch,
    evaluate it through ONNX Runtime and measure batch-1 FPS on this CPU."""
    from donna_nas.cli import console
    from donna_nas.cli.common import parse_size
    from donna_nas.export.pipeline import export_markdown, export_run

    result = export_run(run, int8=int8, calib=calib, size=parse_size(size) if size else None,
                        threads=threads, evaluate=evaluate, data=data or None, force=force,
                        float_first_conv=float_first_conv, stem_weight_bits=stem_weight_bits)
    console.print(export_markdown(result), highlight=False)
    console.print(f"written: {run / 'export'}")
