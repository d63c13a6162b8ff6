"""Zoo cards whose numbers come from a study or bench run instead of ``bench.cards`` (issue 24): the MNIST
adapters (``finetune-eval-mnist --zoo``) and the Model Guidance fine-tunes (``guidance-mg-rows``). Each run
is committed under ``docs/bench/cards/`` with the SHA-256 of the tensors it scored, and ``check(name)`` lists
every card number that differs from it (tests/test_tables.py). A card string "a ± b" is compared at its
own rounding.

    python -m effdiff.bench.studies finetune-eval-mnist mnist-unet --zoo --out DIR    # then copy DIR/eval-*.json
    effdiff bench --study guidance-mg-rows digits-dit digits-dit-mg OUT 360            # then: --record below
    python -m effdiff.bench.card_sources --record digits-dit-mg OUT/results.json
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..assets import card as _card   # the model JSON (tests plant edited cards here)
from ..metrics.stats import mean_sd
from .tables import ROOT

CARDS = ROOT / "docs/bench/cards"
# adapter card -> the study file that scored it (with its base and both adapters' hashes)
ADAPTERS = {f"{base}-{kind}": CARDS / "finetune-mnist" / f"eval-{base}.json"
            for base, kinds in (("mnist-unet", ("lora-thick", "controlnet-xs-edges")),
                                ("mnist-ldm-dit", ("lora-thick", "controlnet-edges"))) for kind in kinds}
# card key (regex) -> (study row, metric)
ADAPTER_KEYS = [(r"^base_fd_target_thick_", "base", "fd_thick"), (r"^fd_target_thick_", "lora", "fd_thick"),
                (r"^real_vs_real_fd_thick_", "real_thick", "fd_thick"), (r"^base_edge_iou", "base", "edge_iou"),
                (r"^base_edge_mse", "base", "edge_mse"), (r"^base_fd_mnist_heldout", "base", "fd"),
                (r"^edge_iou_", "control", "edge_iou"), (r"^edge_mse_", "control", "edge_mse"),
                (r"^fd_mnist_heldout_", "control", "fd"),
                (r"^merged_max_abs_sample_diff$", "lora_merged", "max_abs_diff_vs_unmerged")]
# digits adapter card -> the finetune-eval run that scored it (the shipped file placed as the suite's trained run)
DIGITS = {n: CARDS / "finetune-digits" / f"{n.split('-')[0]}-{n.split('-')[1]}.json"
          for n in ("digits-dit-lora-thick", "digits-dit-controlnet-edges", "digits-unet-lora-thick",
                    "digits-unet-controlnet-xs-edges")}
RECORDED = tuple(DIGITS)     # the digits adapters whose runs are recorded (all four)
# card key (regex) -> (row: "base", "adapter" or "real_thick", results key)
DIGIT_KEYS = [(r"^base_fd_target_thick_", "base", "fd_target"), (r"^fd_target_thick_", "adapter", "fd_target"),
              (r"^real_vs_real_fd_thick_", "real_thick", "real_thick_fd"), (r"^base_edge_iou", "base", "edge_iou"),
              (r"^base_edge_mse", "base", "edge_mse"), (r"^base_fd_digits_heldout", "base", "fd"),
              (r"^edge_iou_", "adapter", "edge_iou"), (r"^edge_mse_", "adapter", "edge_mse"),
              (r"^fd_digits_heldout_", "adapter", "fd")]
# card numbers the finetune suite does not compute (kept on the card, said here, not checked)
NOT_IN_RUN = {"fd_pixel_target_thick_ddim20_n360_seed0": "pixel-space FD against the thick split: the suite scores the "
              "target domain in digits-eval features only"}
# Model Guidance card -> its recorded bench row; card metric -> row key
MG: dict[str, Path] = {n: CARDS / n / "results.json" for n in ("digits-dit-mg", "mnist-ldm-dit-mg")}
MG_KEYS = {"fd_dpmpp-2m_logsnr_20": "fd", "fd_sd_dpmpp-2m_logsnr_20": "fd_sd",
           "class_acc_dpmpp-2m_logsnr_20": "class_acc", "class_acc_sd_dpmpp-2m_logsnr_20": "class_acc_sd",
           "mem_asymmetry_dpmpp-2m_logsnr_20": "mem_asymmetry", "evaluations_per_sample": "nfe"}
TOL = 1e-4


def names() -> list[str]:
    return [*ADAPTERS, *(n for n, p in DIGITS.items() if n in RECORDED), *MG]


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _same(card_value, stat: dict) -> bool:
    """A card value against a study statistic {mean, sd, ci95, per_seed}: 'a ± b' at its rounding, lists
    (per seed, interval) at 3 decimals."""
    if isinstance(card_value, str):
        m = re.fullmatch(r"\s*([-+\d.]+) ± ([\d.]+)\s*", card_value)
        if not m:
            return False
        return all(abs(float(t) - v) <= 0.5 * 10 ** -_decimals(t) + 1e-12
                   for t, v in ((m[1], stat["mean"]), (m[2], stat["sd"])))
    return False


def _opened(name: str, path: Path, hashes) -> tuple[dict, dict | None, list[str]]:
    """(card, results file or None, problems so far): the file must exist and have scored the card's tensors."""
    meta = _card(name)
    if not path.exists():
        return meta, None, [f"{name}: no results file {path.relative_to(ROOT)}"]
    res = json.loads(path.read_text())
    ok = hashes(res) == meta["sha256"]["tensors"]
    return meta, res, [] if ok else [f"{name}: {path.name} scored other weights"]


def check_adapter(name: str) -> list[str]:
    """Differences between an MNIST adapter card and the study file that scored its shipped tensors."""
    meta, res, out = _opened(name, ADAPTERS[name], lambda r: r.get("weights_sha256", {}).get(name))
    if res is None:
        return out
    for key, value in meta["card"]["metrics"].items():
        hit = next(((row, q) for pat, row, q in ADAPTER_KEYS if re.search(pat, key)), None)
        if hit is None:
            continue
        stat = res["rows"][hit[0]][hit[1]]
        if isinstance(value, float):                 # the merged-LoRA deviation: the largest over seeds
            ok = abs(value - max(stat["per_seed"])) <= TOL
        else:
            ok = _compare(key, value, stat)
        if not ok:
            out.append(f"{name}: card {key} = {value}, {ADAPTERS[name].name} {hit[0]}.{hit[1]} = {stat}")
    return out


def _row_stat(r: dict, key: str) -> dict:
    """A results row's statistic in the study-file shape {mean, sd, ci95, per_seed}."""
    per = r.get(f"{key}_per_seed", r.get("fd_per_seed") if key == "fd" else None)
    return {"mean": r[key], "sd": r.get(f"{key}_sd"), "ci95": r.get(f"{key}_ci"), "per_seed": per}


def _compare(key: str, value, stat: dict) -> bool:
    """A card value against a statistic: per-seed / interval lists, one seed's number (``_seed0`` keys), 'a ± b'."""
    if key.endswith("_per_seed"):
        return len(value) == len(stat["per_seed"]) and all(abs(a - b) <= 5e-4 for a, b in zip(value, stat["per_seed"]))
    if key.endswith("_ci95"):
        return all(abs(a - b) <= 5e-3 for a, b in zip(value, stat["ci95"]))
    if isinstance(value, (int, float)):
        return abs(value - (stat["per_seed"][0] if re.search(r"seed0$|n360$", key) else stat["mean"])) <= 5e-4
    return _same(value, stat)


def check_digits(name: str) -> list[str]:
    """Differences between a digits adapter card and the finetune-eval run of its shipped file."""
    path = DIGITS[name]
    meta, res, out = _opened(name, path, lambda r: r["weights_sha256"].get(name))
    if res is None:
        return out
    label = {"lora": "lora", "controlnet": "controlnet", "controlnet-xs": "controlnet-xs"}[meta["card"]["method"]]
    rows = {r["config"]: r for r in res["results"]["rows"]}
    real = res["real_thick"]["real_thick_fd"]
    for key, value in meta["card"]["metrics"].items():
        hit = next(((row, q) for pat, row, q in DIGIT_KEYS if re.search(pat, key)), None)
        if hit is None:
            numeric = isinstance(value, (int, float, list)) or "±" in str(value)    # not a text note
            if numeric and re.search(r"^(fd|base_fd|edge|base_edge)", key) and key not in NOT_IN_RUN:
                out.append(f"{name}: card {key} is in no results file")
            continue
        if hit[0] == "real_thick":
            mean, sd = mean_sd(real)
            stat = {"mean": mean, "sd": sd, "per_seed": real, "ci95": None}
        else:
            stat = _row_stat(rows[label if hit[0] == "adapter" else "base"], hit[1])
        if not _compare(key, value, stat):
            out.append(f"{name}: card {key} = {value}, {path.name} {hit[0]}.{hit[1]} = {stat['mean']} ± {stat['sd']}")
    return out


def record_digits(model: str, out_dir: Path, runs: Path) -> Path:
    """Write ``docs/bench/cards/finetune-digits/MODEL.json``: a finetune-eval run (``OUT/results.json``,
    ``OUT/real_thick.json``) of the shipped adapters placed in ``runs`` as NAME-s0/model, with their SHA-256."""
    from ..io import atomic_write
    res = json.loads((Path(out_dir) / "results.json").read_text())
    names = [n for n in DIGITS if n.startswith(model + "-")]
    hashes = {n: json.loads((Path(runs) / f"{n}-s0" / "model.json").read_text())["sha256"]["tensors"] for n in names}
    out = {"model": model, "weights_sha256": hashes, "results": res,
           "real_thick": json.loads((Path(out_dir) / "real_thick.json").read_text()),
           "command": f"EFFDIFF_FINETUNE_RUNS=RUNS python -m effdiff.bench.studies finetune-eval --model {model} --rows "
                      "base,lora,lora-merged,CONTROL --out OUT (RUNS/NAME-s0/model.* = the zoo files of NAME)"}
    path = CARDS / "finetune-digits" / f"{model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(out, indent=1, sort_keys=True, default=str))
    return path


def check_mg(name: str) -> list[str]:
    """Differences between a Model Guidance card and its recorded bench row (scored on the card's tensors)."""
    meta, res, out = _opened(name, MG[name], lambda r: r["weights_sha256"])
    if res is None:
        return out
    row = res["row"]
    for key, rk in MG_KEYS.items():
        if key in meta["card"]["metrics"] and abs(meta["card"]["metrics"][key] - row[rk]) > TOL * max(1, abs(row[rk])):
            out.append(f"{name}: card {key} = {meta['card']['metrics'][key]}, row {rk} = {row[rk]}")
    change = next((v for k, v in meta["card"]["metrics"].items() if k.startswith("fd_change_vs_cfg")), None)
    if change is not None:
        from .tables import change as fmt
        if not change.startswith(fmt(row)):
            out.append(f"{name}: card says FD change {change!r}, row {fmt(row)}")
    return out


def check(name: str) -> list[str]:
    if name in ADAPTERS:
        return check_adapter(name)
    return check_digits(name) if name in DIGITS else check_mg(name)


def record_mg(name: str, bench_results: Path) -> Path:
    """Write ``docs/bench/cards/NAME/results.json``: the MG row of a ``guidance-mg-rows`` run of the zoo model
    ``name`` (loaded by name, so scored on the shipped tensors whose SHA-256 it records) and the run itself."""
    from ..io import atomic_write
    res = json.loads(Path(bench_results).read_text())
    row = next(r for r in res["rows"] if r["config"] == f"model-guidance ({name})")
    out = {"model": name, "weights_sha256": _card(name)["sha256"]["tensors"], "row": row,
           "bench": {k: res.get(k) for k in ("seeds", "n_samples", "provenance", "machine", "suite")},
           "baseline_row": next(r for r in res["rows"] if r["config"] == row["baseline"]),
           "command": f"effdiff bench --study guidance-mg-rows {row['model']} {name} OUT {res['n_samples']}"}
    path = MG.get(name, CARDS / name / "results.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(out, indent=1, sort_keys=True, default=str))
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m effdiff.bench.card_sources")
    ap.add_argument("--record", nargs=2, metavar=("NAME", "RESULTS"), help="record a guidance-mg-rows run")
    ap.add_argument("--record-finetune", nargs=3, metavar=("MODEL", "OUT", "RUNS"),
                    help="record a finetune-eval run of the shipped digits adapters of MODEL")
    a = ap.parse_args(argv)
    if a.record:
        print("wrote", record_mg(a.record[0], Path(a.record[1])))
    if a.record_finetune:
        print("wrote", record_digits(a.record_finetune[0], Path(a.record_finetune[1]), Path(a.record_finetune[2])))
    for n in names():
        print(n, check(n) or "backed")


if __name__ == "__main__":
    main()
