"""``effdiff plan``: search and certify a plan for a zoo model; ``effdiff plan verify FILE``:
re-measure a saved plan on new seeds.

    effdiff plan --model digits-unet --budget 5% --out plan.json [--quick] [--no-students]
    effdiff plan verify plan.json [--model digits-unet] [--seeds 6] [--offset 0] [--range plan-verification] [--n 200]

(also ``python -m effdiff.plan.cli ...``). ``add_parser(sub)`` registers both on the main CLI.
"""
from __future__ import annotations

import argparse
import json
import sys

from .. import seeds as SR

__all__ = ["add_parser", "main"]


def _model(name: str):
    from .. import zoo
    return zoo.load(name)


def _plan(a) -> int:
    from ..io import check_writable
    from ..metrics import pinned_threads
    from .search import Settings, plan
    from .space import Space
    if a.out:
        check_writable(a.out)
    settings = (Settings.quick() if a.quick else Settings()).override(     # a bad setting fails before any work
        n=a.n, n_fresh=a.n_fresh, fresh_seeds=a.fresh_seeds, max_fresh_seeds=a.max_fresh_seeds, cert_offset=a.cert_offset,
        cert_range=a.cert_range, size_fresh=a.size_fresh_seeds)
    den = _model(a.model)
    space = Space(quick=a.quick, students=not a.no_students, max_nfe=a.max_nfe, fit=tuple(a.fit_schedule or ()))
    log = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True) if not m.startswith("  ") or a.verbose
                                else None)
    with pinned_threads(a.threads or 1):
        p = plan(den, a.budget, space=space, settings=settings, quick=a.quick, objective=a.objective, model=a.model,
                 progress=not a.quiet, log=log)
    print(p.summary())
    if a.out:
        p.save(a.out)
        print(f"wrote {a.out}")
    if p.spec is None:
        raise SystemExit(1)
    return 0


def _verify(a) -> int:
    from .file import Plan, verification_seeds, verify
    p = Plan.load(a.file)
    name = a.model or p.model
    if not name:
        raise ValueError(f"{a.file} names no zoo model; pass --model")
    v = verify(p, _model(name), seeds=verification_seeds(p, a.seeds, a.offset, a.range), n=a.n)
    print(v.text())
    if a.json:
        print(json.dumps({"holds": v.holds, "verdict": v.verdict, "quality": v.quality.as_dict(), "budget": v.budget,
                          "expected_to_hold": v.expected}))
    if not v.holds:
        raise SystemExit(1)
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``plan`` (and ``plan verify``) to an argparse sub-parser set."""
    p = sub.add_parser("plan", help="find and certify the fastest composition within a quality budget")
    p.add_argument("--model", help="zoo model to plan for")
    p.add_argument("--budget", default="5%", help="quality budget: upper 95%% CI end of the change, e.g. 5%% or 0.05")
    p.add_argument("--out", help="the plan file to write (.json; calibrated tensors go beside it)")
    p.add_argument("--quick", action="store_true", help="a smaller space, fewer samples and seeds, a 39-NFE "
                   "reference and no systems pass (under 3 minutes on the zoo models here)")
    p.add_argument("--no-students", action="store_true", help="leave distilled students out of the space")
    p.add_argument("--objective", default="time", choices=("time", "nfe", "macs", "bytes", "memory"), help="cost to minimize")
    p.add_argument("--fit-schedule", action="append", choices=("ays", "dp"), help="fit this schedule for the model "
                   "during the search when the zoo ships none (on the reference's own samples; repeatable)")
    p.add_argument("--max-nfe", type=int, help="constraint: at most this many network evaluations")
    p.add_argument("--n", type=int, help="samples per seed in selection (and certification, unless --n-fresh)")
    p.add_argument("--n-fresh", type=int, help="samples per certification seed (default: as --n; a relative change at a larger batch is a stricter measure)")
    p.add_argument("--fresh-seeds", type=int, help="certification seeds (default 12; quick 5): more seeds, a narrower "
                   "interval, a longer search")
    p.add_argument("--max-fresh-seeds", type=int, help="certification seeds after a replication extension (default 18, "
                   "or 1.5x --fresh-seeds)")
    p.add_argument("--size-fresh-seeds", type=int, metavar="MAX",
                   help="size the certification from the selection seeds: as many fresh seeds as would certify any planned "
                   "attempt with probability 0.8, at least --fresh-seeds and at most MAX (default off)")
    p.add_argument("--cert-offset", type=int, help="certify on plan-certification seeds from 400 + this (default 0)")
    p.add_argument("--cert-range", choices=SR.PLAN_CERTIFICATION_RANGES,
                   help="the registered seed range certification draws from (default plan-certification, 400-499; "
                   "plan-certification-2 is 3000-3199, plan-certification-3 3500-3699)")
    p.add_argument("--threads", type=int, help="torch threads (default 1)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--verbose", action="store_true", help="log every screened candidate")
    p.set_defaults(fn=_dispatch)
    ps = p.add_subparsers(dest="plan_cmd")
    v = ps.add_parser("verify", help="re-measure a saved plan on seeds no search used; exit 1 if it no longer holds")
    v.add_argument("file")
    v.add_argument("--model", help="zoo model (default: the one the plan names)")
    v.add_argument("--seeds", type=int, help="how many verification seeds (default: as many as certified the plan)")
    v.add_argument("--offset", type=int, default=0,
                   help="start this many seeds into the verification range (a second verification on other seeds)")
    v.add_argument("--range", default="plan-verification", choices=SR.PLAN_VERIFICATION_RANGES,
                   help="the registered seed range (plan-verification 500-599, plan-verification-2 3200-3399)")
    v.add_argument("--n", type=int, help="samples per seed (default: the plan's certification batch)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=_verify)
    return p


def _dispatch(a) -> int:
    if getattr(a, "plan_cmd", None) == "verify":
        return _verify(a)
    if not a.model:
        raise ValueError("effdiff plan needs --model NAME (or: effdiff plan verify FILE)")
    return _plan(a)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m effdiff.plan.cli")
    add_parser(ap.add_subparsers(dest="cmd", required=True))
    a = ap.parse_args(["plan", *(argv if argv is not None else sys.argv[1:])])
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
