"""Guidance pick for the video bench: full-sequence quality row (n=100, seed 0) of MODEL at each scale.
usage: python docs/bench/video/guidance_pick.py MODEL SCALE... (output: docs/bench/video/guidance-pick.json)"""
import sys, torch, time
torch.set_num_threads(1)
from effdiff.bench import video as B
from effdiff.video.sampling import VideoModel
from effdiff.video.evaluator import VideoEvaluator
vm, ev = VideoModel.load(sys.argv[1]), VideoEvaluator.shipped()
# does the label change the output at all?
net = vm.den.net
x = torch.randn(4, 4, 16, 8, 8, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    outs = [net(x, torch.full((4,), 0.5), torch.full((4,), c)) for c in range(11)]
print("label effect (rel diff vs null):", [round(float((o - outs[10]).norm() / outs[10].norm()), 4) for o in outs[:10]])
for scale in [float(s) for s in sys.argv[2:]]:
    t = time.time()
    q = B.quality(vm, ev, 16, "full", 100, (0,), 12, "dpmpp-2m", scale=scale)
    print(scale, {k: round(v, 3) for k, v in q[0].items()}, f"{time.time()-t:.0f}s", flush=True)
