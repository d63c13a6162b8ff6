"""Training the first stage: ``AutoencoderTrainer`` for ``TrainConfig(task="autoencoder")``.

The ordinary ``Trainer`` loop (AdamW, warm-up + cosine, EMA, exact resume, atomic checkpoints)
with the KL autoencoder's loss (Rombach et al. 2022, LDM's first stage without the GAN and LPIPS
terms): per image ``sum |x - x_rec|`` (or squared) ``+ kl_weight * KL(q(z|x) || N(0, I))``,
divided by the number of pixels (so the reconstruction term reads as a per-pixel error). The
export measures, on the training split with the EMA encoder, the latent scale factor
``1 / std(z)`` of the posterior means (LDM's ``scale_factor``) and the held-out reconstruction
error, and records both in the model JSON (``latent_space``) and its card.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checkpoint as ckpt
from ..models.autoencoder import kl
from ..training.trainer import Trainer


@dataclass
class AutoencoderLoss:
    """``TrainConfig.loss`` of an autoencoder run."""
    reconstruction: str = "l1"        # l1 | l2
    kl_weight: float = 1e-4           # β on the per-image KL sum (LDM: 1e-6 on 256x256x3 images)

    def __post_init__(self):
        if self.reconstruction not in ("l1", "l2"):
            raise ValueError(f"reconstruction must be 'l1' or 'l2', got {self.reconstruction!r}")
        if not 0 <= self.kl_weight < 1:
            raise ValueError(f"kl_weight must lie in [0, 1), got {self.kl_weight!r}")


class AutoencoderTrainer(Trainer):
    """Train a KL autoencoder (``arch="autoencoder"``) on an image dataset of ``effdiff.data``."""
    TASKS = ("autoencoder",)

    def __init__(self, config, run_dir, progress: bool = True):
        if config.task != "autoencoder":
            raise ValueError(f"AutoencoderTrainer trains task 'autoencoder', got {config.task!r}")
        self.ae_loss = AutoencoderLoss(**config.loss)
        super().__init__(config, run_dir, progress)

    def loss_on(self, x, y) -> torch.Tensor:
        x_rec, mean, logvar = self.net(x, generator=self.gen)          # posterior sample z ~ q(z|x)
        err = (x_rec - x).abs() if self.ae_loss.reconstruction == "l1" else (x_rec - x).pow(2)
        per_image = err.flatten(1).sum(1) + self.ae_loss.kl_weight * kl(mean, logvar)
        return per_image.mean() / x[0].numel()

    @torch.no_grad()
    def evaluate(self) -> tuple[dict, dict]:
        """(latent_space, metrics) of the EMA model: the scale from the training split, the
        reconstruction errors (through the posterior mean) on the held-out split."""
        from .. import data
        from .encode import latent_stats, reconstruction_error
        self.ema.eval()
        stats = latent_stats(self.ema, data.dataset(self.cfg.data, "train")[0])
        xt = data.dataset(self.cfg.data, "test")[0]
        err = reconstruction_error(self.ema, xt)
        space = {"scale": stats["scale"], "std": stats["std"], "mean": stats["mean"],
                 "shape": list(self.ema.config.latent_shape), "from": "posterior mean",
                 "measured_on": f"{self.cfg.data} train ({stats['n']} images)"}
        metrics = {"latent_scale": round(stats["scale"], 5), "latent_std": round(stats["std"], 5),
                   "heldout_mse": round(err["mse"], 6), "heldout_l1": round(err["l1"], 6),
                   "heldout_psnr_db": round(err["psnr_db"], 2), "heldout_n": len(xt),
                   "compression": f"{xt[0].numel()} -> {self.ema.config.latent_channels * self.ema.config.latent_size ** 2} "
                                  "numbers per image"}
        return space, metrics

    def export(self, metrics: dict | None = None):
        space, m = self.evaluate()
        path = super().export({**m, **(metrics or {})})
        tensors, meta = ckpt.load(path)
        meta["latent_space"] = space
        ckpt.save(path, tensors, meta)
        return path
