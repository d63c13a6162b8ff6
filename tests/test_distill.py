"""Distillation: students exact where they must be (PD step merge, CD boundary, guidance at init),
bit-identical resume after an interruption, resumable teacher pairs, composition with caching
and CFG. A tiny random UNet teacher keeps every test fast."""
import dataclasses

import pytest
import torch

import effdiff as ed
from effdiff import distill
from effdiff import techniques as T
from effdiff.denoisers import Denoiser, guided
from effdiff.distill import pairs as P
from effdiff.distill.progressive import pd_target
from effdiff.distill.reflow import straightness
from effdiff.models import build
from effdiff.process import VP, Flow


def tiny_teacher(process=None, prediction="eps", seed=0):
    torch.manual_seed(seed)
    cfg = {"model_channels": 8, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_resolutions": (),
           "num_heads": 1, "num_classes": 10}
    net = build("unet", cfg)
    with torch.no_grad():                      # zero-initialised output layers: give it a real output
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    process = process or VP()
    den = Denoiser(net, process, prediction, 10).eval().requires_grad_(False)
    den.meta = {"arch": "unet", "model": dataclasses.asdict(net.config), "process": process.config(),
                "prediction": prediction, "name": "tiny"}
    return den


def x_and_labels(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 10


def test_student_grid_halves_and_rejects_bad_counts():
    for proc in (VP(), Flow()):
        fine, coarse = distill.grid(proc, 8), distill.grid(proc, 4)
        assert torch.equal(fine[::2], coarse) and coarse[-1] == 0 and len(coarse) == 5
    with pytest.raises(ValueError, match="n >= 1"):
        distill.grid(VP(), 0)


def test_pd_student_at_init_is_the_teacher_and_target_merges_two_teacher_steps():
    teacher = tiny_teacher()
    st = distill.from_teacher(teacher, distill.StudentSpec(steps=2))
    x, y = x_and_labels()
    sig = distill.grid(teacher.process, 4)                       # teacher grid; the student's is sig[::2]
    xs = x * float(sig[0])
    with torch.no_grad():
        assert torch.equal(st(xs, sig[0].float(), y), teacher(xs, sig[0].float(), y))
        # one student DDIM step with target x̃ lands exactly where two teacher DDIM steps land
        s, mid, nxt = (torch.full((4,), float(v), dtype=torch.float64) for v in sig[:3])
        target = pd_target(teacher, xs, s, mid, nxt, y)
        two = ed.sample(teacher, xs, sig, "ddim", cond=y, stop=2)
        r = float(sig[2] / sig[0])
        assert torch.allclose(target + r * (xs - target), two, rtol=1e-5, atol=1e-4)
        # a denoiser constant in x and σ (one-point data): the merged step is exact, x̃ = that point
        c = torch.randn(1, 1, 8, 8)
        const = type("C", (), {"__call__": lambda self, x, s, cond=None: c.expand_as(x).clone(),
                               "null_class": 10})()
        assert torch.allclose(pd_target(const, xs, s, mid, nxt), c.expand_as(xs), atol=1e-5)


def test_consistency_boundary_is_exact():
    st = distill.from_teacher(tiny_teacher(), distill.StudentSpec("cd", "consistency", boundary=True))
    x, y = x_and_labels()
    for scale in (1.0, 80.0):
        assert torch.equal(st(x * scale, st.sigma_min, y), x * scale)
    assert not torch.equal(st(x, 1.0, y), x)                     # away from σ_min it denoises


def test_guidance_student_at_init_is_the_conditional_branch():
    teacher = tiny_teacher()
    st = distill.from_teacher(teacher, distill.StudentSpec("guidance", w_embed=True, guidance=3.0))
    x, y = x_and_labels()
    with torch.no_grad():
        ref = teacher(x, 2.0, y)
        for w in (None, 1.0, 7.5):
            assert torch.equal(st(x, 2.0, y, w=w), ref)
        torch.nn.init.normal_(st.w_embed.mlp[2].weight, std=0.1)  # once trained, w matters
        assert not torch.allclose(st(x, 2.0, y, w=1.0), st(x, 2.0, y, w=7.5))
    plain = distill.from_teacher(teacher, distill.StudentSpec())
    with pytest.raises(ValueError, match="no guidance-scale input"):
        plain(x, 2.0, y, w=2.0)


def test_consistency_solver_is_registered_and_counts_one_call_per_step():
    assert "consistency" in ed.solvers.names()
    st = distill.from_teacher(tiny_teacher(), distill.StudentSpec("cd", "consistency", steps=3, boundary=True))
    with torch.no_grad():
        res = st.generate(4, cond=torch.arange(4), seed=1, return_info=True)
        again = st.generate(2, cond=torch.arange(2), seed=1)
    assert res.nfe == 3 and res.steps == 3 and torch.isfinite(res.x).all()
    assert (res.x[:2] - again).abs().max() <= 1e-6 * again.abs().max()  # same seed, same sample at any batch size (float32, |x| up to ~500)


def cfg_for(method, teacher, args, **kw):
    return distill.config(method, teacher, args, batch_size=8, ckpt_every=2, warmup=2, **kw)


@pytest.mark.parametrize("method,args,steps", [
    ("progressive", {"start_steps": 4, "stage_steps": 3}, 6),
    ("consistency", {"ema_target": 0.9, "n_start": 4, "n_end": 8, "order": 1}, 6),
    ("guidance", {"w_min": 1.0, "w_max": 3.0}, 6),
])
def test_training_resumes_bit_identically(tmp_path, method, args, steps):
    teacher = tiny_teacher()
    cfg = cfg_for(method, teacher, args, steps=steps)
    whole = distill.DistillTrainer(cfg, tmp_path / "a", progress=False, teacher=teacher).run()
    distill.DistillTrainer(cfg, tmp_path / "b", progress=False, teacher=teacher).run(stop_after=2)
    resumed = distill.DistillTrainer(cfg, tmp_path / "b", progress=False, teacher=teacher).run(resume=True)
    assert resumed.step == whole.step == steps
    assert resumed.method.teacher.calls == whole.method.teacher.calls > 0
    for name in ("net", "ema"):
        a, b = getattr(whole, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resume"
    for name, mod in whole.method.extras.items():
        other = resumed.method.extras[name].state_dict()
        assert all(torch.equal(v, other[k]) for k, v in mod.state_dict().items())


def test_progressive_exports_each_stage_and_students_reload(tmp_path):
    teacher = tiny_teacher()
    cfg = cfg_for("progressive", teacher, {"start_steps": 4, "stage_steps": 2, "prediction": "v"}, steps=4)
    tr = distill.DistillTrainer(cfg, tmp_path, progress=False, teacher=teacher).run()
    tr.export()
    s2, s1 = distill.load(tmp_path / "student-2step"), distill.load(tmp_path / "student-1step")
    assert (s2.spec.steps, s1.spec.steps, s1.prediction) == (2, 1, "v")
    assert s1.meta["card"]["teacher_nfe"] == tr.method.teacher.calls > 0
    x = s1.generate(3, cond=torch.arange(3), seed=0, return_info=True)
    assert x.nfe == 1 and x.x.shape == (3, 1, 8, 8)


def test_unknown_method_and_bad_args_are_clear_errors():
    teacher = tiny_teacher()
    with pytest.raises(KeyError, match="unknown distillation method"):
        distill.config("nope", teacher)
    with pytest.raises(TypeError, match="bad args"):
        distill.DistillTrainer(cfg_for("guidance", teacher, {"w_mni": 1.0}, steps=2), "/nonexistent", teacher=teacher)
    with pytest.raises(ValueError, match="stages x stage_steps"):
        distill.DistillTrainer(cfg_for("progressive", teacher, {"start_steps": 4, "stage_steps": 3}, steps=5),
                               "/nonexistent", teacher=teacher)


def test_pairs_are_resumable_and_reproducible(tmp_path):
    teacher = tiny_teacher()
    kw = dict(config=P.PairsConfig("tiny", n=6, shard_size=4, solver="ddim", schedule="uniform", steps=2),
              progress=False)
    P.generate(teacher, tmp_path / "a", **kw)
    z, x, y = P.load(tmp_path / "a")
    assert z.shape == x.shape == (6, 1, 8, 8) and torch.equal(y, torch.arange(6) % 10)
    for suffix in (".safetensors", ".json"):                    # a run killed before the second shard
        (tmp_path / "a" / f"pairs-00001{suffix}").unlink()
    P.generate(teacher, tmp_path / "a", **kw)
    z2, x2, _ = P.load(tmp_path / "a")
    assert torch.equal(z, z2) and torch.equal(x, x2)
    with pytest.raises(ed.checkpoint.CheckpointError, match="another config"):
        P.generate(teacher, tmp_path / "a", config=dataclasses.replace(kw["config"], steps=3), progress=False)


def test_pairs_extend_to_a_larger_n_keeping_finished_shards(tmp_path):
    teacher = tiny_teacher()
    cfg = P.PairsConfig("tiny", n=8, shard_size=4, solver="ddim", schedule="uniform", steps=2)
    P.generate(teacher, tmp_path / "a", config=cfg, progress=False)
    z, x, _ = P.load(tmp_path / "a")
    first = (tmp_path / "a" / "pairs-00000.safetensors").stat().st_mtime_ns
    P.generate(teacher, tmp_path / "a", config=dataclasses.replace(cfg, n=12), progress=False)
    z2, x2, y2 = P.load(tmp_path / "a")
    assert z2.shape[0] == 12 and torch.equal(z2[:8], z) and torch.equal(x2[:8], x)
    assert torch.equal(y2, torch.arange(12) % 10)
    assert (tmp_path / "a" / "pairs-00000.safetensors").stat().st_mtime_ns == first     # kept, not redone
    whole = P.generate(teacher, tmp_path / "b", config=dataclasses.replace(cfg, n=12), progress=False)
    assert torch.equal(P.load(whole)[0], z2)
    P.generate(teacher, tmp_path / "c", config=dataclasses.replace(cfg, n=6), progress=False)
    with pytest.raises(ed.checkpoint.CheckpointError, match="short last shard"):
        P.generate(teacher, tmp_path / "c", config=cfg, progress=False)


def test_reflow_trains_on_pairs_and_straightness_is_zero_for_a_straight_flow(tmp_path):
    c = torch.randn(1, 1, 8, 8)
    point = lambda x, s, cond=None: c.expand_as(x).clone()      # noqa: E731  one-point data: straight paths
    x_T = torch.randn(3, 1, 8, 8) * 80
    sig = ed.timesteps.karras(6, 0.01, 80.0)
    assert straightness(point, x_T, sig) < 1e-10
    teacher = tiny_teacher()
    assert straightness(teacher, x_T, sig, torch.arange(3)) > 1e-4
    P.generate(teacher, tmp_path / "pairs", config=P.PairsConfig("tiny", n=8, solver="ddim", schedule="uniform",
                                                                   steps=2), progress=False)
    for one in (False, True):
        cfg = cfg_for("reflow", teacher, {"pairs": str(tmp_path / "pairs"), "one_step": one}, steps=2)
        tr = distill.DistillTrainer(cfg, tmp_path / f"r{one}", progress=False, teacher=teacher).run()
        assert tr.step == 2 and tr.ema.spec.steps == (1 if one else 4)


def test_students_compose_with_deepcache_and_cfg():
    teacher = tiny_teacher()
    x, y = x_and_labels()
    for spec in (distill.StudentSpec(steps=4), distill.StudentSpec("lcm", "consistency", 4, boundary=True,
                                                                   w_embed=True, guidance=2.0)):
        st = distill.from_teacher(teacher, spec).eval().requires_grad_(False)
        sig = st.grid()
        xT = x * float(sig[0])
        plain = ed.sample(st, xT, sig, spec.solver, cond=y, seed=0)
        with T.get("deepcache").apply(st, interval=1) as h:        # every step full: bit-identical
            assert torch.equal(h.sample(st, xT, sig, spec.solver, cond=y, seed=0), plain)
        with T.get("deepcache").apply(st, interval=2) as h:
            cached = h.sample(st, xT, sig, spec.solver, cond=y, seed=0)
            assert h.stats.reused > 0 and torch.isfinite(cached).all() and not torch.equal(cached, plain)
        guided_out = ed.sample(guided(st, 2.0), xT, sig, spec.solver, cond=y, seed=0)
        assert torch.isfinite(guided_out).all() and not torch.equal(guided_out, plain)


def test_cli_trains_a_distillation_preset_and_the_zoo_loads_the_student(tmp_path):
    """`effdiff train --preset digits-dit-gd` runs the distillation loop; the export loads back as a
    Student (its wrapper kept), not as a plain denoiser."""
    from effdiff import cli, zoo
    from effdiff.distill.student import Student
    assert cli.main(["train", "--preset", "digits-dit-gd", "--steps", "2", "--out", str(tmp_path / "gd"), "--quiet"]) == 0
    assert isinstance(zoo.from_checkpoint(tmp_path / "gd" / "model"), Student)
    assert cli.main(["train", "--preset", "digits-dit-gd", "--steps", "2", "--out", str(tmp_path / "gd"), "--quiet"]) == 2
