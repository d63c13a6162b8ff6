import json, sys, torch
from effdiff.video.sampling import VideoModel
from effdiff.video.evaluator import VideoEvaluator
from effdiff.bench.video import sigmas, labels_for
vm, ev = VideoModel.load(None), VideoEvaluator.shipped()
seed, n = int(sys.argv[1]), int(sys.argv[2])
rows = {"full-16": (16, "full", {}), "stream-16 K2": (16, "stream", dict(lookahead=16, overlap=1, lookahead_blocks=2)),
        "full-32": (32, "full", {}), "stream-32 K1": (32, "stream", dict(lookahead=16, overlap=1)),
        "stream-32 K2": (32, "stream", dict(lookahead=16, overlap=1, lookahead_blocks=2))}
out = {}
for name, (T, mode, opt) in rows.items():
    torch.manual_seed(0)
    z = vm.generate(vm.noise(n, T, seed), sigmas(12), "dpmpp-2m", labels_for(n), mode=mode, scale=4.0, **opt)
    x = vm.decode(z) if hasattr(vm, "decode") else z
    E_ = ev.score(x, labels_for(n))
    _, logits, _ = ev.features(x)
    pred = logits.argmax(-1)
    lab = labels_for(n).reshape(-1, 1)
    E_["per_block"] = [round(float((pred[:, b:b+4] == lab).float().mean()), 3) for b in range(0, T, 4)]
    out[name] = E_
    print(name, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in E_.items()}, flush=True)
json.dump(out, open(f"/tmp/s32-{seed}.json", "w"), indent=1)
