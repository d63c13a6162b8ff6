"""Approximate caching across requests: NIRVANA (Agarwal et al. 2024, "Approximate Caching for
Efficiently Serving Text-to-Image Diffusion Models", NSDI '24; survey §4.3).

A generation stores its intermediate states x after K steps, for each K in a small set of
choices (the paper: K in {5, 10, 15, 20, 25} of 50 steps). A later request whose condition
matches retrieves the state after K steps and only runs the remaining steps K..n-1 of the
schedule (``ed.sample(..., start=K)``, so hooks see the true step indices) with its *own*
condition, skipping K steps. The more similar the condition, the larger the K
it may skip. Matching is exact on a key (class labels + guidance scale, shape, σ schedule) or
approximate by cosine similarity between user-given condition embeddings (the paper compares
CLIP embeddings); similarity thresholds, one per K, pick K.

Cache management is LCBFU, Least Computationally Beneficial and Frequently Used: every stored
state (one request, one K) scores ``frequency x K`` (how often it is used times the steps it
saves); under capacity pressure the lowest score is evicted first (ties: least recently used).
The generation that stored a state counts as its first use, so among never-reused states the
small-K ones, which save least, go first. A request whose states are all evicted leaves the
index.

    cache = ApproximateCache(capacity_bytes=64 << 20, k_choices=(2, 4, 6))
    r = cached_sample(den, cache, x, sigmas, cond=labels, solver="euler", seed=0)
    r.x, r.stats["hit"], r.stats["nfe_saved"]; cache.stats()

As a registered technique (``techniques.get("nirvana")``), ``apply_nirvana(den, NirvanaConfig())``
returns a handle whose ``sample(...)`` serves requests through one cache.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..context import current_context
from ..denoisers import CFG
from ..hooks import CacheStats, Handle
from ..sampling import SampleResult, sample
from ..techniques import Technique, register

Tensor = torch.Tensor


@dataclass
class _Entry:
    """One past request: its exact key, optional embedding, and states x after K steps."""
    key: tuple
    embedding: Tensor | None
    states: dict[int, Tensor] = field(default_factory=dict)    # K -> x at sigmas[K]
    nfe: dict[int, int] = field(default_factory=dict)          # K -> NFE spent to reach it
    freq: dict[int, int] = field(default_factory=dict)         # K -> uses (the storing run is 1)
    last: dict[int, int] = field(default_factory=dict)         # K -> tick of last use


def _nbytes(t: Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


class ApproximateCache:
    """NIRVANA's approximate cache of intermediate states with LCBFU eviction.

    capacity_bytes: budget for stored states (and embeddings). k_choices: the K (steps skipped)
    a state is stored for; K >= the request's steps are ignored. thresholds: cosine similarity
    needed for each K (ascending with K: higher similarity -> skip more; default spread over
    [0.8, 0.98]); tune them offline on a quality budget as the paper does. An exact key match
    (no embedding) counts as similarity 1.
    """

    def __init__(self, capacity_bytes: int, k_choices=(5, 10, 15, 20, 25),
                 thresholds=None):
        k_choices = tuple(int(k) for k in k_choices)
        if thresholds is None:  # spread over [0.8, 0.98]; (5, ..., 25) -> 0.8, 0.845, ..., 0.98
            m = max(1, len(k_choices) - 1)
            thresholds = [0.8 + 0.18 * i / m for i in range(len(k_choices))]
        thresholds = tuple(float(t) for t in thresholds)
        if not k_choices or any(k < 1 for k in k_choices) or list(k_choices) != sorted(set(k_choices)):
            raise ValueError(f"k_choices must be distinct positive step counts in ascending order, got {k_choices}")
        if len(thresholds) != len(k_choices) or list(thresholds) != sorted(thresholds):
            raise ValueError(f"need one non-decreasing similarity threshold per K: {len(k_choices)} K, "
                             f"thresholds {thresholds}")
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        self.capacity_bytes, self.k_choices, self.thresholds = int(capacity_bytes), k_choices, thresholds
        self.entries: list[_Entry] = []
        self.tick = 0
        self.counters = dict(requests=0, hits=0, misses=0, nfe_spent=0, nfe_saved=0, evictions=0)

    # --- lookup -----------------------------------------------------------------------
    def k_for(self, similarity: float) -> int:
        """The largest K whose threshold the similarity reaches (0: too dissimilar, a miss)."""
        ks = [k for k, th in zip(self.k_choices, self.thresholds) if similarity >= th - 1e-6]
        return ks[-1] if ks else 0

    def lookup(self, key: tuple, embedding: Tensor | None, num_steps: int):
        """(entry, K, similarity) of the best usable stored state, or (None, 0, similarity)."""
        best, best_sim = None, -math.inf
        for e in self.entries:
            if e.key != key:
                continue
            if embedding is None:
                best, best_sim = e, 1.0
                break
            sim = float(torch.nn.functional.cosine_similarity(embedding, e.embedding, dim=0))
            if sim > best_sim:
                best, best_sim = e, sim
        if best is None:
            return None, 0, None
        k_max = self.k_for(best_sim)
        usable = [k for k in best.states if k <= k_max and k < num_steps]
        return (best, max(usable), best_sim) if usable else (None, 0, best_sim)

    # --- storage ----------------------------------------------------------------------
    def nbytes(self) -> int:
        """Bytes held now (states and embeddings)."""
        return sum(sum(_nbytes(s) for s in e.states.values()) + _nbytes(e.embedding) for e in self.entries)

    def score(self, e: _Entry, k: int) -> float:
        """LCBFU score: frequency of use x steps saved."""
        return e.freq[k] * k

    def _evict_one(self) -> bool:
        items = [(self.score(e, k), e.last[k], id(e), e, k) for e in self.entries for k in e.states]
        if not items:
            return False
        *_, e, k = min(items, key=lambda it: it[:3])
        del e.states[k], e.nfe[k], e.freq[k], e.last[k]
        if not e.states:
            self.entries.remove(e)
        self.counters["evictions"] += 1
        return True

    def insert(self, key: tuple, embedding: Tensor | None, states: dict[int, Tensor], nfe: dict[int, int]) -> int:
        """Store one request's states, evicting by LCBFU until they fit; returns evictions."""
        need = sum(_nbytes(s) for s in states.values()) + _nbytes(embedding)
        if not states or need > self.capacity_bytes:
            return 0
        before = self.counters["evictions"]
        while self.nbytes() + need > self.capacity_bytes and self._evict_one():
            pass
        self.tick += 1
        self.entries.append(_Entry(key, embedding, dict(states), dict(nfe), {k: 1 for k in states},
                                   {k: self.tick for k in states}))
        return self.counters["evictions"] - before

    def clear(self) -> None:
        self.entries.clear()

    def stats(self) -> dict:
        c = dict(self.counters)
        c["hit_rate"] = c["hits"] / c["requests"] if c["requests"] else 0.0
        c.update(bytes_used=self.nbytes(), capacity_bytes=self.capacity_bytes, entries=len(self.entries),
                 states=sum(len(e.states) for e in self.entries))
        return c


def request_key(x: Tensor, sigmas: Tensor, cond, guidance: float | None, embedding: Tensor | None) -> tuple:
    """What must match exactly: state shape and dtype, the σ schedule, the guidance scale and,
    without an embedding, the condition itself (class labels)."""
    if embedding is None:
        if cond is None:
            c = None
        elif torch.is_tensor(cond):
            c = (tuple(cond.shape), tuple(cond.flatten().tolist()))
        else:
            c = cond if isinstance(cond, (int, str, tuple)) else repr(cond)
    else:
        c = "embedding"
    return (tuple(x.shape), str(x.dtype), tuple(sigmas.tolist()), guidance, c)


def cached_sample(den, cache: ApproximateCache, x: Tensor, sigmas, cond=None, *, solver: str = "euler",
                  seed: int | None = None, embedding: Tensor | None = None, guidance: float | None = None,
                  **options) -> SampleResult:
    """One request through the approximate cache: on a hit, start from the cached state after
    K steps and run steps K..n-1 (``ed.sample(..., start=K)``) with this request's ``cond``; on a miss, run
    the whole schedule and store the states after each K. Returns a ``SampleResult`` whose
    ``info`` holds the per-request stats (hit, k, similarity, nfe, nfe_saved, evicted).

    embedding: a 1-D condition embedding for approximate matching by cosine similarity (else
    the key is exact: class labels). guidance: the guidance scale, part of the key (read from a
    ``CFG`` denoiser when not given). For a deterministic solver, a hit from the same condition
    and initial noise returns exactly the uncached result; multistep solvers restart their
    history at σ_K and stochastic ones draw a fresh noise stream, as in the paper's reuse.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)    # ed.sample validates it
    n = len(sigmas) - 1
    if guidance is None and isinstance(den, CFG):
        guidance = den.config.scale
    if embedding is not None:
        embedding = torch.as_tensor(embedding, dtype=torch.float32).flatten().detach().clone()
    key = request_key(x, sigmas, cond, guidance, embedding)
    cache.counters["requests"] += 1
    entry, k, sim = cache.lookup(key, embedding, n)
    info = dict(hit=entry is not None, k=k, similarity=sim, evicted=0)
    if entry is not None:
        cache.tick += 1
        entry.freq[k] += 1
        entry.last[k] = cache.tick
        res = sample(den, entry.states[k].clone(), sigmas, solver, cond, start=k, seed=seed, return_info=True,
                     **options)
        info["nfe_saved"] = entry.nfe[k]
        cache.counters["hits"] += 1
    else:
        wanted = {kk for kk in cache.k_choices if kk < n}
        states, nfe = {}, {}
        user_cb = options.pop("callback", None)

        def record(step: dict):
            done = int(step["i"]) + 1              # steps completed: x is now at sigmas[done]
            if done in wanted:
                states[done], nfe[done] = step["x"].detach().clone(), current_context().nfe
            if user_cb is not None:
                user_cb(step)

        res = sample(den, x, sigmas, solver, cond, seed=seed, return_info=True, callback=record, **options)
        info["nfe_saved"] = 0
        info["evicted"] = cache.insert(key, embedding, states, nfe)
        cache.counters["misses"] += 1
    info["nfe"] = res.nfe
    cache.counters["nfe_spent"] += res.nfe
    cache.counters["nfe_saved"] += info["nfe_saved"]
    return SampleResult(res.x, res.nfe, res.steps, info)


@dataclass
class NirvanaConfig:
    """The ``ApproximateCache`` a handle serves requests through: capacity_bytes, k_choices (steps
    a hit skips), thresholds (cosine similarity needed per K; default spread over [0.8, 0.98])."""
    capacity_bytes: int = 64 << 20
    k_choices: tuple[int, ...] = (5, 10, 15, 20, 25)
    thresholds: tuple[float, ...] | None = None


class NirvanaHandle(Handle):
    """Nothing is attached to the model; ``sample`` serves each request through ``cache``.
    ``stats``: computed / reused denoiser evaluations (NFE spent / saved), peak_bytes."""
    routes_requests = True

    def __init__(self, cache: ApproximateCache):
        super().__init__("nirvana", [], None, CacheStats())
        self.cache = cache

    def sample(self, denoiser, x, sigmas, solver="euler", cond=None, *, return_info: bool = False, **kw):
        r = cached_sample(denoiser, self.cache, x, sigmas, cond, solver=solver, **kw)
        self.stats.add(computed=r.nfe, reused=r.stats["nfe_saved"])
        self.stats.peak("peak_bytes", self.cache.nbytes())
        return r if return_info else r.x

    def remove(self) -> None:
        self.cache.clear()
        super().remove()


def apply_nirvana(model, config: NirvanaConfig | None = None) -> NirvanaHandle:
    """A fresh approximate cache for requests to ``model`` (NIRVANA, Agarwal et al. 2024)."""
    c = config or NirvanaConfig()
    return NirvanaHandle(ApproximateCache(c.capacity_bytes, c.k_choices, c.thresholds))


def _check(model) -> str | None:
    return None if callable(model) else "needs a callable denoiser"


register(Technique("nirvana", "caching", NirvanaConfig, apply_nirvana, _check,
                   exact=lambda n: NirvanaConfig(k_choices=(n,)), eager=lambda n: NirvanaConfig(k_choices=(max(1, n // 2),)),
                   paper="Agarwal et al. 2024, NIRVANA"))
