"""build-supernet on the tiny space: table coverage, resume after a kill, executor equivalence,
assembly from distilled blocks, and the errors for a bad teacher, checkpoint or split."""

import pandas as pd
import pytest
import torch

from donna_nas.distill.assemble import assemble
from donna_nas.distill.bkd import load_bkd_model
from donna_nas.distill.pipeline import SupernetConfig, build_supernet
from donna_nas.distill.teacher import TeacherCut, load_teacher
from donna_nas.errors import UserError
from donna_nas.nn.resnet import resnet18, resnet50
from donna_nas.runtime.executor import LocalExecutor
from donna_nas.search.objectives import LinearBlockPredictor
from donna_nas.space import load_space

SPACE = load_space("tiny")


def _frames(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"train": torch.rand(12, 3, 32, 64, generator=g), "val": torch.rand(6, 3, 32, 64, generator=g)}


def _teacher():
    torch.manual_seed(0)
    return TeacherCut(resnet18(), name="resnet18-random")


def _cfg(**kw):
    base = dict(height=32, width=64, bkd_steps=4, bkd_batch=4, calib_frames=4, predictor_archs=0,
                predictor_test=0, task="distill", ft_steps=2, ft_batch=4, arch_pool=100)
    base.update(kw)
    return SupernetConfig(**base)


class CountingExecutor(LocalExecutor):
    """Counts jobs run; with ``fail_after`` set, dies after that many (a simulated kill)."""

    def __init__(self, fail_after=None):
        super().__init__(1)
        self.ran, self.fail_after = [], fail_after

    def map(self, fn, jobs, on_done=None):
        out = []
        for i, j in enumerate(jobs):
            if self.fail_after is not None and len(self.ran) >= self.fail_after:
                raise KeyboardInterrupt("simulated kill")
            out.append(fn(j))
            self.ran.append(j.job_id)
            if on_done:
                on_done(i, out[-1])
        return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("sn") / "run"
    res = build_supernet(SPACE, run, _cfg(predictor_archs=5, predictor_test=3), teacher=_teacher(),
                         frames=_frames(), progress=False)
    return run, res


def test_every_choice_of_every_block_has_a_row(full_run):
    run, res = full_run
    df = pd.read_csv(run / "tables" / "block_quality.csv")
    want = {(b.name, c.token()) for b in SPACE.blocks for c in b.all_choices()}
    assert set(zip(df["block"], df["choice"])) == want and len(df) == len(want) == 36
    assert (df["nsr"] > 0).all()
    for f in ("report.md", "predictor.json", "plots/block_quality.png", "plots/predictor.png",
              "tables/predictor_train.csv", "timings.json", "space.yaml", "teacher.json"):
        assert (run / f).is_file(), f


def test_predictor_json_loads_as_linear_block_predictor(full_run):
    run, res = full_run
    pred = LinearBlockPredictor.from_json(run / "predictor.json")
    tab = pd.read_csv(run / "tables" / "predictor_train.csv")
    from donna_nas.predictor.models import Ridge

    ridge = Ridge.from_json(res.predictor["model"])
    cols = [c for c in tab.columns if c.startswith("nsr_")]
    for arch, x in zip(tab["arch"], tab[cols].to_numpy()):
        a = SPACE.decode(arch)
        assert pred.predict(SPACE, a) == pytest.approx(float(ridge.predict(x[None])[0]), rel=1e-5, abs=1e-9)


def test_assemble_loads_the_distilled_block_weights(full_run):
    """Joined raw, every weight is the distilled block's; joined with bridges (the default), only
    the first convolution of each block after the first differs (the bridge folded in)."""
    run, _ = full_run
    arch = SPACE.sample(3)
    raw = assemble(run, arch.encode(), recalibrate=False, bridge=False)
    bridged = assemble(run, arch.encode(), recalibrate=False)
    cin = SPACE.stem.channels
    for i, ch in enumerate(arch.block_choices):
        want = load_bkd_model(run, SPACE, i, ch.op, ch.act).block.export(ch, cin).state_dict()
        got, got_bridged = raw.blocks[i].state_dict(), bridged.blocks[i].state_dict()
        for k, v in want.items():
            if "running" not in k and "num_batches" not in k:
                torch.testing.assert_close(got[k], v)
                if i > 0 and k == "0.body.0.0.weight":
                    assert not torch.allclose(got_bridged[k], v)
                else:
                    torch.testing.assert_close(got_bridged[k], v)
        cin = ch.out_channels
    taps = bridged(torch.rand(1, 3, 32, 64))
    assert [t.shape[1] for t in taps] == bridged.channels


def test_resume_after_kill_skips_finished_jobs_and_gives_identical_table(full_run, tmp_path):
    ref = pd.read_csv(full_run[0] / "tables" / "block_quality.csv")
    run = tmp_path / "run"
    killer = CountingExecutor(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        build_supernet(SPACE, run, _cfg(), teacher=_teacher(), frames=_frames(), executor=killer,
                       progress=False)
    assert len(list((run / "jobs").glob("*.json"))) == 3
    with pytest.raises(UserError, match="--resume"):
        build_supernet(SPACE, run, _cfg(), teacher=_teacher(), frames=_frames(), progress=False)
    counter = CountingExecutor()
    build_supernet(SPACE, run, _cfg(), teacher=_teacher(), frames=_frames(), executor=counter,
                   resume=True, progress=False)
    assert len(counter.ran) == 10 - 3  # 10 (block, op, act) supernets in the tiny space
    assert not set(counter.ran) & set(killer.ran)
    pd.testing.assert_frame_equal(pd.read_csv(run / "tables" / "block_quality.csv"), ref)


def test_bad_teacher_cut_names_both_lists():
    t = TeacherCut(resnet18(), ["layer1", "layer2", "layer3", "layer4"], name="r18")
    with pytest.raises(UserError, match=r"4 blocks.*has 5 blocks"):
        t.check_space(SPACE, (32, 64))
    t = TeacherCut(resnet18(), ["relu", "layer1", "layer2", "layer3", "layer3"], name="r18")
    with pytest.raises(UserError, match=r"strides \[2, 4, 8, 16, 16\].*\[2, 4, 8, 16, 32\]"):
        t.check_space(SPACE, (32, 64))
    with pytest.raises(UserError, match="not submodules"):
        TeacherCut(resnet18(), ["layer9"])
    # named cut points at the ResNet stage boundaries match the five-tap contract
    t = TeacherCut(resnet18(), ["relu", "layer1", "layer2", "layer3", "layer4"])
    assert t.check_space(SPACE, (32, 64)) == [64, 64, 128, 256, 512]


def test_mismatched_or_corrupt_teacher_weights(tmp_path):
    p = tmp_path / "r50.pth"
    torch.save(resnet50().state_dict(), p)
    with pytest.raises(UserError, match="unexpected keys layer1.0.bn3"):
        load_teacher("resnet18", str(p))
    p18 = tmp_path / "r18.pth"
    torch.save(resnet18().state_dict(), p18)
    with pytest.raises(UserError, match="missing keys layer1.0.bn3"):
        load_teacher("resnet50", str(p18))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        load_teacher("resnet18", str(bad))


def test_empty_split_and_corrupt_block_checkpoint_are_clear_errors(full_run, tmp_path):
    fr = _frames()
    fr["val"] = fr["val"][:0]
    with pytest.raises(UserError, match="val split is empty"):
        build_supernet(SPACE, tmp_path / "r", _cfg(), teacher=_teacher(), frames=fr, progress=False)
    assert not (tmp_path / "r" / "config.yaml").exists()
    # a corrupt block file: clear error from assemble, and resume retrains only that block
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(full_run[0], run)
    victim = next((run / "blocks").glob("b2-*.safetensors"))
    victim.write_bytes(b"garbage")
    arch = next(a for a in (SPACE.sample(s) for s in range(50))
                if f"b2-{a.block_choices[1].op}-relu" == victim.stem)
    with pytest.raises(UserError, match="corrupt block checkpoint"):
        assemble(run, arch)
    counter = CountingExecutor()
    build_supernet(SPACE, run, None, teacher=_teacher(), frames=_frames(), executor=counter,
                   resume=True, progress=False)
    assert counter.ran == [f"bkd-{victim.stem}"]  # only the corrupt block is distilled again
    assemble(run, arch)


def test_report_states_the_predictor_tau_and_warns_below_half(full_run):
    import json

    from donna_nas.predictor.quality import PredictorQuality

    run, _ = full_run
    q = PredictorQuality.from_json(json.loads((run / "predictor.json").read_text()))
    report = (run / "report.md").read_text()
    if q.warning():
        assert q.warning() in report and f"{q.tau:.2f}" in report
    else:
        assert "warning" not in report and q.describe() in report
