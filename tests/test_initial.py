"""sampling.initial: the one place a run's start x_T is made (shape from the model, per-sample
noise, σ_max, and the model's own prior when it has one)."""
import torch

import effdiff as ed
from effdiff.sampling import initial, randn


def test_initial_is_per_sample_noise_times_sigma_max():
    den = ed.zoo.load("digits-unet")
    sig = ed.timesteps.get("karras", 10, den.process)
    x = initial(den, 6, sig, seed=3)
    assert x.shape == (6, 1, 8, 8)
    assert torch.equal(x, randn((6, 1, 8, 8), seed=3) * sig[0].float())
    assert torch.equal(initial(den, 2, sig, seed=3), x[:2])        # same seed, same samples at any batch size


def test_initial_moves_onto_the_models_prior():
    den = ed.zoo.load("digits-unet")
    sig = ed.timesteps.get("karras", 4, den.process)

    class WithPrior:
        meta = den.meta

        def prior(self, x, cond):
            return x * 2 + cond.float().view(-1, 1, 1, 1)

    cond = torch.tensor([0, 5])
    x = initial(WithPrior(), 2, sig, seed=0, cond=cond)
    assert torch.equal(x, (randn((2, 1, 8, 8), seed=0) * sig[0].float()) * 2 + cond.float().view(-1, 1, 1, 1))


def test_a_priorgrad_export_loads_from_the_zoo_and_samples_from_its_prior(tmp_path):
    from effdiff.training import preset
    from effdiff.training.trainer import Trainer
    cfg = preset("digits-unet", steps=2, batch_size=8, ckpt_every=2, prior="priorgrad",
                 model={"model_channels": 8, "channel_mult": (1,), "num_res_blocks": 1,
                        "attention_resolutions": (), "num_classes": 10})
    tr = Trainer(cfg, tmp_path, progress=False).run()
    den = ed.zoo.from_checkpoint(tr.export())
    assert callable(getattr(den, "prior", None))
    sig = ed.timesteps.get("karras", 3, den.process)
    cond = torch.arange(4)
    x = initial(den, 4, sig, seed=0, cond=cond)
    assert not torch.equal(x, randn((4, 1, 8, 8), seed=0) * sig[0].float())
    out = ed.sample(den, x, sig, solver="dpmpp-2m", cond=cond)
    assert out.shape == (4, 1, 8, 8) and torch.isfinite(out).all()
