"""``ed.plan`` on a model effdiff did not train: pulfer's MNIST DDPM (``../shared/external``), against
the author's own 1000-step ancestral DDPM sampler, with the MNIST evaluation network on min-max
scaled samples (how the author displays them; docs/bench/external). The planner is not told which
solver family works on this checkpoint (only the SDE solvers do, docs/bench/external measured).

    OMP_NUM_THREADS=1 python -m effdiff.bench.plan_external --out docs/bench/plan/pulfer.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from ..io import atomic_write
from ..plan.quality import EvalFD, Relative
from ..plan.runs import External
from ..plan.search import Settings, plan
from .external import EXTERNAL, ddpm_ancestral, load_mnist_unet, minmax

SETTINGS = Settings(n_screen=16, n=32, rungs=(2,), select_seeds=3, fresh_seeds=3, max_bases=2, max_select=8,
                    timing_repeats=1, attempts=2)


def plan_pulfer(budget="10%", settings: Settings = SETTINGS, steps: int = 1000, root=EXTERNAL, log=None):
    """The plan for pulfer's MNIST DDPM vs the author's ``steps``-step ancestral sampler (quick space)."""
    net, den = load_mnist_unet(root)
    fd = EvalFD("mnist")
    metric = Relative(lambda x, labels: fd._fd(minmax(x)), "FD (mnist-eval features, held-out MNIST test set; "
                      "samples min-max scaled as the author displays them)")
    author = External(lambda n, seed: ddpm_ancestral(net, n, seed, steps=steps),
                      f"author: DDPM ancestral {steps} (Ho et al. 2020, sigma_t^2 = beta_t)")
    return den, plan(den, budget, reference=author, metric=metric, quick=True, settings=settings, shape=(1, 28, 28),
                     model="pulfer-ddpm-mnist", log=log, progress=False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m effdiff.bench.plan_external")
    ap.add_argument("--out", required=True, help="the plan file (.json)")
    ap.add_argument("--budget", default="10%")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    _, p = plan_pulfer(a.budget, log=lambda m: print(m, flush=True))
    p.save(a.out)
    print(p.summary())
    print(json.dumps({"wall_s": round(time.time() - t0), "rejected": p.rejected[:50]}, indent=1))


if __name__ == "__main__":
    main()
