"""``effdiff bench --suite compress``: quantization and pruning rows against the full-precision run of
the same solver and steps (same noise): weight/activation bit-widths for naive and timestep-aware
PTQ (+PTQD), the real int8 path (fastest kernel per layer, and fbgemm everywhere), Diff-Pruning at
60% width with a short fine-tune, and a composition (W8A8 + DeepCache + DPM-Solver++(2M) at 10 NFE).

Every compressed row is prepared on 32 samples of other noise (calibration / importance), runs on
its own freshly loaded model, and carries the handle's stats (``info["compress"]``: packed / held
bytes, kernels chosen, parameters kept). ms/sample is timed in the runner's interleaved rounds.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import techniques as T
from ..caching import DeepCacheConfig
from ..metrics import peak_memory
from ..prune import DepthPruningConfig, DiffPruningConfig, HeadPruningConfig, finetune
from ..quant import Int8Config, NaivePTQConfig, PTQConfig, QATConfig, SVDQuantConfig
from ..sampling import randn
from ..errors import UnknownName
from .config import BenchConfig, register_suite, save_table
from .scoring import pct_ci

PRUNE_RATIO = {"digits-unet": 0.6, "digits-dit": 0.65}
FINETUNE_STEPS = 800          # 10% of the zoo models' 8000 training steps (the issue's budget)

# row label -> [(technique, steps -> config)] applied in order
ROWS = {
    "ptq-naive-W8A8": [("ptq-naive", lambda s, m: NaivePTQConfig(8, 8))],
    "ptq-W8A8": [("ptq", lambda s, m: PTQConfig(8, 8))],
    "ptq-W8A8+ptqd": [("ptq", lambda s, m: PTQConfig(8, 8, ptqd=True))],
    "ptq-naive-W4A8": [("ptq-naive", lambda s, m: NaivePTQConfig(4, 8))],
    "ptq-W4A8+ptqd": [("ptq", lambda s, m: PTQConfig(4, 8, ptqd=True))],
    # PTQD rows and AdaRound's 100 iterations chosen on selection seeds 100-101 (docs/compression.md)
    "ptq-W4A8+adaround+ptqd": [("ptq", lambda s, m: PTQConfig(4, 8, adaround_iters=100, ptqd=True))],
    "svdquant-W4A8": [("svdquant", lambda s, m: SVDQuantConfig(w_bits=4, a_bits=8))],
    "qat-W4A8": [("qat", lambda s, m: QATConfig(w_bits=4, a_bits=8, steps=200, progress=False))],
    "int8-auto": [("int8", lambda s, m: Int8Config())],
    "int8-fbgemm": [("int8", lambda s, m: Int8Config(backend="fbgemm"))],
    # share of each private width removed, per model, so both lose >= 40% of their MACs (the DiT prunes
    # only its MLPs: 60% of them removes 39% of its MACs)
    "diff-pruning+ft": [("diff-pruning", lambda s, m: DiffPruningConfig(ratio=PRUNE_RATIO.get(m, 0.6)))],
    "depth-40%+ft": [("depth-pruning", lambda s, m: DepthPruningConfig(drop=0.4))],
    "depth-40%+kd": [("depth-pruning", lambda s, m: DepthPruningConfig(drop=0.4))],     # fine-tune distils the fp model
    "depth-2+heads-50%+ft": [("depth-pruning", lambda s, m: DepthPruningConfig(drop=2)),
                             ("head-pruning", lambda s, m: HeadPruningConfig(ratio=0.5))],
}
KD_ROWS = ("depth-40%+kd",)      # fine-tuned by output distillation from the unpruned model (LAPTOP-style)
QUICK = ("ptq-naive-W8A8", "ptq-W8A8", "ptq-W4A8+ptqd", "int8-auto")
COMPOSED = ("ptq-W8A8+deepcache-N3", [("ptq", lambda s, m: PTQConfig(8, 8)), ("deepcache", lambda s, m: DeepCacheConfig(interval=3))])


def call_peak(den, x, sigmas, labels) -> int:
    """Peak tensor memory of one denoiser call on the batch (activations and temporaries; the
    weights it holds are the bytes column), by ``metrics.peak_memory``."""
    with torch.no_grad():
        return peak_memory(lambda: den(x, sigmas[:1].float().expand(len(x)), labels))


class Row:
    """Prepare (calibrate / prune + fine-tune) and apply one row's techniques to its own model."""

    def __init__(self, parts, solver: str, model: str, kd: bool = False):
        self.parts, self.solver, self.model, self.handle, self.peak, self.kd = parts, solver, model, None, None, kd

    def setup(self, den, sigmas, x, labels):
        self.batch = len(x)
        run = T.Run(randn(x[:32].shape, seed=12345) * sigmas[0].float(), sigmas, self.solver, labels[:32])
        names = [n for n, _ in self.parts]
        configs = {n: T.get(n).prepare(den, make(len(sigmas) - 1, self.model), run) for n, make in self.parts}
        self.handle = T.apply(names, den, configs)
        if any(T.get(n).family == "prune" for n in names):
            from .. import zoo
            teacher = zoo.load(self.model) if self.kd else None
            finetune(den, steps=FINETUNE_STEPS, teacher=teacher, distill=1.0)
        return self.handle

    def generate(self, den, D, x, sigmas, labels, seed):
        if self.peak is None and len(x) == self.batch:      # one network call on the whole batch
            self.peak = call_peak(den, x, sigmas, labels)
        res = self.handle.sample(D, x, sigmas, self.solver, labels, seed=seed, return_info=True)
        res.stats["peak_bytes"] = self.peak
        stats = self.handle.stats
        res.stats["compress"] = {k: v.as_dict() for k, v in stats.items()} if isinstance(stats, dict) else stats.as_dict()
        return res


def configs(model: str, labels=None, quick: bool = False) -> list[BenchConfig]:
    """The fp32 reference and the ``ROWS`` named in ``labels`` (default: all, or ``QUICK``) that apply
    to ``model``; the composition too when ``labels`` is None and not ``quick``."""
    base = "ddim-10"
    out = [BenchConfig(model, base, "ddim", "uniform", 10, reference=True)]
    wanted = labels if labels is not None else (QUICK if quick else list(ROWS))
    unknown = [w for w in wanted if w not in ROWS]
    if unknown:
        raise UnknownName(f"unknown compress row {unknown[0]!r}; known: {', '.join(ROWS)}")
    for label in wanted:
        parts = ROWS[label]
        if all(T.get(n).applies_to(_probe(model)) for n, _ in parts):
            row = Row(parts, "ddim", model, kd=label in KD_ROWS)
            out.append(BenchConfig(model, f"{base}+{label}", "ddim", "uniform", 10, baseline=base,
                                   setup=row.setup, generate=row.generate))
    label, parts = COMPOSED
    if labels is None and not quick and all(T.get(n).applies_to(_probe(model)) for n, _ in parts):
        row = Row(parts, "dpmpp-2m", model)
        out.append(BenchConfig(model, "dpmpp-2m-10", "dpmpp-2m", "logsnr", 10))
        out.append(BenchConfig(model, f"dpmpp-2m-10+{label}", "dpmpp-2m", "logsnr", 10, baseline="dpmpp-2m-10",
                               setup=row.setup, generate=row.generate))
    return out


_PROBES: dict = {}


def _probe(model: str):
    from .. import zoo
    if model not in _PROBES:
        _PROBES[model] = zoo.load(model)
    return _PROBES[model]


_SIZE_KEYS = ("packed_bytes", "bytes_after", "params_after")


def _stats(r: dict) -> dict:
    """A row's compression stats; of a composition's (technique -> stats), the last that knows a size."""
    c = (r.get("info") or {}).get("compress") or {}
    if c and all(isinstance(v, dict) for v in c.values()):
        sized = [v for v in c.values() if any(k in v for k in _SIZE_KEYS)]
        return sized[-1] if sized else {}
    return c


def model_bytes(r: dict) -> float | None:
    """Weight bytes of a row's model: packed (fake-quant: what the bit-widths store), held (int8
    kernels: the tensors actually in memory) or 4 bytes per kept parameter (pruned); None if unknown."""
    c = _stats(r)
    for key in _SIZE_KEYS[:2]:
        if key in c:
            return float(c[key])
    return 4.0 * c["params_after"] if "params_after" in c else None


def _bytes(r: dict) -> str:
    c = _stats(r)
    if "packed_bytes" in c:
        return f"{c['packed_bytes'] / 1e6:.3f} MB packed (fake-quant; {c['fp32_bytes'] / 1e6:.3f} fp32)"
    if "bytes_after" in c:
        return f"{c['bytes_after'] / 1e6:.3f} MB held ({c['bytes_before'] / 1e6:.3f} fp32)"
    if "params_after" in c:
        return f"{4 * c['params_after'] / 1e6:.3f} MB ({c['params_after']:,} params)"
    return ""


def pareto(results: dict, out: Path) -> Path:
    """One figure, two panels per model: FD against weight bytes and against measured ms/sample."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..viz import save_figure
    rows = results["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 4.2 * len(models)), dpi=110, squeeze=False)
    for ax_row, model in zip(axes, models):
        rs = [r for r in rows if r["model"] == model]
        fp32 = sum(4 * p.numel() for p in _probe(model).parameters())      # the uncompressed rows
        for ax, key, label in ((ax_row[0], "bytes", "weight MB"), (ax_row[1], "ms_per_sample", "ms / sample")):
            for r in rs:
                xv = (model_bytes(r) or fp32) / 1e6 if key == "bytes" else r["ms_per_sample"]
                fake = "packed_bytes" in _stats(r) and key == "ms_per_sample"
                ax.errorbar(xv, r["fd"], yerr=r.get("fd_sd"), fmt="o" if not fake else "x", ms=4, capsize=2,
                            color="gray" if fake else None)
                ax.annotate(r["config"].replace("ddim-10+", ""), (xv, r["fd"]), fontsize=6, xytext=(3, 2),
                            textcoords="offset points")
            ax.set_xscale("log")
            ax.set_xlabel(label + (" (x: fake-quant, simulated, not a speed)" if key != "bytes" else ""))
            ax.set_ylabel("FD vs held-out (mean ± sd)")
            ax.set_title(f"{model}: FD vs {label} (lower-left is better)")
            ax.grid(alpha=0.3)
    return save_figure(fig, out / "pareto_compress.png")


def _int8_layers(r: dict) -> str:
    """An int8 row's MACs cell: the counter misses integer kernels, so the layer counts instead (issue 24)."""
    c = _stats(r)
    if "fbgemm" not in c:
        return "same MACs, int8 kernels"
    n = c["int_mm"] + c["fbgemm"] + c["dequant"] + c["fp32"]
    return f"same MACs; {c['int_mm'] + c['fbgemm']} of {n} layers in integer kernels"


def report(results: dict, out: Path) -> str:
    lines = ["Compression: each row against the full-precision run of the same solver and steps (same noise):", "",
             "| model | run | bytes | peak activations | MACs ratio | wall-clock speed-up | FD | FD change (95% CI) | class acc |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        if "fd_change" in r:
            acc = "" if r.get("class_acc") is None else f"{100 * r['class_acc']:.1f}%"
            int8 = "int8" in r["config"]        # the MAC counter does not see integer kernels
            macs = _int8_layers(r) if int8 else f"{r['macs_ratio']:.2f}x"
            peak = (r.get("info") or {}).get("peak_bytes")
            peak = "" if peak is None else f"{peak / 1e6:.1f} MB"
            lines.append(f"| {r['model']} | {r['config']} | {_bytes(r)} | {peak} | {macs} | "
                         f"{r['speedup_vs_baseline']:.2f}x | {r['fd']:.3f} | {pct_ci(r['fd_change'], r.get('fd_change_ci'))} | "
                         f"{acc} |")
    n = results.get("n_samples")
    if n:
        for model in dict.fromkeys(r["model"] for r in results["rows"]):
            den = _probe(model)
            size = den.meta["model"]["image_size"] if hasattr(den, "meta") else 8
            x = torch.randn(n, den.meta["model"].get("in_channels", 1), size, size, generator=torch.Generator().manual_seed(0))
            peak = call_peak(den, x, torch.tensor([10.0]), torch.arange(n) % 10)
            lines.append(f"\n{model} at full precision: {sum(4 * p.numel() for p in den.parameters()) / 1e6:.3f} MB of "
                         f"weights, peak activations of one call on the {n}-sample batch {peak / 1e6:.1f} MB.")
    pareto(results, out)
    lines += ["", "![FD vs bytes and vs wall clock](pareto_compress.png)"]
    return save_table(out, "compress.md", lines)


register_suite("compress", lambda model, quick: configs(model, quick=quick),
               models=["digits-unet", "digits-dit"], report=report)


_Row = Row    # the old private name
