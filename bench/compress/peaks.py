"""Peak activation memory of one denoiser call on the 360-sample bench batch, per compress-suite row (the
technique prepared and applied exactly as the suite does it). Writes peaks-MODEL.json."""
import json, sys
from pathlib import Path

import torch
torch.set_num_threads(1)
import effdiff as ed
from effdiff.bench import compress as C
model = sys.argv[1]
out = {}
den = ed.zoo.load(model)
sig = ed.timesteps.get("uniform", 10, den.process)
x = ed.sampling.randn((360, 1, 8, 8), seed=0) * sig[0].float()
labels = torch.arange(360) % 10
out["fp32"] = C.call_peak(den, x, sig, labels)
rows = dict(C.ROWS)
rows[C.COMPOSED[0]] = C.COMPOSED[1]
for label, parts in rows.items():
    den = ed.zoo.load(model)
    import effdiff.techniques as T
    if not all(T.get(n).applies_to(den) for n, _ in parts):
        continue
    solver = "dpmpp-2m" if label == C.COMPOSED[0] else "ddim"
    s2 = ed.timesteps.get("logsnr" if solver == "dpmpp-2m" else "uniform", 10, den.process)
    row = C._Row(parts, solver, model)
    h = row.setup(den, s2, ed.sampling.randn((360, 1, 8, 8), seed=0) * s2[0].float(), labels)
    try:
        out[label] = C.call_peak(den, x, sig, labels)
    finally:
        h.remove()
    print(label, out[label] / 1e6, flush=True)
Path("bench-out/compress").mkdir(parents=True, exist_ok=True)
json.dump(out, open(f"bench-out/compress/peaks-{model}.json", "w"), indent=1)
