"""The ``video`` bench suite: Block-Diffusion streaming against full-sequence generation as the clip
grows, sparse attention at the longest length, and quality with paired 95% CIs.

    python -m effdiff.bench.video --out bench-video                 # the lead's command (idle core)
    python -m effdiff.bench.video --quick --out /tmp/video/bench     # small n, for development

Rows:
* cost, per length (16, 32, 64, 128 frames) and mode (full / stream): MACs of the denoiser per clip
  and up to the first frame (FlopCounterMode: deterministic), attention MACs, and wall clock (total,
  time to first frame, frames per second: median of ``repeats`` interleaved runs, 1 thread — noisy
  on a shared machine: it says so in the table).
* quality at equal length (16 frames, or ``--quality-frames``): full vs stream on the same noise and labels
  per seed; per-seed
  scores of the video evaluator (frame FD, clip FD, identity, label accuracy, motion), the paired
  difference with a 95% t-interval; real clips (held-out digits) as the comparison point, with
  frame-shuffled and frozen real clips beside them.
* sparse attention at the longest length (streamed): dense vs ``adaspa`` and ``sliding-tile``:
  attention MACs, wall clock, and the quality change with its paired CI.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..checkpoint import tensors_sha256
from ..metrics.cost import pinned_threads
from ..metrics.stats import ci_text
from ..video.sampling import SCHEDULE, sigmas      # sigmas: also imported from here by the bench's scripts
from .provenance import provenance
from .scoring import mean_sd, pm, t_interval

KEYS = ("frame_fd", "clip_fd", "identity", "label_acc", "speed", "accel")
KEY_HEADS = "frame FD | clip FD | identity | label acc | speed px/f | accel px/f²"   # KEYS' column heads


def score_cells(s: dict) -> str:
    """A row's ``KEYS`` as 'mean ± sd' cells of its summary ("–" where it has none)."""
    return " | ".join(pm(s[x], s[f"{x}_sd"]) if x in s else "–" for x in KEYS)


SPARSE = {"adaspa": {"density": 0.25}, "sliding-tile": {"window": 3}}


def technique_of(row: str) -> str:
    """A sparse row's technique: its label up to ':' (``sliding-tile:sink`` runs ``sliding-tile``)."""
    return row.partition(":")[0]


def labels_for(n: int) -> torch.Tensor:
    return torch.arange(n) % 10


def generate(vm, frames: int, mode: str, n: int, seed: int, steps: int, solver: str, scale: float = 1.0):
    """Pixels [n, 1, frames, 32, 32] of ``n`` clips (noise seed ``seed``, labels 0..9 cycling)."""
    z = vm.generate(vm.noise(n, frames, seed), sigmas(steps), solver, labels_for(n), mode=mode, scale=scale)
    return vm.decode(z)


def accel_profile(x: torch.Tensor, block: int) -> dict:
    """The ink centre's mean |Δ²c| over clips x [N, 1, T, H, W] at each frame t = 1 .. T-2 (the whole clip, not the
    evaluator's 16-frame windows): overall, by position t mod ``block`` in the stream's blocks (0: a block's first
    frame, whose second difference reaches into the block before) and per frame; and the mean speed |Δc|."""
    from ..video.evaluator import ink_centres
    c = ink_centres(x)
    a = (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]).norm(dim=-1).mean(0)
    pos = torch.arange(1, x.shape[2] - 1) % block
    return {"accel": round(float(a.mean()), 4), "speed": round(float((c[:, 1:] - c[:, :-1]).norm(dim=-1).mean()), 4),
            "accel_by_position": [round(float(a[pos == p].mean()), 3) for p in range(block)],
            "accel_by_frame": [round(float(v), 3) for v in a]}


def label_acc_per_block(pred: torch.Tensor, labels: torch.Tensor, block: int) -> list[float]:
    """The share of frames whose predicted label [N, T] is the clip's label [N], per block of ``block`` frames."""
    hit = (pred == labels.reshape(-1, 1)).float()
    return [float(hit[:, b:b + block].mean()) for b in range(0, pred.shape[1], block)]


def teacher_forced(vm, n: int, seed: int, steps: int, solver: str, scale: float, overlap: int = 1,
                   frames: int = 16) -> torch.Tensor:
    """Latents of the stream without its own errors: block 1 is the full-sequence solve's, and each later block is
    sampled as the stream samples it (the clip's noise, ``overlap`` next frames, a paired cache under guidance) but
    with the full solve's earlier blocks committed as its context instead of the stream's (the model's window of
    earlier blocks, as the stream's cache keeps it). A diagnostic: its clips jump at block boundaries."""
    from ..denoisers import Denoiser, guided
    from ..sampling import sample
    from ..video.block_causal import KVCache, context_label
    from ..video.sampling import BlockNet
    den, net = vm.den, vm.den.net
    bf, T = net.config.block_frames, frames
    noise, y, sig = vm.noise(n, T, seed), labels_for(n), sigmas(steps)
    full = vm.generate(noise, sig, solver, y, mode="full", scale=scale)
    cache = KVCache(net.config.depth, bf, net.config.window_blocks)
    clean = context_label(den.process)
    out = [full[:, :, :bf]]
    for start in range(bf, T, bf):
        bden = Denoiser(BlockNet(net, cache, start), den.process, den.prediction, den.cond_classes)
        lab = torch.cat([bden.labels(y, n, full.device), bden.labels(None, n, full.device)])
        prev = full[:, :, start - bf:start]
        net.commit(torch.cat([prev, prev]), clean, lab, cache, start - bf)
        zb = sample(guided(bden, scale), noise[:, :, start:min(start + bf + overlap, T)] * sig[0], sig, solver, cond=y)
        out.append(zb[:, :, :bf])
    return torch.cat(out, 2)


def explore(script: str, doc: str, rows: dict, seed: int, n: int, frames: int, profile: bool = False,
            steps: int = 12, solver: str = "dpmpp-2m", scale: float = 4.0) -> dict:
    """A one-seed exploration (it decides nothing) on the shipped video-dit: each row ``{name: (mode, stream
    options)}`` generates ``n`` clips of ``frames`` frames from noise seed ``seed`` (mode ``"teacher"``:
    ``teacher_forced``, the options its keywords), scored as the bench's quality rows (16-frame windows) with label
    accuracy per block; ``profile``: also ``accel_profile``. Writes
    ``explore-SEED.json`` beside ``script`` (``doc``'s first paragraph as "what") and returns the results."""
    from ..video.evaluator import VideoEvaluator
    from ..video.sampling import VideoModel
    torch.set_num_threads(1)
    vm, ev = VideoModel.load(None), VideoEvaluator.shipped()
    block = vm.den.net.config.block_frames
    out = {"what": (doc or "").split("\n\n")[0], "seed": seed, "n": n, "frames": frames, "provenance": provenance(),
           "rows": {}}
    lab = labels_for(n)
    for name, (mode, opt) in rows.items():
        vm.stream_options = dict(opt)
        x = vm.decode(teacher_forced(vm, n, seed, steps, solver, scale, frames=frames, **opt)) if mode == "teacher" \
            else generate(vm, frames, mode, n, seed, steps, solver, scale)
        feats = ev.features(x)                                       # once: the scores and the per-block labels
        pred = feats[1].argmax(-1)
        out["rows"][name] = {"options": opt, "scores": ev.score(x, lab, feats),
                             "label_acc": round(float((pred == lab.reshape(-1, 1)).float().mean()), 4),
                             "label_acc_per_block": [round(a, 3) for a in label_acc_per_block(pred, lab, block)],
                             **(accel_profile(x, block) if profile else {})}
        print(name, out["rows"][name], flush=True)
    Path(script).with_name(f"explore-{seed}.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def with_technique(vm, name: str | None, config: dict | None, fn):
    """Run ``fn()`` with technique ``name`` (a row label, see ``technique_of``) applied to the model's
    denoiser (None: as is)."""
    if name is None:
        return fn()
    from .. import techniques as T
    from ..video import sparse
    sparse.register()
    with T.get(technique_of(name)).apply(vm.den, config or {}):
        return fn()


def other_macs(fc: FlopCounterMode) -> float:
    """MACs FlopCounterMode saw outside attention (linear layers, convolutions): every op but the
    batched matmuls of the block-sparse kernels and SDPA, whose work ``attention.MACS`` counts."""
    ops = fc.get_flop_counts().get("Global", {})
    return sum(v for op, v in ops.items() if "bmm" not in str(op) and "scaled_dot_product" not in str(op)) / 2


@torch.no_grad()
def cost(vm, frames: int, mode: str, steps: int, solver: str, technique=None, config=None, scale: float = 1.0) -> dict:
    """Deterministic MACs of one clip: total (= linear/conv MACs from FlopCounterMode + attention MACs the
    attention processors count), up to the first frame, attention alone; decode separately."""
    from ..video.attention import MACS
    first: dict = {}

    def mark(start, zb):
        if not first:
            first["macs"] = other_macs(fc) + MACS.macs
    MACS.reset()
    with FlopCounterMode(display=False) as fc:
        z = with_technique(vm, technique, config, lambda: vm.generate(
            vm.noise(1, frames, 0), sigmas(steps), solver, labels_for(1), mode=mode, scale=scale,
            **({"on_block": mark} if mode == "stream" else {})))
    attention = MACS.macs
    total = other_macs(fc) + attention
    with FlopCounterMode(display=False) as fd:
        vm.decode(z[:, :, :1])
    return {"macs": total, "first_frame_macs": first.get("macs", total), "attention_macs": attention,
            "decode_macs_per_frame": fd.get_total_flops() / 2}


@torch.no_grad()
def wall(vm, frames: int, mode: str, steps: int, solver: str, technique=None, config=None, scale: float = 1.0,
         batch: int = 1) -> dict:
    """Seconds for ``batch`` clips generated together (decoding included) and to their first decoded frame."""
    t0 = time.perf_counter()
    first: dict = {}

    def emit(start, zb):
        if not first:
            vm.decode(zb[:, :, :1])
            first["s"] = time.perf_counter() - t0
    z = with_technique(vm, technique, config, lambda: vm.generate(
        vm.noise(batch, frames, 0), sigmas(steps), solver, labels_for(batch), mode=mode, scale=scale,
        **({"on_block": emit} if mode == "stream" else {})))
    if not first:
        vm.decode(z[:, :, :1])
        first["s"] = time.perf_counter() - t0
    vm.decode(z)
    return {"s": time.perf_counter() - t0, "first_frame_s": first["s"]}


def timed_rows(vm, configs: list[tuple], steps: int, solver: str, repeats: int, scale: float = 1.0,
               batch: int = 1, sparse_vm=None) -> dict:
    """Median wall clock of each (frames, mode, technique, config as JSON), interleaved rounds after a warm-up;
    ``batch`` clips per run (frames/s counts every clip's frames); rows with a technique run on ``sparse_vm``
    (default: ``vm``)."""
    sparse_vm = sparse_vm or vm
    runs: dict = {c: [] for c in configs}
    wall(vm, 16, "stream", steps, solver, scale=scale, batch=batch)
    for _ in range(repeats):
        for c in configs:
            m = vm if c[2] is None else sparse_vm
            runs[c].append(wall(m, c[0], c[1], steps, solver, c[2], json.loads(c[3]) if c[3] else None, scale, batch))
    out = {}
    for c, rs in runs.items():
        s = sorted(r["s"] for r in rs)[len(rs) // 2]
        f = sorted(r["first_frame_s"] for r in rs)[len(rs) // 2]
        out[c] = {"s": s, "first_frame_s": f, "fps": batch * c[0] / s, "s_all": [r["s"] for r in rs]}
    return out


def quality(vm, ev, frames: int, mode: str, n: int, seeds, steps: int, solver: str, technique=None,
            config=None, scale: float = 1.0, pictures=None) -> list[dict]:
    """Per-seed evaluator scores of ``n`` generated clips; ``pictures`` (a path without suffix): the first
    seed's first 8 clips as a frame strip (.png) and an animated GIF (.gif)."""
    out = []
    for s in seeds:
        x = with_technique(vm, technique, config, lambda: generate(vm, frames, mode, n, s, steps, solver, scale))
        out.append(ev.score(x, labels_for(n)))
        if pictures is not None and s == seeds[0]:
            from ..video.viz import save_gif, save_strip
            save_strip(x[:8], f"{pictures}.png")
            save_gif(x[:8], f"{pictures}.gif")
    return out


def real_clips(n: int, frames: int, seed: int):
    """(clips, labels) of ``n`` held-out real clips for row seed ``seed``: its own draw, seed 100 + ``seed``."""
    from ..video.data import moving_digits
    return moving_digits("test", n, frames, seed=100 + seed)


def real_rows(ev, n: int, seeds, frames: int = 16) -> dict:
    """Held-out real clips (a fresh seed per row seed), and the same clips frame-shuffled and frozen."""
    rows: dict = {"real": [], "real frame-shuffled": [], "real frozen": []}
    for s in seeds:
        x, y = real_clips(n, frames, s)
        perm = torch.randperm(frames, generator=torch.Generator().manual_seed(s))
        rows["real"].append(ev.score(x, y))
        rows["real frame-shuffled"].append(ev.score(x[:, :, perm], y))
        rows["real frozen"].append(ev.score(x[:, :, :1].expand_as(x).contiguous(), y))
    return rows


def real_long(ev, n: int, frames: int, seeds) -> list[dict]:
    """Per-seed scores of ``n`` held-out real clips of ``frames`` frames (seed 100 + s, as ``real_rows``): the
    motion reference of the sparse rows' to-real rule (``to_real``)."""
    return [ev.score(*real_clips(n, frames, s)) for s in seeds]


def summary(per_seed: list[dict]) -> dict:
    out = {}
    for k in KEYS:
        vals = [q[k] for q in per_seed if k in q]
        if vals:
            out[k], out[f"{k}_sd"] = mean_sd(vals)
    return out


def paired(a: list[dict], b: list[dict], key: str) -> dict:
    d = [y[key] - x[key] for x, y in zip(a, b)]
    return {"mean": mean_sd(d)[0], "ci95": t_interval(d), "per_seed": d}


PARTS = ("cost", "quality", "sparse")


# real clips per generated clip in the sparse rows' motion reference (cheap: no sampling)
REAL_PER_CLIP = 4
# how a row's motion is judged against its reference row (dense for the sparse rows, full for the stream): "dense"
# (speed: any change counts; acceleration: higher) or "to-real" (speed and acceleration as distances to the real
# clips' values: farther is worse; ``to_real``)
MOTION_RULES = ("dense", "to-real")


def to_real(dense: list[dict], row: list[dict], real: list[dict]) -> dict:
    """Speed and acceleration as distances to the real clips': per seed |row - r| - |dense - r|, r the real clips'
    value pooled over the seeds (one reference for both rows: the seeds' own real draws would add their noise to
    each difference), with the 95% t-interval; above 0 is farther from real than dense."""
    out = {}
    for k in ("speed", "accel"):
        r = mean_sd([q[k] for q in real])[0]
        d = [abs(y[k] - r) - abs(x[k] - r) for x, y in zip(dense, row)]
        out[k] = {"real": r, "mean": mean_sd(d)[0], "ci95": t_interval(d), "per_seed": d}
    return out


def run(out=None, lengths=(16, 32, 64, 128), n: int = 200, n_long: int = 24, seeds=(0, 1, 2), steps: int = 12,
        solver: str = "dpmpp-2m", repeats: int = 3, threads: int = 1, model=None, scale: float = 1.0,
        parts=PARTS, batch: int = 1, extra: dict | None = None, sparse: dict | None = None, sparse_model=None,
        motion: str = "dense", quality_frames: int = 16, **stream_options) -> dict:
    """The rows of ``parts`` (cost: MACs and wall clock per length; quality: ``quality_frames`` frames, full vs
    stream vs real; sparse: attention at the longest length, rows ``sparse`` {label: config}, default ``SPARSE``) into
    ``out``/video.{json,md}; ``stream_options``: ``generate_stream``'s options (``STREAM_OPTIONS``: lookahead,
    overlap, ...), every stream row. ``sparse_model``: a model stem whose weights run the sparse rows (a model fine-tuned
    under the pattern), compared with ``model``'s dense stream; None: ``model`` runs them too. ``motion``: how the
    verdicts judge motion (``MOTION_RULES``). ``quality_frames``: the quality rows' clip length (scored in
    16-frame windows beyond 16)."""
    sparse = SPARSE if sparse is None else sparse
    if not isinstance(quality_frames, int) or quality_frames < 16:
        raise ValueError(f"quality_frames must be an int >= 16 (the evaluator's clip), got {quality_frames!r}")
    if motion not in MOTION_RULES:
        raise ValueError(f"unknown motion rule {motion!r}; known: {', '.join(MOTION_RULES)}")
    from ..video.evaluator import VideoEvaluator
    from ..video.sampling import STREAM_OPTIONS, VideoModel
    unknown_options = set(stream_options) - set(STREAM_OPTIONS)
    if unknown_options:
        raise TypeError(f"unknown stream options {sorted(unknown_options)}; known: {', '.join(STREAM_OPTIONS)}")
    stream = {k: typ(stream_options.get(k, 0)) for k, typ in STREAM_OPTIONS.items()}
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown bench parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    vm, ev = VideoModel.load(model), VideoEvaluator.shipped()
    vm.stream_options = stream
    svm = vm if sparse_model is None else VideoModel.load(sparse_model)
    svm.stream_options = stream
    long = max(lengths)
    res: dict = {"lengths": list(lengths), "n": n, "n_long": n_long, "seeds": list(seeds), "steps": steps,
                 "solver": solver, "schedule": SCHEDULE, "threads": threads, "repeats": repeats, "guidance": scale,
                 "batch": batch, **stream, "motion": motion, "quality_frames": quality_frames,
                 "parts": list(parts), "model": vm.card(), "sparse_configs": sparse, **(extra or {}),
                 "model_sha256": tensors_sha256(vm.den.net.state_dict())}
    if sparse_model is not None:
        res["sparse_model"] = {"stem": str(sparse_model), "card": svm.card(),
                               "sha256": tensors_sha256(svm.den.net.state_dict())}
    with pinned_threads(threads):
        if "cost" in parts:
            res["cost"] = [{"frames": T, "mode": m, **cost(vm, T, m, steps, solver, scale=scale)}
                           for T in lengths for m in ("full", "stream")]
        if "sparse" in parts:
            res["sparse_cost"] = [{"technique": t, "config": c, **cost(vm if t is None else svm, long, "stream", steps,
                                                                      solver, t, c, scale)}
                                  for t, c in [(None, None)] + list(sparse.items())]
        configs = [(T, m, None, None) for T in lengths for m in ("full", "stream")] if "cost" in parts else []
        if "sparse" in parts:                         # the dense stream it is compared with, timed in the same rounds
            configs += [c for c in [(long, "stream", None, None)] if c not in configs]
            configs += [(long, "stream", t, json.dumps(c)) for t, c in sparse.items()]
        timing = timed_rows(vm, configs, steps, solver, repeats, scale, batch, svm) if repeats > 0 and configs else {}
        res["timing"] = [{"frames": T, "mode": m, "technique": t, **v} for (T, m, t, c), v in timing.items()]
        if "quality" in parts:
            if out is not None:
                Path(out).mkdir(parents=True, exist_ok=True)
            T = quality_frames
            q = {m: quality(vm, ev, T, m, n, seeds, steps, solver, scale=scale,
                            pictures=None if out is None else Path(out) / f"samples-{m}-{T}")
                 for m in ("full", "stream")}
            res["quality"] = {m: {"summary": summary(v), "per_seed": v} for m, v in q.items()}
            res["quality_paired"] = {k: paired(q["full"], q["stream"], k) for k in KEYS}
            real = real_rows(ev, n, seeds, T)
            res["real"] = {k: {"summary": summary(v), "per_seed": v} for k, v in real.items()}
            res["quality_to_real"] = to_real(q["full"], q["stream"], real["real"])
        if "sparse" in parts:
            dense = quality(vm, ev, long, "stream", n_long, seeds, steps, solver, scale=scale)
            res["sparse_quality"] = {"dense": {"summary": summary(dense), "per_seed": dense}}
            real = real_long(ev, REAL_PER_CLIP * n_long, long, seeds)
            res["sparse_real"] = {"n": REAL_PER_CLIP * n_long, "summary": summary(real), "per_seed": real}
            for t, c in sparse.items():
                sq = quality(svm, ev, long, "stream", n_long, seeds, steps, solver, t, c, scale)
                res["sparse_quality"][t] = {"summary": summary(sq), "per_seed": sq,
                                            "paired": {k: paired(dense, sq, k) for k in KEYS},
                                            "to_real": to_real(dense, sq, real)}
    res["table"] = table(res)
    if out is not None:
        from ..io import atomic_write
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "video.json", json.dumps(res, indent=1, default=str))
        pics = [f"![{m} samples, seed {res['seeds'][0]}](samples-{m}-{quality_frames}.png)" for m in ("full", "stream")
                if (out / f"samples-{m}-{quality_frames}.png").is_file() and "quality" in parts]
        atomic_write(out / "video.md", res["table"] + "\n" + "".join(f"\n{p}\n" for p in pics))
    return res


def ci_cell(p: dict, digits: int = 3, sign: str = "+") -> str:
    """A paired change (or ratio) ``{"mean", "ci95"}`` as 'mean [lo, hi]'."""
    return ci_text(p["mean"], p["ci95"], digits, sign)


def _s(t: dict, key: str, fmt: str) -> str:
    """A wall-clock cell, "–" where the run took no timings (``--repeats 0``)."""
    return format(t[key], fmt) if key in t else "–"


def stream_text(res: dict) -> str:
    """The caption's note on the stream's options (lookahead, its past, overlap, context noise; nothing when off)."""
    over = f", stream blocks with {res['overlap']} overlap frame(s)" if res.get("overlap") else ""
    over += f", the second block with {res['overlap_second']}" if res.get("overlap_second") else ""
    over += f", context committed at flow time {res['context_noise']}" if res.get("context_noise") else ""
    over += ", history guidance" if res.get("history_guidance") else ""
    over += f", the second block at guidance {res['scale_second']:g}" if res.get("scale_second") else ""
    over += f", the streamed blocks at guidance {res['scale_blocks']:g}" if res.get("scale_blocks") else ""
    over += ", each block's first frame carried from the previous solve" if res.get("carry") else ""
    if not res.get("lookahead"):
        return over
    past = f", first block after {res['lookahead_past']} past frames" if res.get("lookahead_past") else ""
    past += f" (its first {res['lookahead_blocks']} blocks kept)" if res.get("lookahead_blocks", 0) > 1 else ""
    past += f", solved in {res['lookahead_steps']} steps" if res.get("lookahead_steps") else ""
    return f", stream lookahead {res['lookahead']} frames{past}{over}"


def cost_table(res: dict) -> str:
    tim = {(r["frames"], r["mode"], r["technique"]): r for r in res.get("timing", [])}
    wall = (f"wall clock median of {res['repeats']} runs of {res.get('batch', 1)} clip(s) generated together at "
            f"{res['threads']} thread(s), decode included — NOISY on a "
            "shared machine" if tim else "no wall clock in this run (--repeats 0)")
    look = stream_text(res)
    L = [f"Cost per clip ({res['solver']}, {res['steps']} steps, guidance {res.get('guidance', 1.0)}{look}; MACs from "
         f"FlopCounterMode, deterministic; {wall}):", "",
         "| frames | mode | GMACs (all) | GMACs to 1st frame | of which attention | s | s to 1st frame | frames/s |",
         "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["cost"]:
        t = tim.get((r["frames"], r["mode"], None), {})
        L.append(f"| {r['frames']} | {r['mode']} | {r['macs'] / 1e9:.2f} | {r['first_frame_macs'] / 1e9:.2f} | "
                 f"{r['attention_macs'] / 1e9:.2f} | {_s(t, 's', '.2f')} | {_s(t, 'first_frame_s', '.2f')} | "
                 f"{_s(t, 'fps', '.1f')} |")
    return "\n".join(L)


def quality_table(res: dict) -> str:
    look = stream_text(res)
    T = res.get("quality_frames", 16)
    windows = "" if T == 16 else " (scored in 16-frame windows)"
    L = [f"Quality at {T} frames{windows} (n={res['n']} clips, {len(res['seeds'])} seeds {res['seeds']}, guidance "
         f"{res.get('guidance', 1.0)}{look}, mean ± sd; difference stream − full per seed, 95% t-interval):", "",
         f"| row | {KEY_HEADS} |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(f"generated, {m}", res["quality"][m]["summary"]) for m in ("full", "stream")]
    rows += [(name, v["summary"]) for name, v in res["real"].items()]
    for name, s in rows:
        L.append(f"| {name} | {score_cells(s)} |")
    L.append("| stream − full | " + " | ".join(ci_cell(res["quality_paired"][x]) for x in KEYS) + " |")
    vs = vs_shuffled(res)
    if vs is not None:
        L.append("| full − real frame-shuffled (clip FD) | – | " + ci_cell(vs, 1) + " | – | – | – | – |")
    t = res.get("quality_to_real")                 # absent in results written before the to-real rule
    motion = res.get("motion", "dense") if t else "dense"
    if t:
        L += ["", "Motion against the real clips above: change in the distance to real, stream vs full "
              "(|stream − real| − |full − real|, 95% t-interval; above 0: farther from real)"
              + (", the registered rule's motion scores" if motion == "to-real" else "")
              + f": speed {ci_cell(t['speed'])}, acceleration {ci_cell(t['accel'])}."]
    bad = judged(res["quality_paired"], t, motion)
    verdicts = {"stream": (not bad, bad)}
    if (res.get("prereg") or {}).get("id") in MODEL_CLAUSE and vs is not None:
        verdicts["the model clause"] = model_clause(res, vs)
    return "\n".join(L + verdict_line(res, verdicts))


# pre-registrations whose rule also decides the model line (docs/bench/prereg/video-dit-continued-confirm.json)
MODEL_CLAUSE = {"video-dit-continued-confirm", "video-stream-lookahead-confirm", "video-stream-overlap-confirm",
                "video-stream-cont5-confirm", "video-stream-tb5-confirm",
                "video-stream-scale-second-confirm"}


def vs_shuffled(res: dict) -> dict | None:
    """Issue 27's model line as a paired interval: the full-sequence clips' clip FD minus the real
    frame-shuffled clips' on the same seeds (None in a results file without the real rows)."""
    real = res.get("real", {}).get("real frame-shuffled")
    if not real or "per_seed" not in real:
        return None
    return paired(real["per_seed"], res["quality"]["full"]["per_seed"], "clip_fd")


def model_clause(res: dict, vs: dict) -> tuple[bool, list]:
    """The registered model clause: clip FD clearly below frame-shuffled real clips (interval of the paired
    difference entirely below 0) and under 10x the real clips' (the same order of magnitude)."""
    bad = [] if vs["ci95"][1] < 0 else ["clip FD vs frame-shuffled"]
    if not res["quality"]["full"]["summary"]["clip_fd"] < 10 * res["real"]["real"]["summary"]["clip_fd"]:
        bad.append("clip FD vs 10x real")
    return not bad, bad


def sparse_table(res: dict) -> str:
    tim = {(r["frames"], r["mode"], r["technique"]): r for r in res.get("timing", [])}
    long = max(res["lengths"])
    L = [f"Sparse attention, streamed {long}-frame clips (quality: n={res['n_long']} clips, {len(res['seeds'])} seeds, "
         "scored in 16-frame windows; change vs dense, 95% t-interval)"
         + (f"; the sparse rows run the weights of {res['sparse_model']['stem']} (tensors "
            f"{res['sparse_model']['sha256'][:12]}), the dense row those of the model above:"
            if res.get("sparse_model") else ":"), "",
         "| attention | config | attention GMACs | vs dense | all GMACs | s (noisy) | Δ frame FD | Δ clip FD | Δ identity "
         "| Δ label acc | Δ speed px/f | Δ accel px/f² |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    dense_attn = res["sparse_cost"][0]["attention_macs"]
    for r in res["sparse_cost"]:
        name = r["technique"] or "dense"
        t = tim.get((long, "stream", r["technique"]), {})
        p = res["sparse_quality"].get(name, {}).get("paired")
        d = [(ci_cell(p[x]) if p else "–") for x in KEYS]
        L.append(f"| {name} | {json.dumps(r['config']) if r['config'] else ''} | {r['attention_macs'] / 1e9:.2f} | "
                 f"{r['attention_macs'] / dense_attn:.2f}x | {r['macs'] / 1e9:.2f} | {_s(t, 's', '.2f')} | "
                 + " | ".join(d) + " |")
    verdicts = verdict_line(res, sparse_verdicts(res)) if "sparse_quality" in res else []
    return "\n".join(L + motion_lines(res) + verdicts)


def motion_lines(res: dict) -> list[str]:
    """The sparse rows' motion against the real clips (results with real long clips only)."""
    real = res.get("sparse_real")
    rows = [(t, v["to_real"]) for t, v in res.get("sparse_quality", {}).items() if "to_real" in v]
    if not real or not rows:
        return []
    s, d = real["summary"], res["sparse_quality"]["dense"]["summary"]
    L = ["", f"Motion against real held-out clips ({real['n']} per seed, {max(res['lengths'])} frames, 16-frame "
         f"windows): speed {s['speed']:.2f} px/f (dense {d['speed']:.2f}), acceleration {s['accel']:.2f} px/f² "
         f"(dense {d['accel']:.2f}). Change in the distance to real vs dense (|row − real| − |dense − real|, "
         "95% t-interval; above 0: farther from real)" + (", the registered rule's motion scores:"
                                                           if res.get("motion") == "to-real" else ":"), ""]
    L += [f"- {t}: speed {ci_cell(v['speed'])}, acceleration {ci_cell(v['accel'])}" for t, v in rows]
    return L


# the worse side of each score in the sparse pre-registration's rule: +1 higher is worse, -1 lower is worse,
# 0 either direction counts (docs/bench/prereg/video-sparse-confirm.json)
WORSE = {"frame_fd": 1, "clip_fd": 1, "identity": -1, "label_acc": -1, "accel": 1, "speed": 0}


# the rows a pre-registration of each part names
ROWS = {"quality": ["full", "stream"], "sparse": ["dense", *SPARSE]}


def worse(paired: dict, sides: dict = WORSE) -> list[str]:
    """The scores whose 95% interval of the paired change lies entirely on their worse side (``sides``)."""
    bad = []
    for k, side in sides.items():
        lo, hi = paired[k]["ci95"]
        if lo is not None and ((side >= 0 and lo > 0) or (side <= 0 and hi < 0)):
            bad.append(k)
    return bad


def judged(paired: dict, to_real: dict | None, motion: str = "dense") -> list[str]:
    """The scores on their worse side under a motion rule (``MOTION_RULES``): "dense" ``worse(paired)``; "to-real"
    the same with speed and acceleration replaced by their distances to the real clips' (``to_real``, higher is
    worse)."""
    if motion == "dense":
        return worse(paired)
    rest = [k for k in WORSE if k not in to_real]
    return worse({**{k: paired[k] for k in rest}, **{f"{k} to real": v for k, v in to_real.items()}},
                 {**{k: WORSE[k] for k in rest}, **{f"{k} to real": 1 for k in to_real}})


def sparse_verdicts(res: dict) -> dict:
    """{row: (meets, [scores whose interval lies on the worse side])} under the registered rule:
    attention MACs <= 0.5x dense and no score's 95% interval entirely on its worse side; with ``motion`` "to-real"
    speed and acceleration are their distances to the real clips' (``to_real``: higher is worse)."""
    dense = res["sparse_cost"][0]["attention_macs"]
    out = {}
    for r in res["sparse_cost"][1:]:
        q = res["sparse_quality"][r["technique"]]
        bad = judged(q["paired"], q.get("to_real"), res.get("motion", "dense"))
        out[r["technique"]] = (r["attention_macs"] <= 0.5 * dense and not bad, bad)
    return out


def verdict_line(res: dict, verdicts: dict) -> list[str]:
    """The registered rule's outcome under a table (nothing when the run was not pre-registered)."""
    if not res.get("prereg"):
        return []
    return ["", f"Pre-registered rule ({res['prereg']['path']}, commit {res['prereg']['commit'][:7]}): " + "; ".join(
        f"{t} {'MEETS' if ok else 'FAILS'}" + (f" (interval past the rule's bound: {', '.join(bad)})" if bad else "")
        for t, (ok, bad) in verdicts.items()) + "."]


def adapter_table(res: dict) -> str:
    """An adapted model's quality row beside the from-scratch rows it is paired with (``vs_from_scratch``)."""
    cols = (("frame_fd", 1), ("clip_fd", 0), ("identity", 2), ("label_acc", 2), ("speed", 2))
    L = [f"| model (scale {res['guidance']:g}, {res['mode']} sequence, n={res['n']}, seeds {res['seeds']}) | trained | "
         "frame FD | clip FD | identity | label acc | speed px/f |", "|---|---|---:|---:|---:|---:|---:|"]
    base = res.get("vs_from_scratch", {})
    for name, v in base.items():
        s = v["summary"]
        L.append(f"| {name} | 100% | " + " | ".join(pm(s[k], s[f'{k}_sd']) for k, _ in cols) + " |")
    s = res["quality"]["summary"]
    L.append(f"| {res['arch']}, {res['model']['steps']} steps (batch {res['model']['batch_size']}) | "
             f"{res['trainable_fraction']:.1%} | " + " | ".join(pm(s[k], s[f'{k}_sd']) for k, _ in cols) + " |")
    for name, v in base.items():
        L.append(f"| adapted − {name} (paired) | | " + " | ".join(ci_cell(v[k], d) for k, d in cols) + " |")
    return "\n".join(L)


TABLES = {"cost": cost_table, "quality": quality_table, "sparse": sparse_table, "adapter": adapter_table}


def table(res: dict) -> str:
    """Every table a results file has rows for."""
    return "\n\n".join(TABLES[p](res) for p in PARTS if p in res.get("parts", PARTS))


def first_block_table(res: dict) -> str:
    """Label accuracy per 4-frame block, per model and generation mode, averaged over the seeds
    (docs/bench/video/first_block.py's results, and the summary of docs/bench/video/stream-32-teacher/diagnose.py,
    whose ``gaps`` — label accuracy over some blocks minus the full sequence's, a t-interval over the seeds — are
    listed after the table)."""
    per_row = [(m, v, row, list(seeds.values())) for m, v in res["models"].items() for row, seeds in v["rows"].items()]
    k = len(per_row[0][3][0]["label_acc_per_block"])
    L = [f"Label accuracy per block of 4 frames (n={res['n']} clips per seed, seeds {res['seeds']}, guidance "
         f"{res['guidance']}; mean over the seeds):", "",
         "| model | generation | " + " | ".join(f"block {b + 1}" for b in range(k))
         + " | label acc | identity | speed px/f | frame FD | clip FD |",
         "|---|---|" + "---:|" * (k + 5)]
    for m, v, row, per in per_row:
        name = "video-dit (shipped)" if m == "video-dit" else f"{Path(m).parent.name} ({v['sha256'][:8]})"
        mean = lambda key: sum(p[key] for p in per) / len(per)          # noqa: E731
        blocks = [sum(p["label_acc_per_block"][b] for p in per) / len(per) for b in range(k)]
        L.append(f"| {name} | {row} | " + " | ".join(f"{b:.3f}" for b in blocks)
                 + f" | {mean('label_acc'):.3f} | {mean('identity'):.3f} | {mean('speed'):.2f} | "
                   f"{mean('frame_fd'):.1f} | {mean('clip_fd'):.1f} |")
    for what, gaps in res.get("gaps", {}).items():
        L += ["", f"Label accuracy over {what}, minus the full sequence's (per seed, 95% t-interval): "
              + "; ".join(f"{row} {ci_text(g['mean'], g['ci95'])}" for row, g in gaps.items()) + "."]
    return "\n".join(L)


TABLES["first_block"] = first_block_table


def label_pool_table(res: dict) -> str:
    """Each run's paired label-accuracy and identity gaps (stream - full, 95% t-interval over its seeds) and the
    gaps pooled over all their seeds (docs/bench/video/stream-32-posthoc/posthoc.py's results)."""
    scores = list(res["pooled"])
    L = ["Stream − full at 32 frames, per seed (95% t-interval over the seeds):", "",
         "| run | what | seeds | " + " | ".join(s.replace("_acc", " acc") for s in scores) + " |",
         "|---|---|---|" + "---:|" * len(scores)]
    for name, r in res["runs"].items():
        L.append(f"| {name} | {r['what']} | {r['seeds'][0]}-{r['seeds'][-1]} | "
                 + " | ".join(ci_text(r[s]['mean'], r[s]['ci95']) for s in scores) + " |")
    k = res["pooled"][scores[0]]["k"]
    L.append(f"| **pooled** | all of them | {k} seeds | "
             + " | ".join(f"**{ci_text(res['pooled'][s]['mean'], res['pooled'][s]['ci95'])}**" for s in scores) + " |")
    return "\n".join(L)


TABLES["label_pool"] = label_pool_table


def jitter_table(res: dict) -> str:
    """Acceleration by frame position within the stream's blocks, per row: where a stream jitters. Two kinds of
    results: docs/bench/video/sparse-jitter/diagnose.py's (streamed 128-frame clips, sparse rows beside the dense
    one, their attention share) and docs/bench/video/stream-jitter/diagnose.py's (the full sequence and stream
    options, each row's options)."""
    rows = res["rows"]
    k = len(rows["real"]["accel_by_position"])
    sparse = "dense" in rows
    if sparse:
        dense = rows["dense"]["attention_macs"]
        opts = ", ".join(f"{a} {b}" for a, b in (res.get("stream_options") or {}).items()) or "the plain stream"
        what = (f"{res['n']} streamed 128-frame clips, seed {res['seed']}, {opts}; sparse rows on "
                f"{res['sparse_model']}:")
        head, total = "attention vs dense", "all"
    else:
        what, head, total = f"and over the whole clip, {res['n']} clips of {res['frames']} frames, seed {res['seed']}:", \
            "options", "whole clip"
    L = [f"Ink-centre acceleration |Δ²c| (px/frame²) by frame position in the stream's {k}-frame blocks (0: a "
         f"block's first frame){',' if sparse else ''} {what}", "",
         f"| row | {head} | " + " | ".join(f"pos {i}" for i in range(k)) + f" | {total} | speed px/f |",
         f"|---|{'---:' if sparse else '---'}|" + "---:|" * k + "---:|---:|"]
    for name, v in rows.items():
        if sparse:
            cell = f"{v['attention_macs'] / dense:.2f}x" if "attention_macs" in v else "–"
            cfg = f" {json.dumps(v['config'])}" if v.get("config") else ""
        else:
            cell, cfg = ", ".join(f"{a} {b}" for a, b in (v.get("options") or {}).items()), ""
        L.append(f"| {'real held-out clips' if name == 'real' else name}{cfg} | {cell} | "
                 + " | ".join(f"{a:.2f}" for a in v["accel_by_position"]) + f" | {v['accel']:.2f} | {v['speed']:.2f} |")
    return "\n".join(L)


TABLES["jitter"] = jitter_table


def sparse_summary_table(res: dict) -> str:
    """Each sparse-part row's scores as mean ± sd over the run's seeds, with the real held-out clips beside them: the
    levels behind the sparse table's paired changes."""
    dense = res["sparse_cost"][0]["attention_macs"]
    share = {c["technique"] or "dense": c["attention_macs"] / dense for c in res["sparse_cost"]}
    rows = {**res["sparse_quality"], **({"real held-out clips": res["sparse_real"]} if res.get("sparse_real") else {})}
    L = [f"Scores of the streamed 128-frame clips, mean ± sd over seeds {res['seeds']} ({res['n_long']} clips per seed, "
         "16-frame windows); real: held-out clips of the same seeds:", "",
         f"| row | attention vs dense | {KEY_HEADS} |", "|---|---:|" + "---|" * len(KEYS)]
    for name, r in rows.items():
        att = f"{share[name]:.3f}x" if name in share else "–"
        L.append(f"| {name} | {att} | {score_cells(r['summary'])} |")
    return "\n".join(L)


TABLES["sparse_summary"] = sparse_summary_table


def render(sources: list[dict], opts: dict) -> str:
    """``<!-- table: docs/bench/video/video.json kind=video part=quality -->`` (effdiff.bench.tables)."""
    part = opts.get("part", "quality")
    if part not in TABLES:
        raise ValueError(f"kind=video: unknown part {part!r}; known: {', '.join(TABLES)}")
    return TABLES[part](sources[0])


def registered(a) -> dict:
    """Check a video pre-registration (committed, unedited; rows = the registered parts' rows: ``quality``
    full and stream, ``sparse`` dense and the file's ``configs`` — {row label: config}, each label's technique
    a video sparse-attention technique) and set ``a``'s seeds, clips, guidance, parts and sparse rows from it;
    its commit record for the results."""
    from ..video.sparse import NAMES
    from .prereg import PreregError, for_runner
    spec, record = for_runner(a.prereg, "video")
    parts = spec.get("parts") or []
    if not parts or set(parts) - set(ROWS):
        raise PreregError(f"{a.prereg}: parts must be among {sorted(ROWS)}, got {parts}")
    configs = spec.get("configs") or {}
    rows = [r for p in parts for r in (["dense", *configs] if p == "sparse" else ROWS[p])]
    bad = [c for c in configs if technique_of(c) not in NAMES]
    if spec["rows"] != rows or bad or ("sparse" in parts and not configs):
        raise PreregError(f"{a.prereg}: rows must be {rows} (the parts' rows, sparse: dense and the configs' labels) "
                          f"and configs name the techniques {list(NAMES)} (rows {spec['rows']}, configs {configs})")
    a.seeds, a.guidance, a.parts, a.sparse = spec["seeds"], spec["guidance"], parts, configs or None
    a.motion = spec.get("motion", "dense")
    if a.motion not in MOTION_RULES:
        raise PreregError(f"{a.prereg}: motion must be one of {list(MOTION_RULES)}, got {a.motion!r}")
    # "model" (all rows) and "sparse_model" (the sparse rows): {"path": model stem, "sha256": its tensors'},
    # checked before the run; without "model" the rows run --model (default: the shipped video-dit)
    for key in ("model", "sparse_model"):
        if isinstance(spec.get(key), dict):
            from ..video.sampling import VideoModel
            sm = spec[key]
            got = tensors_sha256(VideoModel.load(sm["path"]).den.net.state_dict())
            if got != sm["sha256"]:
                raise PreregError(f"{a.prereg}: {key} {sm['path']} has tensors {got[:12]}, registered "
                                  f"{sm['sha256'][:12]}")
            setattr(a, key, sm["path"])
    a.n_long, a.n = spec.get("n_long", a.n_long), spec.get("n", a.n)
    a.quality_frames = spec.get("quality_frames", 16)
    from ..video.sampling import STREAM_OPTIONS
    for k, typ in STREAM_OPTIONS.items():
        setattr(a, k, typ(spec.get(k, 0)))
    return record


def ship(results: str, export, reproduce: str, steps_total: int, name: str = "video-dit", note: str = "") -> Path:
    """Copy a scored video DiT export into the zoo as ``name``, its card's scores taken from the results
    file ``results`` (a quality run of exactly these tensors: SHA-256 checked), with a card page."""
    from .. import assets, checkpoint as ckpt
    from ..io import atomic_write
    from ..metrics.stats import pm
    res = json.loads(Path(results).read_text())
    tensors, meta = ckpt.load(Path(export))
    if tensors_sha256(tensors) != res.get("model_sha256"):
        raise ValueError(f"{export} is not the model scored in {results}")
    q, real = res["quality"], res["real"]
    m = {k: v for k, v in meta["card"].get("metrics", {}).items() if k in ("initialised_from", "stopped_at_step")}
    m.update({"guidance": res["guidance"], "metrics_protocol": (
        f"python -m effdiff.bench.video: {res['solver']} {res['steps']} steps, {res['schedule']}, guidance "
        f"{res['guidance']}, n={res['n']} clips of 16 frames per seed, seeds {res['seeds']}, video-eval against "
        f"held-out clips; results: {results}")})
    for mode in ("full", "stream"):
        for key in ("frame_fd", "clip_fd", "identity", "label_acc"):
            m[f"{key}_{mode}"], m[f"{key}_{mode}_sd"] = q[mode]["summary"][key], q[mode]["summary"][f"{key}_sd"]
    m["clip_fd_real"] = real["real"]["summary"]["clip_fd"]
    m["clip_fd_shuffled"] = real["real frame-shuffled"]["summary"]["clip_fd"]
    card = meta["card"]
    card.update(metrics=m, reproduce=reproduce, steps_total=steps_total)
    ckpt.save(assets.WEIGHTS / name, tensors, meta)
    f, st = q["full"]["summary"], q["stream"]["summary"]
    page = [f"# {name} — latent video DiT on moving digits", "",
            f"- **Network**: `effdiff.video.model.VideoDiT` {json.dumps(meta['model'], sort_keys=True)}; rectified flow, "
            "velocity prediction, class-conditional (p_uncond 0.1). Per-frame latents of `mnist-ae` (32x32 frame -> "
            "4x8x8); tensors `[B, C, T, H, W]`. Model kind `video`: `effdiff.zoo.load(\"video-dit\")` returns an "
            "`effdiff.video.sampling.VideoModel`.",
            f"- **Trained**: {reproduce} — the last run {card['steps']} steps, batch {card['batch_size']}, seed "
            f"{card['seed']}, {card['wall_time_s']} s on the 2-core CPU at 1 thread{note}; {steps_total:,} steps in all.",
            f"- **Quality** ({m['metrics_protocol']}): full-sequence frame FD {pm(f['frame_fd'], f['frame_fd_sd'])}, "
            f"clip FD {pm(f['clip_fd'], f['clip_fd_sd'])}, identity {f['identity']:.2f}, label accuracy "
            f"{f['label_acc']:.2f}; streamed clip FD {pm(st['clip_fd'], st['clip_fd_sd'])}; real held-out clips: clip FD "
            f"{m['clip_fd_real']:.1f}; frame-shuffled real clips: {m['clip_fd_shuffled']:.1f}.",
            "- Samples: `docs/video/samples-*.png` / `.gif`. See docs/video.md (what is met and what is not)."]
    atomic_write(assets.WEIGHTS / f"{name}.md", "\n".join(page) + "\n")
    return assets.WEIGHTS / name


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="effdiff video bench: streaming vs full, sparse attention")
    ap.add_argument("--out", default=None)
    ap.add_argument("--model", default=None, help="model stem (default: the shipped video-dit)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-long", type=int, default=24)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--solver", default="dpmpp-2m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    ap.add_argument("--batch", type=int, default=1, help="clips generated together in each timed run")
    ap.add_argument("--lookahead", type=int, default=0, help="the stream's first block from a full-sequence solve of "
                    "this many frames (generate_stream's lookahead; 0: off)")
    ap.add_argument("--lookahead-past", type=int, default=0, help="...taken after this many past frames of that "
                    "solve (generate_stream's lookahead_past)")
    ap.add_argument("--overlap", type=int, default=0, help="each later streamed block sampled with this many next "
                    "frames, discarded (generate_stream's overlap)")
    ap.add_argument("--context-noise", type=float, default=0.0, help="each streamed block committed noised to this "
                    "flow time (generate_stream's context_noise; for a model trained with it; 0: clean)")
    ap.add_argument("--history-guidance", type=int, default=0, choices=(0, 1), help="1: under guidance the stream's "
                    "unconditional branch drops the context too (generate_stream's history_guidance)")
    ap.add_argument("--overlap-second", type=int, default=0, help="the second streamed block sampled with this many "
                    "next frames instead of --overlap (generate_stream's overlap_second; 0: --overlap)")
    ap.add_argument("--scale-second", type=float, default=0.0, help="the second streamed block at this guidance scale "
                    "instead of --guidance (generate_stream's scale_second; 0: --guidance)")
    ap.add_argument("--scale-blocks", type=float, default=0.0, help="every block the stream samples itself (not the "
                    "lookahead solve) at this guidance scale instead of --guidance (generate_stream's scale_blocks; "
                    "0: --guidance)")
    ap.add_argument("--lookahead-blocks", type=int, default=0, help="the stream keeps this many first blocks of the "
                    "lookahead solve (generate_stream's lookahead_blocks; 0 or 1: the first block)")
    ap.add_argument("--lookahead-steps", type=int, default=0, help="the lookahead solve in this many steps (the "
                    "schedule resampled; generate_stream's lookahead_steps; 0: --steps)")
    ap.add_argument("--carry", type=int, default=0, choices=(0, 1), help="1: each streamed block's first frame "
                    "kept from the previous solve's next frames (generate_stream's carry; needs --overlap)")
    ap.add_argument("--quality-frames", type=int, default=16, help="the quality rows' clip length (scored in 16-frame "
                    "windows beyond 16)")
    ap.add_argument("--quick", action="store_true", help="n=40, n_long=6, 1 timing repeat")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS, help="which rows to run")
    ap.add_argument("--sparse", type=json.loads, default=None, help="sparse rows as JSON {label: config}, a label "
                    "being a technique name optionally followed by ':tag' (default: the shipped SPARSE)")
    ap.add_argument("--sparse-model", default=None, help="model stem that runs the sparse rows (e.g. one fine-tuned "
                    "under the pattern, python -m effdiff.video.train --attention ...); the dense row stays --model's")
    ap.add_argument("--motion", default="dense", choices=MOTION_RULES, help="how the sparse rows' verdicts judge "
                    "motion: dense (speed: any change from the dense stream; acceleration: higher) or to-real (both as "
                    "distances to real held-out clips': farther is worse)")
    ap.add_argument("--prereg", default=None, help="a committed pre-registration (effdiff-prereg-1, suite 'video'): "
                    "its seeds, n_long, guidance and parts replace the flags; the results record its commit")
    a = ap.parse_args(argv)
    if a.quick:
        a.n, a.n_long, a.repeats = 40, 6, 1
    extra = {"provenance": provenance()}
    if a.prereg:
        extra["prereg"] = registered(a)
    from ..video.sampling import STREAM_OPTIONS
    res = run(a.out, tuple(a.lengths), a.n, a.n_long, tuple(a.seeds), a.steps, a.solver, a.repeats, a.threads, a.model,
              a.guidance, tuple(a.parts), a.batch, extra, a.sparse, **{k: getattr(a, k) for k in STREAM_OPTIONS},
              sparse_model=a.sparse_model, motion=a.motion, quality_frames=a.quality_frames)
    print(res["table"])


if __name__ == "__main__":
    main()
