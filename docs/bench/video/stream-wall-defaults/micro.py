"""Micro-benchmarks behind the explanations in docs/video.md ("Wall clock with these options after the exact speed-ups"
and the sparse row's second re-measurement): decoding 1,024 frames in chunks of 512 vs 64, RoPE on a streamed block's
q and k as slices vs one complex product, and sliding-tile's window as per-frame SDPA calls vs one call over strided or
copied windows. Medians of repeated calls, one thread; they explain, the bench runs decide.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-wall-defaults/micro.py   # writes micro.json
"""
import json
import statistics
import time
from pathlib import Path
from unittest.mock import patch

import torch
import torch.nn.functional as F

import effdiff as ed
from effdiff.bench.provenance import provenance
from effdiff.video import latents
from effdiff.video.attention import _rope_table, rotate

torch.set_num_threads(1)


def median_s(f, n: int, rounds: int = 5) -> float:
    f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t) / n)
    return statistics.median(times)


out = {"what": __doc__.split("\n\n")[0], "provenance": provenance()}
vm = ed.zoo.load("video-dit")
z = torch.randn(8, 4, 128, 8, 8, generator=torch.Generator().manual_seed(0))
for size in (512, 64):
    with patch.object(latents, "BATCH", size):
        out[f"decode_1024_frames_chunk_{size}_s"] = median_s(lambda: vm.decode(z), 1, 3)

B, N, H, d = 16, 80, 4, 16                        # a streamed block at 8 clips under guidance: 5 frames x 16 tokens
qkv = torch.randn(B, N, 3, H, d, generator=torch.Generator().manual_seed(1))
cos, sin, cz = _rope_table(tuple(range(20, 25)), 16, d, 10000.0, torch.float32, torch.device("cpu"))
c, s, cz = cos[:, None, None], sin[:, None, None], cz[:, None, None]


def sliced():
    x = qkv[:, :, :2]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)


out["rope_sliced_us"] = median_s(sliced, 300) * 1e6
out["rope_complex_us"] = median_s(lambda: rotate(qkv[:, :, :2], c, s, cz), 300) * 1e6

B, H, P, Fq, L = 16, 3, 16, 4, 4                  # 4 query frames, windows of 4 key frames (2 back, 1 ahead), 3 heads
g = torch.Generator().manual_seed(2)
q, k, v = (torch.randn(B, H, n * P, d, generator=g) for n in (Fq, 17, 17))
los = [10 + i for i in range(Fq)]


def per_frame():
    o = torch.empty_like(q)
    for i, lo in enumerate(los):
        o[:, :, i * P:(i + 1) * P] = F.scaled_dot_product_attention(q[:, :, i * P:(i + 1) * P], k[:, :, lo * P:(lo + L) * P],
                                                                     v[:, :, lo * P:(lo + L) * P])
    return o


def windows(t):
    st = t.stride()
    return t.as_strided((B, H, Fq, L * P, d), (st[0], st[1], P * st[2], st[2], st[3]),
                        t.storage_offset() + los[0] * P * st[2])


def one_call_strided():
    return F.scaled_dot_product_attention(q.view(B, H, Fq, P, d), windows(k), windows(v))


def one_call_copied():
    return F.scaled_dot_product_attention(q.view(B, H * Fq, P, d), windows(k).reshape(B, H * Fq, L * P, d),
                                          windows(v).reshape(B, H * Fq, L * P, d))


assert torch.allclose(one_call_strided().reshape(q.shape), per_frame(), atol=1e-5)
assert torch.allclose(one_call_copied().reshape(q.shape), per_frame(), atol=1e-5)
for name, f in (("per_frame", per_frame), ("one_call_strided", one_call_strided), ("one_call_copied", one_call_copied),
                ("dense_all_keys", lambda: F.scaled_dot_product_attention(q, k, v))):
    out[f"window_{name}_us"] = median_s(f, 200) * 1e6
out["window_macs"] = 2 * B * H * Fq * P * L * P * d
out["dense_all_keys_macs"] = 2 * B * H * Fq * P * 17 * P * d
print(json.dumps({k: v for k, v in out.items() if k != "provenance"}, indent=1))
Path(__file__).with_name("micro.json").write_text(json.dumps(out, indent=1) + "\n")
