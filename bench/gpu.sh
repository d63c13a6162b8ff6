#!/usr/bin/env bash
# GPU rows of the distributed and systems benchmarks, in under 10 minutes on one CUDA machine.
#
#   bash bench/gpu.sh [OUT_DIR]        (default: bench-gpu/)
#
# Written for a CUDA host; not yet run on one (the development machine has no GPU), so every step
# checks its precondition and says what it skipped. With one GPU the distributed suite cannot run
# NCCL ranks (one GPU per rank): it runs only when >= 2 GPUs are visible.
set -euo pipefail
OUT="${1:-bench-gpu}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."

python - <<'PY' || { echo "gpu.sh: no CUDA device visible to torch; nothing to run" >&2; exit 1; }
import sys, torch
sys.exit(0 if torch.cuda.is_available() else 1)
PY
NGPU=$(python -c "import torch; print(torch.cuda.device_count())")
echo "gpu.sh: $NGPU CUDA device(s): $(python -c 'import torch; print(torch.cuda.get_device_name(0))')"

# 1. systems switches on the GPU (sdpa backends, compile, channels-last, autocast, CUDA graphs):
#    the bench's models on cuda:0; timeout keeps the whole script under 10 minutes
timeout 300 python - "$OUT" <<'PY'
import json, sys, torch
import effdiff as ed
from effdiff import systems, techniques as T
from effdiff.bench.systems import VARIANTS
out = sys.argv[1]
rows = []
for model in ("digits-unet", "digits-dit"):
    den = ed.zoo.load(model).to("cuda")
    sig = ed.timesteps.uniform_t(20, den.process)
    x = ed.sampling.randn((256, 1, 8, 8), seed=0, device="cuda") * sig[0].float()
    y = (torch.arange(256) % 10).cuda()

    def run(h=None):
        go = h.sample if h is not None else (lambda *a, **k: ed.sample(*a, **k))
        return go(den, x, sig, "ddim", y)

    def timed(h=None, reps=5):
        run(h); torch.cuda.synchronize()                      # warm-up (compile, graph capture)
        times = []
        for _ in range(reps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); out = run(h); e.record(); torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
        return sorted(times)[reps // 2], out

    base_ms, base = timed()
    for label, (name, fields) in VARIANTS.items():
        t = T.get(name)
        why = t.why_not(den)
        if why is not None or label == "threads-1":
            rows.append({"model": model, "row": label, "skipped": why or "CPU-only switch"}); continue
        with t.apply(den, **fields) as h:
            ms, out_ = timed(h)
            ms_base, _ = timed()                             # baseline re-timed beside it
        rows.append({"model": model, "row": label, "ms": ms, "baseline_ms": ms_base, "speedup": ms_base / ms,
                     "max_dev": float((out_ - base).abs().max())})
        print(rows[-1], flush=True)
json.dump({"device": torch.cuda.get_device_name(0), "batch": 256, "steps": 20, "rows": rows},
          open(f"{out}/systems-gpu.json", "w"), indent=1)
PY

# 2. parallel methods on NCCL ranks (one GPU each) against one GPU, same noise, interleaved timing
cat > "$OUT/dist_gpu.py" <<'PY'
import json, os, sys, torch, torch.distributed as dist
import effdiff as ed
from effdiff import distributed as D
D.init_from_env()
dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
rows, W = [], 2.0

def ms(Dn, x, sig, y):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); out = ed.sample(Dn, x, sig, "ddim", cond=y); e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e), out

for model, methods in (("digits-unet", ("cfg", "patch")), ("digits-dit", ("cfg", "patch", "sequence", "pipefusion"))):
    den = ed.zoo.load(model).to(dev)
    sig = ed.timesteps.uniform_t(20, den.process)
    x = ed.sampling.randn((256, 1, 8, 8), seed=0, device=dev) * sig[0].float()
    y = torch.arange(256, device=dev) % 10
    one = ed.guided(den, W)
    for m in methods:
        comm = D.Comm()
        par = D.parallel(den, m, W, comm, **({"mode": "sync"} if m == "pipefusion" else {}))
        ms(one, x, sig, y); ms(par, x, sig, y)                        # warm-up
        t1, t2 = [], []
        for _ in range(5):                                            # interleaved
            a, ref = ms(one, x, sig, y); b, out = ms(par, x, sig, y)
            t1.append(a); t2.append(b)
        rows.append({"model": model, "method": m, "ranks": dist.get_world_size(), "ms_1": sorted(t1)[2],
                     "ms_R": sorted(t2)[2], "speedup": sorted(t1)[2] / sorted(t2)[2],
                     "comm_bytes_per_step": comm.bytes_sent / (6 * 20), "max_dev": float((out - ref).abs().max())})
        if dist.get_rank() == 0:
            print(rows[-1], flush=True)
if dist.get_rank() == 0:
    json.dump({"device": torch.cuda.get_device_name(0), "batch": 256, "steps": 20, "guidance": W, "rows": rows},
              open(os.path.join(sys.argv[1], "distributed-gpu.json"), "w"), indent=1)
dist.destroy_process_group()
PY
if [ "$NGPU" -ge 2 ]; then
  timeout 240 torchrun --nproc-per-node 2 "$OUT/dist_gpu.py" "$OUT" \
    || echo "gpu.sh: the distributed rows failed or timed out (see above)" >&2
else
  echo "gpu.sh: skipped the distributed rows: NCCL ranks need one GPU each, $NGPU visible"
fi
echo "gpu.sh: results in $OUT/"
