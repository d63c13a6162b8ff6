"""Per-step wall time of each training trick on the digits presets (batch 128), one thread, core 1."""
import os
os.makedirs("bench-out", exist_ok=True)   # run from the repository root; outputs go to bench-out/
import time, statistics, tempfile, json, torch
torch.set_num_threads(1)
from effdiff.training import preset, Trainer
OPTS = {"baseline": {}, "min-snr": dict(loss_over={"weighting": "min-snr", "gamma": 5.0}), "ot": dict(coupling="ot"),
        "immiscible": dict(coupling="immiscible"), "ema-power": dict(ema={"kind": "power", "sigma_rel": 0.05}),
        "priorgrad": dict(prior="priorgrad"), "repa": dict(repa={"encoder": "digits-classifier", "weight": 0.5, "layer": 2}),
        "ssm": "ssm"}
res = {}
for model in ("digits-unet", "digits-dit"):
    for name, o in OPTS.items():
        base = preset(model)
        if o == "ssm":
            o = dict(prediction="score", process={"name": "vp", "schedule": "linear", "discrete": False}, loss={"kind": "ssm"})
        elif "loss_over" in o:
            o = dict(loss={**base.loss, **o["loss_over"]})
        tr = Trainer(preset(model, steps=1000, ckpt_every=1000, **o), tempfile.mkdtemp(), progress=False)
        ts = []
        for i in range(18):
            t0 = time.perf_counter(); tr.train_step(); ts.append(time.perf_counter() - t0)
        res[f"{model} {name}"] = statistics.median(ts[3:])
        print(f"{model:12s} {name:11s} {1e3*res[f'{model} {name}']:7.1f} ms/step", flush=True)
json.dump(res, open("bench-out/step_cost.json", "w"), indent=1)
