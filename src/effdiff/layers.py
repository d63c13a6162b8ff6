"""The layer table: every module of effdiff sits in one layer and imports only from its own layer or
lower ones. A higher layer reaches a lower one only by registering into it (solvers, techniques,
model kinds, datasets, bench suites). ``tests/test_layers.py`` holds the code to this table and
docs/architecture.md prints it.

A module belongs to the layer of the longest entry that is its name or a package above it.
"""
from __future__ import annotations

LAYERS: tuple[str, ...] = ("base", "contract", "driver", "solvers", "methods", "factory", "workflows", "app")

#: layer -> (module or package, what it owns) in the order the docs show them
TABLE: dict[str, tuple[tuple[str, str], ...]] = {
    "base": (
        ("effdiff.layers", "this table"),
        ("effdiff.aliases", "module attributes that moved to a lower module"),
        ("effdiff.errors", "`EffdiffError`, the base of every user error"),
        ("effdiff.device", "`resolve(device)`: a device this machine has, or a clear error"),
        ("effdiff.context", "the loop context (step, stage, branch)"),
        ("effdiff.io", "atomic writes, writable checks, hashing (`sha256_of`), `machine()`"),
        ("effdiff.checkpoint", "safetensors + JSON checkpoints, integrity"),
        ("effdiff.models", "reference networks (UNet, DiT, autoencoder, classifier, MLP)"),
        ("effdiff.assets", "the shipped files: names, cards, `load_network(name)`"),
        ("effdiff.seeds", "named seed ranges and their disjointness check"),
    ),
    "contract": (
        ("effdiff.process", "forward processes, sigma <-> t"),
        ("effdiff.denoisers", "network -> denoiser wrappers, guidance, `append_dims`"),
        ("effdiff.timesteps", "sigma schedules, fitted-schedule files"),
        ("effdiff.objectives", "training losses and densities"),
        ("effdiff.data", "embedded datasets and the dataset registry"),
        ("effdiff.kinds", "the model-kind registry: checkpoint metadata -> model"),
    ),
    "driver": (
        ("effdiff.sampling", "`sample()`: the one driver loop and the solver registry"),
    ),
    "solvers": (
        ("effdiff.solvers", "step functions and loop solvers (register into the driver)"),
    ),
    "methods": (
        ("effdiff.hooks", "named, reversible model hooks"),
        ("effdiff.techniques", "`Technique` and the technique registry (handles: `hooks.Handle`)"),
        ("effdiff.sites", "UNet/DiT/diffusers block sites"),
        ("effdiff.caching", "feature caching techniques"),
        ("effdiff.early_exit", "early exit"),
        ("effdiff.retrieval", "retrieval and approximate caching"),
        ("effdiff.quant", "quantization"),
        ("effdiff.prune", "pruning"),
        ("effdiff.systems", "compile, channels-last, CUDA graphs, ..."),
        ("effdiff.distributed", "parallel inference and data-parallel helpers"),
        ("effdiff.schedule_opt", "schedule fitting (AYS, DP) on a denoiser and data"),
        ("effdiff.metrics", "quality and cost metrics, evaluation networks' statistics"),
        ("effdiff.finetune.lora", "LoRA layers"),
        ("effdiff.finetune.targets", "which layers LoRA adapts"),
        ("effdiff.guidance", "guidance methods"),
        ("effdiff.video", "video denoisers and attention"),
        ("effdiff.distill.student", "model kind: distilled students"),
        ("effdiff.training.priorgrad", "model kind: PriorGrad"),
        ("effdiff.latent", "model kind: latent denoisers; the latent dataset"),
    ),
    "factory": (
        ("effdiff.zoo", "`load(name)` through the kinds registry, `install`, cards"),
        ("effdiff.integrations", "diffusers adapters, a user's own module"),
    ),
    "workflows": (
        ("effdiff.training", "the training loop, presets, tricks"),
        ("effdiff.distill", "distillation"),
        ("effdiff.finetune", "fine-tuning (LoRA, control)"),
        ("effdiff.latent.train", "the autoencoder trainer"),
        ("effdiff.recipes", "train a preset, sample a zoo model, fit a schedule"),
        ("effdiff.integrations.accelerate", "`accelerate(pipe, ...)`: techniques or a plan on a diffusers pipeline"),
        ("effdiff.guidance.mg_train", "model-guidance training"),
        ("effdiff.video.train", "video training"),
        ("effdiff.video.presets", "video training presets"),
        ("effdiff.video.student", "the few-step video student (distillation on video clips)"),
        ("effdiff.plan", "acceleration plans: search and certification"),
    ),
    "app": (
        ("effdiff", "the package's front door (lazy re-exports)"),
        ("effdiff.cli", "`effdiff ...`"),
        ("effdiff.bench", "the bench harness, suites and studies (`effdiff.bench.studies`)"),
        ("effdiff.report", "the HTML report"),
        ("effdiff.viz", "sample grids and plots"),
        ("effdiff.distributed.cli", "`python -m effdiff.distributed`"),
        ("effdiff.distributed.__main__", "`python -m effdiff.distributed`"),
    ),
}

_INDEX = {mod: i for i, layer in enumerate(LAYERS) for mod, _ in TABLE[layer]}


def layer_of(module: str) -> str:
    """The layer of a dotted module name (the longest table entry that is it or a package above it)."""
    if module == "effdiff":
        return LAYERS[_INDEX[module]]
    parts = module.split(".")
    for k in range(len(parts), 1, -1):
        name = ".".join(parts[:k])
        if name in _INDEX:
            return LAYERS[_INDEX[name]]
    raise KeyError(f"module {module!r} has no layer in effdiff.layers.TABLE")


def rank(module: str) -> int:
    """The layer's position (0 = base)."""
    return LAYERS.index(layer_of(module))


def markdown() -> str:
    """The table as docs/architecture.md shows it."""
    rows = ["| layer | module | owns |", "| --- | --- | --- |"]
    for layer in LAYERS:
        rows += [f"| {layer} | `{mod}` | {what} |" for mod, what in TABLE[layer]]
    return "\n".join(rows) + "\n"


def write_doc(path: str = "docs/architecture.md") -> None:
    """Replace the layer table in ``path`` by ``markdown()`` (``python -m effdiff.layers`` in a checkout)."""
    from pathlib import Path
    doc = Path(path)
    text = doc.read_text()
    start = text.index("| layer | module | owns |")
    end = text.index("\n\n", start)
    doc.write_text(text[:start] + markdown().rstrip("\n") + text[end:])


if __name__ == "__main__":
    import sys
    write_doc(*sys.argv[1:2])
