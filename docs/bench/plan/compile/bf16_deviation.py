"""How far compiled bf16 is from fp32 on one forward (exploration): digits-unet and digits-dit, 200 inputs at
sigma 0.5, eager fp32 / eager bf16 autocast / compiled bf16 / compiled fp32; max and L2 relative deviations.
python docs/bench/plan/compile/bf16_deviation.py -> bf16-deviation.json with the commit."""
import json
import subprocess
import torch

import effdiff as ed
from effdiff.sites import network
torch.set_num_threads(2)
rows = {}
for model in ("digits-unet", "digits-dit"):
    net = network(ed.zoo.load(model)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 8, 8, generator=g) * 2; t = torch.full((200,), 0.5); y = torch.arange(200) % 10
    with torch.no_grad():
        f32 = net(x, t, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b16 = net(x, t, y).float()
            torch._dynamo.reset()
            cb = torch.compile(net)(x, t, y).float()
        torch._dynamo.reset()
        cf = torch.compile(net)(x, t, y)
    d = lambda a, b: float((a - b).abs().max() / b.abs().max())
    m = lambda a, b: float((a - b).norm() / b.norm())
    print(model, "max rel: bf16-eager vs fp32 %.3f, bf16-compiled vs fp32 %.3f, bf16-compiled vs bf16-eager %.3f, fp32-compiled vs fp32 %.1e" % (d(b16, f32), d(cb, f32), d(cb, b16), d(cf, f32)))
    rows[model] = {"max_rel": {"bf16_eager_vs_fp32": d(b16, f32), "bf16_compiled_vs_fp32": d(cb, f32),
                               "bf16_compiled_vs_bf16_eager": d(cb, b16), "fp32_compiled_vs_fp32": d(cf, f32)},
                   "rel_l2": {"bf16_eager_vs_fp32": m(b16, f32), "bf16_compiled_vs_fp32": m(cb, f32),
                              "bf16_compiled_vs_bf16_eager": m(cb, b16)}}
    print(model, "rel L2:  bf16-eager vs fp32 %.4f, bf16-compiled vs fp32 %.4f, bf16-compiled vs bf16-eager %.4f" % (m(b16, f32), m(cb, f32), m(cb, b16)))
with open("docs/bench/plan/compile/bf16-deviation.json", "w") as f:
    json.dump({"rows": rows, "n": 200, "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                                                  text=True).stdout.strip()}, f, indent=1)
