"""Which features rank the predictor's targets? Refit predictors on a recorded predictor_rank run
(``experiments/results/RECORD_archs.csv``: every architecture's block NSRs, MACs and targets), no
finetune needed, and report leave-one-out tau on the training architectures and tau on the
held-out ones, side by side.

    python experiments/predictor_features.py --record predictor_rank_bridged

Feature sets (ridge, alpha by exact leave-one-out error, as ``donna_nas.predictor.models.Ridge``):
``nsr`` (DONNA: the NSR of each block's choice), ``log_nsr``, ``nsr+macs`` (plus log total MACs),
``block_macs`` (log MACs of each block), ``nsr+block_macs``, ``onehot`` (option=value indicators);
unfitted: the DNA sum of NSRs and minus the MACs; with ``RECORD_downstream.csv``
(``experiments/downstream_quality.py``) also ridge on, and the sum of, each block's downstream
score (``down_kd``, ``down_sq_rel``, and ``nsr_here``, NSR recomputed on float32 taps), and with
``RECORD_downstream_widths.csv`` the same at the input width each block really gets; and, where the
record has it, the assembled
network's Sq Rel before any finetune step (a diagnostic: it costs an evaluation per architecture).
Choosing among several predictors by their held-out tau over 10 architectures would flatter the
winner, so the table marks the one a user would pick, by leave-one-out tau on the training set;
an unfitted score also gets its tau over all the architectures (nothing was fitted on them).

Writes ``experiments/results/RECORD_features.{md,csv}``.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def block_macs(space, arch) -> list[float]:
    from donna_nas.space.ops import block_ops

    return [float(sum(op.macs for op in ops)) for ops in block_ops(space, arch, space.input_size)[1:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", default="predictor_rank_bridged")
    ap.add_argument("--space", default="donna_depth_lite")
    a = ap.parse_args()

    from donna_nas.predictor.features import onehot_features
    from donna_nas.predictor.fit import cv_predict, kendall_tau
    from donna_nas.predictor.models import Ridge
    from donna_nas.space import load_space

    df = pd.read_csv(RESULTS / f"{a.record}_archs.csv")
    space = load_space(a.space)
    archs = [space.decode(s) for s in df["arch"]]
    nsr = df[[c for c in df.columns if c.startswith("nsr_")]].to_numpy(float)
    bm = np.log(np.array([block_macs(space, x) for x in archs]))
    logm = np.log(df["macs"].to_numpy(float))[:, None]
    feats = {"nsr": nsr, "log_nsr": np.log(nsr), "nsr+macs": np.hstack([nsr, logm]), "block_macs": bm,
             "nsr+block_macs": np.hstack([nsr, bm]), "onehot": onehot_features(archs, space)}
    unfitted = {"sum_nsr (DNA, unfitted)": nsr.sum(1), "macs (bigger is better, unfitted)": -df["macs"].to_numpy(float)}
    for suffix, label in (("", ""), ("_widths", " at its input width")):
        # per-(block, choice[, input width]) scores of experiments/downstream_quality.py
        path = RESULTS / f"{a.record}_downstream{suffix}.csv"
        if not path.is_file():
            continue
        down = pd.read_csv(path)
        keyed = suffix == "_widths"
        down = down.set_index(["block", "choice", "cin"] if keyed else ["block", "choice"])

        def key(i, b, c, x, keyed=keyed):
            if not keyed:
                return (b.name, c.token())
            return (b.name, c.token(), space.stem.channels if i == 0 else x.block_choices[i - 1].out_channels)

        for col in [c for c in ("nsr_here", "down_kd", "down_sq_rel") if c in down.columns]:
            D = np.array([[down.loc[key(i, b, c, x), col] for i, (b, c) in enumerate(zip(space.blocks, x.block_choices))]
                          for x in archs], dtype=float)
            name = col + label
            feats[name] = D
            if col != "nsr_here":
                feats[f"{name}+block_macs"] = np.hstack([D, bm])
            unfitted[f"sum of {name} (unfitted)"] = D.sum(1)
    tr, te = (df["split"] == "train").to_numpy(), (df["split"] == "heldout").to_numpy()
    targets = {"seed 0": df["sq_rel_seed0"].to_numpy(float)}
    if df["sq_rel_seed1"].notna().all():
        targets["mean of seeds 0 and 1"] = (df["sq_rel_seed0"] + df["sq_rel_seed1"]).to_numpy(float) / 2
    rows = []
    for tname, y in targets.items():
        for name, X in feats.items():
            oof = cv_predict(lambda: Ridge(), X[tr], y[tr])
            pred = Ridge().fit(X[tr], y[tr]).predict(X[te])
            rows.append({"target": tname, "predictor": f"ridge on {name}", "fitted": True,
                         "loo_tau": kendall_tau(oof, y[tr]), "heldout_tau": kendall_tau(pred, y[te])})
        for name, s in unfitted.items():
            rows.append({"target": tname, "predictor": name, "fitted": False,
                         "loo_tau": kendall_tau(s[tr], y[tr]), "heldout_tau": kendall_tau(s[te], y[te]),
                         "all_tau": kendall_tau(s, y)})
    out = pd.DataFrame(rows)
    out.to_csv(RESULTS / f"{a.record}_features.csv", index=False, float_format="%.4f")
    cmd = "python " + " ".join(shlex.quote(x) for x in ["experiments/predictor_features.py", *sys.argv[1:]])
    lines = ["# Predictor features against recorded targets", "",
             f"Command: `{cmd}`. Date {datetime.date.today()}. Input: `{a.record}_archs.csv` "
             f"({tr.sum()} training + {te.sum()} held-out architectures of `{a.record}.md`, its scale and machine); "
             "no training here, so the figures do not depend on this machine.", "",
             "Target: Sq Rel on the val split after the recorded finetune. LOO tau: leave-one-out on the training "
             "architectures (for an unfitted score, its tau there). Picked: the fitted predictor with the best LOO tau, "
             "the one a user without the held-out set would choose.", ""]
    if "mean of seeds 0 and 1" in targets:
        from predictor_rank import noise_floor  # experiments/ is on sys.path when a script here runs

        f = noise_floor(df["sq_rel_seed0"].to_numpy(float), df["sq_rel_seed1"].to_numpy(float))
        lines += [f"Noise floor of the targets (seed 0 against seed 1, all {len(df)} architectures): Kendall tau "
                  f"{f['seed_tau']:.3f}, noise sd {f['noise_sd']:.4f}, signal sd {f['signal_sd']:.4f}, noise / signal "
                  f"{f['noise_sd'] / f['signal_sd']:.2f}; Sq Rel {f['min']:.3f} .. {f['max']:.3f}.", ""]
    for tname in targets:
        sub = out[out.target == tname]
        pick = sub[sub.fitted].sort_values("loo_tau", ascending=False).iloc[0]["predictor"]
        lines += [f"**Target: {tname}**", "",
                  "| predictor | LOO tau (train) | held-out tau | tau over all (unfitted only) | held-out tau ≥ 0.8 |",
                  "|---|---:|---:|---:|---|"]
        for r in sub.itertuples(index=False):
            mark = " (picked)" if r.predictor == pick else ""
            every = "–" if r.fitted else f"{r.all_tau:.3f}"
            lines.append(f"| {r.predictor}{mark} | {r.loo_tau:.3f} | {r.heldout_tau:.3f} | {every} | "
                         f"{'met' if r.heldout_tau >= 0.8 else '**missed**'} |")
        lines.append("")
    from donna_nas.runtime.io import write_text_atomic

    write_text_atomic(RESULTS / f"{a.record}_features.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
