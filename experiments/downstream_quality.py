"""Block quality measured downstream: how much does one distilled block, swapped into the teacher,
hurt the teacher's depth? A candidate feature for the accuracy predictor beside DONNA's NSR.

NSR scores a block at its own output and weighs every channel's error alike. What the predictor's
target measures is the depth at the end of the network, after the later blocks and the decoder
have amplified some errors and ignored others. Here each (block i, choice) of the architectures in
a recorded ``predictor_rank`` run is swapped into the teacher depth network alone: the teacher's
tap i-1 -> in-adapter -> the distilled choice -> out-adapter -> the teacher's remaining encoder
stages and its decoder. Two scores on the run's val frames, both per (block, choice), so a
predictor on them stays additive like DONNA's:

* ``down_kd``: mean |log disparity - the teacher's log disparity| (the distillation finetune's loss);
* ``down_sq_rel``: Sq Rel against the velodyne ground truth (Eigen protocol, median scaling).

Then ``experiments/predictor_features.py`` fits predictors on them against the recorded targets:

    python experiments/downstream_quality.py --run ~/dn/pr/donna_depth_lite_kd_100_lr0.0001 \
        --record predictor_rank_bridged
    python experiments/predictor_features.py --record predictor_rank_bridged

Writes ``experiments/results/RECORD_downstream.csv`` (block, choice, cin, nsr from the block-quality
table, nsr_here recomputed on the teacher's float32 val taps, down_kd, down_sq_rel).

``--widths actual``: BKD scores every choice at its block's largest input width, but an assembled
block reads only as many channels as the previous block chose (16 of b1's 24, say). This scores
each choice at each width the recorded architectures feed it (``RECORD_downstream_widths.csv``),
so ``predictor_features.py`` can test whether NSR at the width a block really gets ranks better.
Needs a ResNet teacher depth model (the stages are run one by one).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def resnet_stages(enc) -> list:
    """Functions taking tap j-1 to tap j of a ``ResNetEncoder`` (j = 1 .. 4)."""
    return [lambda f: enc.layer1(enc.maxpool(f)), enc.layer2, enc.layer3, enc.layer4]


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="the predictor_rank build folder (blocks, cache, teacher.json)")
    ap.add_argument("--record", default="predictor_rank_bridged", help="its RECORD_archs.csv names the choices to score")
    ap.add_argument("--widths", default="max", choices=("max", "actual"),
                    help="score each choice at the block's largest input width, as BKD does (max), or at each "
                         "input width the recorded architectures feed it (actual: RECORD_downstream_widths.csv)")
    ap.add_argument("--data", default=str(Path.home() / "dn" / "teachers" / "world_v2_6x60_64x192_s0"))
    a = ap.parse_args()
    torch.set_num_threads(1)

    from donna_nas.data.gt import load_gt_depths
    from donna_nas.data.kitti import KittiRawDataset
    from donna_nas.distill.assemble import load_run_space
    from donna_nas.distill.bkd import load_bkd_model
    from donna_nas.distill.cache import FeatureCache
    from donna_nas.distill.nsr import NSRAccumulator
    from donna_nas.distill.quality import read_quality_table
    from donna_nas.space.ops import incoming_widths
    from donna_nas.tasks.depth.geometry import disp_to_depth
    from donna_nas.tasks.depth.metrics import evaluate_disparities
    from donna_nas.tasks.depth.run import load_model

    run = Path(a.run)
    space = load_run_space(run)
    tinfo = json.loads((run / "teacher.json").read_text())
    net, _ = load_model(tinfo.get("shipped") or tinfo.get("run") or tinfo.get("spec"))
    enc, dec = net.encoder.eval(), net.decoder.eval()
    stages = resnet_stages(enc)
    ds = KittiRawDataset(a.data, str(Path(a.data) / "splits" / "val_files.txt"), size=(64, 192), frame_ids=(0,), train=False)
    x = torch.stack([ds[i]["images"][0] for i in range(len(ds))])
    gts, _ = load_gt_depths(run / "cache" / "val_gt.npz")
    taps = enc(x)
    calib = FeatureCache(run / "cache", "train")
    quality = read_quality_table(run / "tables" / "block_quality.csv")
    nsr = {(b, c): v for b, c, v in zip(quality["block"], quality["choice"], quality["nsr"])}

    def depth_scores(feats: list) -> tuple[float, float]:
        disp = dec.forward_scale0(feats)
        kd = float((torch.log(disp.clamp_min(1e-6)) - torch.log(teacher_disp.clamp_min(1e-6))).abs().mean())
        d, _ = disp_to_depth(disp, 0.1, 100.0)
        return kd, evaluate_disparities(d[:, 0].numpy(), gts)[0]["sq_rel"]

    teacher_disp = dec.forward_scale0(taps)
    teacher_sq = depth_scores(taps)[1]
    archs = [space.decode(s) for s in pd.read_csv(RESULTS / f"{a.record}_archs.csv")["arch"]]
    rows, t0 = [], time.time()
    for i, b in enumerate(space.blocks):
        # the input widths block i is scored at: its largest (as BKD scores), or each width that the
        # recorded architectures feed it (the previous block's chosen width; the stem's for b1)
        def width(x, cin_max, i=i):
            if a.widths == "max":
                return cin_max
            return space.stem.channels if i == 0 else x.block_choices[i - 1].out_channels

        cin_max = max(incoming_widths(space, i))
        for tok, cin in sorted({(x.block_choices[i].token(), width(x, cin_max)) for x in archs}):
            choice = next(c for c in b.all_choices() if c.token() == tok)
            model = load_bkd_model(run, space, i, choice.op, choice.act)
            # as BKD scores a choice (its calibration frames and batch), on the teacher's float32 val taps
            calib_x, inp = model.scoring_inputs(calib.images()[:16] if i == 0 else calib.tap(i - 1)[:16].float(),
                                                x if i == 0 else taps[i - 1], 16)
            est = model.head(model.scored_choice(choice, cin, calib_x, 16)(inp[:, :cin]))
            acc = NSRAccumulator(calib.variance(i))
            acc.add(est, taps[i])
            feats = list(taps[:i]) + [est]
            for stage in stages[i:]:
                feats.append(stage(feats[-1]))
            kd, sq = depth_scores(feats)
            rows.append({"block": b.name, "choice": tok, "cin": cin, "nsr": nsr[(b.name, tok)], "nsr_here": acc.value(),
                         "down_kd": kd, "down_sq_rel": sq})
        print(f"block {b.name}: {sum(r['block'] == b.name for r in rows)} (choice, width) pairs, {time.time() - t0:.0f} s",
              flush=True)
    out = pd.DataFrame(rows)
    out.to_csv(RESULTS / f"{a.record}_downstream{'' if a.widths == 'max' else '_widths'}.csv", index=False,
               float_format="%.6f")
    print(f"teacher itself: kd 0, Sq Rel {teacher_sq:.4f}")
    for b in space.blocks:
        d = out[out.block == b.name]
        from donna_nas.predictor.fit import kendall_tau

        print(f"{b.name}: {len(d)} choices; tau(nsr, down_kd) {kendall_tau(d.nsr, d.down_kd):.3f}; "
              f"down_sq_rel {d.down_sq_rel.min():.3f} .. {d.down_sq_rel.max():.3f}")


if __name__ == "__main__":
    main()
