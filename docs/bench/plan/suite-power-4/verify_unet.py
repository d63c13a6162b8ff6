"""Follow-up to registered run plan-suite-power-4 (pre-registered in
docs/bench/prereg/plan-verify-unet-power-4.json before it ran): digits-unet's +5% plan, and the best single
configuration it was timed against (the same 4-step solver on the same fitted schedule, fp32, eager), each
re-measured against the plan's reference on the 48 unseen seeds 3248-3295 of plan-verification-2 (n = 200),
paired by seed (one sampler: the reference batch of a seed is shared). Also: the same on all 72 verification
seeds 3224-3295 (the first 24 re-computed here: they gave the run's verification), and the per-seed
difference plan - best single (what bf16 autocast + compile add).

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/plan/suite-power-4/verify_unet.py
      -> docs/bench/plan/suite-power-4/verify-unet-followup.json (about 12 minutes on one core)
"""
import json
import subprocess
from pathlib import Path

import effdiff as ed
from effdiff.metrics.stats import mean_sd, t_interval
from effdiff.plan.file import Plan, _measure_from
from effdiff.plan.runs import Sampler, measure_on
from effdiff.plan.spec import Spec

HERE = Path(__file__).parent
PLAN = HERE / "plans" / "digits-unet-5pct-solo.json"
NEW = list(range(3248, 3296))          # the decision's seeds
EARLIER = list(range(3224, 3248))      # the run's own verification (effdiff plan verify ... --offset 24 --seeds 24)


def pct(v):
    m, lo_hi = float(mean_sd(v)[0]), [float(x) for x in t_interval(v)]
    return {"mean": m, "ci": lo_hi, "text": f"{100 * m:+.1f}% [{100 * lo_hi[0]:+.1f}, {100 * lo_hi[1]:+.1f}]"}


def main():
    p = Plan.load(PLAN)
    den = ed.zoo.load("digits-unet")
    p.check_weights(den)
    single = next(Spec.from_dict(c["spec"]) for c in p.candidates if c["label"] == p.search["best_single"])
    measure = _measure_from(p, den, None)
    n = p.settings.get("n_fresh") or p.settings["n"]
    sm = Sampler(den, None, p.settings.get("shape"))
    out = {"plan_file": str(PLAN), "plan": p.spec.label(), "best_single": single.label(), "reference": p.reference.label(),
           "budget": p.budget, "n": n, "measure": measure.name,
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "dirty": bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                        text=True).stdout.strip())}
    vals = {}
    for name, spec in (("plan", p.spec), ("best_single", single)):
        q = measure_on(den, spec, p.reference, measure, EARLIER + NEW, n, sampler=sm)
        vals[name] = dict(zip(q.seeds, q.values))
        print(name, "done", flush=True)
    for key, seeds in (("new_3248_3295", NEW), ("all_3224_3295", EARLIER + NEW), ("earlier_3224_3247", EARLIER)):
        row = {}
        for name in ("plan", "best_single"):
            v = [vals[name][s] for s in seeds]
            row[name] = {**pct(v), "values": [float(x) for x in v], "holds": bool(t_interval(v)[1] <= p.budget)}
        row["plan_minus_best_single"] = pct([vals["plan"][s] - vals["best_single"][s] for s in seeds])
        row["seeds"] = [seeds[0], seeds[-1]]
        out[key] = row
        print(key, {k: row[k]["text"] for k in ("plan", "best_single", "plan_minus_best_single")}, flush=True)
    (HERE / "verify-unet-followup.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
