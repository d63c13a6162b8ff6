"""Few-step baseline (no student): the shipped video-adapter at 4 dpmpp-2m steps vs its 12-step row (adapter.json), paired."""
import json, time, torch
torch.set_num_threads(1)
from effdiff import zoo
from effdiff.bench import video as B
from effdiff.video.evaluator import VideoEvaluator
from effdiff.io import atomic_write
vm, ev = zoo.load("video-adapter"), VideoEvaluator.shipped()
ref = json.load(open("/work/main/docs/bench/video/adapter.json"))
q = B.quality(vm, ev, 16, "full", 100, (0, 1, 2), 4, "dpmpp-2m")
res = {"model": "video-adapter (zoo)", "model_sha256": zoo.card("video-adapter")["sha256"]["tensors"], "steps": 4,
       "solver": "dpmpp-2m", "guidance": 1.0, "n": 100, "seeds": [0, 1, 2], "mode": "full",
       "command": "python docs/bench/video/fewstep.py", "quality": {"summary": B.summary(q), "per_seed": q},
       "vs_12_steps": {k: B.paired(ref["quality"]["per_seed"], q, k) for k in B.KEYS},
       "ratio_clip_fd": B.summary(q)["clip_fd"] / ref["quality"]["summary"]["clip_fd"],
       "ratio_frame_fd": B.summary(q)["frame_fd"] / ref["quality"]["summary"]["frame_fd"]}
atomic_write("/work/main/docs/bench/video/fewstep.json", json.dumps(res, indent=1, default=str))
print({k: round(v, 3) for k, v in B.summary(q).items()}, res["ratio_clip_fd"], res["ratio_frame_fd"])
print({k: (round(v["mean"], 2), [round(c, 2) for c in v["ci95"]]) for k, v in res["vs_12_steps"].items()})
