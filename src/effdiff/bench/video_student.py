"""The few-step video student's bench row: a distilled student of ``video-adapter`` (``effdiff.video.student``)
at 4 (and 2, 1) of its own steps against the teacher's 12-step reference and the plain 4-step solver.

    python -m effdiff.bench.video_student --student RUN/model --out docs/bench/video/student

Same protocol as ``docs/bench/video/fewstep.py``: the video bench's quality code (``bench.video``:
the clips' initial noise ``vm.noise(n, 16, seed)``, labels 0..9 cycling, the shipped evaluator),
n clips per seed, seeds 0-2. The teacher's rows are read from their results files —
``adapter.json`` (dpmpp-2m, 12 steps, karras(0.002, 80)) and ``fewstep.json`` (the same at 4 steps) —
after checking they were scored on the teacher's tensors (SHA-256); the student starts from the same
noise, so every comparison is paired by seed: the difference and the ratio student / reference per
seed with a 95% t-interval. The target (issue 27): 4 steps within 1.2x of the teacher's reference
frame FD and clip FD, read at the upper end of the ratio's interval.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..checkpoint import tensors_sha256
from ..io import atomic_write
from ..metrics.stats import mean_sd, pm, t_interval
from . import video as B
from .provenance import provenance

DOCS = Path(__file__).resolve().parents[3] / "docs/bench/video"
REFERENCES = {"teacher 12 steps": "adapter.json", "plain dpmpp-2m 4 steps": "fewstep.json"}
UNTRAINED = "student/init/student.json"      # ``--student init:<method>``: the teacher on the student's grid
TARGET = 1.2
COLS = (("frame_fd", 1), ("clip_fd", 0), ("identity", 2), ("label_acc", 2), ("speed", 2))


def references(teacher_sha: str, docs: Path = DOCS) -> dict:
    """The teacher's rows, refused if they were scored on other tensors."""
    out = {}
    for name, file in REFERENCES.items():
        res = json.loads((docs / file).read_text())
        if res["model_sha256"] != teacher_sha:
            raise ValueError(f"{file} was scored on tensors {res['model_sha256'][:12]}, not the teacher's {teacher_sha[:12]}")
        out[name] = {"file": f"docs/bench/video/{file}", "steps": res.get("steps", 12), "n": res["n"],
                     "seeds": res["seeds"], "per_seed": res["quality"]["per_seed"]}
    return out


def live_references(teacher: str, n: int, seeds) -> dict:
    """The teacher's rows computed now (for seeds the results files do not hold): the same protocol as
    ``adapter.json`` (12 dpmpp-2m steps) and ``fewstep.json`` (4), full sequence, guidance 1."""
    from .. import zoo
    from ..video.evaluator import VideoEvaluator
    vm, ev = zoo.load(teacher), VideoEvaluator.shipped()
    return {name: {"file": f"computed in this run ({steps} dpmpp-2m steps)", "steps": steps, "n": n,
                   "seeds": list(seeds), "per_seed": B.quality(vm, ev, 16, "full", n, tuple(seeds), steps, "dpmpp-2m")}
            for name, steps in (("teacher 12 steps", 12), ("plain dpmpp-2m 4 steps", 4))}


def untrained(teacher_sha: str, spec: dict, docs: Path = DOCS) -> dict:
    """The untrained student's 4-step row (``UNTRAINED``: the teacher on the student's grid with the student's
    solver), when it was scored on the teacher's tensors with this spec; else nothing."""
    p = docs / UNTRAINED
    if not p.is_file():
        return {}
    res = json.loads(p.read_text())
    same = {k: res["spec"][k] for k in ("solver", "steps", "boundary")} == {k: spec[k] for k in ("solver", "steps", "boundary")}
    if res["student_sha256"] != teacher_sha or not same or "4" not in res["rows"]:
        return {}
    return {"untrained student 4 steps": {"file": f"docs/bench/video/{UNTRAINED}", "steps": 4, "n": res["n"],
                                          "seeds": res["seeds"], "per_seed": res["rows"]["4"]["per_seed"]}}


def ratio(a: list[dict], b: list[dict], key: str) -> dict:
    """b / a per seed (paired), its mean and 95% t-interval."""
    r = [y[key] / x[key] for x, y in zip(a, b)]
    return {"mean": mean_sd(r)[0], "ci95": t_interval(r), "per_seed": r}


def quality(st, ev, n: int, seeds, steps: int, frames: int = 16) -> list[dict]:
    """Per-seed evaluator scores of ``n`` student clips from the bench's noise and labels."""
    out = []
    for s in seeds:
        z = st.sample(st.noise(n, frames, s), B.labels_for(n), steps, seed=s)
        out.append(ev.score(st.decode(z), B.labels_for(n)))
    return out


def compare(q: list[dict], refs: dict) -> dict:
    """Paired differences (every score) and ratios (frame FD, clip FD) against each reference row."""
    out = {}
    for name, ref in refs.items():
        out[name] = {"diff": {k: B.paired(ref["per_seed"], q, k) for k in B.KEYS},
                     "ratio": {k: ratio(ref["per_seed"], q, k) for k in ("frame_fd", "clip_fd")}}
    return out


def run(student: str, out=None, n: int = 100, seeds=(0, 1, 2), steps=(4, 2, 1), teacher: str = "video-adapter",
        extra: dict | None = None) -> dict:
    from .. import zoo
    from ..video import student as VS
    from ..video.evaluator import VideoEvaluator
    torch.set_num_threads(1)
    st, ev = VS.load(student), VideoEvaluator.shipped()
    sha = zoo.card(teacher)["sha256"]["tensors"]
    refs = references(sha)
    student_sha = tensors_sha256(VS.S.student_tensors(st.den))
    if any(list(r["seeds"]) != list(seeds) or r["n"] != n for r in refs.values()):
        refs = live_references(teacher, n, seeds)    # other seeds than the files': the teacher's rows sampled now
    elif student_sha != sha:                     # a trained student: also paired with its own starting point
        refs.update(untrained(sha, st.meta["student"]))
    if any(r["n"] != n or list(r["seeds"]) != list(seeds) for r in refs.values()):
        raise ValueError(f"the reference rows are n={n}, seeds {list(seeds)} only")
    res = {"student": str(student), "student_sha256": student_sha,
           "teacher": teacher, "teacher_sha256": zoo.card(teacher)["sha256"]["tensors"], "card": st.card(),
           "spec": st.meta["student"], "n": n, "seeds": list(seeds), "frames": 16, "guidance": 1.0, "mode": "full",
           "target": TARGET, "provenance": provenance(), **(extra or {}), "references": {k: {x: v[x] for x in ("file", "steps")} for k, v in refs.items()},
           "command": f"python -m effdiff.bench.video_student --student {student} --n {n} --seeds "
                      f"{' '.join(map(str, seeds))} --steps {' '.join(map(str, steps))} --out DIR", "rows": {}}
    for k in steps:
        q = quality(st, ev, n, seeds, k)
        res["rows"][str(k)] = {"steps": k, "nfe_per_clip": k, "summary": B.summary(q), "per_seed": q, "vs": compare(q, refs)}
    four = res["rows"].get("4")
    if four is not None:
        r = four["vs"]["teacher 12 steps"]["ratio"]
        res["target_met"] = {k: bool(r[k]["ci95"][1] <= TARGET) for k in ("frame_fd", "clip_fd")}
    res["reference_rows"] = {k: {"summary": B.summary(v["per_seed"]), "per_seed": v["per_seed"]} for k, v in refs.items()}
    res["table"] = table(res)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "student.json", json.dumps(res, indent=1, default=str))
        atomic_write(out / "student.md", res["table"] + "\n")
    return res


def table(res: dict) -> str:
    """``<!-- table: docs/bench/video/student/student.json kind=video_student -->``: quality rows (mean ± sd over seeds), then each student row's paired differences and ratios."""
    L = [f"| row (scale 1, full sequence, n={res['n']}, seeds {res['seeds']}) | NFE/clip | "
         "frame FD | clip FD | identity | label acc | speed px/f |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(name, res["references"][name]["steps"], v["summary"]) for name, v in res["reference_rows"].items()]
    rows += [(f"student, {k} step{'s' * (int(k) > 1)}", v["nfe_per_clip"], v["summary"]) for k, v in res["rows"].items()]
    for name, nfe, s in rows:
        L.append(f"| {name} | {nfe} | " + " | ".join(pm(s[k], s[f'{k}_sd']) for k, _ in COLS) + " |")
    for k, v in res["rows"].items():
        for ref, c in v["vs"].items():
            L.append(f"| student {k} − {ref} (paired) | | " + " | ".join(B.ci_cell(c["diff"][x], d) for x, d in COLS) + " |")
    for k, v in res["rows"].items():
        c = v["vs"]["teacher 12 steps"]["ratio"]
        L.append(f"| student {k} / teacher 12 steps (ratio, paired) | | {B.ci_cell(c['frame_fd'], 2, '')} | "
                 f"{B.ci_cell(c['clip_fd'], 2, '')} | | | |")
    return "\n".join(L)


def strip(student: str, path, steps: int = 4, n: int = 8, seed: int = 0) -> Path:
    """A frame strip of ``n`` student clips (labels 0..n-1, the bench's noise of ``seed``), one clip per row."""
    from ..video import student as VS
    from ..video.viz import save_strip
    st = VS.load(student)
    return save_strip(st.decode(st.sample(st.noise(n, 16, seed), B.labels_for(n), steps, seed=seed)), path)


def ship(res: dict, export, name: str, results: str) -> Path:
    """Copy a scored student export into the zoo as ``name`` with its scores (from ``res``, the results file
    ``results``) on the card, and a card page; the file must be the one scored (SHA-256)."""
    from .. import assets, checkpoint as ckpt
    tensors, meta = ckpt.load(Path(export))
    if tensors_sha256(tensors) != res["student_sha256"]:
        raise ValueError(f"{export} is not the student scored in {results}")
    m = {"metrics_protocol": f"full-sequence clips, the student's own {{k}}-step grid and solver, guidance 1.0, "
                             f"n={res['n']} clips of 16 frames per seed, seeds {res['seeds']}, paired by seed with the "
                             f"teacher's rows; results: {results}", "guidance": 1.0, "nfe_per_clip": 4}
    for k, row in res["rows"].items():
        for key in ("frame_fd", "clip_fd", "identity", "label_acc", "speed"):
            m[f"{key}_{k}step"], m[f"{key}_{k}step_sd"] = row["summary"][key], row["summary"][f"{key}_sd"]
        for key, r in row["vs"]["teacher 12 steps"]["ratio"].items():
            m[f"{key}_ratio_{k}step_vs_teacher12"], m[f"{key}_ratio_{k}step_ci95"] = r["mean"], r["ci95"]
    m["target_met_4step"] = res.get("target_met")
    meta["card"]["metrics"] = m
    meta["card"]["reproduce"] = meta["card"]["command"]
    ckpt.save(assets.WEIGHTS / name, tensors, meta)
    c, s4 = meta["card"], res["rows"]["4"]["summary"]
    r4 = res["rows"]["4"]["vs"]["teacher 12 steps"]["ratio"]
    page = [f"# {name} — a 4-step student of video-adapter ({c['method']} distillation), moving digits", "",
            f"- **Network**: the teacher's (`{res['teacher']}`: `mnist-ldm-dit` with temporal adapters) with every "
            f"parameter fine-tuned by `effdiff.distill`'s `{c['method']}` method; "
            f"sampled with the `{res['spec']['solver']}` solver on its own {res['spec']['steps']}-step grid. "
            f"`effdiff.video.student.load(\"{name}\")` gives the video model (`ed.zoo.load` the bare student denoiser).",
            f"- **Trained**: `{c['command']}` — {c['steps']} steps, batch {c['batch_size']}, seed {c['seed']}, "
            f"teacher NFE {c['teacher_nfe']}, {c['wall_time_s']} s on a shared 2-core CPU at 1 thread (under load).",
            f"- **Quality** ({m['metrics_protocol'].format(k=4)}): 4 steps frame FD {pm(s4['frame_fd'], s4['frame_fd_sd'])}, "
            f"clip FD {pm(s4['clip_fd'], s4['clip_fd_sd'])}; ratio to the teacher's 12 steps (paired, 95% CI): frame FD "
            f"{B.ci_cell(r4['frame_fd'], 2, '')}, clip FD {B.ci_cell(r4['clip_fd'], 2, '')}."]
    base = res["rows"]["4"]["vs"].get("untrained student 4 steps")
    if base:
        page.append(f"- **Against its untrained start** (the teacher on the same grid with the same solver, paired): frame FD "
                    f"{B.ci_cell(base['diff']['frame_fd'], 1)}, clip FD {B.ci_cell(base['diff']['clip_fd'], 0)}.")
    page.append("- See docs/video.md (Few-step student).")
    atomic_write(assets.WEIGHTS / f"{name}.md", "\n".join(page) + "\n")
    return assets.WEIGHTS / name


def step_error(teacher: str = "video-adapter", grid_steps: int = 8, n: int = 8, fine: int = 32, seed: int = 0) -> dict:
    """How well one teacher ODE step (``distill.ode.ode_step``: order 1 DDIM, order 2 Heun in σ) follows the
    teacher's own ODE across each interval of the student grid ``grid(grid_steps)``: RMS distance to ``fine``
    DDIM sub-steps uniform in the flow's t (the reference), from x = x0 + σ ε on ``n`` training clips."""
    from .. import zoo
    from ..distill.ode import ode_step
    from ..distill.student import grid
    from ..video.latents import latent_clips
    vm = zoo.load(teacher)
    proc, den = vm.den.process, vm.den
    x0, y = latent_clips("train", 4000, 20, seed=0)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x0), generator=g)[:n]
    x0, y = x0[idx, :, :16], y[idx]
    eps = torch.randn(x0.shape, generator=g)
    sig, rows = grid(proc, grid_steps), []
    with torch.no_grad():
        for i in range(grid_steps - 1):                        # the last interval ends at σ = 0 (both orders: DDIM)
            s, s2 = sig[i].expand(n), sig[i + 1].expand(n)
            x = x0 + float(sig[i]) * eps
            t = torch.linspace(float(proc.sigma_to_t(sig[i])), float(proc.sigma_to_t(sig[i + 1])), fine + 1, dtype=torch.float64)
            ref, sub = x, proc.t_to_sigma(t)
            for a, b in zip(sub[:-1], sub[1:]):
                ref = ode_step(den, ref, a.expand(n), b.expand(n), y, order=1)
            err = {o: float((ode_step(den, x, s, s2, y, order=o) - ref).pow(2).mean().sqrt()) for o in (1, 2)}
            rows.append({"sigma": float(sig[i]), "sigma_next": float(sig[i + 1]), "rms_ddim": err[1], "rms_heun": err[2],
                         "rms_step": float((ref - x).pow(2).mean().sqrt())})
    return {"teacher": teacher, "grid_steps": grid_steps, "n": n, "fine": fine, "seed": seed, "intervals": rows,
            "command": f"python -m effdiff.bench.video_student --step-error --out DIR"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default=None, help="a student export stem (RUN/model) or a zoo name")
    ap.add_argument("--out", default=None)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 2, 1])
    ap.add_argument("--ship", default=None, help="zoo name: copy the scored student into the zoo (needs --out)")
    ap.add_argument("--strip", default=None, help="also write a frame strip PNG of 8 clips at the first --steps")
    ap.add_argument("--step-error", action="store_true", help="only the teacher-step check (step_error) -> OUT/step-error.json")
    ap.add_argument("--prereg", default=None, help="a committed pre-registration (effdiff-prereg-1, suite "
                    "'video-student'): its model, seeds, n and steps replace the flags; the results record its commit")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    extra = {}
    if a.prereg:
        from .prereg import for_runner
        spec, extra["prereg"] = for_runner(a.prereg, "video-student")
        a.student, a.seeds, a.n, a.steps = spec["models"][0], spec["seeds"], spec["n"], spec["steps"]
    if a.step_error:
        res = step_error()
        for r in res["intervals"]:
            print({k: round(v, 4) for k, v in r.items()})
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
            atomic_write(Path(a.out) / "step-error.json", json.dumps(res, indent=1))
        return
    if a.strip:
        print("wrote", strip(a.student, a.strip, a.steps[0]))
    res = run(a.student, a.out, a.n, tuple(a.seeds), tuple(a.steps), extra=extra)
    print(res["table"])
    print("target met (upper CI <= 1.2x):", res.get("target_met"))
    if a.ship:
        print("shipped", ship(res, a.student, a.ship, f"{a.out}/student.json"))


if __name__ == "__main__":
    main()
