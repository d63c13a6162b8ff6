"""Fidelity screen (docs/bench/video/sparse-sink-selection): how far each sparse config's streamed 128-frame
clips move from dense on the same noise. Usage: python fidelity.py N SEED CANDIDATES.json OUT.json"""
import json, sys, time, torch
from effdiff import techniques as T
from effdiff.video import sparse
from effdiff.bench.video import sigmas, labels_for
from effdiff.video.sampling import VideoModel
torch.set_num_threads(1)
sparse.register()
vm = VideoModel.load(None)
vm.stream_options = {}          # the plain stream, as when this ran (the card's stream defaults came later)
n, seed = int(sys.argv[1]), int(sys.argv[2])
cands = json.loads(open(sys.argv[3]).read())
gen = lambda: vm.generate(vm.noise(n, 128, seed), sigmas(12), "dpmpp-2m", labels_for(n), mode="stream", scale=4.0)
with torch.no_grad():
    ref = gen()
    out = {}
    for label, cfg in cands.items():
        t = time.perf_counter()
        with T.get(label.partition(":")[0]).apply(vm.den, cfg) as h:
            z = gen()
        d = (z - ref).pow(2).mean((0, 1, 3, 4)).sqrt() / ref.pow(2).mean().sqrt()     # per frame [128]
        out[label] = {"config": cfg, "macs_ratio": h.stats.macs / h.stats.dense_macs,
                      "rel_rms": float(d.mean()), "rel_rms_first32": float(d[:32].mean()), "rel_rms_last32": float(d[-32:].mean())}
        print(label, json.dumps(cfg), f"macs {out[label]['macs_ratio']:.3f} rel {d.mean():.3f} first32 {d[:32].mean():.3f} last32 {d[-32:].mean():.3f} ({time.perf_counter()-t:.0f}s)", flush=True)
json.dump(out, open(sys.argv[4], "w"), indent=1)
