"""The depth task behind ``build-supernet --task depth``: Sq Rel after a short self-supervised
finetune (``donna_nas.tasks.depth.predictor``), KITTI-layout frames for BKD
(``donna_nas.tasks.depth.frames``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["DepthTask", "TASK"]


@dataclass(frozen=True)
class DepthTask:
    name: str = "depth"
    metric: str = "sq_rel"
    direction: str = "minimize"
    table_metrics: tuple[str, ...] = ("sq_rel", "abs_rel")
    ft_lr: float = 2e-4  # default predictor-finetune learning rate (Adam)
    ft_batch: int = 4
    scores_other_splits: bool = True
    recalibrates_bn: bool = True

    def bkd_frames(self, data: str, split: str, size: tuple[int, int], limit: int) -> torch.Tensor:
        from donna_nas.tasks.depth.frames import load_frames

        return load_frames(data, split, size, limit)

    def prepare_predictor(self, run: Path, config: Any) -> None:
        """Export the validation split's velodyne ground truth once (``RUN/cache/val_gt.npz``)."""
        from donna_nas.tasks.depth.predictor import export_val_gt

        export_val_gt(run, config.data)

    def predictor_finetune(self, job: Any) -> dict[str, float]:
        from donna_nas.tasks.depth.predictor import predictor_finetune

        return predictor_finetune(job)

    def deployed_latency(self, run: Path, space: Any, input_size: tuple[int, int], precision: str,
                         act: str | None = None) -> Any:
        """The whole depth network (``DepthDeployedLatency``), against the run's teacher: its
        backbone and decoder activation from ``RUN/teacher.json`` (a shipped model's or a depth
        run's ``model.json``; a bare ResNet gets Monodepth2's ELU decoder). ``act``: the
        candidates' decoder activation (default ``DepthConfig``'s, what ``finetune`` trains)."""
        import json

        from donna_nas.errors import UserError
        from donna_nas.tasks.depth.deployed import DepthDeployedLatency
        from donna_nas.tasks.depth.run import DepthConfig

        try:
            info = json.loads((Path(run) / "teacher.json").read_text())
        except (OSError, ValueError):
            raise UserError(f"{Path(run) / 'teacher.json'}: missing or unreadable; the deployed check needs the "
                            f"run's teacher (rebuild with donna-nas build-supernet)") from None
        teacher_act = "elu"
        model_json = None
        if info.get("shipped"):
            from donna_nas.tasks.depth.zoo import resolve_model

            model_json = resolve_model(info["shipped"], kind="depth").folder / "model.json"
        elif info.get("run"):
            model_json = Path(info["run"]) / "model.json"
        if model_json is not None and model_json.is_file():
            teacher_act = str(json.loads(model_json.read_text()).get("act", teacher_act))
        return DepthDeployedLatency(space, str(info["backbone"]), tuple(input_size), precision,
                                    cache=Path(run) / "tables" / f"deployed_latency_{precision}.json",
                                    act=act or DepthConfig().act, teacher_act=teacher_act)


TASK = DepthTask()
