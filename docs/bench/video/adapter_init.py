"""The adapter model at initialisation = the frozen mnist-ldm-dit per frame on 8x8 frame latents (sin-cos positions
recomputed), independent noise per frame, scored like the video bench's quality row (n=100, seed 0, guidance 1).
Output of `python docs/bench/video/adapter_init.py 100`: docs/bench/video/adapter-init.json (the first line it printed)."""
import sys, time, torch
torch.set_num_threads(1)
from effdiff import assets, checkpoint as ckpt
from effdiff.models import build
from effdiff.denoisers import Denoiser
from effdiff.process import from_config
from effdiff.video.adapters import AdaptedImageDiT, trainable_fraction
from effdiff.video.sampling import generate_full, clip_noise
from effdiff.video.latents import FrameCodec
from effdiff.video.evaluator import VideoEvaluator
from effdiff.bench import video as B
t, meta = ckpt.load(assets.path("mnist-ldm-dit"), require_sha256=True)
img = build("dit", {**meta["model"], "image_size": 8}); ckpt.load_state(img, t, "")
net = AdaptedImageDiT(img, bottleneck=32)
print("trainable", trainable_fraction(net), sum(p.numel() for p in net.parameters() if p.requires_grad))
den = Denoiser(net.eval(), from_config(meta["process"]), meta["prediction"], 10)
codec, ev = FrameCodec.zoo(), VideoEvaluator.shipped()
n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
for shared in (False, True):
    t0 = time.time()
    z = clip_noise(n, (4, 16, 8, 8), 0)
    if shared:  # the same noise in every frame: a frozen-ish clip
        z = z[:, :, :1].expand_as(z).contiguous()
    with torch.no_grad():
        out = generate_full(den, z, B.sigmas(12), "dpmpp-2m", B.labels_for(n))
    x = codec.decode(out).clamp(-1, 1)
    print("shared noise" if shared else "independent noise", {k: round(v, 3) for k, v in ev.score(x, B.labels_for(n)).items()},
          f"{time.time()-t0:.0f}s", flush=True)
