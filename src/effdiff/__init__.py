"""effdiff: the efficient-diffusion toolbox over one denoiser contract ``D(x, sigma, cond) -> x0``."""
from . import process, denoisers, timesteps, solvers
from . import sampling
from .sampling import sample
from .context import current_context
from .denoisers import Denoiser, EDMDenoiser, CFG, guided

__version__ = "0.1.0"


def _run_plan(*args, **kwargs):       # sample(..., plan=...) loads effdiff.plan on first use
    from .plan.use import run
    return run(*args, **kwargs)


sampling.register_plan_runner(_run_plan)


_LAZY = ("zoo", "models", "metrics", "data", "objectives", "training", "bench", "techniques", "sites",
         "caching", "early_exit", "retrieval", "hooks", "schedule_opt", "report", "integrations",
         "systems", "distributed", "quant", "prune", "distill", "finetune", "latent", "plan", "guidance", "video",
         "viz", "recipes", "kinds", "assets", "errors", "layers")


def __dir__():  # tab completion sees the lazy entry points too
    return sorted({*globals(), *_LAZY, "accelerate"})


def __getattr__(name):  # heavy or optional submodules load on first use
    import importlib
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name == "accelerate":
        from .integrations.accelerate import accelerate
        return accelerate
    raise AttributeError(f"module 'effdiff' has no attribute {name!r}")
