"""The training ablation: steps-to-target and its bootstrap interval on synthetic curves (exact
answers), trick configs, and a tiny end-to-end study (2 tricks, 1 seed, a few steps) that resumes."""
import json
import math

import pytest

from effdiff.bench import training as A


def test_steps_to_target_interpolates_the_first_crossing():
    steps = [100, 200, 300, 400]
    assert A.steps_to_target(steps, [10, 6, 2, 1], 4) == 250.0        # 6 -> 2 crosses 4 halfway
    assert A.steps_to_target(steps, [10, 6, 2, 1], 6) == 200.0        # reached exactly at a checkpoint
    assert A.steps_to_target(steps, [3, 6, 2, 1], 4) == 100.0         # already there at the first one
    assert A.steps_to_target(steps, [10, 9, 8, 7], 4) is None         # never
    assert A.steps_to_target(steps, [10, 3, 8, 1], 5) == pytest.approx(100 + 100 * 5 / 7)   # first crossing counts


def test_speedup_point_and_bootstrap_interval():
    steps = [100, 200, 300, 400]
    base = [[10, 8, 6, 4]]
    trick = [[8, 4, 3, 2]]
    s = A.speedup(base, trick, steps)                 # target = baseline final 4: base 400, trick 200
    assert s["target"] == 4 and s["base_to_target"] == 400 and s["to_target"] == 200
    assert s["speedup"] == 2.0 and s["ci"] == [None, None]       # one seed: no interval
    assert not s["at_first"] and A.speedup(base, [[3, 2, 2, 2]], steps)["at_first"]   # a bound, flagged
    # two seeds: resamples {0,0}, {1,1} (1/4 each) and the mixed ones (1/2); the target follows the resample
    base2 = [[10, 8, 6, 4], [10, 8, 6, 4]]
    trick2 = [[8, 4, 3, 2], [10, 8, 6, 4]]             # seed 1 = the baseline itself
    s2 = A.speedup(base2, trick2, steps, n_boot=4000)
    assert s2["speedup"] == pytest.approx(400 / (300 + 100 * 0.5 / 1.5))   # mean curve 9, 6, 4.5, 3 reaches 4
    assert s2["ci"] == [pytest.approx(1.0), pytest.approx(2.0)]           # the all-seed-1 / all-seed-0 resamples
    # never reaching the target is speed-up 0 and sorts below; a fixed target is used as given
    never = A.speedup(base, [[10, 9, 9, 9]], steps)
    assert never["speedup"] == 0 and not never["reached"] and never["to_target"] is None
    fixed = A.speedup(base, trick, steps, target=6)
    assert fixed["speedup"] == pytest.approx(300 / (100 + 100 * 2 / 4))
    # a wall-clock axis per seed (trick steps cost twice as much)
    wall = A.speedup(base, trick, steps, base_x=[[1, 2, 3, 4]], trick_x=[[2, 4, 6, 8]])
    assert wall["speedup"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="seeds, checkpoints"):
        A.speedup(base, trick2, steps)


def test_trick_configs():
    cfg = A.trick_config("lognormal+min-snr", seed=2, budget=100, evals=5)
    assert cfg.seed == 2 and cfg.steps == 100 and cfg.ckpt_every == 20
    assert cfg.loss == {"density": "lognormal", "density_args": {"p_mean": 0.0, "p_std": 1.0},
                        "weighting": "min-snr", "gamma": 5.0}
    assert A.ABLATION.loss == {"density": "uniform"}                 # the preset is not mutated
    assert A.trick_config("baseline", 0, 100, 5).loss == {"density": "uniform"}
    with pytest.raises(ValueError, match="multiple"):
        A.trick_config("baseline", 0, 101, 5)
    assert A.check_trick("baseline", 100, 5) is None
    A.TRICKS["no-such-field"] = {"no_such_field": 1}
    try:
        assert "no_such_field" in A.check_trick("no-such-field", 100, 5)
    finally:
        del A.TRICKS["no-such-field"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    A.TRICKS["bogus"] = {"loss": {"density": "no-such-density"}}
    try:
        st = A.Study(tricks=("baseline", "lognormal", "bogus"), seeds=(0,), budget=16, evals=2, n=40,
                     root=root / "runs", verbose=False).run()
    finally:
        del A.TRICKS["bogus"]
    return root, st


def test_tiny_study_end_to_end_and_resume(tiny):
    tmp_path, st = tiny
    assert "no-such-density" in st.skipped["bogus"] and set(st.curves) == {"baseline", "lognormal"}
    c = st.curves["baseline"][0]
    assert [p["step"] for p in c["points"]] == [8, 16]
    assert all(math.isfinite(p["fd"]) and p["fd"] > 0 for p in c["points"])
    assert (tmp_path / "runs" / "baseline-s0" / "model.safetensors").exists()
    rows = st.table_rows()
    assert rows[0]["trick"] == "baseline" and rows[0]["speedup"] == 1.0
    assert rows[0]["target"] == c["points"][-1]["fd"]
    text = A.write_report(st, tmp_path / "out")
    assert "| lognormal |" in text and "skipped" in text
    assert (tmp_path / "out" / "learning_curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "training_ablation.json").read_text())["budget"] == 16
    # the report of finished runs alone (no training) finds the same curves
    loaded = A.Study(tricks=("baseline", "lognormal", "min-snr"), seeds=(0,), budget=16, evals=2, n=40,
                     root=tmp_path / "runs", verbose=False).load()
    assert set(loaded.curves) == {"baseline", "lognormal"} and "min-snr" in loaded.skipped
    assert loaded.curves["lognormal"][0]["points"] == st.curves["lognormal"][0]["points"]
    # a killed run: drop the last evaluation, as if killed after the checkpoint at 16 but before scoring it
    path = tmp_path / "runs" / "lognormal-s0.json"
    curve = json.loads(path.read_text())
    last = curve["points"].pop()
    path.write_text(json.dumps(curve))
    again = A.Study(tricks=("baseline", "lognormal"), seeds=(0,), budget=16, evals=2, n=40,
                    root=tmp_path / "runs", verbose=False).run()
    assert again.curves["lognormal"][0]["points"][-1]["fd"] == pytest.approx(last["fd"])   # same weights
    assert again.curves["baseline"][0]["points"] == c["points"]                             # not retrained


def test_suite_rows_sample_the_trained_models(tiny, monkeypatch):
    from effdiff.bench.config import suite
    monkeypatch.setitem(A._STUDIES, True, tiny[1])            # the quick study, already trained
    rows = suite("training", ["digits-dit"], quick=True)
    assert [r.config for r in rows] == ["train-baseline", "train-lognormal"]
    assert rows[0].reference and rows[1].baseline == "train-baseline"
    import effdiff as ed
    row = rows[1].setup(None, None, None, None)
    sig = ed.timesteps.get("logsnr", 4, row.models[0].process)
    x = ed.sampling.randn((3, 1, 8, 8), seed=0) * sig[0].float()
    from effdiff.bench.scoring import labels_for
    res = rows[1].generate(None, None, x, sig, labels_for(3, 10), 0)
    assert res.x.shape == (3, 1, 8, 8) and res.nfe > 0


def test_start_maps_noise_through_a_prior():
    import torch

    class WithPrior:
        def prior(self, x, labels):
            return 2 * x + labels.view(-1, 1, 1, 1)

    x, y = torch.ones(2, 1, 8, 8), torch.tensor([0, 3])
    assert torch.equal(A.start(object(), x, y), x)
    assert A.start(WithPrior(), x, y)[1].unique().tolist() == [5.0]
