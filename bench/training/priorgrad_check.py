"""End-to-end check of PriorGrad: train digits-unet (short) with and without prior="priorgrad" on
the same seed, export, load the export, sample 500 per seed (dpmpp-2m, 20 Karras steps), score."""
import os
os.makedirs("bench-out", exist_ok=True)   # run from the repository root; outputs go to bench-out/
import json, sys, time, torch
torch.set_num_threads(1)
import effdiff as ed
from effdiff import checkpoint
from effdiff.training import preset, Trainer, priorgrad
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 600
out = {}
for name, o in (("baseline", {}), ("priorgrad", {"prior": "priorgrad"})):
    d = f"bench-out/pg-{name}-{STEPS}"
    cfg = preset("digits-unet", steps=STEPS, batch_size=64, ckpt_every=100, **o)
    tr = Trainer(cfg, d, progress=False)
    import os
    tr.run(resume=os.path.exists(d + "/checkpoint.json"))
    stem = tr.export()
    t, meta = checkpoint.load(stem)
    den = priorgrad.from_meta(t, meta) if "prior" in meta else ed.zoo.from_checkpoint(stem)
    sig = ed.timesteps.karras(20, sigma_min=0.002, sigma_max=80.0)
    res = []
    for seed in (0, 1, 2):
        n = 500
        labels = torch.arange(n) % 10
        with torch.no_grad():
            x_T = priorgrad.start(den, ed.sampling.randn((n, 1, 8, 8), seed=seed) * sig[0], labels)
            x = ed.sample(den, x_T, sig, solver="dpmpp-2m", cond=labels).clamp(-1, 1)
        s = ed.metrics.score(x, labels, dataset="digits", seed=seed)
        res.append({k: s[k] for k in ("fd", "fd_pixel") if k in s})
    out[name] = {"steps": STEPS, "wall_s": round(tr.elapsed, 1), "scores": res}
    print(name, json.dumps(out[name]), flush=True)
json.dump(out, open(f"bench-out/priorgrad_check_{STEPS}.json", "w"), indent=1)
