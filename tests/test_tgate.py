"""TGATE (Zhang et al. 2024) on a tiny cross-attention DiT with random weights: exact when the gate
never closes, batch B after the gate under guidance, the paper's averaged cache, nothing kept
between generations, nothing left once removed, heun and SDE solvers."""
from __future__ import annotations

import pytest
import torch

import effdiff as ed
from effdiff.caching import TGATEConfig, apply_tgate
from effdiff.denoisers import Denoiser, guided
from effdiff.hooks import hooks_of
from effdiff.models import build
from effdiff.process import from_config
from effdiff.context import current_context

STEPS, B = 6, 3


def tiny_den():
    torch.manual_seed(0)
    net = build("dit", {"patch_size": 4, "hidden_size": 32, "depth": 2, "num_heads": 2, "num_classes": 10,
                        "cross_attention": True, "context_dim": 8, "context_from_labels": True, "context_len": 2})
    with torch.no_grad():  # leave DiT's zero init: every path (adaLN gates, cross-attn proj) must matter
        for p in net.parameters():
            p.normal_(0, 0.3)
    return Denoiser(net.eval(), from_config({"name": "flow"}), "velocity", 10).eval()


DEN = tiny_den()
SIGMAS = ed.timesteps.uniform_t(STEPS, DEN.process)
LABELS = torch.tensor([1, 4, 7])


def run(den, solver="euler", n=B, x_seed=0, labels=LABELS):
    x = ed.sampling.randn((n, 1, 8, 8), seed=x_seed) * SIGMAS[0].float()
    return ed.sample(den, x, SIGMAS, solver=solver, cond=labels[:n], seed=1)


def batch_log(den):
    """Record (step, batch) of every network call."""
    log = []
    h = den.net.register_forward_pre_hook(lambda m, a: log.append((current_context().step, a[0].shape[0])))
    return log, h


@pytest.mark.parametrize("solver", ["euler", "heun", "euler-ancestral"])
def test_gate_at_or_after_the_end_is_exact(solver):
    g = guided(DEN, 3.0)
    ref = run(g, solver)
    for m in (STEPS, STEPS + 5):
        with apply_tgate(g, TGATEConfig(gate_step=m)):
            assert torch.equal(run(g, solver), ref)


@pytest.mark.parametrize("solver", ["euler", "heun", "euler-ancestral"])
def test_batch_halves_after_the_gate(solver):
    g, m = guided(DEN, 3.0), 2
    ref = run(g, solver)
    log, ph = batch_log(DEN)
    with apply_tgate(g, TGATEConfig(gate_step=m)) as h:
        out = run(g, solver)
    ph.remove()
    assert log and all(b == (2 * B if s < m else B) for s, b in log), log
    assert h.stats.reused == 2 * sum(s >= m for s, _ in log)          # both blocks' cross-attention
    assert torch.isfinite(out).all() and not torch.equal(out, ref)
    assert (out - ref).abs().mean() < (ref.abs().mean())                   # an approximation, not noise


def test_on_inner_denoiser_halves_one_evaluation_later():
    g, m = guided(DEN, 3.0), 3
    log, ph = batch_log(DEN)
    with apply_tgate(DEN, TGATEConfig(gate_step=m)):
        run(g)
    ph.remove()
    assert [b for _, b in log] == [2 * B] * (m + 1) + [B] * (STEPS - m - 1)


def test_cache_is_the_average_of_cond_and_uncond():
    g, m = guided(DEN, 3.0), 3
    seen = []
    fh = DEN.net.blocks[0].cross_attn.register_forward_hook(
        lambda mod, a, out: seen.append(out) if current_context().step == m - 1 else None)
    with apply_tgate(g, TGATEConfig(gate_step=m)) as h:
        outs = []
        rh = DEN.net.blocks[0].cross_attn.register_forward_hook(
            lambda mod, a, out: outs.append(out) if current_context().step >= m else None)
        run(g)
        rh.remove()
        c, u = seen[-1].chunk(2)
        assert not torch.allclose(c, u)                       # the two branches differ ...
        for o in outs:                                       # ... and the cache is their mean
            assert torch.equal(o, c / 2 + u / 2)
    fh.remove()


def test_unguided_caches_the_conditional_output():
    m = 2
    ref = run(DEN)
    with apply_tgate(DEN, TGATEConfig(gate_step=STEPS)):
        assert torch.equal(run(DEN), ref)
    with apply_tgate(DEN, TGATEConfig(gate_step=m)) as h:
        out = run(DEN)
    assert h.stats.reused == 2 * (STEPS - m) and not torch.equal(out, ref)


def test_no_state_across_generations():
    g = guided(DEN, 3.0)
    cfg = TGATEConfig(gate_step=2)
    with apply_tgate(g, cfg):
        first = run(g, x_seed=5)
        run(g, n=2, x_seed=9, labels=torch.tensor([3, 3]))   # another batch size and content in between
        again = run(g, x_seed=5)
    with apply_tgate(g, cfg):
        fresh = run(g, x_seed=5)
    assert torch.equal(first, again) and torch.equal(first, fresh)


def test_remove_restores_the_model():
    g = guided(DEN, 3.0)
    ref = run(g, "heun")
    h = apply_tgate(g, TGATEConfig(gate_step=2, self_attn_interval=2))
    run(g, "heun")
    h.remove()
    assert all(not hooks_of(mod) and "forward" not in mod.__dict__ for mod in g.modules())
    assert torch.equal(run(g, "heun"), ref)


def test_self_attention_caching_every_k_steps():
    g, m, k = guided(DEN, 3.0), 2, 2
    with apply_tgate(g, TGATEConfig(gate_step=m)) as h0:
        plain = run(g)
    with apply_tgate(g, TGATEConfig(gate_step=m, self_attn_interval=k)) as h:
        out = run(g)
    # self-attention: computed at steps < m and m, m+k, ...; reused at the rest (2 blocks each)
    reused_self = 2 * len([s for s in range(m, STEPS) if (s - m) % k])
    assert h.stats.reused - h0.stats.reused == reused_self
    assert not torch.equal(out, plain)


def test_bad_config_and_model():
    with pytest.raises(ValueError, match="gate_step"):
        apply_tgate(DEN, TGATEConfig(gate_step=0))
    with pytest.raises(TypeError, match="cross-attention"):
        apply_tgate(build("dit", {"patch_size": 4, "hidden_size": 32, "depth": 1, "num_heads": 2}))
    assert not any(hooks_of(mod) for mod in DEN.modules())



def test_context_from_labels_conditions_through_cross_attention_only():
    net = tiny_den().net
    assert net.cond_embed.label is None and not hasattr(net, "null_context")   # adaLN sees only the noise level
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    assert torch.equal(net(x, t, None), net(x, t, torch.full((3,), 10)))     # no label = the null label's context
    assert not torch.allclose(net(x, t, LABELS), net(x, t, None))
    with torch.no_grad():
        for b in net.blocks:
            torch.nn.init.zeros_(b.cross_attn.proj.weight), torch.nn.init.zeros_(b.cross_attn.proj.bias)
    assert torch.equal(net(x, t, LABELS), net(x, t, None))                   # the only path for the label
