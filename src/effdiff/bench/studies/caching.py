"""Caching studies: the learned rows of the caching suite (Learning-to-Cache routers, DeeDiff exit heads)
re-run alone, with their baselines, after their training trajectories moved to the learned-routers seed
range (issue 24; docs/caching.md)."""
from __future__ import annotations

import argparse

import torch

from . import register

LEARNED = ("l2c", "deediff")


@register("caching-learned")
def caching_learned(argv=None) -> None:
    """The caching suite's L2C and DeeDiff rows of one model and the uncached baselines they compare with
    (same protocol: n=360, noise seeds 0-2, 20 and 50 steps, DDIM and DPM-Solver++(2M))."""
    from ..caching import suite_configs
    from ..runner import run, table
    p = argparse.ArgumentParser(prog="caching-learned", description=caching_learned.__doc__)
    p.add_argument("--model", default="digits-dit")
    p.add_argument("--n", type=int, default=360)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench-out/caching-learned")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    configs = [c for c in suite_configs(a.model, False)
               if c.baseline is None or any(k in c.config for k in LEARNED)]
    print("rows:", [c.config for c in configs], flush=True)
    res = run(configs=configs, suite_name="caching", out=a.out, n_samples=a.n, threads=a.threads, grids=False)
    print(table(res))
