"""Control modules (ControlNet, ControlNet-XS, T2I-Adapter) and the condition maps they follow."""
import pytest
import torch

from effdiff import zoo
from effdiff.finetune import CONTROLS, Controlled, adherence, condition, controlled_denoiser, load_control, make_control
from effdiff.finetune.methods import METHODS
from effdiff.hooks.registry import hooks_of


@pytest.fixture(scope="module")
def den():
    return zoo.load("digits-unet")


def batch(b=4):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(b, 1, 8, 8, generator=g) * 2 - 1
    return torch.randn(b, 1, 8, 8, generator=g), torch.full((b,), 2.0), torch.arange(b), condition("edges", x0)


def perturb(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("kind", list(CONTROLS))
def test_zero_init_is_the_base_model_and_hooks_do_not_stay(den, kind):
    x, s, y, hint = batch()
    ctl = Controlled(den.net, make_control(kind, den.net))
    D = controlled_denoiser(den, ctl, hint)
    with torch.no_grad():
        assert torch.equal(D(x, s, y), den(x, s, y))
        perturb(ctl.control)
        assert (D(x, s, y) - den(x, s, y)).abs().max() > 1e-4
    assert all(not hooks_of(m) for m in den.net.modules())
    # a CFG-style doubled batch reuses the same condition for both halves
    with torch.no_grad():
        both = D(torch.cat([x, x]), torch.cat([s, s]), torch.cat([y, y]))
        assert torch.allclose(both[:4], both[4:], atol=1e-6)


def test_parameter_budget_xs_smaller_than_controlnet(den):
    n = {k: sum(p.numel() for p in make_control(k, den.net).parameters()) for k in CONTROLS}
    base = sum(p.numel() for p in den.net.parameters())
    assert n["t2i-adapter"] < n["controlnet-xs"] < 0.1 * base < n["controlnet"]


@pytest.mark.parametrize("kind", list(CONTROLS))
def test_gradient_reaches_through_zero_convolutions(den, kind):
    """Zero-initialised outputs still get a gradient, so training can move them (ControlNet's argument)."""
    x, s, y, hint = batch()
    ctl = Controlled(den.net, make_control(kind, den.net).requires_grad_(True))
    ctl(x, s, y, hint).pow(2).mean().backward()
    zero_outs = [p for n, p in ctl.control.named_parameters() if p.grad is not None and p.abs().sum() == 0]
    assert zero_outs and any(p.grad.abs().sum() > 0 for p in zero_outs)
    assert all(p.grad is None for p in den.net.parameters())


def test_t2i_features_are_computed_once_per_condition(den):
    x, s, y, hint = batch()
    ad = make_control("t2i-adapter", den.net)
    ctl = Controlled(den.net, ad)
    calls = []
    ad.stem.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        for _ in range(3):
            ctl(x, s, y, hint)
    assert len(calls) == 1


def test_control_file_round_trip(den, tmp_path):
    x, s, y, hint = batch()
    ctl = METHODS["controlnet-xs"].build(zoo.load("digits-unet"), {})
    perturb(ctl.control, seed=3)
    METHODS["controlnet-xs"].save(ctl, tmp_path / "xs", {"note": "test"})
    back = load_control(den, tmp_path / "xs")
    with torch.no_grad():
        assert torch.equal(back(x, s, y, hint), ctl(x, s, y, hint))
    with pytest.raises(KeyError, match="unknown control module"):
        make_control("gligen", den.net)
    with pytest.raises(TypeError, match="effdiff UNet"):
        make_control("controlnet-xs", zoo.load("digits-dit").net)   # ControlNet itself has a DiT form


def test_conditions_and_adherence():
    flat = -torch.ones(2, 1, 8, 8)
    assert torch.equal(condition("edges", flat), flat)                 # no edges anywhere
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    for name in ("edges", "mask", "sketch"):
        c = condition(name, x)
        assert c.shape == x.shape and c.min() >= -1 and c.max() <= 1
        same, other = adherence(name, x, c), adherence(name, x.flip(0), c)
        assert same == {"mse": 0.0, "iou": 1.0} and other["mse"] > 0
    with pytest.raises(KeyError, match="unknown condition"):
        condition("depth", x)
    with pytest.raises(ValueError, match="differ in shape"):
        adherence("edges", x, condition("edges", x)[:3])
