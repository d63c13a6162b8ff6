"""Command line under torchrun: ``torchrun --nproc-per-node N -m effdiff.distributed sample`` (the bench's
distributed suite on torchrun's ranks: ``torchrun --nproc-per-node N -m effdiff.bench.distributed``).

Every rank joins the process group from torchrun's environment (gloo on CPU, NCCL on CUDA),
checks that all ranks got the same arguments (``agree``), and runs the same sampling loop with
the chosen parallel method; rank 0 alone writes the outputs. Without torchrun it runs one rank.
``add_parallel_arguments`` / ``parallel_denoiser`` are what ``effdiff sample`` needs to offer
``--parallel`` itself.
"""
from __future__ import annotations

import argparse
import sys

from ..cli import MAX_SAMPLES, MAX_STEPS, _ranged_int, guidance_type, seed_type
from .agree import agree
from .launch import init_from_env, is_writer, world_size
from .methods import METHODS, parallel


def add_parallel_arguments(p: argparse.ArgumentParser) -> None:
    """--parallel METHOD and its options (a sampling command's parser)."""
    p.add_argument("--parallel", default="none", choices=sorted(METHODS),
                   help="split each evaluation over the torchrun ranks (see docs/distributed.md)")
    p.add_argument("--parallel-mode", choices=("sync", "stale"), help="patch/sequence/ring/pipefusion: exact or stale")
    p.add_argument("--warmup", type=_ranged_int(0, MAX_STEPS), help="synchronous steps before stale mode")
    p.add_argument("--patches", type=_ranged_int(1, 1024), help="pipefusion: patches in flight")


FLAGS = {"mode": "--parallel-mode", "warmup": "--warmup", "num_patches": "--patches"}


def _options(a) -> dict:
    """The parallel method's options from their flags (checked: ``--parallel none``/``cfg`` take none)."""
    opts = {}
    if a.parallel_mode is not None:
        opts["mode"] = a.parallel_mode
    if a.warmup is not None:
        opts["warmup"] = a.warmup
    if a.patches is not None:
        if a.parallel != "pipefusion":
            raise ValueError("--patches is a pipefusion option")
        opts["num_patches"] = a.patches
    if opts and a.parallel in ("none", "cfg"):
        raise ValueError(f"--parallel {a.parallel} takes none of {', '.join(FLAGS[k] for k in opts)}")
    return opts


def parallel_denoiser(den, a):
    """Join torchrun's process group (if any), check every rank got the same arguments, and return
    the guided denoiser of ``--parallel`` (``a.guidance`` as the scale)."""
    init_from_env()
    agree({k: v for k, v in vars(a).items() if k != "fn"})
    try:
        return parallel(den, a.parallel, a.guidance, **_options(a))
    except (TypeError, ValueError) as e:         # a method's config refusing an option: name the flag
        raise ValueError(f"--parallel {a.parallel}: {e}") from None


def _sample(a) -> None:
    """Everything checked before any compute (the checks of ``effdiff sample``, ``cli.check_sample``),
    then every rank samples and rank 0 writes the grid (and the tensor)."""
    import effdiff as ed
    from ..cli import check_sample
    from ..viz import save_grid
    _, cond = check_sample(a.model, a.out, a.solver, a.samples, also=[a.save_tensor] if a.save_tensor else [])
    _options(a)
    den = ed.zoo.load(a.model)
    sig = ed.timesteps.get(a.schedule, a.steps, den.process)
    D = parallel_denoiser(den, a)
    x = ed.sampling.initial(den, a.samples, sig, seed=a.seed, cond=cond)
    res = ed.sample(D, x, sig, solver=a.solver, cond=cond, seed=a.seed, return_info=True)
    if is_writer():
        from safetensors.torch import save
        from ..io import atomic_write
        path = save_grid(res.x, a.out, nrow=10)
        if a.save_tensor:
            atomic_write(a.save_tensor, save({"x": res.x.contiguous()}))
        print(f"wrote {path}: {a.samples} samples, {a.model}, {a.parallel} on {world_size()} rank(s), {res.nfe} NFE")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m effdiff.distributed",
                                description="parallel inference on torch.distributed (run under torchrun)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="sample a zoo model with a parallel method; rank 0 writes the grid")
    s.add_argument("--model", default="digits-unet")
    s.add_argument("--solver", default="ddim")
    s.add_argument("--schedule", default="uniform")
    s.add_argument("--steps", type=_ranged_int(1, MAX_STEPS), default=10)
    s.add_argument("--guidance", type=guidance_type, default=1.0)
    s.add_argument("--seed", type=seed_type, default=0)
    s.add_argument("--samples", type=_ranged_int(1, MAX_SAMPLES), default=20,
                   help="number of samples (torchrun takes --n for itself)")
    s.add_argument("--out", default="samples.png")
    s.add_argument("--save-tensor", help="also write the samples as a safetensors file (rank 0)")
    add_parallel_arguments(s)
    s.set_defaults(fn=_sample)
    return p


def main(argv=None) -> int:
    """Exit 0, or 2 with one ``effdiff.distributed CMD: error: ...`` line for every error effdiff raises
    on purpose (``cli.user_error``); anything else is a bug and keeps its traceback."""
    from ..cli import user_error
    try:
        a = build_parser().parse_args(argv)
    except SystemExit as e:                   # argparse printed usage and its error line (or --help)
        return e.code if isinstance(e.code, int) else 2
    try:
        a.fn(a)
    except Exception as e:
        msg = user_error(e)
        if msg is None:
            raise
        print(f"effdiff.distributed {a.cmd}: error: {msg}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
