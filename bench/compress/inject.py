"""Add the separately measured peak activation memory (peaks-MODEL.json, peaks.py) to the suite runs copied into
docs/bench/compress and re-render their compress.md with the suite's report (rows are not re-scored)."""
import json
from pathlib import Path
import torch
torch.set_num_threads(1)
from effdiff.bench import compress as C
D = Path("docs/bench/compress")
for sub, model in (("dit", "digits-dit"), ("unet", "digits-unet"), ("svdquant-qat-dit", "digits-dit"),
                   ("svdquant-qat-unet", "digits-unet")):
    peaks = json.load(open(f"bench-out/compress/peaks-{model}.json"))
    res = json.load(open(D / sub / "results.json"))
    for r in res["rows"]:
        label = r["config"].split("+", 1)[1] if "+" in r["config"] else None
        if label in peaks:
            r.setdefault("info", {})["peak_bytes"] = peaks[label]
            r["info"]["peak_bytes_source"] = "peaks.py: one call on the 360-sample batch, measured after the run"
    res["report"] = C.report(res, D / sub)
    (D / sub / "results.json").write_text(json.dumps(res, indent=1, default=str))
    print(res["report"])
