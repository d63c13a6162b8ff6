"""MNIST fine-tune evaluation (the digits cards' protocol on MNIST): DPM-Solver++(2M), logSNR-uniform 20 steps
(the mnist zoo cards' sampler), 360 samples, labels i % 10, noise seeds 0-2 (same noise for base and fine-tuned).
LoRA: FD vs the held-out thick-MNIST split in mnist-eval features. Control: edge IoU / MSE vs the condition
(Sobel edges of held-out MNIST digits: sample i follows the (i // 10)-th test image of its class), the base
sampled with the same noise; FD vs held-out MNIST. Usage: python bench/finetune/eval_mnist.py MODEL  (mnist-unet | mnist-ldm-dit), after training the two
presets into $EFFDIFF_FINETUNE_OUT/runs/NAME-s0, e.g. ``python -c "from effdiff.finetune import preset, finetune;
finetune(preset('mnist-unet-lora-thick', seed=0), 'bench-out/finetune-mnist/runs/mnist-unet-lora-thick-s0')"``."""
import os
import json, sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
import effdiff as ed
from effdiff import zoo
from effdiff.bench.scoring import mean_sd, t_interval
from effdiff.finetune import adherence, condition, controlled_denoiser, domain, load, merge
from effdiff.latent import images
from effdiff.metrics import Evaluation
from effdiff.metrics.evaluation import balanced_sample

M = sys.argv[1]
CTL = {"mnist-unet": "mnist-unet-controlnet-xs-edges", "mnist-ldm-dit": "mnist-ldm-dit-controlnet-edges"}[M]
R = Path(os.environ.get("EFFDIFF_FINETUNE_OUT", "bench-out/finetune-mnist"))   # runs/ and eval-*.json
N, SEEDS, STEPS = 360, (0, 1, 2), 20
labels = torch.arange(N) % 10
xt, yt = domain("identity", "test", "mnist")
by_class = [(yt == c).nonzero().flatten() for c in range(10)]
idx = torch.stack([by_class[c][(i // 10) % len(by_class[c])] for i, c in enumerate(labels.tolist())])
hint = condition("edges", xt[idx])                         # [N, 1, 28, 28] at image size

def gen(den, seed):
    sig = ed.timesteps.get("logsnr", STEPS, den.process)
    shape = (N, *den.latent_shape) if hasattr(den, "latent_shape") else (N, 1, 28, 28)
    x = ed.sampling.randn(shape, seed=seed) * sig[0]
    with torch.no_grad():
        return images(den, ed.sample(den, x, sig, "dpmpp-2m", cond=labels)).clamp(-1, 1)

ev_thick = Evaluation("mnist", net=zoo.load("mnist-eval"), reference=domain("thick", "test", "mnist"),
                      train=domain("thick", "train", "mnist"))
ev = Evaluation("mnist")
out = {"model": M, "protocol": f"dpmpp-2m logsnr {STEPS} steps, n={N}, labels i%10, noise seeds {list(SEEDS)}"}
t0 = time.time()
base = zoo.load(M)
lora = load(zoo.load(M), R / f"runs/{M}-lora-thick-s0/model")
ctl = load(base, R / f"runs/{CTL}-s0/model")
D = controlled_denoiser(base, ctl, hint)
rows = {k: {} for k in ("base", "lora", "lora_merged", "control")}
for s in SEEDS:
    xb = gen(base, s)
    rows["base"].setdefault("fd_thick", []).append(ev_thick.quality(xb, labels)["fd"])
    rows["base"].setdefault("fd", []).append(ev.quality(xb, labels)["fd"])
    a = adherence("edges", xb, hint)
    rows["base"].setdefault("edge_iou", []).append(a["iou"]); rows["base"].setdefault("edge_mse", []).append(a["mse"])
    xl = gen(lora, s)
    rows["lora"].setdefault("fd_thick", []).append(ev_thick.quality(xl, labels)["fd"])
    with merge(lora):
        xm = gen(lora, s)
    rows["lora_merged"].setdefault("max_abs_diff_vs_unmerged", []).append(float((xm - xl).abs().max()))
    xc = gen(D, s)
    a = adherence("edges", xc, hint)
    rows["control"].setdefault("edge_iou", []).append(a["iou"]); rows["control"].setdefault("edge_mse", []).append(a["mse"])
    rows["control"].setdefault("fd", []).append(ev.quality(xc, labels)["fd"])
    print("seed", s, {k: {m: v[-1] for m, v in r.items()} for k, r in rows.items()}, round(time.time() - t0), "s",
          flush=True)
    if s == 0:
        torch.save({"base": xb[:40], "lora": xl[:40], "control": xc[:40], "hint": hint[:40]}, R / f"eval-{M}-grid.pt")
real = []
xtr, ytr = domain("thick", "train", "mnist")
for s in SEEDS:
    i = balanced_sample(ytr, torch.full((10,), N // 10), torch.Generator().manual_seed(s))
    real.append(ev_thick.quality(xtr[i], ytr[i])["fd"])
rows["real_thick"] = {"fd_thick": real}
summary = {k: {m: {"mean": mean_sd(v)[0], "sd": mean_sd(v)[1], "ci95": t_interval(v), "per_seed": v}
               for m, v in r.items()} for k, r in rows.items()}
out["rows"] = summary
out["wall_s_shared_core"] = round(time.time() - t0)
json.dump(out, open(R / f"eval-{M}.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
