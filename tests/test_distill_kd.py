"""Knowledge distillation of the sampler (``distill.kd``): the unrolled solve is the driver's DDIM
solve, training lowers the paired error to the teacher's samples, resume is bit-identical, init
from a student keeps its weights, bad args are clear errors."""
import pytest
import torch

import effdiff as ed
from effdiff import distill
from effdiff.distill import pairs as P
from effdiff.distill.kd import unroll

from test_distill import cfg_for, tiny_teacher


def make_pairs(teacher, out, n=16):
    P.generate(teacher, out, config=P.PairsConfig("tiny", n=n, shard_size=8, solver="heun", schedule="karras",
                                                  steps=3), progress=False)


@pytest.mark.parametrize("steps", [1, 2])
def test_unroll_is_the_drivers_ddim_solve(steps):
    st = distill.from_teacher(tiny_teacher(), distill.StudentSpec("kd", "ddim", steps), "v")
    z, y = torch.randn(3, 1, 8, 8), torch.arange(3)
    ref = ed.sample(st, z * float(st.grid()[0]), st.grid(), "ddim", y)
    with torch.no_grad():
        assert torch.allclose(unroll(st, z, y), ref, atol=1e-5, rtol=1e-5)


def test_kd_lowers_the_paired_error_and_resumes_bit_identically(tmp_path):
    teacher = tiny_teacher(prediction="x0")          # bounded samples (a random eps network's are ~100)
    make_pairs(teacher, tmp_path / "pairs")
    z, x, y = P.load(tmp_path / "pairs")
    args = {"steps": 2, "pairs": str(tmp_path / "pairs")}
    cfg = cfg_for("kd", teacher, args, steps=30, lr=2e-3, ema_decay=0.0)
    whole = distill.DistillTrainer(cfg, tmp_path / "a", progress=False, teacher=teacher)
    with torch.no_grad():
        before = ((unroll(whole.net, z, y) - x) ** 2).mean()
    whole.run()
    with torch.no_grad():
        after = ((unroll(whole.ema, z, y) - x) ** 2).mean()
    assert after < 0.5 * before
    distill.DistillTrainer(cfg, tmp_path / "b", progress=False, teacher=teacher).run(stop_after=10)
    resumed = distill.DistillTrainer(cfg, tmp_path / "b", progress=False, teacher=teacher).run(resume=True)
    for name in ("net", "ema"):
        a, b = getattr(whole, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resume"
    stem = whole.export()
    st = distill.load(stem)
    assert (st.spec.method, st.spec.steps, st.prediction) == ("kd", 2, "x0")
    card = st.meta["card"]                          # what the pairs cost: Heun's real count, 5 NFE on 3 steps
    assert card["pairs_teacher_nfe"] == 16 * 5 and card["pairs"]["solver"] == "heun" and card["teacher_nfe"] == 80


def test_init_from_a_student_and_bad_args(tmp_path):
    teacher = tiny_teacher()
    make_pairs(teacher, tmp_path / "pairs", n=8)
    pd = cfg_for("progressive", teacher, {"start_steps": 4, "stage_steps": 2, "prediction": "v"}, steps=4)
    tr = distill.DistillTrainer(pd, tmp_path / "pd", progress=False, teacher=teacher).run()
    tr.export()
    init = distill.load(tmp_path / "pd" / "student-1step")
    cfg = cfg_for("kd", teacher, {"steps": 1, "pairs": str(tmp_path / "pairs"),
                                  "init": str(tmp_path / "pd" / "student-1step")}, steps=2)
    kd = distill.DistillTrainer(cfg, tmp_path / "kd", progress=False, teacher=teacher)
    assert kd.net.prediction == "v"
    a, b = kd.net.denoiser.net.state_dict(), init.denoiser.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="pairs"):
        distill.DistillTrainer(cfg_for("kd", teacher, {"steps": 1}, steps=2), tmp_path / "x", teacher=teacher)
    with pytest.raises(ValueError, match="loss"):
        distill.DistillTrainer(cfg_for("kd", teacher, {"pairs": "p", "loss": "l1"}, steps=2), tmp_path / "x",
                               teacher=teacher)
    with pytest.raises(TypeError, match="not a distilled student"):
        distill.DistillTrainer(cfg_for("kd", teacher, {"pairs": "p", "init": "digits-unet"}, steps=2),
                               tmp_path / "x", teacher=teacher)
