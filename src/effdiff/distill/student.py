"""A distilled student is a denoiser ``D(x, σ, cond) -> x0`` plus the few-step grid and solver it
was trained for. It wraps a copy of its teacher's network (so caching hooks, guidance and the
bench see an ordinary effdiff model) with two optional parts:

- the consistency parameterization (Song et al. 2023, eq. 3, in LCM's x0 form): f(x, σ) =
  c_skip(σ) x + (1 - c_skip(σ)) D(x, σ), c_skip = σd² / ((s (σ - σ_min))² + σd²), so f(x, σ_min) = x
  exactly;
- a guidance-scale embedding (Meng et al. 2023; LCM, Luo et al. 2023): w enters through a
  zero-initialised MLP added to the network's condition embedding, so at init the student is the
  teacher's conditional branch.

Sampling: ``ddim`` (progressive distillation, reflow, guidance distillation) or the registered
``consistency`` solver (multistep consistency sampling, Song et al. 2023, Alg. 1)::

    s = distill.load("runs/pd/student-4step")
    x = ed.sample(s, ed.randn((64, 1, 8, 8), seed=0) * s.grid()[0], s.grid(), s.spec.solver, cond=labels)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .. import assets, checkpoint as ckpt
from ..denoisers import Denoiser, append_dims, as_batch_sigma
from ..kinds import register
from ..models.layers import timestep_embedding, zero_module
from ..process import from_config
from ..sampling import randn, sample

Tensor = torch.Tensor
W_FREQ = 64          # sinusoidal features of the guidance scale


@dataclass
class StudentSpec:
    """What makes a copy of the teacher's network a few-step student (stored with its weights)."""
    method: str = "progressive"
    solver: str = "ddim"            # "ddim" or "consistency"
    steps: int = 4                  # the step count it was trained for
    boundary: bool = False          # consistency parameterization, f(x, σ_min) = x
    sigma_data: float = 0.5
    boundary_scale: float = 10.0    # LCM's s: c_skip falls off s times faster than in CM
    w_embed: bool = False           # takes the guidance scale w as an input
    guidance: float = 1.0           # w used when none is passed

    def __post_init__(self):
        import math
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"a student's steps must be a positive integer, got {self.steps!r}")
        reals = {"sigma_data": self.sigma_data, "boundary_scale": self.boundary_scale, "guidance": self.guidance}
        bad = [k for k, v in reals.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad or not (self.sigma_data > 0 and self.boundary_scale > 0):
            raise ValueError(f"a student's {', '.join(bad) or 'sigma_data and boundary_scale'} must be finite "
                             f"(and positive), got {reals}")


def grid(process, n: int) -> Tensor:
    """The student σ grid: n levels uniform in the process's t from t_max ("trailing": the last
    level above 0 is t_max/n-ish, not t_min), then 0. grid(n/2) = grid(n)[::2] plus the 0."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"a student grid needs n >= 1 steps, got {n!r}")
    t = process.t_max - (process.t_max - process.t_min) * torch.arange(n, dtype=torch.float64) / n
    return torch.cat([process.t_to_sigma(t), torch.zeros(1, dtype=torch.float64)])


class WEmbedding(nn.Module):
    """Guidance-scale embedding: sinusoid(w) -> MLP, last layer zero-initialised (no effect at init)."""

    def __init__(self, emb_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(W_FREQ, emb_dim), nn.SiLU(), zero_module(nn.Linear(emb_dim, emb_dim)))

    def forward(self, w: Tensor) -> Tensor:
        # w: [B] -> [B, emb_dim]; scaled so w in [1, 15] spans the sinusoid's slow frequencies
        return self.mlp(timestep_embedding(100.0 * w, W_FREQ).to(self.mlp[0].weight.dtype))


class Student(nn.Module):
    """``Student(denoiser, spec)``: the few-step denoiser f(x, σ, cond, w=None) -> x0."""

    def __init__(self, denoiser: Denoiser, spec: StudentSpec):
        super().__init__()
        if spec.solver not in ("ddim", "consistency"):
            raise ValueError(f"student solver must be 'ddim' or 'consistency', got {spec.solver!r}")
        self.denoiser, self.spec = denoiser, spec
        self.process, self.cond_classes = denoiser.process, denoiser.cond_classes
        self.sigma_min = float(self.process.sigma_min)
        self._w: Tensor | None = None
        self.w_embed = None
        if spec.w_embed:
            embed = getattr(denoiser.net, "cond_embed", None)
            if embed is None:
                raise TypeError(f"a w-embedding needs a network with a cond_embed module; "
                                f"{type(denoiser.net).__name__} has none")
            self.w_embed = WEmbedding(embed.noise.mlp[-1].out_features)
            embed.register_forward_hook(self._add_w)

    @property
    def null_class(self):
        return self.denoiser.null_class

    @property
    def prediction(self) -> str:
        return self.denoiser.prediction

    def _add_w(self, module, inputs, emb):
        """Forward hook on the network's condition embedding: emb + W(w) while a w is set."""
        return emb if self._w is None else emb + self.w_embed(self._w.to(emb.device))

    def c_skip(self, sigma: Tensor) -> Tensor:
        """σd² / ((s (σ - σ_min))² + σd²): exactly 1 at σ_min (Song et al. 2023, Appendix C)."""
        sd, s = self.spec.sigma_data, self.spec.boundary_scale
        return sd ** 2 / ((s * (sigma.double() - self.sigma_min)) ** 2 + sd ** 2)

    def forward(self, x: Tensor, sigma, cond=None, w=None) -> Tensor:
        sigma = as_batch_sigma(sigma, x)
        if self.w_embed is not None:
            self._w = torch.as_tensor(self.spec.guidance if w is None else w, dtype=torch.float32,
                                      device=x.device).reshape(-1).expand(x.shape[0])
        elif w is not None:
            raise ValueError("this student has no guidance-scale input (trained without w_embed)")
        try:
            x0 = self.denoiser(x, sigma, cond)
        finally:
            self._w = None
        if not self.spec.boundary:
            return x0
        c = append_dims(self.c_skip(sigma).to(x.dtype), x)
        return c * x + (1 - c) * x0

    def grid(self, steps: int | None = None) -> Tensor:
        """Its σ grid for ``steps`` (default: the step count it was trained for)."""
        return grid(self.process, steps or self.spec.steps)

    def at(self, w: float) -> "AtScale":
        """This student with the guidance scale fixed to ``w`` (a plain ``D(x, σ, cond)``)."""
        return AtScale(self, w)

    def generate(self, n: int, cond=None, seed: int = 0, steps: int | None = None, w: float | None = None,
                 return_info: bool = False, **kw):
        """n samples with its own solver and grid from ``ed.randn(seed=seed)`` noise."""
        sig = self.grid(steps)
        m = self.denoiser.net.config
        x = randn((n, m.in_channels, m.image_size, m.image_size), seed=seed) * float(sig[0])
        den = self if w is None else self.at(w)
        return sample(den, x, sig, self.spec.solver, cond, seed=seed, return_info=return_info, **kw)


class AtScale(nn.Module):
    """A w-student at a fixed guidance scale: ``D(x, σ, cond) = student(x, σ, cond, w)``."""

    def __init__(self, student: Student, w: float):
        super().__init__()
        self.denoiser, self.w = student, float(w)
        self.cond_classes, self.process = student.cond_classes, student.process

    @property
    def null_class(self):
        return self.denoiser.null_class

    def forward(self, x, sigma, cond=None):
        return self.denoiser(x, sigma, cond, w=self.w)


def from_teacher(teacher: Denoiser, spec: StudentSpec, prediction: str | None = None) -> Student:
    """A student whose network is a trainable copy of the teacher's (output read as ``prediction``,
    default the teacher's own)."""
    import copy
    net = copy.deepcopy(teacher.net).requires_grad_(True).train()
    den = Denoiser(net, teacher.process, prediction or teacher.prediction, teacher.cond_classes)
    return Student(den, spec)


def student_tensors(student: Student) -> dict[str, Tensor]:
    """Weights as stored: the network's own keys (a zoo ``Denoiser`` loads a plain student) plus ``w_embed.*``."""
    out = dict(student.denoiser.net.state_dict())
    if student.w_embed is not None:
        out.update({f"w_embed.{k}": v for k, v in student.w_embed.state_dict().items()})
    return out


def save(student: Student, path, arch: str, card: dict) -> None:
    """Write ``path.safetensors`` + ``path.json`` (atomic, SHA-256) in the zoo's model format."""
    den = student.denoiser
    meta = {"format": "effdiff-model-1", "kind": "student", "arch": arch, "model": dataclasses.asdict(den.net.config),
            "task": "diffusion", "process": den.process.config(), "prediction": den.prediction,
            "num_classes": den.cond_classes, "student": dataclasses.asdict(student.spec), "card": card}
    ckpt.save(path, student_tensors(student), meta)


@register("student")
def from_meta(tensors: dict, meta: dict, where: str = "student") -> Student:
    """Rebuild a student from its stored tensors and metadata."""
    if not isinstance(meta.get("student"), dict):
        raise ckpt.CheckpointError(f"{where}: not a distilled student (no 'student' metadata)")
    net = assets.network(tensors, meta, where, prefix_skip=("w_embed.",))   # CheckpointError naming the file
    try:
        den = Denoiser(net, from_config(meta["process"]), meta["prediction"], meta.get("num_classes", 0))
        st = Student(den, StudentSpec(**meta["student"]))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ckpt.CheckpointError(f"{where}: invalid student metadata (process, prediction, num_classes or "
                                   f"'student'): {type(e).__name__}: {e}") from None
    if st.w_embed is not None:
        ckpt.load_state(st.w_embed, tensors, "w_embed.", where=where)
    st.meta = meta
    return st.eval().requires_grad_(False)


def load(path_or_name) -> Student:
    """A student from a path stem (``run/student-4step``) or a zoo name."""
    from pathlib import Path
    name = str(path_or_name)
    if name in assets.names():
        tensors, meta = ckpt.load(assets.path(name), require_sha256=True)
    else:
        tensors, meta = ckpt.load(Path(name))
    return from_meta(tensors, meta, where=name)
