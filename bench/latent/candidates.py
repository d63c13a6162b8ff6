"""Which latent DiT meets "≥ 4x cheaper than mnist-unet in measured time"? Times one training step
(each preset's own Trainer, batch 64) and one batch-360 forward of the pixel `mnist-unet` and of
DiT variants on the 7x7x4 latents, interleaved in rounds (median of 7 after 3 warm-up steps).

    taskset -c 0 python bench/latent/candidates.py      # alone on its core, 1 thread (~3 min)

Ratios are pixel time / candidate time; the sampling ratio excludes the decoder (18.3M MACs once
per sample, ~6% of a 20-step latent run). Results: docs/latent.md, "Choosing the latent network".
"""
import statistics
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from effdiff import zoo
from effdiff.models.dit import DiT, DiTConfig
from effdiff.training import preset
from effdiff.training.trainer import trainer_class

torch.set_num_threads(1)
BASE = dict(patch_size=1, hidden_size=64, depth=6, num_heads=4, num_classes=10, in_channels=4, image_size=7)
CANDIDATES = {"depth 6, 4 heads, mlp 4 (first shipped)": {}, "depth 4": dict(depth=4),
              "depth 4, mlp 2": dict(depth=4, mlp_ratio=2.0), "depth 4, 2 heads": dict(depth=4, num_heads=2),
              "depth 6, 2 heads": dict(num_heads=2), "depth 5, 2 heads, mlp 2": dict(depth=5, num_heads=2, mlp_ratio=2.0),
              "depth 4, 2 heads, mlp 2": dict(depth=4, num_heads=2, mlp_ratio=2.0),
              "depth 6, 2 heads, mlp 2": dict(num_heads=2, mlp_ratio=2.0), "depth 5, 2 heads": dict(depth=5, num_heads=2)}


def macs(net, x) -> float:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x, torch.rand(len(x)), torch.randint(0, 10, (len(x),)))
    return fc.get_total_flops() / 2 / len(x)


def main(rounds: int = 7) -> None:
    tmp = tempfile.mkdtemp()
    trainers, nets = {}, {}
    cfg = preset("mnist-unet", steps=100, ckpt_every=10 ** 6)
    trainers["mnist-unet"] = trainer_class(cfg)(cfg, f"{tmp}/pixel", progress=False)
    nets["mnist-unet"] = (zoo.load("mnist-unet").net, torch.randn(360, 1, 28, 28))
    for i, (name, kw) in enumerate(CANDIDATES.items()):
        cfg = preset("mnist-ldm-dit", steps=100, ckpt_every=10 ** 6, model={**BASE, **kw})
        trainers[name] = trainer_class(cfg)(cfg, f"{tmp}/{i}", progress=False)
        nets[name] = (DiT(DiTConfig(**{**BASE, **kw})).eval(), torch.randn(360, 4, 7, 7))
    for tr in trainers.values():
        for _ in range(3):
            tr.train_step()
    train = {k: [] for k in trainers}
    fwd = {k: [] for k in nets}
    for _ in range(rounds):
        for k, tr in trainers.items():
            t = time.perf_counter()
            tr.train_step()
            train[k].append(time.perf_counter() - t)
        for k, (net, x) in nets.items():
            with torch.no_grad():
                t_, y = torch.rand(len(x)), torch.randint(0, 10, (len(x),))
                t = time.perf_counter()
                net(x, t_, y)
                fwd[k].append(time.perf_counter() - t)
    tr_ms = {k: 1000 * statistics.median(v) for k, v in train.items()}
    fw_ms = {k: 1000 * statistics.median(v) for k, v in fwd.items()}
    print("| network | params | MACs/evaluation | train step (batch 64) | pixel / this | forward (batch 360) | pixel / this |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, (net, x) in nets.items():
        p = sum(q.numel() for q in net.parameters()) / 1e6
        print(f"| {k} | {p:.2f}M | {macs(net, x[:8]) / 1e6:.1f}M | {tr_ms[k]:.0f} ms | {tr_ms['mnist-unet'] / tr_ms[k]:.2f}x | "
              f"{fw_ms[k]:.0f} ms | {fw_ms['mnist-unet'] / fw_ms[k]:.2f}x |")


if __name__ == "__main__":
    main()
