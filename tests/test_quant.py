"""Fake-quant core, timestep-aware PTQ and the int8 path (issue 11)."""
import dataclasses

import pytest
import torch
from torch import nn

import effdiff as ed
from effdiff import techniques as T
from effdiff.context import loop_context
from effdiff.hooks import hooks_of
from effdiff.quant import (Int8Config, Int8Linear, NaivePTQConfig, PTQConfig, QuantSpec, apply_weight_quant,
                           dequantize, fake_quant, held_bytes, qparams, quantize)
from effdiff.quant import observers, ptqd
from effdiff.quant.calibration import scheme_steps
from effdiff.quant.split import skip_splits


ZOO = {name: None for name in ("unet", "dit")}


def _zoo(name):
    if ZOO[name] is None:
        ZOO[name] = ed.zoo.load(f"digits-{name}")
    return ZOO[name]


unet = pytest.fixture(scope="module", name="unet")(lambda: _zoo("unet"))
dit = pytest.fixture(scope="module", name="dit")(lambda: _zoo("dit"))


def _inputs(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 8, 8, generator=g), torch.linspace(0.1, 5.0, n), torch.arange(n) % 10


def _run(den, steps=4, n=4):
    sig = ed.timesteps.get("uniform", steps, den.process)
    return T.Run(ed.sampling.randn((n, 1, 8, 8), seed=3) * sig[0].float(), sig, "ddim", torch.arange(n) % 10)


@pytest.mark.parametrize("model", ["unet", "dit"])
def test_16_bit_fake_quant_equals_fp32(model, request):
    den = request.getfixturevalue(model)
    x, s, y = _inputs()
    ref = den(x, s, y)
    with apply_weight_quant(den, QuantSpec(16, granularity="channel"),
                            act=QuantSpec(16, symmetric=False, granularity="token")):
        out = den(x, s, y)
    assert not torch.equal(out, ref)                       # it did quantize
    assert (out - ref).norm() / ref.norm() < 1e-4          # every Linear/Conv2d at 16 bits: relative RMS error


@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_quantize_dequantize_round_trip(bits, symmetric):
    spec = QuantSpec(bits, symmetric)
    x = torch.randn(1000) * 3
    s, z = qparams(x.min(), x.max(), spec)
    q = quantize(x, s, z, spec)
    assert q.min() >= spec.qmin and q.max() <= spec.qmax
    back = dequantize(q, s, z)
    assert (back - x).abs().max() <= s / 2 + 1e-6                   # within half a step over the range
    assert torch.equal(dequantize(quantize(back, s, z, spec), s, z), back)   # grid points are fixed points
    assert torch.allclose(fake_quant(x, s, z, spec), back)


def test_per_channel_and_per_group_scales_follow_their_rows():
    from effdiff.quant.layers import weight_qparams
    w = torch.randn(6, 8, 3, 3) * torch.arange(1, 7).float()[:, None, None, None]
    s_ch, _ = weight_qparams(w, QuantSpec(8, granularity="channel"))
    assert s_ch.shape == (6, 8, 1, 1) and torch.allclose(s_ch[:, 0, 0, 0], w.reshape(6, -1).abs().amax(1) / 127)
    s_g, _ = weight_qparams(w, QuantSpec(4, granularity="group", group_size=4))
    assert torch.allclose(s_g[:, 4, 0, 0], w[:, 4:].reshape(6, -1).abs().amax(1) / 7)
    with pytest.raises(ValueError, match="group_size"):
        QuantSpec(4, granularity="group")
    with pytest.raises(ValueError, match="bits"):
        QuantSpec(1)


def test_observers_clip_outliers_and_mse_beats_minmax():
    x = torch.randn(1, 20000)
    x[0, 0] = 80.0
    spec = QuantSpec(4, True)
    lo_p, hi_p = observers.percentile(x, spec)
    assert hi_p < 10
    err = {}
    for name in ("minmax", "mse"):
        lo, hi = observers.get(name)(x, spec)
        s, z = qparams(lo, hi, spec)
        err[name] = float((fake_quant(x, s[:, None], z[:, None], spec) - x).pow(2).mean())
    assert err["mse"] < err["minmax"]
    with pytest.raises(KeyError, match="unknown observer"):
        observers.get("max")


def test_remove_restores_the_exact_model(unet):
    x, s, y = _inputs()
    ref = unet(x, s, y)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    t = T.get("ptq")
    cfg = t.prepare(unet, PTQConfig(w_bits=4, a_bits=8, ptqd=True), _run(unet))
    with t.apply(unet, cfg):
        assert not torch.equal(unet(x, s, y), ref)
    assert torch.equal(unet(x, s, y), ref)
    assert all(torch.equal(v, before[k]) for k, v in unet.state_dict().items())
    assert not any(hooks_of(m) for m in unet.modules()) and not any("forward" in m.__dict__ for m in unet.modules())


def test_a_user_module_quantizes_and_restores():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.SiLU(), nn.Flatten(), nn.Linear(256, 3))
    x = torch.randn(5, 1, 8, 8)
    ref = net(x)
    with apply_weight_quant(net, QuantSpec(8, granularity="channel")):
        out = net(x)
    assert 0 < (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert torch.equal(net(x), ref)
    with pytest.raises(ValueError, match="per-token"):
        apply_weight_quant(net, QuantSpec(8), act=QuantSpec(8))


def test_calibration_schemes():
    assert scheme_steps("trajectory", 10) == list(range(10))
    assert scheme_steps("noise", 10) == [0]
    s = scheme_steps("ptq4dm", 50)
    assert 0 < len(s) < 50 and max(s) <= 49 and sum(s) / len(s) > 20      # skewed towards low noise
    with pytest.raises(ValueError, match="calibration scheme"):
        PTQConfig(scheme="random")


def test_split_quantization_finds_the_skip_concatenations(unet):
    splits = skip_splits(unet)
    assert splits and all(n.startswith("output_blocks.") for n in splits)
    for n, at in splits.items():
        assert 0 < at < unet.net.get_submodule(n).in_channels
    cfg = T.get("ptq").prepare(unet, PTQConfig(), _run(unet))
    layer = next(iter(splits))
    assert cfg.state["layers"][layer]["bounds"] == (0, splits[layer], unet.net.get_submodule(layer).in_channels)


def test_per_step_activation_scales_follow_the_loop_context(unet):
    cfg = T.get("ptq").prepare(unet, PTQConfig(), _run(unet, steps=4))
    st = cfg.state["layers"]["middle_block.0.in_layers.2"]
    assert set(st["act"]) == {None, 0, 1, 2, 3}
    from effdiff.quant.layers import ActQuant
    aq = ActQuant(st["a_spec"], 1, st["act"], None, cfg.state["sigmas"])
    with loop_context(4, step=2):
        assert aq.key() == 2
    with loop_context(7, step=0) as ctx:          # another schedule: the nearest calibrated σ
        ctx.sigma = cfg.state["sigmas"][1:2] * 1.01
        assert aq.key() == 1
    assert aq.key() is None                       # outside a sampling loop: the all-step scales
    naive = T.get("ptq-naive").prepare(unet, NaivePTQConfig(), _run(unet))
    assert set(naive.state["layers"]["middle_block.0.in_layers.2"]["act"]) == {None}


@pytest.mark.parametrize("model", ["unet", "dit"])
def test_w8a8_ptq_samples_stay_close_to_fp32(model, request):
    den = request.getfixturevalue(model)
    run = _run(den, steps=6, n=8)
    ref = ed.sample(den, run.x, run.sigmas, "ddim", cond=run.cond)
    t = T.get("ptq")
    cfg = t.prepare(den, PTQConfig(w_bits=8, a_bits=8), _run(den, steps=6, n=8))
    with t.apply(den, cfg) as h:
        x = ed.sample(den, run.x, run.sigmas, "ddim", cond=run.cond)
    assert (x - ref).pow(2).mean() < 0.01 * ref.pow(2).mean()
    assert h.stats.layers > 10 and 3.5 < h.stats.compression < 4.1


def test_ptqd_fit_recovers_correlated_noise_and_bias():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(16, 3, 8, 8, generator=g)
    b = torch.tensor([0.1, -0.2, 0.05])
    yq = 1.1 * y + b[None, :, None, None] + 0.01 * torch.randn(16, 3, 8, 8, generator=g)
    k, b_hat, var = ptqd.fit(yq, y)
    assert abs(k - 0.1) < 0.01 and torch.allclose(b_hat, b, atol=0.01) and abs(var - 1e-4) < 3e-5


def test_mixed_precision_reduces_error(dit):
    run = _run(dit, steps=4, n=4)
    from effdiff.quant.mixed import output_error
    from effdiff.quant.calibration import calibrate
    from effdiff.quant.layers import quant_layers
    cal = calibrate(dit, run, quant_layers(dit), {})
    t = T.get("ptq")
    errs = {}
    for name, c in {"rtn": PTQConfig(w_bits=4, a_bits=8), "mixed": PTQConfig(w_bits=4, a_bits=8, mixed_fraction=0.3)}.items():
        with t.apply(dit, t.prepare(dit, c, run)):
            errs[name] = output_error(dit.net, cal)
    assert errs["mixed"] < errs["rtn"]


def test_adaround_beats_round_to_nearest_on_its_layer():
    from effdiff.quant.adaround import adaround
    from effdiff.quant.layers import weight_qparams
    torch.manual_seed(0)
    lin, x = nn.Linear(32, 16), torch.randn(256, 32)
    spec = QuantSpec(3, True, "channel")
    s, z = weight_qparams(lin.weight.detach(), spec)
    w_rtn = fake_quant(lin.weight.detach(), s, z, spec)
    w_ada = adaround(lin, s, z, spec, x, x, iters=300)
    err = {k: float((x @ w.t() - x @ lin.weight.detach().t()).pow(2).mean()) for k, w in (("rtn", w_rtn), ("ada", w_ada))}
    assert err["ada"] < err["rtn"]
    assert torch.allclose(w_ada / s, torch.round(w_ada / s), atol=1e-4)     # still on the grid


@pytest.mark.parametrize("backend", ["int_mm", "fbgemm", "dequant"])
def test_int8_linear_matches_fp32(backend):
    lin = nn.Linear(64, 48)
    x = torch.randn(40, 64)
    q = Int8Linear(lin, backend)
    assert q.qweight.dtype == torch.int8
    err = (q(x) - lin(x)).abs().max() / lin(x).abs().max()
    assert err < 0.03
    with pytest.raises(ValueError, match="backend"):
        Int8Linear(lin, "int4")


def test_int8_technique_halves_bytes_and_restores(dit):
    x, s, y = _inputs()
    ref = dit(x, s, y)
    before = held_bytes(dit)
    with T.get("int8").apply(dit, Int8Config(backend="int_mm")) as h:
        out = dit(x, s, y)
        assert held_bytes(dit) < 0.55 * before and h.stats.int_mm > 10
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert torch.equal(dit(x, s, y), ref) and held_bytes(dit) == before
    cfg = T.get("int8").prepare(dit, None, _run(dit))
    assert set(cfg.choice.values()) <= {"int_mm", "fbgemm", "dequant", "fp32"}


def test_quant_techniques_are_registered():
    import effdiff.quant  # noqa: F401
    assert {"ptq", "ptq-naive", "int8"} <= set(T.names("quant"))
    with pytest.raises(ValueError, match="needs state"):
        T.get("ptq").apply(ed.zoo.load("digits-dit"))


def test_ptqd_variance_is_taken_out_of_the_ancestral_noise_only(unet):
    """PTQD's residual variance (x0 units: gain² σ_r²) lowers the noise DDPM injects; DDIM is untouched;
    without the hook's variance the solvers are unchanged."""
    from effdiff.quant.ptqd import X0_NOISE_VAR, x0_gain
    from effdiff.solvers.ddim import _less_carried_noise
    assert x0_gain(unet, 2.5) == pytest.approx(2.5, rel=1e-6)      # eps model in VE form: D = x - σ ε
    with loop_context(4) as ctx:
        assert _less_carried_noise(0.3, 0.5) == 0.3
        ctx.state[X0_NOISE_VAR] = 0.16                               # 0.5² · 0.16 = 0.04 of 0.09
        assert _less_carried_noise(0.3, 0.5) == pytest.approx(0.05 ** 0.5)
        ctx.state[X0_NOISE_VAR] = 10.0                               # more than the step injects: none
        assert _less_carried_noise(0.3, 0.5) == 0.0
    run = _run(unet)
    t = T.get("ptq")
    on = t.prepare(unet, PTQConfig(w_bits=4, a_bits=8, ptqd=True), run)
    off = dataclasses.replace(on, ptqd_variance=False, state={**on.state, "ptqd_gains": {}})
    assert on.state["ptqd_gains"] and all(g > 0 for g in on.state["ptqd_gains"].values())
    out = {}
    for name, cfg in (("on", on), ("off", off)):
        with t.apply(unet, cfg):
            out[name] = {s: ed.sample(unet, run.x, run.sigmas, s, run.cond, seed=0, stop=1) for s in ("ddim", "ddpm")}
    assert torch.equal(out["on"]["ddim"], out["off"]["ddim"])
    assert not torch.equal(out["on"]["ddpm"], out["off"]["ddpm"])
    # less noise injected: one DDPM step lands closer to the deterministic step from the same x
    # (over a whole 4-step run the trajectories decorrelate and the end points need not be closer)
    assert (out["on"]["ddpm"] - out["on"]["ddim"]).std() < (out["off"]["ddpm"] - out["off"]["ddim"]).std()


@pytest.mark.parametrize("model,want", [("unet", {"input_blocks.0.0", "out.2"}), ("dit", {"x_embedder", "final_layer.linear"})])
def test_first_and_last_layers_are_found_and_kept_at_8_bits(model, want):
    den = _zoo(model)
    cfg = T.get("ptq").prepare(den, PTQConfig(w_bits=4, a_bits=8), _run(den))
    bits = {n: st["bits"] for n, st in cfg.state["layers"].items()}
    assert {n for n, b in bits.items() if b == (8, 8)} == want
    assert all(b == (4, 8) for n, b in bits.items() if n not in want)
    naive = T.get("ptq-naive").prepare(den, NaivePTQConfig(w_bits=4, a_bits=8), _run(den))
    assert all(st["bits"] == (4, 8) for st in naive.state["layers"].values())


def test_brecq_fits_a_whole_block_and_beats_round_to_nearest_on_it(dit):
    """BRECQ (reconstruct="block"): every layer of a residual block learns its rounding at once; the
    block's output error on its calibration inputs drops below round-to-nearest's, and the model
    restores exactly after remove()."""
    from effdiff.quant.ptq import recon_blocks
    assert list(recon_blocks(dit.net)) == [f"blocks.{i}" for i in range(len(dit.net.blocks))]
    assert {"input_blocks.0", "middle_block", "output_blocks.0"} <= set(recon_blocks(_zoo("unet").net))
    with pytest.raises(ValueError, match="reconstruct"):
        PTQConfig(reconstruct="net")
    run, t = _run(dit, steps=3), T.get("ptq")
    only = tuple(n for n in ("x_embedder", "cond_embed", "final_layer") + tuple(f"blocks.{i}." for i in range(1, 6)))
    rtn = t.prepare(dit, PTQConfig(w_bits=3, a_bits=8, exclude=only), run)
    rec = t.prepare(dit, PTQConfig(w_bits=3, a_bits=8, exclude=only, adaround_iters=60, reconstruct="block"), run)
    layers = [n for n in rec.state["layers"] if n.startswith("blocks.0.")]
    assert len(layers) >= 4 and all(not torch.equal(rec.state["layers"][n]["weight"], rtn.state["layers"][n]["weight"])
                                    for n in layers)
    x, s, y = _inputs()
    ref = dit(x, s, y)
    err = {}
    for name, cfg in (("rtn", rtn), ("brecq", rec)):
        with t.apply(dit, cfg):
            err[name] = float((dit(x, s, y) - ref).pow(2).mean())
    assert 0 < err["brecq"] < err["rtn"]
    assert torch.equal(dit(x, s, y), ref)
