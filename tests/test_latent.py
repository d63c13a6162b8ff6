"""Latent diffusion: the KL autoencoder, its scale factor, LatentDenoiser under every solver and a
cache, the zoo round trip of a latent export, and decode cost counted by the bench."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import effdiff as ed
from effdiff import checkpoint as ckpt, zoo
from effdiff.denoisers import Denoiser
from effdiff.latent import LatentDenoiser, decode_macs, images, latent_stats
from effdiff.latent.encode import reconstruction_error
from effdiff.models import build
from effdiff.models.autoencoder import kl
from effdiff.process import from_config
from effdiff.training import preset, train

TINY_AE = {"in_channels": 1, "image_size": 28, "channels": (4, 4, 8), "latent_channels": 2, "num_res_blocks": 1}
TINY_DIT = {"patch_size": 1, "hidden_size": 16, "depth": 4, "num_heads": 2, "num_classes": 10,
            "in_channels": 2, "image_size": 7}


def tiny_latent(scale: float = 2.0) -> LatentDenoiser:
    torch.manual_seed(0)
    ae = build("autoencoder", TINY_AE).eval()
    net = build("dit", TINY_DIT).eval()
    for p in net.parameters():                    # adaLN-zero starts at zero: give it an output
        torch.nn.init.normal_(p, std=0.05)
    den = Denoiser(net, from_config({"name": "flow"}), "velocity", 10).eval()
    den.meta = {"model": dict(TINY_DIT)}
    return LatentDenoiser(den, ae, scale, den.meta)


# ---- the autoencoder -----------------------------------------------------------------------------

def test_autoencoder_shapes_config_round_trip_and_kl():
    ae = build("autoencoder", TINY_AE).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    mean, logvar = ae.encode(x)
    assert mean.shape == logvar.shape == (3, 2, 7, 7) == (3, *ae.config.latent_shape)
    assert ae.decode(mean).shape == x.shape
    twin = build("autoencoder", dataclasses.asdict(ae.config))
    twin.load_state_dict(ae.state_dict())
    torch.testing.assert_close(twin.eval().decode(mean), ae.decode(mean))
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(kl(mean, logvar), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="decode needs"):
        ae.decode(torch.zeros(1, 3, 7, 7))
    with pytest.raises(ValueError, match="not divisible"):
        build("autoencoder", {"image_size": 30, "channels": (4, 4, 4)})


def test_latent_scale_is_one_over_std_of_encoded_latents():
    ae = build("autoencoder", TINY_AE).eval()
    x = ed.data.mnist("test")[0][:200]
    st = latent_stats(ae, x)
    with torch.no_grad():
        z = ae.encode(x)[0].double()
    assert st["scale"] == pytest.approx(1 / float(z.std()), rel=1e-9)
    assert float((z * st["scale"]).std()) == pytest.approx(1.0, rel=1e-9)


def test_autoencoder_trainer_learns_and_exports_scale(tmp_path):
    cfg = preset("mnist-ae", model=TINY_AE, steps=20, batch_size=16, ckpt_every=20, warmup=5)
    before = reconstruction_error(build("autoencoder", TINY_AE).eval(), ed.data.mnist("test")[0][:200])["mse"]
    path = train(cfg, tmp_path / "ae", progress=False)
    tensors, meta = ckpt.load(path)
    ae = zoo.from_checkpoint(path)                     # task autoencoder: the bare network
    after = reconstruction_error(ae, ed.data.mnist("test")[0][:200])["mse"]
    assert after < 0.7 * before
    assert meta["task"] == "autoencoder" and meta["latent_space"]["shape"] == [2, 7, 7]
    st = latent_stats(ae, ed.data.mnist("train")[0])
    assert meta["latent_space"]["scale"] == pytest.approx(st["scale"], rel=1e-6)
    assert meta["card"]["metrics"]["latent_scale"] == pytest.approx(st["scale"], rel=1e-4)
    assert meta["card"]["metrics"]["heldout_mse"] > 0


# ---- LatentDenoiser: a denoiser like any other ---------------------------------------------------

SOLVERS = [n for n in ed.solvers.names() if n != "adaptive-sde"]   # (8 s on one core; the ODE one runs)


@pytest.mark.parametrize("solver", SOLVERS)
def test_every_solver_runs_on_a_latent_model_unchanged(solver):
    den = tiny_latent()
    sig = ed.timesteps.get("logsnr", 4, den.process)
    z = ed.sampling.randn((3, 2, 7, 7), seed=1) * sig[0]
    labels = torch.tensor([1, 2, 3])
    a = ed.sample(den, z, sig, solver=solver, cond=labels, seed=0)
    b = ed.sample(den.denoiser, z, sig, solver=solver, cond=labels, seed=0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert images(den, a).shape == (3, 1, 28, 28)


def test_latent_denoiser_delegates_and_guides():
    den = tiny_latent()
    assert den.net is den.denoiser.net and den.process is den.denoiser.process
    assert den.cond_classes == 10 and den.null_class == 10 and den.prediction == "velocity"
    assert ed.sites.network(den) is den.net                 # what hooks attach to: the DiT, never the decoder
    z, s = torch.randn(2, 2, 7, 7), torch.full((2,), 0.7)
    g = ed.guided(den, 2.0)
    torch.testing.assert_close(g(z, s, torch.tensor([0, 1])), ed.guided(den.denoiser, 2.0)(z, s, torch.tensor([0, 1])))
    assert images(g, z).shape == (2, 1, 28, 28)             # found through the guidance wrapper
    x = images(den, z)
    torch.testing.assert_close(x, den.autoencoder.decode(z / den.scale))
    torch.testing.assert_close(den.encode(x), den.autoencoder.encode(x)[0] * den.scale)
    assert images(den.denoiser, z) is z                     # a pixel model's samples are already images


def test_assigning_net_rebuilds_the_wrapped_denoiser():
    from effdiff.distributed.net import with_net
    den = tiny_latent()
    other = build("dit", TINY_DIT).eval()
    twin = with_net(den, other)
    assert isinstance(twin, LatentDenoiser) and twin.net is other and den.net is not other
    assert twin.autoencoder is den.autoencoder and twin.scale == den.scale


def test_a_cache_runs_on_a_latent_model_as_on_its_network():
    den = tiny_latent()
    sig = ed.timesteps.get("logsnr", 6, den.process)
    z = ed.sampling.randn((2, 2, 7, 7), seed=3) * sig[0]
    labels = torch.tensor([4, 5])
    base = ed.sample(den, z, sig, solver="dpmpp-2m", cond=labels)
    fora = ed.techniques.get("fora")
    assert fora.applies_to(den)
    outs = []
    for target in (den, den.denoiser):
        h = fora.apply(target, interval=2)
        outs.append(ed.sample(den, z, sig, solver="dpmpp-2m", cond=labels))
        stats = h.stats
        h.remove()
        assert stats.reused > 0
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.equal(outs[0], base)                     # the cache changed the computation
    torch.testing.assert_close(ed.sample(den, z, sig, solver="dpmpp-2m", cond=labels), base)   # removed


def test_decode_is_counted():
    from effdiff.metrics import macs_per_sample
    den = tiny_latent()
    z = torch.zeros(2, 2, 7, 7)
    dec = macs_per_sample(lambda z: den.autoencoder.decode(z), z)
    assert dec > 0 and decode_macs(den) == pytest.approx(dec)
    assert decode_macs(den.denoiser) == 0
    n0 = den.decodes
    images(den, ed.sampling.SampleResult(z, 4, 4))
    assert den.decodes == n0 + 2
    from effdiff.bench.runner import Prepared, _macs
    from effdiff.bench.config import BenchConfig
    sig = ed.timesteps.get("logsnr", 3, den.process)
    p = Prepared(BenchConfig("tiny", "x", "euler", "logsnr", 3), den, ed.guided(den, 1.0), sig, 1.0)
    res = p.go(p.noise(2, 0), torch.tensor([0, 1]), 0)
    assert res.x.shape == (2, 1, 28, 28) and res.nfe == 3
    per_eval = macs_per_sample(lambda x: den(x, sig[:1].expand(2), torch.tensor([0, 1])), z)
    p.first = res
    assert _macs(p, torch.tensor([0, 1]), {}, res.nfe) == pytest.approx(3 * per_eval + dec)


# ---- the zoo round trip --------------------------------------------------------------------------

@pytest.fixture
def tmp_zoo(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(zoo, "WEIGHTS", weights)
    return weights


def test_latent_export_round_trips_through_the_zoo(tmp_path, tmp_zoo):
    ae_path = train(preset("mnist-ae", model=TINY_AE, steps=2, batch_size=8, ckpt_every=2), tmp_path / "ae",
                    progress=False)
    zoo.install(ae_path, "mnist-ae")
    scale = zoo.card("mnist-ae")["latent_space"]["scale"]
    x, y = ed.data.dataset("mnist-latent", "test")
    assert x.shape == (1000, 2, 7, 7) and float(x.std()) == pytest.approx(1.0, abs=0.15)
    cfg = preset("mnist-ldm-dit", model=TINY_DIT, steps=2, batch_size=8, ckpt_every=2)
    path = train(cfg, tmp_path / "ldm", progress=False)
    den = zoo.from_checkpoint(path)
    assert isinstance(den, LatentDenoiser) and den.scale == scale
    assert den.meta["latent"]["autoencoder"] == "mnist-ae" and den.meta["latent"]["data"] == "mnist"
    from effdiff.bench.scoring import dataset_of
    assert dataset_of(den) == "mnist"
    zoo.install(path, "mnist-ldm-dit")
    assert zoo.card("mnist-ldm-dit")["latent"]["scale"] == scale
    loaded = zoo.load("mnist-ldm-dit")
    z = torch.randn(2, 2, 7, 7)
    s = torch.full((2,), 1.0)
    torch.testing.assert_close(loaded(z, s, torch.tensor([1, 2])), den(z, s, torch.tensor([1, 2])))
    torch.testing.assert_close(loaded.decode(z), den.decode(z))
    # the autoencoder retrained (another scale) under the same name: the latent model is refused, naming why
    tensors, meta = ckpt.load(ae_path)
    meta["latent_space"]["scale"] = scale * 1.5
    ckpt.save(tmp_path / "ae2", tensors, meta)
    zoo.install(tmp_path / "ae2", "mnist-ae")
    assert zoo.card("mnist-ae")["latent_space"]["scale"] != pytest.approx(scale, rel=1e-6)
    with pytest.raises(ckpt.CheckpointError, match="not the autoencoder the model was trained with"):
        zoo.load("mnist-ldm-dit")
    # same scale, other weights: refused too
    meta["latent_space"]["scale"] = scale
    ckpt.save(tmp_path / "ae3", {k: v + 1e-3 if v.is_floating_point() else v for k, v in tensors.items()}, meta)
    zoo.install(tmp_path / "ae3", "mnist-ae")
    with pytest.raises(ckpt.CheckpointError, match="other weights"):
        zoo.load("mnist-ldm-dit")


def test_a_latent_model_without_its_autoencoder_names_it(tmp_path, tmp_zoo):
    with pytest.raises(ckpt.CheckpointError, match="'mnist-ae' is not in the zoo"):
        ed.data.dataset("mnist-latent", "train")


SKIP = {"compile", "cuda-graphs"}        # compile: tens of seconds on one core (systems tests cover it)


def _techniques():
    inner = tiny_latent().denoiser
    return [t.name for t in ed.techniques.applicable(inner) if not t.needs and t.name not in SKIP]


@pytest.mark.parametrize("name", _techniques())
def test_every_technique_applies_to_a_latent_model_as_to_its_denoiser(name):
    """Caches, quantizers, pruning, early exit, systems switches: applied to the LatentDenoiser they
    hook the same network and sample exactly what they sample when applied to the wrapped denoiser."""
    den = tiny_latent()
    t = ed.techniques.get(name)
    assert t.applies_to(den), t.why_not(den)
    sig = ed.timesteps.get("logsnr", 4, den.process)
    z = ed.sampling.randn((2, 2, 7, 7), seed=5) * sig[0]
    labels = torch.tensor([6, 7])
    outs = []
    for target in (den, den.denoiser):
        h = t.apply(target)
        try:
            outs.append(ed.sample(den, z, sig, solver="euler", cond=labels))
        finally:
            h.remove()
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
