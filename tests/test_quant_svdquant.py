"""SVDQuant: smoothing, the low-rank branch, the 4-bit residual, the Technique (issue 11, item 4)."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import effdiff as ed
from effdiff import techniques as T
from effdiff.quant.layers import apply_weight_quant
from effdiff.quant.quantizer import QuantSpec
from effdiff.quant.svdquant import SVDQuantConfig, decompose, smoothing

SIGMAS = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0])
OUTLIERS = (3, 17, 40)


class TinyNet(nn.Module):
    """Conv -> Linear over channels (activation outliers on a few channels) -> conv; a user's model."""

    def __init__(self, outliers: float = 1.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.inp = nn.Conv2d(1, 48, 3, padding=1)
        self.mid = nn.Conv2d(48, 48, 3, padding=1)
        self.lin = nn.Linear(48, 48)
        self.out = nn.Conv2d(48, 1, 1)
        gain = torch.ones(48)
        gain[list(OUTLIERS)] = outliers
        self.register_buffer("gain", gain)
        for p in self.parameters():                         # unit-gain init: activations of order 1
            p.data = torch.randn(p.shape, generator=g) * (1 / p[0].numel() ** 0.5 if p.ndim > 1 else 0.1)

    def forward(self, x, sigma, cond=None):
        h = F.silu(self.inp(x))
        h = F.silu(self.mid(h)) * self.gain[:, None, None]
        h = self.lin(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.out(F.silu(h))


class TinyDen:
    """D(x, σ) = net(x / sqrt(1 + σ²)) (``.net``: where the hooks go)."""

    def __init__(self, net):
        self.net = net

    def __call__(self, x, sigma, cond=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return self.net(x / (1 + sigma ** 2).sqrt(), sigma, cond)


def _run(n=16):
    return T.Run(ed.sampling.randn((n, 1, 8, 8), seed=1) * SIGMAS[0], SIGMAS, "ddim")


def _x(n=16):
    return ed.sampling.randn((n, 1, 8, 8), seed=7) * 2.0


def _prepared(den, **fields):
    t = T.get("svdquant")
    return t, t.prepare(den, SVDQuantConfig(**fields), _run())


def test_smoothing_is_an_exact_identity():
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(32, 48, generator=g), torch.randn(64, 48, generator=g)
    x[:, list(OUTLIERS)] *= 50
    lam = smoothing(w, x.abs().amax(0), 0.5)
    assert lam.shape == (48,) and (lam > 0).all()
    assert lam[list(OUTLIERS)].min() > lam.median() * 3                     # the outliers migrate most
    ref = x.double() @ w.double().T
    out = (x.double() / lam.double()) @ (w.double() * lam.double()).T      # X diag(1/λ) diag(λ) Wᵀ
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-10)
    den = TinyDen(TinyNet(outliers=20.0))
    t, cfg = _prepared(den, w_bits=None, a_bits=None, rank=0)               # smoothing only, in float32
    with torch.no_grad():
        ref = den(_x(), torch.ones(16))
        with t.apply(den, cfg):
            out = den(_x(), torch.ones(16))
    assert not torch.equal(out, ref)                                       # it did act
    assert (out - ref).abs().max() < 1e-4 * ref.abs().max()


def test_full_rank_branch_reproduces_the_smoothed_layer():
    g = torch.Generator().manual_seed(1)
    for w, x in [(torch.randn(24, 40, generator=g), torch.randn(10, 40, generator=g)),
                 (torch.randn(16, 8, 3, 3, generator=g), torch.randn(2, 8, 6, 6, generator=g))]:
        down, up, residual = decompose(w, rank=10 ** 3)                       # full rank, float32 factors
        assert residual.abs().max() < 1e-5
        if w.ndim == 2:
            branch, ref = F.linear(F.linear(x, down), up), F.linear(x, w)
        else:
            branch, ref = F.conv2d(F.conv2d(x, down, padding=1), up[:, :, None, None]), F.conv2d(x, w, padding=1)
        assert torch.allclose(branch, ref, atol=1e-4)
        d8, u8, r8 = decompose(w, rank=4)
        assert d8.shape[0] == 4 and u8.shape == (w.shape[0], 4)
        assert torch.allclose((u8 @ d8.reshape(4, -1)).reshape(w.shape) + r8, w, atol=1e-5)   # branch + residual = W
        db, ub, rb = decompose(w, rank=4, dtype=torch.bfloat16)
        assert torch.equal(db, db.bfloat16().float())                                        # 16-bit storage
        assert torch.allclose((ub @ db.reshape(4, -1)).reshape(w.shape) + rb, w, atol=1e-5)  # residual absorbs it


def test_16_bit_residual_rank_0_equals_fp():
    den = TinyDen(TinyNet())
    t, cfg = _prepared(den, w_bits=16, a_bits=16, rank=0, group_size=None)
    run = _run()                          # static activation ranges: evaluate inside the calibrated ones
    ref = ed.sample(den, run.x, SIGMAS, "ddim")
    with t.apply(den, cfg):
        out = ed.sample(den, run.x, SIGMAS, "ddim")
    assert not torch.equal(out, ref)
    assert (out - ref).abs().max() < 1e-4


def test_w4a8_svdquant_beats_minmax_w4a8_on_activation_outliers():
    den = TinyDen(TinyNet(outliers=40.0))
    x, s = _x(), torch.ones(16)
    with torch.no_grad():
        ref = den(x, s)
        with apply_weight_quant(den, QuantSpec(4, granularity="channel"), observer="minmax",
                                act=QuantSpec(8, symmetric=False, granularity="token")):
            naive = den(x, s)
        t, cfg = _prepared(den, w_bits=4, a_bits=8, rank=8, a_granularity="token")
        with t.apply(den, cfg) as h:
            svd = den(x, s)
    err = lambda y: float((y - ref).pow(2).mean() / ref.pow(2).mean())
    assert err(svd) < 0.5 * err(naive), (err(svd), err(naive))
    st = h.stats.as_dict()
    assert st["layers"] == 4 and st["skipped"] == 0
    assert 0 < st["lowrank_bytes"] < st["packed_bytes"] < st["fp32_bytes"]


def test_remove_restores_the_exact_model():
    net = TinyNet(outliers=10.0)
    den = TinyDen(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        ref = den(_x(), torch.ones(16))
        t, cfg = _prepared(den)
        h = t.apply(den, cfg)
        quant = den(_x(), torch.ones(16))
        h.remove()
        after = den(_x(), torch.ones(16))
    assert not torch.equal(quant, ref)
    assert torch.equal(after, ref)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all("forward" not in m.__dict__ for m in net.modules())


def test_zoo_dit_w4a8_and_registry():
    assert "svdquant" in T.names("quant")
    den = ed.zoo.load("digits-dit")
    sig = ed.timesteps.get("uniform", 4, den.process)
    run = T.Run(ed.sampling.randn((8, 1, 8, 8), seed=3) * sig[0].float(), sig, "ddim", torch.arange(8) % 10)
    t = T.get("svdquant")
    assert t.applies_to(den)
    with pytest.raises(ValueError, match="needs state"):
        t.apply(den, SVDQuantConfig())
    cfg = t.prepare(den, dataclasses.replace(t.eager(4), w_observer="minmax"), run)   # minmax: fast
    x, lab = ed.sampling.randn((8, 1, 8, 8), seed=0) * sig[0].float(), torch.arange(8) % 10
    ref = ed.sample(den, x, sig, "ddim", cond=lab)
    with t.apply(den, cfg) as h:
        out = h.sample(den, x, sig, "ddim", cond=lab)
    assert (out - ref).pow(2).mean() < 0.05 * ref.pow(2).mean()
    assert h.stats.compression > 3


@pytest.mark.parametrize("bad", [dict(rank=-1), dict(alpha=1.5), dict(w_bits=1), dict(a_granularity="channel"),
                                 dict(lowrank_dtype="int8")])
def test_bad_configs_raise(bad):
    with pytest.raises(ValueError):
        SVDQuantConfig(**bad)
