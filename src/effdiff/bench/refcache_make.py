"""``python -m effdiff.bench.refcache_make``: compute the default suite's reference rows (full and
quick) into the shipped cache folder ``bench/reference_rows/`` (see bench/refcache.py)."""
from __future__ import annotations

import os

from .refcache import SHIPPED, cacheable


def main(argv=None) -> None:
    """Compute the default suite's reference rows (full and quick) into the shipped folder."""
    import argparse
    from .runner import run
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--models", default="digits-unet,digits-dit")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick-only", action="store_true")
    a = ap.parse_args(argv)
    os.environ["EFFDIFF_CACHE_STORE"] = str(SHIPPED)
    from .config import suite
    for quick in ((True,) if a.quick_only else (True, False)):
        configs = [c for c in suite("default", a.models.split(","), quick) if cacheable(c)]
        run(configs=configs, quick=quick, threads=a.threads, grids=False, use_cache=False)


if __name__ == "__main__":
    main()
