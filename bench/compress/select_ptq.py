"""python bench/compress/select_ptq.py MODEL [VARIANT,...]
Select the W4A8 / W8A8 PTQ recipe on selection seeds 100-101 (never the bench's 0-2): sample MSE to fp32 and
paired FD change, DDIM 10, n=360, labels i%10. Calibration as in bench.compress (32 samples, noise seed 12345)."""
import sys, time, json, torch
torch.set_num_threads(1)
import effdiff as ed
from effdiff import techniques as T, zoo
from effdiff.metrics.evaluation import evaluation
from effdiff.quant import PTQConfig, NaivePTQConfig
from effdiff.sampling import randn
SEEDS = [100, 101]
N = 360
# The variants tried in this session (explore, explore2-6): rows of the tables in docs/compression.md.
FL = ("input_blocks.0.0", "out.2")
VARIANTS = {
    "ptq-W4A8-wminmax": ("ptq", PTQConfig(4, 8, w_observer="minmax")),
    "ptq-W4A8-fl8+ptqd": ("ptq", PTQConfig(4, 8, exclude=FL, ptqd=True)),
    "fl+ada100+ptqd": ("ptq", PTQConfig(4, 8, adaround_iters=100, ptqd=True)),
    "fl+ada300+ptqd": ("ptq", PTQConfig(4, 8, adaround_iters=300, ptqd=True)),
    "fl+ptqd+mixed10": ("ptq", PTQConfig(4, 8, ptqd=True, mixed_fraction=0.1)),
    "W8A8": ("ptq", PTQConfig(8, 8)),
    "W8A8-nostep": ("ptq", PTQConfig(8, 8, per_step=False)),
    "W8A8+ptqd": ("ptq", PTQConfig(8, 8, ptqd=True)),
    "naive-W4A8": ("ptq-naive", NaivePTQConfig(4, 8)),
    "ptq-W4A8": ("ptq", PTQConfig(4, 8)),
    "ptq-W4A8-nostep": ("ptq", PTQConfig(4, 8, per_step=False)),
    "ptq-W4A8+ptqd": ("ptq", PTQConfig(4, 8, ptqd=True)),
    "ptq-W4A8-g8": ("ptq", PTQConfig(4, 8, w_granularity="group", group_size=8)),
    "ptq-W4A8-ada": ("ptq", PTQConfig(4, 8, adaround_iters=100)),
    "ptq-W4A8-g8+ptqd": ("ptq", PTQConfig(4, 8, w_granularity="group", group_size=8, ptqd=True)),
}
model = sys.argv[1]
only = sys.argv[2].split(",") if len(sys.argv) > 2 else list(VARIANTS)
den = zoo.load(model)
sig = ed.timesteps.get("uniform", 10, den.process)
labels = torch.arange(N) % 10
ev = evaluation("digits")
def gen(d, seed):
    return ed.sample(d, randn((N, 1, 8, 8), seed=seed) * sig[0].float(), sig, "ddim", cond=labels)
ref = {s: gen(den, s) for s in SEEDS}
fd_ref = {s: ev.score(ref[s], labels, seed=s, real_vs_real=False)["fd"] for s in SEEDS}
print(model, "fp32 FD", fd_ref, flush=True)
run = T.Run(randn((32, 1, 8, 8), seed=12345) * sig[0].float(), sig, "ddim", labels[:32])
out = {}
for name in only:
    tech, cfg = VARIANTS[name]
    t0 = time.time()
    cfg = T.get(tech).prepare(den, cfg, run)
    prep = time.time() - t0
    with T.get(tech).apply(den, cfg):
        xs = {s: gen(den, s) for s in SEEDS}
    mse = sum(float(((xs[s] - ref[s]) ** 2).mean()) for s in SEEDS) / len(SEEDS)
    ch = [ev.score(xs[s], labels, seed=s, real_vs_real=False)["fd"] / fd_ref[s] - 1 for s in SEEDS]
    out[name] = {"mse": mse, "fd_change": ch, "prep_s": prep}
    print(f"{model} {name:20s} mse={mse:.5f} dFD={[round(100*c,1) for c in ch]}% prep={prep:.0f}s", flush=True)
json.dump(out, open(f"select_ptq-{model}.json", "w"), indent=1)
