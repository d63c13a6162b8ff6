"""Which share of a zoo model's MACs the int8 path can run in integer kernels: ``int8`` converts every
``nn.Linear`` to fbgemm's dynamic quantized Linear (backend ``fbgemm``) and keeps convolutions as
weight-only int8 with float compute; attention's own matmuls stay float. So for ``int8-fbgemm`` rows the
integer-kernel MAC share is the Linear layers' share of one denoiser call (torch's flop counter, the
bench's MAC count). ``int8-auto`` picks layers by timing and its stats record only how many Linear layers
ran integer kernels, not which: its share is bounded above by the same number of the largest Linear layers
(``linear_macs_per_layer``, largest first).

    python -m effdiff.bench.int8_share      # writes docs/bench/compress/int8-share/results.json
"""
from __future__ import annotations

import json

import torch

from .tables import ROOT

OUT = ROOT / "docs/bench/compress/int8-share/results.json"


def shares(model: str, batch: int = 4) -> dict:
    """MACs per sample of one denoiser call: total, in nn.Linear layers, in nn.Conv2d layers; layer counts."""
    from .. import zoo
    from ..metrics import macs_per_sample
    den = zoo.load(model)
    m = den.meta["model"]
    x = torch.randn(batch, m.get("in_channels", 1), m["image_size"], m["image_size"], generator=torch.Generator().manual_seed(0))
    sigma, labels = torch.full((batch,), 1.0), torch.arange(batch) % 10
    counts, per_layer = {"linear": 0.0, "conv": 0.0}, []

    def hook(kind):
        def f(mod, inp, out):
            w = mod.weight
            per_out = w[0].numel()                      # in_features, or in_channels/groups * kh * kw
            counts[kind] += out.numel() * per_out / batch
            if kind == "linear":
                per_layer.append(out.numel() * per_out / batch)
        return f
    handles = [mod.register_forward_hook(hook("linear" if isinstance(mod, torch.nn.Linear) else "conv"))
               for mod in den.modules() if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))]
    try:
        with torch.no_grad():
            total = macs_per_sample(lambda a: den(a, sigma, labels), x)
    finally:
        for h in handles:
            h.remove()
    n_lin = sum(isinstance(mod, torch.nn.Linear) for mod in den.modules())
    n_conv = sum(isinstance(mod, torch.nn.Conv2d) for mod in den.modules())
    return {"total_macs": total, "linear_macs": counts["linear"], "conv_macs": counts["conv"],
            "linear_share": counts["linear"] / total, "linear_layers": n_lin, "conv_layers": n_conv,
            "linear_macs_per_layer": sorted(per_layer, reverse=True)}


def main() -> None:
    from ..io import atomic_write
    from .provenance import provenance
    torch.set_num_threads(1)
    res = {m: shares(m) for m in ("digits-unet", "digits-dit")}
    res["provenance"] = provenance()
    res["command"] = "python -m effdiff.bench.int8_share"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(OUT, json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "provenance"}, indent=1))


if __name__ == "__main__":
    main()
