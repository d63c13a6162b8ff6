"""Retrieval-based sampling: skip steps by reusing stored trajectories or samples.

- ReDi (Zhang et al. 2023, "ReDi: Efficient Learning-Free Diffusion Inference via Trajectory
  Retrieval"): a knowledge base of the model's own trajectories maps the state after ``k_early``
  steps (key) to the state after ``k_late`` steps (value). A query runs ``k_early`` steps, finds
  its H nearest keys (L2), fits weights w = argmin ||q - Σ_h w_h key_h||² and continues from
  Σ_h w_h value_h, saving the k_late - k_early steps in between (Alg. 1; for H = 1 and q = key
  the retrieved state is exactly the stored continuation).
- Retrieval-guided initialization (SDEdit-like, survey §3.3.5): start from the stored sample
  nearest to a query, noised to an intermediate σ, and finish the trajectory from there.

Partial trajectories are segments of one ``ed.sampling.Session`` (one generation), so hooks see
the true step index and the NFE is counted as in ``ed.sample``. A multistep solver restarts its
history after the jump (its first step there is first order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import checkpoint, solvers
from .sampling import NOISE_STREAM, Session, check_sigmas, randn, seeds_for

Tensor = torch.Tensor


@dataclass
class RetrievalResult:
    """x: samples; nfe: denoiser calls made; nfe_saved: calls skipped vs the full schedule;
    index: [B, H] retrieved entries; weights: [B, H]; distance: [B] L2 distance to the nearest key."""
    x: Tensor
    nfe: int
    nfe_saved: int
    index: Tensor
    weights: Tensor | None = None
    distance: Tensor | None = None
    info: dict = field(default_factory=dict)


def _check_k(k_early: int, k_late: int, n: int) -> None:
    if not 0 < k_early < k_late < n:
        raise ValueError(f"need 0 < k_early < k_late < steps={n}, got k_early={k_early}, k_late={k_late}")


def _labels(cond, n):
    """Integer class labels [n] from ``cond`` (None when cond is not a label tensor)."""
    if cond is None:
        return None
    c = torch.as_tensor(cond)
    if c.dtype in (torch.int64, torch.int32) and c.ndim <= 1:
        return c.expand(n).clone().long() if c.ndim == 0 else c.long()
    return None


def _nearest(keys: Tensor, q: Tensor, k: int, key_labels=None, q_labels=None):
    """Indices [B, k] and squared distances [B, k] of the k nearest keys (L2), optionally per class."""
    d2 = torch.cdist(q.double(), keys.double()).pow(2)            # [B, n]
    if q_labels is not None:
        if key_labels is None:
            raise ValueError("per-class retrieval needs stored labels (build with integer cond)")
        mask = q_labels[:, None] != key_labels[None, :]
        if mask.all(1).any():
            bad = sorted(set(q_labels[mask.all(1)].tolist()))
            raise ValueError(f"no stored entries of class(es) {bad}")
        d2 = d2.masked_fill(mask, float("inf"))
    if k > keys.shape[0]:
        raise ValueError(f"k={k} neighbours requested from a store of {keys.shape[0]}")
    d2, idx = d2.topk(k, dim=1, largest=False)
    return idx, d2


class KnowledgeBase:
    """ReDi's knowledge base: keys [n, D] (state after k_early steps, flattened) -> values [n, ...]
    (state after k_late steps) of the model's own trajectories on one σ schedule."""

    def __init__(self, keys: Tensor, values: Tensor, sigmas: Tensor, k_early: int, k_late: int,
                 labels: Tensor | None = None, solver: str = "ddim", solver_opts: dict | None = None):
        sigmas = check_sigmas(sigmas)
        _check_k(k_early, k_late, len(sigmas) - 1)
        if keys.ndim != 2 or keys.shape[0] != values.shape[0] or keys.shape[1] != values[0].numel():
            raise ValueError(f"keys [n, D] and values [n, ...] must match, got {tuple(keys.shape)}, {tuple(values.shape)}")
        if labels is not None and labels.shape != (keys.shape[0],):
            raise ValueError(f"labels must be shaped [{keys.shape[0]}], got {tuple(labels.shape)}")
        self.keys, self.values, self.sigmas, self.labels = keys, values, sigmas, labels
        self.k_early, self.k_late, self.solver, self.solver_opts = int(k_early), int(k_late), solver, dict(solver_opts or {})

    def __len__(self):
        return self.keys.shape[0]

    @classmethod
    def build(cls, denoiser, n: int, sigmas, k_early: int, k_late: int, *, shape=None, x: Tensor | None = None,
              cond=None, seed: int = 0, solver: str = "ddim", batch_size: int = 256, dtype=torch.float32,
              **solver_opts) -> "KnowledgeBase":
        """Run ``n`` trajectories of ``solver`` from seeded noise (``shape`` per sample, or the
        initial noise ``x``) up to step k_late; store (state at k_early, state at k_late)."""
        sigmas = check_sigmas(sigmas)
        _check_k(k_early, k_late, len(sigmas) - 1)
        if x is None:
            if shape is None:
                raise ValueError("KnowledgeBase.build needs shape= (one sample's shape) or the initial noise x=")
            x = randn((n, *shape), seed=seed, dtype=dtype) * float(sigmas[0])
        if x.shape[0] != n:
            raise ValueError(f"x holds {x.shape[0]} samples, n={n}")
        labels = _labels(cond, n)
        noise_seeds = seeds_for(seed + NOISE_STREAM, n)    # sample i's solver noise, at any batch size
        keys, values = [], []
        for s in range(0, n, batch_size):
            xb = x[s:s + batch_size]
            cb = cond[s:s + batch_size] if torch.is_tensor(cond) and cond.ndim > 0 else cond
            with Session(denoiser, sigmas, cb, seeds=noise_seeds[s:s + len(xb)]) as run:
                xk = run.run(xb, solver, stop=k_early, **solver_opts)
                xv = run.run(xk, solver, start=k_early, stop=k_late, **solver_opts)
            keys.append(xk.reshape(len(xb), -1))
            values.append(xv)
        return cls(torch.cat(keys), torch.cat(values), sigmas, k_early, k_late, labels, solver, solver_opts)

    def retrieve(self, q: Tensor, k: int = 1, labels: Tensor | None = None):
        """ReDi's retrieval: H=k nearest keys of the states q [B, ...]; the value is the combination
        of their values whose key combination best fits q (least squares). Returns (value, idx, w, dist)."""
        qf = q.reshape(q.shape[0], -1)
        if qf.shape[1] != self.keys.shape[1]:
            raise ValueError(f"query has {qf.shape[1]} features, the keys {self.keys.shape[1]}")
        idx, d2 = _nearest(self.keys, qf, k, self.labels, labels)
        K = self.keys[idx].double()                                # [B, k, D]
        if k == 1:   # w = <q, key> / |key|²: exactly 1 when q is the key
            w = (K[:, 0] * qf.double()).sum(-1, keepdim=True) / K[:, 0].pow(2).sum(-1, keepdim=True).clamp_min(1e-300)
        else:
            w = torch.linalg.lstsq(K.transpose(1, 2), qf.double()[..., None]).solution[..., 0]   # [B, k]
        V = self.values[idx].double()                              # [B, k, ...]
        value = torch.einsum("bk,bk...->b...", w, V).to(q.dtype)
        return value, idx, w, d2[:, 0].sqrt()

    def save(self, path) -> None:
        """Write ``path.safetensors`` + ``path.json`` (effdiff.checkpoint)."""
        tensors = {"keys": self.keys, "values": self.values, "sigmas": self.sigmas}
        if self.labels is not None:
            tensors["labels"] = self.labels
        checkpoint.save(path, tensors, {"format": "effdiff-redi-kb-1", "k_early": self.k_early, "k_late": self.k_late,
                                        "solver": self.solver, "solver_opts": self.solver_opts, "size": len(self)})

    @classmethod
    def load(cls, path) -> "KnowledgeBase":
        tensors, meta = checkpoint.load(path)
        if meta.get("format") != "effdiff-redi-kb-1" or not {"keys", "values", "sigmas"} <= set(tensors):
            raise checkpoint.CheckpointError(f"{path}: not an effdiff ReDi knowledge base")
        return cls(tensors["keys"], tensors["values"], tensors["sigmas"], meta["k_early"], meta["k_late"],
                   tensors.get("labels"), meta["solver"], meta.get("solver_opts"))


def redi_sample(denoiser, kb: KnowledgeBase, x: Tensor, sigmas=None, *, cond=None, solver: str | None = None,
                k: int = 1, per_class: bool = False, seed: int | None = None, callback=None,
                **solver_opts) -> RetrievalResult:
    """ReDi (Zhang et al. 2023, Alg. 1): run k_early steps, retrieve the nearest trajectory's
    state at k_late (least-squares combination of H=k neighbours) and finish from there."""
    sigmas = kb.sigmas if sigmas is None else check_sigmas(sigmas)
    if sigmas.shape != kb.sigmas.shape or not torch.allclose(sigmas, kb.sigmas, rtol=1e-12, atol=0):
        raise ValueError("redi_sample must use the σ schedule the knowledge base was built on")
    solver = kb.solver if solver is None else solver
    opts = {**kb.solver_opts, **solver_opts}
    labels = _labels(cond, x.shape[0]) if per_class else None
    if per_class and labels is None:
        raise ValueError("per_class retrieval needs integer class labels as cond")
    with Session(denoiser, sigmas, cond, seed=seed, callback=callback) as s:
        xk = s.run(x, solver, stop=kb.k_early, **opts)
        nfe_head = s.nfe
        xv, idx, w, dist = kb.retrieve(xk, k, labels)
        out = s.run(xv, solver, start=kb.k_late, **opts)
        nfe = s.nfe
    per_step = nfe_head / kb.k_early if kb.k_early else 1
    saved = int(round(per_step * (kb.k_late - kb.k_early)))
    return RetrievalResult(out, nfe, saved, idx, w, dist, {"k_early": kb.k_early, "k_late": kb.k_late})


def retrieval_init(denoiser, stored: Tensor, query: Tensor, sigmas, sigma: float, *, cond=None,
                   stored_labels: Tensor | None = None, per_class: bool = False, seed: int | None = None,
                   solver: str = "ddim", callback=None, **solver_opts) -> RetrievalResult:
    """Retrieval-guided initialization (survey §3.3.5, SDEdit-style): start from the stored sample
    nearest to ``query`` (L2), noised to ``sigma``, and run the tail of ``sigmas`` below it."""
    sigmas = check_sigmas(sigmas)
    if not 0 < sigma <= float(sigmas[0]):
        raise ValueError(f"sigma must lie in (0, σ_max={float(sigmas[0])}], got {sigma}")
    if stored.shape[1:] != query.shape[1:]:
        raise ValueError(f"stored samples {tuple(stored.shape[1:])} and queries {tuple(query.shape[1:])} differ in shape")
    labels = _labels(cond, query.shape[0]) if per_class else None
    if per_class and labels is None:
        raise ValueError("per_class retrieval needs integer class labels as cond")
    idx, d2 = _nearest(stored.reshape(len(stored), -1), query.reshape(len(query), -1), 1, stored_labels, labels)
    tail = torch.cat([sigmas.new_tensor([float(sigma)]), sigmas[sigmas < sigma]])
    z = randn(query.shape, seeds=seeds_for(0 if seed is None else seed, query.shape[0]), dtype=query.dtype,
              device=query.device)
    x = stored[idx[:, 0]].to(query.dtype) + sigma * z
    with Session(denoiser, tail, cond, seed=seed, callback=callback) as s:
        out = s.run(x, solver, **solver_opts)
        nfe = s.nfe
    steps_full, steps_run = len(sigmas) - 1, len(tail) - 1
    saved = int(round(nfe / steps_run * (steps_full - steps_run))) if steps_run else 0
    return RetrievalResult(out, nfe, saved, idx, None, d2[:, 0].sqrt(), {"sigma": float(sigma), "steps": steps_run})
