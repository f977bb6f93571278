"""The deployed-model check: the bound applied to the whole network timed end to end, the best
predicted front member that meets it (bisection against brute force), and the depth task's
timing of a real depth network."""

import json
import random

import pytest

from donna_nas.latency.source import all_ops
from donna_nas.search import Constraints, search, synthetic_predictor
from donna_nas.search.objectives import MappingLatency
from donna_nas.search.run import DEPLOYED_GUARD, run_search
from donna_nas.search.select import DeployedLatency, LatencyBound, LatencyTarget, check_deployed
from donna_nas.space import load_space
from tests.test_search_cli import make_run, write_table


class FakeDeployed(DeployedLatency):
    """Deployed latency = source latency × scale + overhead (a decoder); counts the timings
    (``paired_ms`` is the base class's: the candidate's and the teacher's separate timings)."""

    def __init__(self, front, scale=1.0, overhead=0.0, teacher=10.0):
        self.ms = {e.arch: e.latency_ms * scale + overhead for e in front}
        self.teacher, self.calls = teacher, []

    def teacher_ms(self):
        return self.teacher

    def candidate_ms(self, arch):
        self.calls.append(arch)
        return self.ms[arch]

    def describe(self):
        return "fake"


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def front_of(tiny, seed):
    rng = random.Random(seed)
    table = MappingLatency({op.key: rng.uniform(0.1, 2.0) for op in all_ops(tiny, tiny.input_size)})
    pred = synthetic_predictor(tiny, seed, noise=0.5)
    return search(tiny, pred, table, Constraints(), method="exact", context_samples=5).front


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_check_selects_the_best_predicted_member_that_meets_the_deployed_bound(tiny, seed):
    front = front_of(tiny, seed)
    assert len(front) >= 8
    lats = sorted(e.latency_ms for e in front)
    for scale, overhead in ((1.0, 0.0), (1.2, 0.5), (0.8, 2.0)):
        for q in (0.2, 0.5, 0.9):
            source_bound = lats[int(q * len(lats))]
            bound = LatencyBound(source_bound, "max-latency-ms", source_bound)
            dep = FakeDeployed(front, scale, overhead)
            chk = check_deployed(front, "minimize", bound, dep, max_checks=64)
            brute = [e for e in front if dep.ms[e.arch] <= source_bound]  # the source latency does not filter
            expect = min(brute, key=lambda e: (e.metric, e.latency_ms)) if brute else None
            assert (chk.selected and chk.selected.arch) == (expect and expect.arch)
            # bisection: about log2(n) timings, never every candidate
            n = chk.candidates
            assert len(dep.calls) <= n.bit_length() + 1 and len(set(dep.calls)) == len(dep.calls)
            assert all(c["meets"] == (c["deployed_ms"] <= source_bound) for c in chk.checked)


def test_speedup_bound_comes_from_the_teachers_deployed_latency(tiny):
    front = front_of(tiny, 0)
    lats = sorted(e.latency_ms for e in front)
    teacher = 3 * lats[len(lats) // 2]
    bound = LatencyTarget(speedup=1.5, teacher_latency_ms=teacher / 2).resolve()  # the source's bound
    dep = FakeDeployed(front, 1.0, 0.3, teacher=teacher)
    chk = check_deployed(front, "minimize", bound, dep, max_checks=64)
    assert chk.bound_ms == pytest.approx(teacher / 1.5) and chk.teacher_ms == teacher
    ok = [e for e in front if dep.ms[e.arch] <= teacher / 1.5]
    assert chk.selected.arch == min(ok, key=lambda e: (e.metric, e.latency_ms)).arch
    # a guard band: the selection must beat teacher / 1.5 by 60%, and is the brute-force best of those
    guarded = check_deployed(front, "minimize", bound, FakeDeployed(front, 1.0, 0.3, teacher=teacher), max_checks=64,
                             guard=0.6)
    assert guarded.bound_ms == pytest.approx(teacher / 1.5 / 1.6) and "60% guard band" in guarded.describe()
    ok_guarded = [e for e in front if dep.ms[e.arch] <= teacher / 1.5 / 1.6]
    assert guarded.selected.arch == min(ok_guarded, key=lambda e: (e.metric, e.latency_ms)).arch
    assert 0 < len(ok_guarded) < len(ok)  # the band excluded candidates that meet the bare bound
    assert guarded.selected.metric > chk.selected.metric
    with pytest.raises(ValueError, match="guard"):
        check_deployed(front, "minimize", bound, dep, guard=-0.1)
    # nothing fast enough: no selection, and a one-line message with the fastest one timed
    slow = FakeDeployed(front, 1.0, 1e3, teacher=teacher)
    chk = check_deployed(front, "minimize", bound, slow, max_checks=64)
    assert chk.selected is None and "fastest one timed" in chk.no_selection_message()
    assert "\n" not in chk.no_selection_message()


class NoisyPaired(FakeDeployed):
    """Paired timings whose candidate side is scaled per (architecture, trial): ``noise[arch]`` is
    the list of factors of trials 0, 1, 2, ...; an architecture without one times exactly."""

    def __init__(self, front, noise, teacher):
        super().__init__(front, 1.0, 0.3, teacher=teacher)
        self.noise, self.trials = noise, []

    def paired_ms(self, arch, trial=0):
        self.trials.append((arch, trial))
        return self.ms[arch] * self.noise.get(arch, [1.0] * (trial + 1))[trial], self.teacher


def test_confirmation_pairings_outvote_one_lucky_pairing(tiny):
    """The best predicted candidate that misses the bound, timed once by luck under it: a single
    pairing selects it; the median of three rejects it and selects the brute-force best of the
    candidates that truly meet the bound."""
    front = front_of(tiny, 0)
    lats = sorted(e.latency_ms for e in front)
    teacher = 1.5 * (lats[len(lats) // 2] + 0.3)  # about half the front meets teacher / 1.5
    bound = LatencyTarget(speedup=1.5, teacher_latency_ms=teacher / 2).resolve()
    exact = FakeDeployed(front, 1.0, 0.3, teacher=teacher)
    order = sorted(front, key=lambda e: (e.metric, e.latency_ms))  # the check's order, best first
    first_ok = next(k for k, e in enumerate(order) if exact.ms[e.arch] <= teacher / 1.5)
    assert first_ok > 0, "the fixture front needs a better predicted member that misses the bound"
    best_ok, lucky = order[first_ok], order[first_ok - 1]
    # the near miss's first pairing comes out 1% under the bound; its other two are honest
    noise = {lucky.arch: [0.99 * (teacher / 1.5) / exact.ms[lucky.arch], 1.0, 1.02]}
    once = check_deployed(front, "minimize", bound, NoisyPaired(front, noise, teacher), max_checks=64)
    assert once.selected.arch == lucky.arch  # one pairing is fooled: the noisy predicate stays monotone
    thrice_dep = NoisyPaired(front, noise, teacher)
    thrice = check_deployed(front, "minimize", bound, thrice_dep, max_checks=64, confirm=3)
    assert thrice.selected.arch == best_ok.arch  # the brute-force answer despite the lucky pairing
    # every timed candidate was paired three times, and the record keeps the pairings
    timed = {a for a, _ in thrice_dep.trials}
    assert lucky.arch in timed
    assert all(sorted(t for a, t in thrice_dep.trials if a == arch) == [0, 1, 2] for arch in timed)
    assert all(len(c["pairings_ms"]) == 3 for c in thrice.checked)
    assert thrice.confirm == 3 and "median of 3 pairings" in thrice.describe()
    with pytest.raises(ValueError, match="confirm"):
        check_deployed(front, "minimize", bound, exact, confirm=0)
    # without noise, confirmation changes nothing: the same selection as one pairing
    assert (check_deployed(front, "minimize", bound, FakeDeployed(front, 1.0, 0.3, teacher=teacher), max_checks=64,
                           confirm=3).selected.arch == best_ok.arch)


def test_search_run_records_the_deployed_check(tmp_path, tiny):
    run = make_run(tmp_path, tiny)
    lut = tmp_path / "lut.csv"
    write_table(lut, tiny)
    base = run_search(run, latency_table=str(lut), target=LatencyTarget(max_latency_ms=1e9))
    front = base.result.front
    lats = sorted(e.latency_ms for e in front)
    bound = lats[len(lats) // 2]
    dep = FakeDeployed(front, 1.0, (lats[len(lats) // 2] - lats[len(lats) // 4]) / 2)
    out = run_search(run, latency_table=str(lut), target=LatencyTarget(max_latency_ms=bound), deployed=dep)
    sel = json.loads((run / "selected.json").read_text())
    # the front is not cut by the source bound (it is the check's candidate list)
    assert len(out.result.front) == len(front)
    guarded = bound / (1 + DEPLOYED_GUARD)  # the library's default guard band
    ok = [e for e in out.result.front if dep.ms[e.arch] <= guarded]
    assert 0 < len(ok) < len([e for e in out.result.front if dep.ms[e.arch] <= bound])  # the band bites
    assert sel["arch"] == min(ok, key=lambda e: (e.metric, e.latency_ms)).arch
    assert sel["deployed_latency_ms"] == pytest.approx(dep.ms[sel["arch"]]) and sel["deployed_latency_ms"] <= guarded
    assert sel["deployed_check"]["checked"] and sel["deployed_check"]["how"] == "fake"
    assert sel["deployed_check"]["guard"] == DEPLOYED_GUARD > 0


def test_depth_deployed_latency_times_whole_networks_and_caches(tmp_path, tiny, monkeypatch):
    from donna_nas.tasks.depth.deployed import DepthDeployedLatency, pairings_by_arch
    from tests.conftest import quick_pairing

    quick_pairing(monkeypatch)

    cache = tmp_path / "deployed.json"
    arch = tiny.sample(0).encode()
    dep = DepthDeployedLatency(tiny, "resnet18", (64, 96), "int8", cache=cache, repeats=3)
    t, c = dep.teacher_ms(), dep.candidate_ms(arch)
    assert 0 < c < t  # the tiny space's smallest networks run faster than a ResNet18 depth net
    rec = json.loads(cache.read_text())
    assert set(rec["latency_ms"]) == {"resnet18", arch}
    again = DepthDeployedLatency(tiny, "resnet18", (64, 96), "int8", cache=cache, repeats=3)
    again.measurer = None  # a cached timing is not re-measured
    assert again.candidate_ms(arch) == c and again.teacher_ms() == t
    other = DepthDeployedLatency(tiny, "resnet18", (64, 128), "int8", cache=cache, repeats=3)
    assert other._times == {}  # another size does not reuse the timings
    # side by side: the candidate and the teacher in one round-robin, both kept in the cache
    pc, pt = dep.paired_ms(arch)
    assert 0 < pc < pt
    assert json.loads(cache.read_text())["paired_ms"][arch] == [pc, pt]
    # a second trial is a new timing under its own key; trial 0 keeps the architecture's key
    pc1, pt1 = dep.paired_ms(arch, 1)
    pairs = json.loads(cache.read_text())["paired_ms"]
    assert pairs[f"{arch}#1"] == [pc1, pt1] and pairs[arch] == [pc, pt] and 0 < pc1 < pt1
    again = DepthDeployedLatency(tiny, "resnet18", (64, 96), "int8", cache=cache, repeats=3)
    again.measurer = None  # both trials resume from the cache
    assert again.paired_ms(arch) == (pc, pt) and again.paired_ms(arch, 1) == (pc1, pt1)
    assert pairings_by_arch(pairs) == {arch: [(pc, pt), (pc1, pt1)]}  # grouped back, in trial order


def test_paired_ratio_outvotes_a_round_that_load_hit_on_one_side():
    """Round-robin timings of a candidate (true 4 ms) and a teacher (true 8 ms) where load slowed
    every candidate round but one, and the teacher's first round: the median round ratio is the
    true 0.5; the ratio of the lowest round medians compares a quiet teacher with a loaded
    candidate whenever their quiet rounds differ."""
    from donna_nas.latency.ort import Timing, paired_ratio

    load = [1.0, 1.4, 1.4, 1.0, 1.0]  # the machine's slowdown in each round, both sides alike
    cand_r = tuple(4.0 * f for f in load)
    teach_r = tuple(8.0 * f for f in load)
    teach_r = (teach_r[0] * 1.5,) + teach_r[1:]  # a burst on the teacher's side of round 0 only
    cand, teacher = Timing(min(cand_r), 0.0, 5, cand_r), Timing(min(teach_r), 0.0, 5, teach_r)
    assert paired_ratio(cand, teacher) == pytest.approx(0.5)
    # the machine is loaded in every round but round 3, and in round 3 a burst hits the candidate
    # alone: the candidate never runs quiet, the teacher does once
    load = [1.3, 1.3, 1.3, 1.0, 1.3]
    cand_r = tuple(4.0 * f for f in load[:3]) + (4.0 * 1.3, 4.0 * 1.3)
    teach_r = tuple(8.0 * f for f in load)
    cand, teacher = Timing(min(cand_r), 0.0, 5, cand_r), Timing(min(teach_r), 0.0, 5, teach_r)
    assert cand.median_ms / teacher.median_ms == pytest.approx(0.65)  # lowest medians: biased
    assert paired_ratio(cand, teacher) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        paired_ratio(Timing(1.0, 0.0, 1), Timing(1.0, 0.0, 1))


def test_side_by_side_fps_orders_a_small_and_a_large_model(tmp_path):
    from torch import nn

    from donna_nas.export.onnx import onnx_bytes
    from donna_nas.export.pipeline import measure_fps_side_by_side

    paths = {}
    for name, width in (("small", 4), ("large", 64)):
        net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                            nn.ReLU(), nn.Conv2d(width, 1, 3, padding=1), nn.Sigmoid())
        paths[name] = tmp_path / f"{name}.onnx"
        paths[name].write_bytes(onnx_bytes(net, (1, 3, 32, 64)))
    res = measure_fps_side_by_side(paths, (32, 64), warmup=1, repeats=3, rounds=2)
    assert set(res) == {"small", "large"}
    assert res["small"].fps > 2 * res["large"].fps  # 256x the MACs in the middle layer
    assert all(r.median_ms == pytest.approx(1000.0 / r.fps) for r in res.values())


def test_cli_search_deployed_checks(tmp_path, tiny, capsys, monkeypatch):
    from tests.conftest import quick_pairing
    from tests.test_cli_failures import assert_one_line, run_cli

    quick_pairing(monkeypatch)

    run = make_run(tmp_path, tiny)
    (run / "config.yaml").write_text("task: depth\n")
    (run / "teacher.json").write_text(json.dumps({"kind": "resnet", "backbone": "resnet18", "name": "resnet18"}))
    lut = tmp_path / "lut.csv"
    write_table(lut, tiny)
    # a table cannot time whole networks here; a bound is needed: one line each
    code, out, err = run_cli(["search", run, "--latency-table", lut, "--max-latency-ms", "5",
                              "--deployed-checks", "4"], capsys)
    assert_one_line(code, out, err, "--measure")
    code, out, err = run_cli(["search", run, "--measure", "ort-int8", "--deployed-checks", "4"], capsys)
    assert_one_line(code, out, err, "latency bound")
    # a bound every tiny network meets: the best predicted front member, its whole network timed
    code, out, err = run_cli(["search", run, "--measure", "ort-int8", "--measure-archs", "2", "--fill-missing",
                              "--speedup", "1.01", "--deployed-checks", "2", "--size", "64x96"], capsys)
    assert code == 0, out + err
    sel = json.loads((run / "selected.json").read_text())
    chk = sel["deployed_check"]
    assert 1 <= len(chk["checked"]) <= 2 and chk["teacher_ms"] > 0
    # the selected network met the bound of its own pairing (teacher timed beside it / speedup)
    own = next(c for c in chk["checked"] if c["arch"] == sel["arch"])
    assert sel["deployed_latency_ms"] == own["deployed_ms"] and sel["teacher_deployed_ms"] == own["teacher_ms"]
    assert sel["deployed_latency_ms"] <= sel["deployed_bound_ms"] == pytest.approx(own["teacher_ms"] / 1.01 / (1 + DEPLOYED_GUARD))
    best = min(chk["checked"], key=lambda c: c["predicted_metric"])
    assert best["meets"] and sel["arch"] == best["arch"]  # the best predicted timed candidate meets
    assert json.loads((run / "tables" / "deployed_latency_int8.json").read_text())["paired_ms"]
