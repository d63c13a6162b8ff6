"""How many fresh seeds a +5% certificate needs on the digits models: the planner's own rule (t-interval
upper end <= budget, replication probability >= 0.9, one extension to 1.5x the seeds) simulated on the
per-seed FD changes that registered run plan-suite-bf16-3 measured on its certification seeds 424-459.

Each candidate's measured values stand in for its truth: a simulated certification draws k seeds from
them with replacement (a bootstrap), and, where the rule extends, 0.5k more. Besides the measured mean
("as measured") the truth is shifted up by one standard error of that mean ("one SE worse"), since the
measured mean is itself an estimate. ``predictive_no_extension``: the closed form the planner's advice
uses (``metrics.stats.certification_power``), which integrates over that uncertainty. The answer sizes the fresh seeds of the next registered run
(docs/bench/prereg/); nothing here is a quality claim.

    python docs/bench/plan/power/power.py      # -> docs/bench/plan/power/power.json (about 20 s)
"""
import json
import math
from pathlib import Path

import numpy as np

from effdiff.metrics.stats import certification_power, mean_sd, replication, t_interval

HERE = Path(__file__).parent
SUITE = HERE.parent / "suite-bf16-3" / "plans"
BUDGET, REPLICATE, SIMS = 0.05, 0.9, 4000
KS = (24, 36, 48, 60, 72, 96)


def candidates() -> dict:
    """Spec label -> the per-seed FD changes it was certified on (each systems switch that changed samples)."""
    out = {}
    for model in ("digits-unet", "digits-dit"):
        p = json.loads((SUITE / f"{model}-5pct-solo.json").read_text())
        kept = []
        for d in p["systems"]:
            if "certified" in d:
                out[f"{model}: winner + {' + '.join(kept + [d['switch']])}"] = d["certified"]["values"]
            if d.get("kept"):
                kept.append(d["switch"])
    return out


def certifies(v: list[float], extra) -> bool:
    """The planner's rule (search.Search.certify / certified) on values v, extension values from extra()."""
    def ok(x):
        return t_interval(x)[1] <= BUDGET, replication(x, BUDGET)
    holds, rep = ok(v)
    if holds and rep < REPLICATE:
        v = v + extra()
        holds, rep = ok(v)
    return bool(holds and rep >= REPLICATE)


def main():
    rng = np.random.default_rng(0)
    res = {"source": str(SUITE.relative_to(HERE.parents[3])), "budget": BUDGET, "replicate": REPLICATE,
           "simulations": SIMS, "extension": "1.5x", "candidates": {}}
    for name, vals in candidates().items():
        m, sd = mean_sd(vals)
        row = {"measured": {"seeds": len(vals), "mean": m, "sd": sd}, "p_certified": {}}
        for shift_name, shift in (("as measured", 0.0), ("one SE worse", sd / math.sqrt(len(vals)))):
            base = np.asarray(vals) + shift
            row["p_certified"][shift_name] = {}
            for k in KS:
                hits = sum(certifies(list(rng.choice(base, k)), lambda: list(rng.choice(base, k // 2)))
                           for _ in range(SIMS))
                row["p_certified"][shift_name][str(k)] = hits / SIMS
        # the closed form the planner's advice uses (metrics.stats.certification_power): the true mean drawn from
        # its flat-prior posterior instead of fixed at the measured one, no replication extension
        row["predictive_no_extension"] = {str(k): certification_power(vals, BUDGET, k, REPLICATE) for k in KS}
        res["candidates"][name] = row
        print(name, json.dumps(row))
    (HERE / "power.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
