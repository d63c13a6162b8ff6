"""Parallel and distributed inference on torch.distributed (gloo on CPU, NCCL on CUDA).

- ``launch(fn, nprocs)``, ``init_from_env()`` (torchrun), ``Pool``: starting ranks (launch.py)
- ``agree(config)``: every rank runs the same configuration, or a clear error (agree.py)
- ``cfg_parallel``, ``BatchParallel``: guidance branches / parallel-in-time windows across ranks (batch.py)
- ``patch_parallel``, ``sequence_parallel``: DistriFusion, Ulysses and ring attention on the UNet / DiT
  (patch.py, ring.py)
- ``pipefusion``: PipeFusion for the DiT (pipeline.py)
- ``parallel(denoiser, method, ...)``: one entry point by method name (methods.py)

See docs/distributed.md.
"""
from .launch import Pool, backend_for, free_port, init_from_env, is_writer, launch, rank, serve, world_size
from .comm import Comm
from .agree import agree, config_hash
from .batch import BatchParallel, cfg_parallel
from .patch import PatchConfig, patch_parallel, sequence_parallel, with_net
from .ring import RingAttention, ring_attention
from .pipeline import PipeConfig, pipefusion
from .methods import METHODS, parallel

__all__ = ["launch", "init_from_env", "Pool", "serve", "backend_for", "free_port", "rank", "world_size", "is_writer",
           "Comm", "agree", "config_hash", "BatchParallel", "cfg_parallel", "PatchConfig", "patch_parallel",
           "sequence_parallel", "with_net", "PipeConfig", "pipefusion", "METHODS", "parallel", "RingAttention",
           "ring_attention"]
