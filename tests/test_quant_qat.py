"""EfficientDM-style LoRA QAT: 16-bit identity, distillation lowers the loss, merge leaves no peft
modules, the export equals the trained model, removal restores it (issue 11, item 3)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import effdiff as ed
from effdiff import techniques as T
from effdiff.finetune.lora import layers as lora_layers
from effdiff.quant.ptq import PTQConfig, prepare_ptq
from effdiff.quant.qat import QATConfig, QATSession, TemporalLSQ, distill_loss, lsq, trajectories
from effdiff.quant.quantizer import QuantSpec

SIGMAS = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0])


class TinyNet(nn.Module):
    """Conv -> Linear over channels -> conv, σ-conditioned by a bias: a user's model."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.inp = nn.Conv2d(1, 16, 3, padding=1)
        self.lin = nn.Linear(16, 16)
        self.out = nn.Conv2d(16, 1, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * (1 / p[0].numel() ** 0.5 if p.ndim > 1 else 0.1)

    def forward(self, x, s):
        h = F.silu(self.inp(x) + s.reshape(-1, 1, 1, 1))
        h = F.silu(self.lin(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        return self.out(h)


class TinyDen:
    """D(x, σ) = net(x / sqrt(1 + σ²), log σ)."""

    def __init__(self):
        self.net = TinyNet()

    def __call__(self, x, sigma, cond=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        return self.net(x / (1 + sigma[:, None, None, None] ** 2).sqrt(), sigma.clamp_min(1e-3).log())


def _run(n=8):
    return T.Run(ed.sampling.randn((n, 1, 8, 8), seed=1) * SIGMAS[0], SIGMAS, "ddim")


def test_lsq_learns_its_scale_and_matches_fake_quant():
    spec = QuantSpec(4, symmetric=False)
    x = torch.randn(1000)
    s = torch.tensor(0.1, requires_grad=True)
    z = torch.tensor(8.0)
    y = lsq(x, s, z, spec)
    ref = (torch.clamp(torch.round(x / 0.1) + 8, 0, 15) - 8) * 0.1
    assert torch.allclose(y, ref, atol=1e-6)
    (y - x).pow(2).sum().backward()
    assert s.grad is not None and s.grad != 0          # clipping error at s = 0.1: the gradient asks for a larger scale
    assert s.grad < 0


def test_16_bit_with_zero_lora_equals_fp():
    den = TinyDen()
    run = _run()
    cfg = QATConfig(w_bits=16, a_bits=16, progress=False)
    state = prepare_ptq(den, cfg.ptq_config(), run).state
    ref = ed.sample(den, run.x, SIGMAS, "ddim")
    session = QATSession(den, cfg, state, {}, "mse")
    try:
        assert set(lora_layers(den.net)) == {"inp", "lin", "out"}
        assert all(float(p.abs().max()) == 0 for n, p in den.net.named_parameters() if "lora_B" in n)
        assert any(isinstance(a, TemporalLSQ) for a in session.acts.values())
        out = ed.sample(den, run.x, SIGMAS, "ddim")
    finally:
        session.close()
    assert not torch.equal(out, ref)
    assert (out - ref).abs().max() < 1e-4


def test_qat_lowers_the_distillation_loss_and_merges_cleanly():
    den = TinyDen()
    before = {k: v.clone() for k, v in den.net.state_dict().items()}
    flags = {n: p.requires_grad for n, p in den.net.named_parameters()}
    run = _run()
    t = T.get("qat")
    cfg = t.prepare(den, QATConfig(w_bits=4, a_bits=8, rank=4, steps=40, lr=3e-4, scale_lr=1e-3, batch_size=8,
                                   num_samples=16, weighting="none", progress=False), run)
    h = cfg.state["history"]
    assert len(h["losses"]) == 40 and h["lora_layers"] == 3 and h["pairs"] == 4 * 16
    assert h["end"] < 0.8 * h["start"], (h["start"], h["end"])
    # merged and gone: no peft layer, no peft config, the model's own tensors and flags untouched
    assert not lora_layers(den.net) and not hasattr(den.net, "peft_config")
    assert not any("lora" in n or "base_layer" in n for n, _ in den.net.named_modules())
    assert set(den.net.state_dict()) == set(before)
    assert all(torch.equal(before[k], v) for k, v in den.net.state_dict().items())
    assert flags == {n: p.requires_grad for n, p in den.net.named_parameters()}
    # the exported fake-quantized model is the trained one: same loss on the same trajectories
    data = trajectories(den, run, 16, 0)
    with torch.no_grad():
        ref = den(run.x, SIGMAS[0])
        with t.apply(den, cfg) as handle:
            assert float(distill_loss(den.net, data, 4)) == pytest.approx(h["end"], rel=1e-4)
            quant = den(run.x, SIGMAS[0])
        after = den(run.x, SIGMAS[0])
    assert not torch.equal(quant, ref) and torch.equal(after, ref)
    assert handle.stats.compression > 3          # 4-bit inner layer; ptq keeps first / last at 8 bits by default


def test_relative_weighting_starts_at_one_and_registry():
    assert "qat" in T.names("quant")
    den = TinyDen()
    cfg = T.get("qat").prepare(den, QATConfig(steps=3, num_samples=8, batch_size=4, progress=False), _run())
    assert cfg.state["history"]["start"] == pytest.approx(1.0)
    assert len(cfg.state["history"]["start_per_step"]) == 4


@pytest.mark.parametrize("bad", [dict(rank=0), dict(steps=-1), dict(w_bits=1), dict(weighting="snr"),
                                 dict(batch_size=0)])
def test_bad_configs_raise(bad):
    with pytest.raises(ValueError):
        QATConfig(**bad)
