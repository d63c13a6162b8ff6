"""Early exit: ASE's time-dependent block dropping (Moon et al. 2024) and DeeDiff's learned
per-layer uncertainty exits (Tang et al. 2023) — exact when nothing exits, reversible, the
dropping schedule as configured, heads that round-trip, and lower thresholds using more layers."""
import pytest
import torch

import effdiff as ed
from effdiff.checkpoint import CheckpointError
from effdiff.early_exit import ASEConfig, DeeDiffConfig, ExitHeads, apply_ase, apply_deediff, train_exit_heads
from effdiff.hooks import hooks_of

STEPS = 8


@pytest.fixture(scope="module")
def den():
    return ed.zoo.load("digits-dit")


@pytest.fixture(scope="module")
def heads(den):
    return train_exit_heads(den, steps=STEPS, num_samples=16, iters=150, seed=0)


def _run(den, n=16, solver="ddim"):
    sig = ed.timesteps.uniform_t(STEPS, den.process)
    x = ed.sampling.randn((n, 1, 8, 8), seed=3) * sig[0].float()
    return lambda: ed.sample(den, x, sig, solver=solver, cond=torch.arange(n) % 10)


def _clean(den):
    return not any(hooks_of(m) for m in den.modules()) and "forward" not in den.net.__dict__


def test_ase_without_dropping_is_exact_and_reversible(den):
    run = _run(den)
    ref = run()
    with apply_ase(den, ASEConfig(max_drop=0)) as h:
        assert torch.equal(run(), ref)
    assert h.stats.skipped == 0 and h.stats.computed == STEPS * len(den.net.blocks)
    with apply_ase(den, ASEConfig(max_drop=3)):
        assert not torch.equal(run(), ref)
    assert _clean(den) and torch.equal(run(), ref)


class _Probe(ed.hooks.ModelHook):
    """Inside ASE's hook: records (step, block) of the blocks that really compute."""
    name = "probe"

    def __init__(self, i, ran):
        self.i, self.ran = i, ran

    def __call__(self, module, call_next, *args, **kwargs):
        self.ran.append((ed.current_context().step, self.i))
        return call_next(*args, **kwargs)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_ase_drops_the_final_blocks_more_at_noisy_steps(den, schedule):
    c, depth = ASEConfig(max_drop=4, schedule=schedule), len(den.net.blocks)
    drops = [c.num_dropped(s, STEPS) for s in range(STEPS)]
    assert drops[0] == 4 and drops == sorted(drops, reverse=True)
    assert drops[-1] == (4 if schedule == "constant" else 0)
    ran = []
    with apply_ase(den, c) as h:
        probes = [(b, ed.hooks.add_hook(b, _Probe(i, ran))) for i, b in enumerate(den.net.blocks)]
        _run(den, solver="heun")()                      # two stages per step: the same blocks in both
        for b, name in probes:
            ed.hooks.remove_hook(b, name)
    per_step = {}
    for step, i in ran:
        per_step.setdefault(step, set()).add(i)
    assert sorted(per_step) == [s for s in range(STEPS) if drops[s] < depth]
    for step, idx in per_step.items():                  # exactly the first depth - drop blocks ran
        assert idx == set(range(depth - drops[step]))
    assert h.stats.computed == len(ran)
    assert h.stats.skip_fraction == pytest.approx(h.stats.skipped / (h.stats.skipped + len(ran)))


def test_ase_validates_its_config(den):
    with pytest.raises(ValueError, match="max_drop"):
        apply_ase(den, ASEConfig(max_drop=7))
    with pytest.raises(ValueError, match="unknown ASE schedule"):
        apply_ase(den, ASEConfig(schedule="exp"))
    assert _clean(den)


def test_deediff_threshold_zero_is_exact_and_reversible(den, heads):
    run = _run(den)
    ref = run()
    with apply_deediff(den, DeeDiffConfig(heads, threshold=0.0)) as h:
        assert torch.equal(run(), ref)
    assert h.stats.avg_layers == len(den.net.blocks)
    with apply_deediff(den, DeeDiffConfig(heads, threshold=2.0)) as h:   # u <= 1 < 2: every sample leaves after block 0
        out = run()
    assert h.stats.avg_layers == 1 and not torch.equal(out, ref)
    assert _clean(den) and torch.equal(run(), ref)


def test_lower_threshold_uses_more_layers(den, heads):
    run, used = _run(den), []
    for th in (2.0, 0.3, 0.15, 0.08, 0.0):
        with apply_deediff(den, DeeDiffConfig(heads, th)) as h:
            run()
        used.append(h.stats.avg_layers)
    assert used == sorted(used) and used[0] == 1 and used[-1] == len(den.net.blocks) and len(set(used)) > 2, used


def test_exited_samples_match_their_own_early_exit_output(den, heads):
    """A sample that exits after block i gets final_layer(h_i) whatever its batch-mates do."""
    net, x, t = den.net, torch.randn(4, 1, 8, 8), torch.full((4,), 0.5)
    lab = torch.arange(4)
    with apply_deediff(den, DeeDiffConfig(heads, threshold=2.0)):
        out = net(x, t, lab)
    h, c = net.patchify(x), net.embed(t, lab)
    h = net.blocks[0](h, c, None)
    assert torch.allclose(out, net.unpatchify(net.final_layer(h, c)), atol=1e-6)
    sig = ed.timesteps.uniform_t(STEPS, den.process)[:-1].float().repeat(2)    # [16] along a schedule
    x, lab, mixed = ed.sampling.randn((16, 1, 8, 8), seed=1) * sig[:, None, None, None], torch.arange(16) % 10, 0
    for th in (0.3, 0.15, 0.08, 0.04):
        with apply_deediff(den, DeeDiffConfig(heads, threshold=th)) as hd:
            out = den(x, sig, lab)
            alone = torch.cat([den(x[i:i + 1], sig[i:i + 1], lab[i:i + 1]) for i in range(16)])
        assert torch.allclose(out, alone, atol=1e-5)
        mixed += 1 < hd.stats.avg_layers < len(net.blocks)
    assert mixed                                                  # some batch had mixed exits


def test_heads_round_trip(den, heads, tmp_path):
    heads.save(tmp_path / "uem")
    back = ExitHeads.load(tmp_path / "uem")
    h, c = torch.randn(3, 16, 96), torch.randn(3, 96)
    for i in range(len(den.net.blocks) - 1):
        assert torch.equal(back(i, h, c), heads(i, h, c))
    ed.checkpoint.save(tmp_path / "bad", {"x": torch.zeros(1)}, {"format": "nope"})
    with pytest.raises(CheckpointError, match="not DeeDiff exit heads"):
        ExitHeads.load(tmp_path / "bad")
    with pytest.raises(ValueError, match="do not fit"):
        apply_deediff(den, DeeDiffConfig(ExitHeads(4, 96)))


@pytest.mark.parametrize("solver", ["heun", "ddpm"])
def test_early_exit_under_heun_and_sde_without_leaking_state(den, heads, solver):
    """ASE and DeeDiff read only the loop context: they run under multi-evaluation and stochastic
    solvers, and a generation after another equals the same generation on a fresh handle."""
    sig = ed.timesteps.uniform_t(10, den.process)
    lab = torch.arange(8) % 10
    xa = ed.sampling.randn((8, 1, 8, 8), seed=1) * sig[0].float()
    xb = ed.sampling.randn((4, 1, 8, 8), seed=2) * sig[0].float()
    for apply in (lambda: apply_ase(den, ASEConfig(max_drop=2)), lambda: apply_deediff(den, DeeDiffConfig(heads, 0.2))):
        with apply():
            ed.sample(den, xa, sig, solver=solver, cond=lab, seed=1)
            after_a = ed.sample(den, xb, sig, solver=solver, cond=lab[:4], seed=2)
        with apply():
            fresh = ed.sample(den, xb, sig, solver=solver, cond=lab[:4], seed=2)
        assert torch.isfinite(after_a).all() and torch.equal(after_a, fresh)
