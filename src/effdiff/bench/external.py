"""effdiff on models it did not train: two third-party checkpoints (``../shared/external``, not
shipped; every function here takes the folder) run through ``integrations.own`` and effdiff's
solvers, scored against each author's own sampler.

- Pulfer's DDPM MNIST UNet (eps prediction, integer steps 0..999 of linear betas): effdiff
  solvers at 10-20 NFE and one cache vs DDPM ancestral sampling with 1000 steps (Ho et al.
  2020, Alg. 2), scored by ``ed.metrics.score(dataset="mnist")`` when the MNIST evaluation
  network ships, else by pixel FD against the 10k MNIST test set.
- torchcfm's moons flows (CFM, OT-CFM; velocity, t = 1 data): an effdiff solver at <= 10 NFE vs
  the authors' 100-step Euler, scored by sliced Wasserstein to fresh moons.

The networks below are written from the key lists (names and shapes) and the README's
description, not copied. ``python -m effdiff.bench.external [--out docs/bench/external]``
writes ``results.json`` and ``external.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .scoring import pct_ci, pm

EXTERNAL = Path(os.environ.get("EFFDIFF_EXTERNAL_DIR") or Path(__file__).resolve().parents[4] / "shared" / "external")


# ---------------------------------------------------------------------------------------
# the two networks, from their key lists
# ---------------------------------------------------------------------------------------

class _Block(nn.Module):
    """LayerNorm over (C, H, W) -> conv3x3 -> SiLU -> conv3x3 -> SiLU."""

    def __init__(self, shape, c_in: int, c_out: int, normalize: bool = True):
        super().__init__()
        self.ln = nn.LayerNorm(shape)          # stored even where unused
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.normalize = normalize

    def forward(self, x):
        x = self.ln(x) if self.normalize else x
        return nn.functional.silu(self.conv2(nn.functional.silu(self.conv1(x))))


def _blocks(size: int, chans, last_normalize: bool = True) -> nn.Sequential:
    """Three blocks through channels chans[0] -> chans[1] -> chans[2] -> chans[3] at size x size."""
    return nn.Sequential(*[_Block((chans[k], size, size), chans[k], chans[k + 1], k < 2 or last_normalize)
                           for k in range(3)])


def _te(dim_out: int, dim_in: int = 100) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim_out), nn.SiLU(), nn.Linear(dim_out, dim_out))


def _sinusoidal(n: int, d: int) -> torch.Tensor:
    """The frozen time table (Vaswani et al. 2017 position encoding); overwritten by the checkpoint."""
    t = torch.arange(n, dtype=torch.float32)[:, None]
    w = 1.0 / 10_000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    emb = torch.zeros(n, d)
    emb[:, 0::2], emb[:, 1::2] = torch.sin(t * w), torch.cos(t * w)
    return emb


class MnistUNet(nn.Module):
    """The 606,852-parameter DDPM UNet: three levels (28, 14, 7) and a 3x3 middle, skip
    concatenation, a per-level MLP of the time embedding added to each level's input."""

    def __init__(self, steps: int = 1000, d: int = 100):
        super().__init__()
        self.time_embed = nn.Embedding(steps, d)
        self.time_embed.weight.data = _sinusoidal(steps, d)
        self.time_embed.requires_grad_(False)
        self.te1, self.b1, self.down1 = _te(1), _blocks(28, (1, 10, 10, 10)), nn.Conv2d(10, 10, 4, 2, 1)
        self.te2, self.b2, self.down2 = _te(10), _blocks(14, (10, 20, 20, 20)), nn.Conv2d(20, 20, 4, 2, 1)
        self.te3, self.b3 = _te(20), _blocks(7, (20, 40, 40, 40))
        self.down3 = nn.Sequential(nn.Conv2d(40, 40, 2, 1), nn.SiLU(), nn.Conv2d(40, 40, 4, 2, 1))
        self.te_mid, self.b_mid = _te(40), _blocks(3, (40, 20, 20, 40))
        self.up1 = nn.Sequential(nn.ConvTranspose2d(40, 40, 4, 2, 1), nn.SiLU(), nn.ConvTranspose2d(40, 40, 2, 1))
        self.te4, self.b4, self.up2 = _te(80), _blocks(7, (80, 40, 20, 20)), nn.ConvTranspose2d(20, 20, 4, 2, 1)
        self.te5, self.b5, self.up3 = _te(40), _blocks(14, (40, 20, 10, 10)), nn.ConvTranspose2d(10, 10, 4, 2, 1)
        # the very last block skips its LayerNorm (its weights are in the checkpoint, unused): with
        # it the network cannot know the output scale and the denoising check fails (eps MSE 0.22
        # at t = 900 instead of 0.003)
        self.te_out, self.b_out = _te(20), _blocks(28, (20, 10, 10, 10), last_normalize=False)
        self.conv_out = nn.Conv2d(10, 1, 3, 1, 1)
        # DeepCache's view (plain attributes: the parameter names stay the checkpoint's)
        for name, blocks in (("input_blocks", [self.b1, self.b2, self.b3]), ("middle_block", self.b_mid),
                             ("output_blocks", [self.b4, self.b5, self.b_out])):
            object.__setattr__(self, name, blocks)

    def forward(self, x, t):   # x: [B, 1, 28, 28]; t: integer steps [B, 1]
        e = self.time_embed(t.reshape(-1))

        def add(h, te):
            return h + te(e).reshape(len(h), -1, 1, 1)
        h1 = self.b1(add(x, self.te1))
        h2 = self.b2(add(self.down1(h1), self.te2))
        h3 = self.b3(add(self.down2(h2), self.te3))
        hm = self.b_mid(add(self.down3(h3), self.te_mid))
        h4 = self.b4(add(torch.cat([h3, self.up1(hm)], 1), self.te4))
        h5 = self.b5(add(torch.cat([h2, self.up2(h4)], 1), self.te5))
        return self.conv_out(self.b_out(add(torch.cat([h1, self.up3(h5)], 1), self.te_out)))


class MoonsMLP(nn.Module):
    """3 -> 64 -> 64 -> 64 -> 2 with SELU; input concat([x, t])."""

    def __init__(self, w: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, w), nn.SELU(), nn.Linear(w, w), nn.SELU(), nn.Linear(w, w), nn.SELU(),
                                 nn.Linear(w, 2))

    def forward(self, x, t):   # x: [B, 2]; t: [B] in [0, 1], 1 = data
        return self.net(torch.cat([x, t.reshape(-1, 1).to(x.dtype)], 1))


def _load(module: nn.Module, path: Path, prefix: str = "") -> nn.Module:
    from safetensors.torch import load_file
    state = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)
    return module.eval().requires_grad_(False)


def load_mnist_unet(root: Path = EXTERNAL):
    """(network, its effdiff denoiser) from ``root/pulfer-ddpm-mnist/model.safetensors``."""
    from ..integrations.own import wrap
    net = _load(MnistUNet(), Path(root) / "pulfer-ddpm-mnist" / "model.safetensors", "network.")
    return net, wrap(net, time="ddpm", prediction="eps", integer=True)


def load_moons(root: Path = EXTERNAL, which: str = "otcfm"):
    """(network, its effdiff denoiser) for ``cfm`` or ``otcfm``."""
    from ..integrations.own import wrap
    net = _load(MoonsMLP(), Path(root) / "torchcfm-moons" / f"{which}.safetensors")
    return net, wrap(net, time="1-t", prediction="velocity")


# ---------------------------------------------------------------------------------------
# the authors' samplers (standard algorithms, written here)
# ---------------------------------------------------------------------------------------

@torch.no_grad()
def ddpm_ancestral(net, n: int, seed: int, steps: int = 1000, beta=(1e-4, 0.02)) -> torch.Tensor:
    """Ho et al. 2020, Alg. 2 with σ_t² = β_t, on ``net(x, t[B, 1])`` predicting eps."""
    g = torch.Generator().manual_seed(seed)
    betas = torch.linspace(beta[0], beta[1], steps, dtype=torch.float64)
    alphas, abar = 1 - betas, torch.cumprod(1 - betas, 0)
    x = torch.randn(n, 1, 28, 28, generator=g)
    for t in range(steps - 1, -1, -1):
        eps = net(x, torch.full((n, 1), t, dtype=torch.long))
        x = (x - float(betas[t] / (1 - abar[t]).sqrt()) * eps) / float(alphas[t].sqrt())
        if t > 0:
            x = x + float(betas[t].sqrt()) * torch.randn(x.shape, generator=g)
    return x


@torch.no_grad()
def euler_flow(net, n: int, seed: int, steps: int = 100) -> torch.Tensor:
    """The torchcfm example's sampler: Euler on dx/dt = v(x, t) from t = 0 (noise) to 1."""
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    for k in range(steps):
        x = x + net(x, torch.full((n,), k / steps)) / steps
    return x


# ---------------------------------------------------------------------------------------
# scores
# ---------------------------------------------------------------------------------------

def moons(n: int, seed: int) -> torch.Tensor:
    """Fresh two-moons data as the authors made it: ``make_moons(n, noise=0.2) * 3 - 1``."""
    from sklearn.datasets import make_moons
    return torch.from_numpy(make_moons(n, noise=0.2, random_state=seed)[0] * 3 - 1).float()


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance (Rabin et al. 2011) between two equal-size 2-D samples."""
    g = torch.Generator().manual_seed(seed)
    th = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    th = th / th.norm(dim=0)
    pa, pb = (a.double() @ th).sort(0).values, (b.double() @ th).sort(0).values
    return float(((pa - pb) ** 2).mean().sqrt())


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [-1, 1]: how the MNIST model's author displays its samples (its
    LayerNorms leave each image a brightness offset)."""
    lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8) * 2 - 1


def mnist_scorer(n: int):
    """(name, fn(x) -> float): EVAL's ``score(dataset="mnist")["fd"]`` when it works, else
    pixel FD against the 10k MNIST test set in its top min(64, n/4) principal components."""
    try:
        from ..metrics import evaluation, score
        evaluation("mnist")                  # the MNIST evaluation network and reference load

        def fd_eval(x):
            q = score(x, dataset="mnist")
            fd_eval.real.append(float(q["real_vs_real_fd"]))     # the comparison point at the same n
            return float(q["fd"])
        fd_eval.real = []
        return "FD (mnist-eval features)", fd_eval
    except Exception:  # noqa: BLE001  the MNIST evaluation network has not landed
        pass
    from ..data import mnist_test
    from ..metrics.quality import frechet_distance
    ref = mnist_test()[0].flatten(1).double()
    mu, k = ref.mean(0), min(64, max(2, n // 4))
    basis = torch.linalg.svd(ref - mu, full_matrices=False)[2][:k].T

    def fd(x):
        return float(frechet_distance((x.flatten(1).double() - mu) @ basis, (ref - mu) @ basis))
    return f"pixel FD ({k} PCs, MNIST test)", fd


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------

def _row(model, label, nfe, metric, vals, n, **extra) -> dict:
    return {"model": model, "sampler": label, "nfe": nfe, "metric": metric, "mean": float(np.mean(vals)),
            "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, "values": vals, "n": n, **extra}


def mnist_rows(root: Path, n: int, seeds, nfe: int = 10, emit=None) -> list[dict]:
    """DDPM-1000 (author) vs effdiff solvers at 10-20 NFE and DeepCache on the MNIST UNet."""
    import effdiff as ed
    from ..techniques import get
    net, den = load_mnist_unet(root)
    name, fd = mnist_scorer(n)
    configs = [("author: DDPM ancestral 1000", 1000, None, None)]     # first: every row is compared with it
    configs += [(f"effdiff {s} {k}", k, s, None) for s, k in (("dpmpp-2m", nfe), ("dpmpp-2m", 2 * nfe),
                                                              ("unipc", nfe), ("ddim", 2 * nfe), ("heun", 2 * nfe - 1),
                                                              ("dpmpp-2m-sde", nfe), ("dpmpp-2m-sde", 2 * nfe),
                                                              ("ddpm", 2 * nfe))]
    configs += [(f"effdiff dpmpp-2m {2 * nfe} + DeepCache (interval 2)", 2 * nfe, "dpmpp-2m", "deepcache")]
    rows = []
    for label, k, solver, cache in configs:
        vals, secs = [], []
        for seed in seeds:
            t0 = time.perf_counter()
            if solver is None:
                x = ddpm_ancestral(net, n, seed)
            else:
                sig = ed.timesteps.trailing((k + 1) // 2 if solver == "heun" else k, den.process)
                xT = ed.sampling.randn((n, 1, 28, 28), seed=seed) * sig[0]
                if cache:
                    with get(cache).apply(den, interval=2):
                        x = ed.sample(den, xT, sig, solver, seed=seed)
                else:
                    x = ed.sample(den, xT, sig, solver, seed=seed)
            secs.append(time.perf_counter() - t0)
            vals.append(fd(minmax(x)))
        rows.append(_row("pulfer-ddpm-mnist", label, k, name, vals, n, seconds=float(np.median(secs))))
        if getattr(fd, "real", None) and len(rows) == 1:
            rows.append(_row("MNIST (real vs real)", "training images", 0, name, fd.real[:len(seeds)], n))
        if emit:
            emit(rows)
    return rows


def moons_rows(root: Path, n: int, seeds, nfe: int = 10) -> list[dict]:
    """Euler-100 (authors) vs effdiff solvers at <= nfe on both moons flows."""
    import effdiff as ed
    rows = []
    for which in ("cfm", "otcfm"):
        net, den = load_moons(root, which)
        for label, solver in (("author: Euler 100", None), (f"effdiff dpmpp-2m {nfe}", "dpmpp-2m"),
                              (f"effdiff heun {nfe - 1}", "heun"), (f"effdiff euler {nfe}", "euler")):
            vals = []
            for seed in seeds:
                if solver is None:
                    x = euler_flow(net, n, seed)
                else:
                    grid = ed.timesteps.uniform_t(nfe // 2 if solver == "heun" else nfe, den.process)
                    x = ed.sample(den, ed.sampling.randn((n, 2), seed=seed) * grid[0], grid, solver)
                vals.append(sliced_wasserstein(x, moons(n, 10_000 + seed)))
            k = 100 if solver is None else (nfe - 1 if solver == "heun" else nfe)
            rows.append(_row(f"torchcfm-moons/{which}", label, k, "sliced W2", vals, n))
    # the comparison point: fresh moons against the same reference draws
    vals = [sliced_wasserstein(moons(n, 20_000 + s), moons(n, 10_000 + s)) for s in seeds]
    rows.append(_row("moons (real vs real)", "fresh data", 0, "sliced W2", vals, n))
    return rows


def vs_author(rows: list[dict]) -> None:
    """Each effdiff row gets ``vs_author`` / ``vs_author_ci``: its relative change against the same
    model's author row, paired by seed, with a 95% t-interval."""
    from .scoring import paired_change
    authors = {r["model"]: r for r in rows if r["sampler"].startswith("author")}
    for r in rows:
        a = authors.get(r["model"])
        if a is not None and r is not a and len(r["values"]) == len(a["values"]):
            r["vs_author"], r["vs_author_ci"] = paired_change(r["values"], a["values"])


def write(rows: list[dict], out: Path, meta: dict) -> None:
    """results.json and external.md (the table) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# effdiff on models it did not train", "",
             "Third-party checkpoints (`../shared/external`, not shipped) wrapped with "
             "`effdiff.integrations.own.wrap` and sampled by effdiff solvers, beside each author's own sampler. "
             f"Generated by `python -m effdiff.bench.external` ({meta['date']}; n = {meta['n_mnist']} MNIST / "
             f"{meta['n_moons']} moons samples per seed, seeds {meta['seeds']}; mean ± sd over seeds).", "",
             "Change vs author: per-seed relative change against the author's sampler, mean and 95% t-interval "
             "over seeds (a CI that contains 0 is no measurable difference).", "",
             "| model | sampler | NFE | metric | mean ± sd | change vs author (95% CI) |",
             "| --- | --- | ---: | --- | --- | ---: |"]
    vs_author(rows)
    lines += [f"| {r['model']} | {r['sampler']} | {r['nfe']} | {r['metric']} | {pm(r['mean'], r['sd'])} | "
              f"{pct_ci(r['vs_author'], r['vs_author_ci']) if 'vs_author' in r else ''} |" for r in rows]
    (out / "external.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=EXTERNAL)
    ap.add_argument("--out", type=Path, default=Path("docs/bench/external"))
    ap.add_argument("--n-mnist", type=int, default=500)
    ap.add_argument("--n-moons", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--skip-mnist", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    meta = {"date": time.strftime("%Y-%m-%d"), "seeds": a.seeds, "n_mnist": a.n_mnist, "n_moons": a.n_moons,
            "threads": 1, "mnist_images": "per-image min-max to [-1, 1] before scoring (the author's display)"}
    rows = moons_rows(a.root, a.n_moons, a.seeds)
    write(rows, a.out, meta)
    if not a.skip_mnist:
        mnist_rows(a.root, a.n_mnist, a.seeds, emit=lambda done: write(rows + done, a.out, meta))


if __name__ == "__main__":
    main()
