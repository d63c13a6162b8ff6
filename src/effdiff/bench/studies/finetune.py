"""Fine-tuning studies: the finetune suite's rows for one backbone, the MNIST fine-tunes' evaluation,
LoRA at more steps against full fine-tuning, and a teacher's LoRA on its distilled students
(docs/finetuning.md)."""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from . import register


def _real_thick(ev, n: int, seeds, dataset: str = "digits") -> list[float]:
    """FD of n class-balanced real thick training images against the held-out thick split, per seed."""
    from ...finetune import domain
    from ...metrics.evaluation import balanced_sample
    x, y = domain("thick", "train", dataset)
    out = []
    for s in seeds:
        idx = balanced_sample(y, torch.full((10,), n // 10), torch.Generator().manual_seed(s))
        out.append(ev.quality(x[idx], y[idx])["fd"])
    return out


@register("finetune-eval")
def finetune_eval(argv=None) -> None:
    """The finetune suite's protocol (DDIM 20, n=360, noise seeds 0-2) on chosen rows of one backbone, plus
    real thick training images vs the held-out thick split at the same n."""
    from .. import finetune as fb
    from ..config import SUITES
    from ..runner import run, table
    from ..scoring import mean_sd
    p = argparse.ArgumentParser(prog="finetune-eval", description=finetune_eval.__doc__)
    p.add_argument("--model", default="digits-dit")
    p.add_argument("--rows", default="base,lora,lora-merged,controlnet")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--n", type=int, default=360)
    p.add_argument("--out", default="bench-out/finetune-dit")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("EFFDIFF_FINETUNE_RUNS", "runs/finetune")
    fb.TRAIN_SEEDS[False] = tuple(a.train_seeds)
    rows = a.rows.split(",")
    configs = [c for c in SUITES["finetune"](a.model, False) if c.config in rows]
    print("rows:", [c.config for c in configs], flush=True)
    t = time.time()
    res = run(configs=configs, suite_name="finetune", out=a.out, n_samples=a.n, threads=1, grids=True)
    print(table(res))
    print(res.get("report", ""))
    real = _real_thick(fb.evaluations()["thick"], a.n, (0, 1, 2))
    print(f"real thick train vs held-out thick, n={a.n}, seeds 0-2:", real, mean_sd(real))
    (Path(a.out) / "real_thick.json").write_text(json.dumps({"real_thick_fd": real}))
    print("wall", round(time.time() - t))


MNIST_CONTROL = {"mnist-unet": "mnist-unet-controlnet-xs-edges", "mnist-ldm-dit": "mnist-ldm-dit-controlnet-edges"}


def _adapter_files(m: str, root: Path, shipped: bool) -> dict:
    """The LoRA and control files scored: the zoo's shipped adapters, or the study's own runs."""
    if shipped:
        from ... import assets
        return {"lora": assets.path(f"{m}-lora-thick"), "control": assets.path(MNIST_CONTROL[m])}
    return {"lora": root / f"runs/{m}-lora-thick-s0/model", "control": root / f"runs/{MNIST_CONTROL[m]}-s0/model"}


def _zoo_hashes(names) -> dict:
    """name -> the SHA-256 of its shipped tensors (what ``zoo.load`` verifies)."""
    from ...bench.card_results import card
    return {n: card(n)["sha256"]["tensors"] for n in names}


@register("finetune-eval-mnist")
def finetune_eval_mnist(argv=None) -> None:
    """MNIST fine-tunes (DPM-Solver++(2M), logSNR 20 steps, n=360, noise seeds 0-2): LoRA FD vs held-out thick
    MNIST, control edge IoU / MSE and FD; the presets trained first into OUT/runs/NAME-s0."""
    from ... import timesteps, zoo
    from ...finetune import adherence, condition, controlled_denoiser, domain, load, merge
    from ...latent import images
    from ...metrics import Evaluation
    from ...sampling import initial, sample
    from ..scoring import mean_sd, t_interval
    p = argparse.ArgumentParser(prog="finetune-eval-mnist", description=finetune_eval_mnist.__doc__)
    p.add_argument("model", choices=sorted(MNIST_CONTROL))
    p.add_argument("--out", default=os.environ.get("EFFDIFF_FINETUNE_OUT", "bench-out/finetune-mnist"))
    p.add_argument("--n", type=int, default=360)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--zoo", action="store_true", help="score the shipped zoo adapters (the cards' weights) instead "
                   "of OUT/runs; the results file records their SHA-256")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    m, root, n, seeds = a.model, Path(a.out), a.n, (0, 1, 2)
    root.mkdir(parents=True, exist_ok=True)
    labels = torch.arange(n) % 10
    xt, yt = domain("identity", "test", "mnist")
    by_class = [(yt == c).nonzero().flatten() for c in range(10)]
    hint = condition("edges", xt[torch.stack([by_class[c][(i // 10) % len(by_class[c])]
                                              for i, c in enumerate(labels.tolist())])])
    base = zoo.load(m)
    sig = timesteps.get("logsnr", a.steps, base.process)

    def gen(den, seed):
        with torch.no_grad():
            return images(den, sample(den, initial(base, n, sig, seed=seed), sig, "dpmpp-2m", cond=labels)).clamp(-1, 1)

    ev_thick = Evaluation("mnist", net=zoo.load("mnist-eval"), reference=domain("thick", "test", "mnist"),
                          train=domain("thick", "train", "mnist"))
    ev = Evaluation("mnist")
    out = {"model": m, "protocol": f"dpmpp-2m logsnr {a.steps} steps, n={n}, labels i%10, noise seeds {list(seeds)}"}
    t0 = time.time()
    files = _adapter_files(m, root, a.zoo)
    lora = load(zoo.load(m), files["lora"])
    D = controlled_denoiser(base, load(base, files["control"]), hint)
    if a.zoo:
        out["weights_sha256"] = _zoo_hashes([m, f"{m}-lora-thick", MNIST_CONTROL[m]])
    rows: dict[str, dict] = {k: {} for k in ("base", "lora", "lora_merged", "control")}

    def put(row, key, value):
        rows[row].setdefault(key, []).append(value)

    for s in seeds:
        xb = gen(base, s)
        put("base", "fd_thick", ev_thick.quality(xb, labels)["fd"])
        put("base", "fd", ev.quality(xb, labels)["fd"])
        adh = adherence("edges", xb, hint)
        put("base", "edge_iou", adh["iou"])
        put("base", "edge_mse", adh["mse"])
        xl = gen(lora, s)
        put("lora", "fd_thick", ev_thick.quality(xl, labels)["fd"])
        with merge(lora):
            xm = gen(lora, s)
        put("lora_merged", "max_abs_diff_vs_unmerged", float((xm - xl).abs().max()))
        xc = gen(D, s)
        adh = adherence("edges", xc, hint)
        put("control", "edge_iou", adh["iou"])
        put("control", "edge_mse", adh["mse"])
        put("control", "fd", ev.quality(xc, labels)["fd"])
        print("seed", s, {k: {q: v[-1] for q, v in r.items()} for k, r in rows.items()}, round(time.time() - t0), "s",
              flush=True)
        if s == 0:
            from safetensors.torch import save_file
            save_file({"base": xb[:40].contiguous(), "lora": xl[:40].contiguous(), "control": xc[:40].contiguous(),
                       "hint": hint[:40].contiguous()}, str(root / f"eval-{m}-grid.safetensors"))
    rows["real_thick"] = {"fd_thick": _real_thick(ev_thick, n, seeds, "mnist")}
    out["rows"] = {k: {q: {"mean": mean_sd(v)[0], "sd": mean_sd(v)[1], "ci95": t_interval(v), "per_seed": v}
                       for q, v in r.items()} for k, r in rows.items()}
    out["wall_s_shared_core"] = round(time.time() - t0)
    (root / f"eval-{m}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out["rows"], indent=1))


@register("lora-long")
def lora_long(argv=None) -> None:
    """LoRA r=4 at 1200 steps (preset digits-unet-lora-thick-long) vs full fine-tuning, 3 training seeds,
    the finetune suite's protocol; paired differences to full fine-tuning."""
    from .. import finetune as fb
    from ..config import SUITES, BenchConfig
    from ..runner import run
    from ..scoring import mean_sd, t_interval
    p = argparse.ArgumentParser(prog="lora-long", description=lora_long.__doc__)
    p.add_argument("--model", default="digits-unet")
    p.add_argument("--out", default="bench-out/finetune-lora-long")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("EFFDIFF_FINETUNE_RUNS", "runs/finetune")
    fb.STEP_COSTS = False
    configs = [c for c in SUITES["finetune"](a.model, False) if c.config in ("base", "full", "lora")]
    row = fb.Row(a.model, "lora-long", f"{a.model}-lora-thick-long", False)
    fb.ROWS[(a.model, "lora-long")] = row
    configs.append(BenchConfig(a.model, "lora-long", fb.SOLVER, "uniform", fb.STEPS, baseline="base",
                               setup=row.setup, generate=row.generate))
    t = time.time()
    res = run(configs=configs, suite_name="finetune", out=a.out, n_samples=360, threads=1, grids=False)
    r = {x["config"]: x for x in res["rows"]}
    for k in ("base", "full", "lora", "lora-long"):
        print(k, r[k]["fd_target_per_seed"], r[k]["fd_target"], r[k]["fd_target_ci"], r[k].get("train_wall_s"),
              r[k].get("train_steps"))
    for k in ("lora", "lora-long"):
        d = [x - y for x, y in zip(r[k]["fd_target_per_seed"], r["full"]["fd_target_per_seed"])]
        print(k, "- full paired", mean_sd(d), t_interval(d))
    print("wall", round(time.time() - t))


@register("lora-on-student")
def lora_on_student(argv=None) -> None:
    """A teacher's LoRA on its distilled students (LCM-LoRA-style): thick-stroke FD with and without the
    shipped LoRA, and the teacher with it at DDIM 4 / 20 steps; 360 samples, seeds 0-2."""
    from ... import assets, timesteps, zoo
    from ... import finetune as ft
    from ...sampling import initial, sample
    from .. import finetune as fb
    p = argparse.ArgumentParser(prog="lora-on-student", description=lora_on_student.__doc__)
    p.add_argument("--teacher", default="digits-unet")
    p.add_argument("--students", nargs="+", default=["digits-unet-pd-4step", "digits-unet-pd-1step"])
    p.add_argument("--lora", default="digits-unet-lora-thick", help="a zoo LoRA file of the teacher")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    ev = fb.evaluations()["thick"]
    lora = assets.WEIGHTS / a.lora
    labels = torch.arange(360) % 10
    for name in a.students:
        for use in (False, True):
            st = zoo.load(name)
            if use:
                ft.load_lora(st.denoiser, lora, check_base=False)
            fds = []
            for seed in (0, 1, 2):
                with torch.no_grad():
                    fds.append(ev.quality(st.generate(360, cond=labels, seed=seed), labels)["fd"])
            print(name, "lora" if use else "plain", [round(f, 2) for f in fds], flush=True)
    for steps in (4, 20):                        # the teacher with the LoRA, for comparison
        den = zoo.load(a.teacher)
        ft.load_lora(den, lora)
        sig = timesteps.get("uniform", steps, den.process)
        fds = [ev.quality(sample(den, initial(den, 360, sig, seed=s, cond=labels), sig, "ddim", cond=labels),
                          labels)["fd"] for s in (0, 1, 2)]
        print("teacher+lora ddim", steps, [round(f, 2) for f in fds], flush=True)
