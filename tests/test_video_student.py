"""The few-step video student (effdiff.video.student, effdiff.bench.video_student): the distill trainer runs on
video clips and trains only what it is told to; the student starts as its teacher; its few-step clips are
seeded and independent of the batch; its export loads back as the trained EMA; the bench's paired
ratios and its reference check."""
import json

import pytest
import torch

from effdiff import zoo
from effdiff.bench import video_student as BS
from effdiff.video import student as VS

ARGS = dict(VS.RECIPES["consistency"].args, n_start=6, n_end=6, skip=2)


@pytest.fixture(scope="module")
def teacher():
    return zoo.load("video-adapter")


def trainer(tmp_path, teacher, train, method="consistency", args=ARGS, steps=2):
    recipe = VS.Recipe(method, args=args, steps=steps, batch_size=2, lr=1e-3, warmup=1, ckpt_every=steps)
    cfg, _ = VS.make_config(recipe)
    return VS.VideoDistillTrainer(cfg, tmp_path / f"run-{train}", teacher, train=train, frames=4, clips=6,
                                  progress=False)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDIFF_VIDEO_CACHE", str(tmp_path / "cache"))


def test_the_student_starts_as_its_teacher(tmp_path, teacher):
    tr = trainer(tmp_path, teacher, "all")
    st, x = tr.net, torch.randn(2, 4, 4, 8, 8)
    sigma, y = torch.tensor([0.5, 30.0], dtype=torch.float64), torch.tensor([3, 7])
    with torch.no_grad():
        c = st.c_skip(sigma).float().reshape(-1, 1, 1, 1, 1)
        assert torch.equal(st(x, sigma, y), c * x + (1 - c) * teacher.den(x, sigma, y))
    assert st.spec.solver == "consistency" and st.spec.steps == 4 and st.spec.boundary


@pytest.mark.parametrize("train", ["adapters", "all"])
def test_training_updates_only_the_intended_parameters(tmp_path, teacher, train):
    tr = trainer(tmp_path, teacher, train)
    before = {k: v.clone() for k, v in tr.net.state_dict().items()}
    tr.run()
    after = tr.net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adapters = {k for k in before if ".adapters." in k}
    assert adapters and adapters <= changed
    image = {k for k in changed if ".image." in k}
    assert (not image) if train == "adapters" else image
    assert tr.method.teacher.calls > 0 and tr.step == 2
    assert not any(p.requires_grad for p in teacher.den.net.parameters())        # the teacher stays frozen


def test_the_export_loads_back_as_the_trained_student_and_samples_seeded_clips(tmp_path, teacher):
    tr = trainer(tmp_path, teacher, "adapters")
    tr.run()
    st = VS.load(tr.export())
    assert isinstance(st, VS.VideoStudent) and (st.meta["kind"], st.meta["task"]) == ("student", "video")
    x, sigma, y = torch.randn(2, 4, 4, 8, 8), torch.tensor([2.0, 2.0]), torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(st.den(x, sigma, y), tr.ema(x, sigma, y))
    noise, labels = st.noise(3, 4, 5), torch.tensor([0, 1, 2])
    z = st.sample(noise, labels, steps=2, seed=5)
    assert z.shape == (3, 4, 4, 8, 8) and torch.isfinite(z).all()
    assert torch.equal(z, st.sample(noise, labels, steps=2, seed=5))                       # seeded
    assert not torch.allclose(z, st.sample(noise, labels, steps=2, seed=6))                # solver noise is the seed's
    alone = st.sample(noise[1:2], labels[1:2], steps=2, seed=5, first=1)
    assert torch.allclose(alone, z[1:2], atol=1e-5)       # clip i does not depend on its batch
    assert st.decode(z).shape == (3, 1, 4, 32, 32)


def test_a_bad_train_choice_is_refused(tmp_path, teacher):
    with pytest.raises(ValueError, match="train must be one of"):
        trainer(tmp_path, teacher, "everything")


def test_paired_ratio_and_comparison():
    a = [{"frame_fd": 10.0, "clip_fd": 100.0}, {"frame_fd": 8.0, "clip_fd": 120.0}, {"frame_fd": 12.0, "clip_fd": 90.0}]
    b = [{"frame_fd": 11.0, "clip_fd": 100.0}, {"frame_fd": 10.0, "clip_fd": 132.0}, {"frame_fd": 12.0, "clip_fd": 99.0}]
    r = BS.ratio(a, b, "frame_fd")
    assert r["per_seed"] == pytest.approx([1.1, 1.25, 1.0]) and r["mean"] == pytest.approx(3.35 / 3)
    lo, hi = r["ci95"]
    assert lo < r["mean"] < hi and hi > 1.2                    # the upper end decides, not the mean
    assert BS.ratio(a, b, "clip_fd")["per_seed"] == pytest.approx([1.0, 1.1, 1.1])


def test_references_are_refused_when_scored_on_other_tensors(tmp_path):
    for f in BS.REFERENCES.values():
        res = json.loads((BS.DOCS / f).read_text())
        res["model_sha256"] = "0" * 64
        (tmp_path / f).write_text(json.dumps(res))
    with pytest.raises(ValueError, match="not the teacher's"):
        BS.references(zoo.card("video-adapter")["sha256"]["tensors"], tmp_path)
    refs = BS.references(zoo.card("video-adapter")["sha256"]["tensors"])
    assert {r["steps"] for r in refs.values()} == {12, 4} and all(len(r["per_seed"]) == 3 for r in refs.values())


def test_the_untrained_baseline_is_the_teacher_on_the_student_grid(teacher):
    st = VS.load("init:progressive")
    x, sigma, y = torch.randn(2, 4, 4, 8, 8), torch.tensor([3.0, 0.5]), torch.tensor([4, 5])
    with torch.no_grad():
        assert torch.equal(st.den(x, sigma, y), teacher.den(x, sigma, y))
    assert (st.den.spec.solver, st.den.spec.steps) == ("ddim", 4) and st.meta["card"]["steps"] == 0
    assert torch.allclose(st.grid(), torch.tensor([999.0, 3.0, 1.0, 1 / 3, 0.0], dtype=torch.float64), rtol=5e-3)


def _fake_results():
    ref = [{k: 10.0 + i for k in ("frame_fd", "clip_fd", "identity", "label_acc", "speed", "accel")} for i in range(3)]
    q = [{k: v * (1.1 + 0.01 * i) for k, v in r.items()} for i, r in enumerate(ref)]
    refs = {name: {"per_seed": ref} for name in BS.REFERENCES}
    res = {"n": 100, "seeds": [0, 1, 2], "rows": {"4": {"nfe_per_clip": 4, "summary": BS.B.summary(q), "vs": BS.compare(q, refs)}},
           "reference_rows": {name: {"summary": BS.B.summary(ref)} for name in BS.REFERENCES},
           "references": {name: {"steps": 12 if "12" in name else 4} for name in BS.REFERENCES}}
    return res


def test_the_table_is_rendered_from_the_results():
    res = _fake_results()
    text = BS.table(res)
    assert "| student 4 / teacher 12 steps (ratio, paired) | | 1.11 [" in text
    assert "| student 4 − plain dpmpp-2m 4 steps (paired) | | +1.2 [" in text
    from effdiff.bench.tables import KINDS
    assert KINDS["video_student"]([res], {}) == text


def test_ship_refuses_a_file_that_was_not_scored(tmp_path, teacher):
    tr = trainer(tmp_path, teacher, "adapters")
    tr.run()
    with pytest.raises(ValueError, match="is not the student scored"):
        BS.ship({"student_sha256": "0" * 64}, tr.export(), "nope", "x.json")


def test_the_shipped_student_is_the_one_scored_and_its_card_is_the_results_file():
    from effdiff import assets
    import effdiff as ed
    name = "video-adapter-pd4"
    meta = assets.card(name)
    res = json.loads((BS.DOCS / "student/student.json").read_text())
    assert meta["sha256"]["tensors"] == res["student_sha256"] and meta["kind"] == "student" and meta["task"] == "video"
    assert (assets.WEIGHTS / f"{name}.safetensors").stat().st_size < 5 * 2 ** 20
    m = meta["card"]["metrics"]
    assert m["frame_fd_4step"] == res["rows"]["4"]["summary"]["frame_fd"] and "student/student.json" in m["metrics_protocol"]
    assert m["target_met_4step"] == res["target_met"]
    assert isinstance(ed.zoo.load(name), VS.S.Student)
    st = VS.load(name)
    z = st.sample(st.noise(2, 4, 0), torch.tensor([1, 2]), seed=0)
    assert z.shape == (2, 4, 4, 8, 8) and torch.isfinite(z).all()
