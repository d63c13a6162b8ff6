"""Teacher pairs (noise, sample) for reflow, InstaFlow and DMD's regression loss (Liu et al. 2023;
Yin et al. 2024): the teacher's ODE solution from unit noise z, stored as safetensors shards
(atomic, SHA-256) beside a manifest. Generation is resumable: finished shards are verified and
skipped, so a killed run continues where it stopped and ends with the same files.

    distill.pairs.generate("digits-unet", "runs/pairs-unet", n=2048)
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
from ..io import atomic_write
from ..sampling import randn, sample, seeds_for

FORMAT = "effdiff-pairs-1"


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


def _done(stem: Path, cfg: dict) -> bool:
    """A finished shard of this config (verified); a corrupt or foreign one raises."""
    if not stem.with_suffix(".json").exists():
        return False
    _, meta = ckpt.load(stem)
    if meta.get("config") != cfg:
        raise ckpt.CheckpointError(f"{stem} was generated with another config; use a new directory")
    return True


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
    nfe = 0
    for k in shards:
        lo, hi = k * cfg.shard_size, min(cfg.n, (k + 1) * cfg.shard_size)
        if not _done(_shard(out, k), cj):
            s = seeds[lo:hi]
            z = randn((hi - lo, *shape), seeds=s)
            y = torch.arange(lo, hi) % K if K else None
            res = sample(guided(den, cfg.guidance), z * float(sig[0]), sig, cfg.solver, y, seeds=s, return_info=True)
            nfe = res.nfe * (2 if cfg.guidance != 1.0 else 1)
            tensors = {"z": z, "x": res.x, **({"y": y} if y is not None else {})}
            ckpt.save(_shard(out, k), tensors, {"format": FORMAT, "config": cj, "shard": k, "nfe_per_pair": nfe})
        if bar is not None:
            bar.update(hi - lo)
    if bar is not None:
        bar.close()
    atomic_write(out / "manifest.json", json.dumps({"format": FORMAT, "config": cj, "shards": len(shards),
                                                    "teacher_nfe": cfg.n * (len(sig) - 1)
                                                    * (2 if cfg.guidance != 1.0 else 1)}, indent=1))
    return out


def load(out_dir) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(z, x, y) of a finished pairs directory, shards verified."""
    out = Path(out_dir)
    man = out / "manifest.json"
    if not man.exists():
        raise FileNotFoundError(f"{out} holds no finished pairs (no manifest.json); run distill.pairs.generate")
    info = json.loads(man.read_text())
    parts = [ckpt.load(_shard(out, k))[0] for k in range(info["shards"])]
    y = torch.cat([p["y"] for p in parts]) if "y" in parts[0] else None
    return torch.cat([p["z"] for p in parts]), torch.cat([p["x"] for p in parts]), y
