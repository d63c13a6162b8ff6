"""Exploration (docs/video.md, "Why sparse patterns fail on speed"): ink-centre displacement over k = 1, 2, 4 frames
divided by k, dense vs sliding-tile window 2, full sequence and stream, against real held-out clips.
Usage: python docs/bench/video/sparse-motion-diagnostic/rates.py (writes rates.json beside it)"""
import json, torch, effdiff as ed
from effdiff import techniques as T
from effdiff.video import sparse
from effdiff.video.evaluator import ink_centres
from effdiff.bench.video import sigmas, labels_for
torch.set_num_threads(1); sparse.register()
vm = ed.zoo.load("video-dit")
vm.stream_options = {}          # the plain stream, as when this ran (the card's stream defaults came later)
n, seed, frames = 48, 700, 16
def rates(x):
    c = ink_centres(x)                                    # [N, T, 2]
    return {f"k{k}": round(float((c[:, k:] - c[:, :-k]).norm(dim=-1).mean() / k), 3) for k in (1, 2, 4)}
real = ed.data.video("moving-digits", "test", n=n, frames=frames, seed=seed)
real = real[0] if isinstance(real, tuple) else real
print("real", rates(real))
res = {"real": rates(real)}
for mode in ("full", "stream"):
    for name, cfg in {"dense": None, "sliding-tile:w2": {"window": 2}}.items():
        gen = lambda: vm.decode(vm.generate(vm.noise(n, frames, seed), sigmas(12), "dpmpp-2m", labels_for(n), mode=mode, scale=4.0))
        if cfg is None: x = gen()
        else:
            with T.get("sliding-tile").apply(vm.den, cfg): x = gen()
        res[f"{mode} {name}"] = rates(x); print(mode, name, res[f"{mode} {name}"], flush=True)
json.dump({"what": "exploration: ink-centre displacement over k frames divided by k (px/frame), 48 clips of 16 frames, seed 700, guidance 4, dpmpp-2m 12 karras steps, shipped video-dit; real: 48 held-out moving-digit clips (seed 700)", "rows": res}, open(__file__.replace("rates.py", "rates.json"), "w"), indent=1)
