"""What a quantized model holds: ``QuantStats`` on every quantization handle."""
from __future__ import annotations

from dataclasses import dataclass

from ..hooks import Stats
from ..sites import network


@dataclass
class QuantStats(Stats):
    """``layers`` quantized; ``fp32_bytes``: their weights in float32; ``packed_bytes``: the same
    weights at their bit-widths plus one float32 scale per output channel and segment (what a packed
    store would hold; the fake-quant simulation itself holds float32)."""
    layers: int = 0
    fp32_bytes: int = 0
    packed_bytes: int = 0
    derived = ("compression",)

    @property
    def compression(self) -> float:
        return self.fp32_bytes / self.packed_bytes if self.packed_bytes else 1.0

    @classmethod
    def of(cls, denoiser, state: dict) -> "QuantStats":
        mods = dict(network(denoiser).named_modules())
        fp = packed = 0
        for n, st in state["layers"].items():
            w = mods[n].weight
            segs = 1 if st["bounds"] is None else len(st["bounds"]) - 1
            scales = w.shape[0] * segs if st["w_spec"].granularity != "tensor" else 1
            fp += w.numel() * 4
            packed += (w.numel() * st["bits"][0] + 7) // 8 + 4 * scales
        return cls(layers=len(state["layers"]), fp32_bytes=fp, packed_bytes=packed)
