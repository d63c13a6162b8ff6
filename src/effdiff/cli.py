"""The command line: ``effdiff train | sample | bench | zoo``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _train(a):
    from .training import preset, train
    overrides = {k: v for k, v in (("steps", a.steps), ("seed", a.seed), ("batch_size", a.batch_size)) if v is not None}
    cfg = preset(a.preset, **overrides)
    out = Path(a.out or f"runs/{a.preset}")
    path = train(cfg, out, resume=a.resume, progress=not a.quiet)
    meta = json.loads(path.with_suffix(".json").read_text())
    print(f"wrote {path}.safetensors ({meta['card']['steps']} steps, {meta['card']['wall_time_s']} s)")
    if meta["card"]["metrics"]:
        print("metrics:", json.dumps(meta["card"]["metrics"]))


def _sample(a):
    import torch
    import effdiff as ed
    from .viz import save_grid
    den = ed.zoo.load(a.model)
    n = a.n
    if a.classes:
        labels = torch.tensor([int(c) for c in a.classes.split(",")])
        labels = labels.repeat((n + len(labels) - 1) // len(labels))[:n]
    else:
        labels = torch.arange(n) % max(den.cond_classes, 1)
    cond = labels if den.cond_classes else None
    sig = ed.timesteps.full(den.process) if a.schedule == "full" else ed.timesteps.get(a.schedule, a.steps, den.process)
    size = den.meta["model"]["image_size"]
    x = ed.sampling.randn((n, den.meta["model"].get("in_channels", 1), size, size), seed=a.seed) * sig[0].float()
    res = ed.sample(ed.guided(den, a.guidance), x, sig, solver=a.solver, cond=cond, seed=a.seed,
                    return_info=True, progress=not a.quiet)
    path = save_grid(res.x, a.out, nrow=10)
    print(f"wrote {path}: {n} samples, {a.model}, {a.solver} on {a.schedule}, {res.nfe} NFE, guidance {a.guidance}")


def _bench(a):
    from .bench import run
    from .bench.runner import table
    models = a.models.split(",") if a.models else None
    res = run(models=models, suite_name=a.suite, quick=a.quick, out=a.out, n_samples=a.n, seed=a.seed,
              guidance=a.guidance, repeats=a.repeats, threads=a.threads)
    print()
    print(table(res))
    if a.out:
        print(f"\nwrote {a.out}/results.json, {a.out}/pareto.png and sample grids in {a.out}/grids/")


def _zoo(a):
    from . import zoo
    for name in zoo.names():
        c = zoo.card(name)
        card = c["card"]
        print(f"{name:20s} {c['arch']:10s} {c.get('prediction') or c['task']:10s} steps={card['steps']} "
              f"metrics={json.dumps(card['metrics'])}")


def _solvers(a):
    import inspect
    from . import solvers
    for name in solvers.names():
        fn = solvers.get(name)
        doc = (inspect.getdoc(getattr(fn, "base", fn)) or "").split("\n\n")[0].replace("\n", " ")
        print(f"{name:16s} {doc}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="effdiff", description="Efficient diffusion models, measured.")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a preset (digits-unet, digits-dit, digits-classifier, toy2d)")
    t.add_argument("--preset", required=True)
    t.add_argument("--out", help="run directory (default runs/PRESET)")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    t.add_argument("--steps", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(fn=_train)

    s = sub.add_parser("sample", help="sample a zoo model into a PNG grid")
    s.add_argument("--model", default="digits-unet")
    s.add_argument("--solver", default="dpmpp-2m")
    s.add_argument("--schedule", default="logsnr", help="karras, exponential, logsnr, uniform, quadratic or full")
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--guidance", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--classes", help="comma-separated class labels, cycled (default 0..9)")
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--out", default="samples.png")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=_sample)

    b = sub.add_parser("bench", help="benchmark sampling configurations on the zoo models")
    b.add_argument("--suite", default="default")
    b.add_argument("--models", help="comma-separated zoo models (default digits-unet,digits-dit)")
    b.add_argument("--quick", action="store_true", help="a smoke run in under a minute")
    b.add_argument("--out", help="write results.json, pareto.png and sample grids here")
    b.add_argument("--n", type=int, help="samples per configuration (default 360, quick 100)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--guidance", type=float, default=1.0)
    b.add_argument("--repeats", type=int, help="timed repeats per configuration (default 3, quick 1)")
    b.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    b.set_defaults(fn=_bench)

    sv = sub.add_parser("solvers", help="list the registered solvers")
    sv.set_defaults(fn=_solvers)

    z = sub.add_parser("zoo", help="list the shipped models")
    z.set_defaults(fn=_zoo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"effdiff {args.cmd}: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
