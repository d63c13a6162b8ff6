"""Starting ranks on torch.distributed: ``launch(fn, nprocs)`` (torch.multiprocessing spawn),
``init_from_env()`` (torchrun's environment) and ``Pool`` (persistent ranks that the calling process
drives as rank 0: the bench). The backend follows the device: gloo on CPU, NCCL on CUDA.

    results = launch(fn, 2, arg)        # fn(arg) on ranks 0 and 1; returns [result_0, result_1]
"""
from __future__ import annotations

import os
import pickle
import queue as _queue
import socket
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT_S = 120   # a collective that waits longer (a rank died or diverged) raises instead of hanging


def backend_for(device: str | torch.device | None = None) -> str:
    """"nccl" for a CUDA device (default: CUDA when available), else "gloo"."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_nprocs(nprocs) -> int:
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"nprocs must be a positive integer, got {nprocs!r}")
    if backend_for() == "nccl" and nprocs > torch.cuda.device_count():
        raise ValueError(f"nprocs={nprocs} NCCL ranks need as many GPUs; {torch.cuda.device_count()} visible")
    return nprocs


def _init(rank: int, world: int, port: int, backend: str, threads: int | None) -> None:
    """Join the process group as ``rank`` of ``world`` (env-style rendezvous on 127.0.0.1:port)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    if threads:
        torch.set_num_threads(threads)
    kw = {}
    if backend == "nccl":
        torch.cuda.set_device(rank)
        kw["device_id"] = torch.device("cuda", rank)
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=TIMEOUT_S), **kw)


def default_threads(nprocs: int) -> int:
    """CPU threads per rank: the cores shared out (at least 1)."""
    return max(1, (os.cpu_count() or 1) // nprocs)


def _worker(rank, fn, nprocs, port, backend, threads, results, args):
    _init(rank, nprocs, port, backend, threads)
    try:
        out = fn(*args)
        results.put((rank, pickle.dumps(out)))   # plain bytes: no shared-memory handles outlive the rank
        dist.barrier()
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, nprocs: int, *args, backend: str | None = None, threads: int | None = None) -> list[Any]:
    """Run ``fn(*args)`` on ``nprocs`` fresh ranks (spawned; ``fn`` must be importable, i.e. defined at
    module level) in one process group and return every rank's result, rank order. A rank that
    raises makes ``launch`` raise (torch.multiprocessing's ProcessRaisedException with its traceback)."""
    nprocs = _check_nprocs(nprocs)
    backend = backend or backend_for()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    pc = mp.start_processes(_worker, args=(fn, nprocs, free_port(), backend, threads or default_threads(nprocs),
                                           results, args), nprocs=nprocs, join=False, start_method="spawn")
    got: dict[int, Any] = {}
    while len(got) < nprocs:
        try:
            rank, blob = results.get(timeout=0.2)
            got[rank] = pickle.loads(blob)      # our own child's bytes
        except _queue.Empty:
            if pc.join(timeout=0):              # raises if a rank failed
                break
    while not pc.join():
        pass
    if len(got) < nprocs:
        raise RuntimeError(f"only ranks {sorted(got)} of {nprocs} returned a result")
    return [got[r] for r in range(nprocs)]


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun described (RANK, WORLD_SIZE, MASTER_ADDR/PORT); False when
    not launched by torchrun. Already initialised: True."""
    if dist.is_initialized():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    backend = backend or backend_for()
    kw = {}
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        kw["device_id"] = torch.device("cuda", local)
    dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT_S), **kw)
    return True


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_writer() -> bool:
    """Whether this process writes outputs (rank 0, or no process group)."""
    return rank() == 0


def _serve(rank_, nprocs, port, backend, threads):
    """A pool rank: run what rank 0 broadcasts until it broadcasts None."""
    _init(rank_, nprocs, port, backend, threads)
    try:
        serve()
    finally:
        dist.destroy_process_group()


def serve() -> None:
    """Follow rank 0's ``Pool.run`` calls (a rank > 0 of a pool, also under torchrun)."""
    while True:
        box = [None]
        dist.broadcast_object_list(box, src=0)
        if box[0] is None:
            return
        fn, args = box[0]
        fn(*args)


class Pool:
    """Persistent ranks driven by this process as rank 0: ``pool.run(fn, *args)`` runs ``fn(*args)``
    on every rank (``fn`` importable) and returns rank 0's result. Under torchrun (``attach=True``
    or a process group already up) the existing ranks serve; otherwise ``nprocs - 1`` are spawned."""

    def __init__(self, nprocs: int, backend: str | None = None, threads: int | None = None):
        self.nprocs, self.pc = _check_nprocs(nprocs), None
        if dist.is_initialized():
            if dist.get_world_size() != nprocs or dist.get_rank() != 0:
                raise ValueError(f"a Pool of {nprocs} inside a process group of {dist.get_world_size()} "
                                 f"(rank {dist.get_rank()}): ranks > 0 call serve()")
            self.owned = False
            return
        backend = backend or backend_for()
        threads = threads or default_threads(nprocs)
        port = free_port()
        if nprocs > 1:
            self.pc = mp.start_processes(_serve_shifted, args=(nprocs, port, backend, threads), nprocs=nprocs - 1,
                                         join=False, start_method="spawn")
        self.threads_before = torch.get_num_threads()
        _init(0, nprocs, port, backend, threads)
        self.owned = True

    def run(self, fn: Callable, *args):
        if self.nprocs > 1:
            dist.broadcast_object_list([(fn, args)], src=0)
        return fn(*args)

    def close(self) -> None:
        if not dist.is_initialized():
            return
        if self.nprocs > 1:
            dist.broadcast_object_list([None], src=0)
        if self.owned:
            dist.destroy_process_group()
            torch.set_num_threads(self.threads_before)
        if self.pc is not None:
            while not self.pc.join():
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _serve_shifted(i, nprocs, port, backend, threads):
    _serve(i + 1, nprocs, port, backend, threads)
