"""Teacher pairs (noise, sample) for reflow, InstaFlow and DMD's regression loss (Liu et al. 2023;
Yin et al. 2024): the teacher's ODE solution from unit noise z, stored as safetensors shards
(atomic, SHA-256) beside a manifest. Generation is resumable: finished shards are verified and
skipped, so a killed run continues where it stopped and ends with the same files.

    distill.pairs.generate("digits-unet", "runs/pairs-unet", n=2048)   # n=4096 later: keeps these 2048
    z, x, y = distill.pairs.load("runs/pairs-unet")     # z: unit noise, x: the teacher's sample
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from .. import timesteps
from ..denoisers import guided
from ..io import atomic_write, read_json
from ..sampling import randn, sample, seeds_for
from ..seeds import pairs_seed

FORMAT = "effdiff-pairs-1"
MAX_SHARDS = 100_000


@dataclass
class PairsConfig:
    teacher: str = "digits-unet"
    n: int = 2048
    shard_size: int = 256
    solver: str = "dpmpp-2m"
    schedule: str = "logsnr"
    steps: int = 10
    guidance: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.n < 1 or self.shard_size < 1 or self.steps < 1:
            raise ValueError(f"n, shard_size and steps must be >= 1, got {self.n}, {self.shard_size}, {self.steps}")


def _shard(out: Path, k: int) -> Path:
    return out / f"pairs-{k:05d}"


def _same(a: dict, b: dict) -> bool:
    """Two pairs configs that make the same shards: equal but for ``n`` (a shard's pairs do not depend
    on how many follow it, so a directory can be extended to a larger n)."""
    return {k: v for k, v in a.items() if k != "n"} == {k: v for k, v in b.items() if k != "n"}


def _done(stem: Path, cfg: dict, size: int) -> dict | None:
    """The metadata of a finished shard of this config holding ``size`` pairs (verified), None where there is
    none; a corrupt or foreign one raises, and so does a short last shard of a smaller n (it is regenerated
    whole: delete it)."""
    if not ckpt.files(stem)[1].exists():
        return None
    t, meta = ckpt.load(stem)
    if not _same(meta.get("config") or {}, cfg):
        raise ckpt.CheckpointError(f"{stem} was generated with another config; use a new directory")
    if len(t["z"]) != size:
        raise ckpt.CheckpointError(f"{stem} holds {len(t['z'])} pairs, not {size}: it was the short last shard of "
                                   f"a smaller n; delete it to extend the directory")
    return meta


def generate(teacher, out_dir, config: PairsConfig | None = None, progress: bool = True, **fields) -> Path:
    """Write the pairs of ``config`` (fields may be given as keywords) to ``out_dir``; ``teacher``
    is a zoo name / model path, or a loaded denoiser (then ``config.teacher`` names it)."""
    from .loop import load_teacher
    cfg = config or PairsConfig(**({"teacher": teacher} if isinstance(teacher, str) else {}), **fields)
    den = load_teacher(teacher) if isinstance(teacher, str) else teacher
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cj = json.loads(json.dumps(asdict(cfg)))
    sig = timesteps.get(cfg.schedule, cfg.steps, den.process)
    m = den.denoiser.net.config if hasattr(den, "spec") else den.net.config
    shape, K = (m.in_channels, m.image_size, m.image_size), den.cond_classes
    seeds = seeds_for(cfg.seed, cfg.n)
    shards = range(0, (cfg.n + cfg.shard_size - 1) // cfg.shard_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.n, desc=f"pairs {cfg.teacher}")
    total = 0                                   # teacher NFE of all pairs (the solver's real count, e.g. Heun's)
    for k in shards:
        lo, hi = k * cfg.shard_size, min(cfg.n, (k + 1) * cfg.shard_size)
        meta = _done(_shard(out, k), cj, hi - lo)
        if meta is not None:
            nfe = int(meta.get("nfe_per_pair", 0))
        else:
            s = seeds[lo:hi]
            z = randn((hi - lo, *shape), seeds=s)
            y = torch.arange(lo, hi) % K if K else None
            res = sample(guided(den, cfg.guidance), z * float(sig[0]), sig, cfg.solver, y, seeds=s, return_info=True)
            nfe = res.nfe * (2 if cfg.guidance != 1.0 else 1)
            tensors = {"z": z, "x": res.x, **({"y": y} if y is not None else {})}
            ckpt.save(_shard(out, k), tensors, {"format": FORMAT, "config": cj, "shard": k, "nfe_per_pair": nfe})
        total += nfe * (hi - lo)
        if bar is not None:
            bar.update(hi - lo)
    if bar is not None:
        bar.close()
    atomic_write(out / "manifest.json", json.dumps({"format": FORMAT, "config": cj, "shards": len(shards),
                                                    "teacher_nfe": total}, indent=1))
    return out


def manifest(out_dir) -> dict:
    """The manifest of a finished pairs directory, checked (format, shard count): anything else is one
    ``CheckpointError`` naming the file."""
    man = Path(out_dir) / "manifest.json"
    if not man.exists():
        raise FileNotFoundError(f"{out_dir} holds no finished pairs (no manifest.json); run distill.pairs.generate")
    info = read_json(man, "pairs manifest", error=ckpt.CheckpointError)
    shards = info.get("shards")
    if info.get("format") != FORMAT or isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ckpt.CheckpointError(f"{man}: not a finished pairs manifest (format {info.get('format')!r}, expected "
                                   f"{FORMAT!r}; shards {str(shards)[:20]!r}, expected an integer in [1, {MAX_SHARDS}])")
    return info


def _part(stem: Path) -> dict:
    """One shard's tensors, verified, with z and x of one shape (and y of their length)."""
    t = ckpt.load(stem)[0]
    z, x, y = t.get("z"), t.get("x"), t.get("y")
    if z is None or x is None or z.shape != x.shape or z.ndim < 2 or (y is not None and y.shape != z.shape[:1]):
        raise ckpt.CheckpointError(f"{ckpt.files(stem)[0]}: not a pairs shard (needs z and x of one shape, y per pair)")
    return t


def load(out_dir) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(z, x, y) of a finished pairs directory, shards verified."""
    out = Path(out_dir)
    parts = [_part(_shard(out, k)) for k in range(manifest(out)["shards"])]
    if len({p["z"].shape[1:] for p in parts}) > 1 or len({"y" in p for p in parts}) > 1:
        raise ckpt.CheckpointError(f"{out}: its shards do not hold pairs of one shape")
    y = torch.cat([p["y"] for p in parts]) if "y" in parts[0] else None
    return torch.cat([p["z"] for p in parts]), torch.cat([p["x"] for p in parts]), y


RUN_PAIRS = "pairs"       # where a reflow / DMD run keeps the pairs it generates: inside its own folder


def run_pairs(where: str, run_dir) -> Path:
    """The pairs directory a reflow / DMD / KD run uses: ``where``, or with ``where=""`` its own ``run_dir/pairs``."""
    return Path(where) if where else Path(run_dir) / RUN_PAIRS


def for_run(teacher, where: str, n: int, config_seed: int, teacher_name: str, run_dir, progress: bool = True,
            **fields):
    """(z, x, y) a reflow / DMD / KD run trains on: the pairs in ``where``, or with ``where=""`` the run's own
    ``run_dir/pairs``; with ``n > 0`` missing pairs are generated there first (resumable; ``fields``: the
    rest of their ``PairsConfig``, e.g. the solver)."""
    out = run_pairs(where, run_dir)
    if n > 0:
        generate(teacher, out, PairsConfig(teacher_name, n=n, seed=pairs_seed(config_seed), **fields),
                 progress=progress)
    return load(out)
