"""The compress suite's report: every row in the table with its bytes, and one Pareto figure (FD vs
weight bytes and vs ms/sample) per model; ROWS build configs of registered techniques."""
import torch

from effdiff import techniques as T
from effdiff.bench import compress


def _row(model, config, fd, ms, info=None, **kw):
    return {"model": model, "config": config, "fd": fd, "fd_sd": 0.1, "ms_per_sample": ms, "info": info,
            "fd_change": fd / 2.0 - 1, "fd_change_ci": [-0.1, 0.2], "macs_ratio": 1.0,
            "speedup_vs_baseline": 1.0, "class_acc": 0.9, **kw}


def test_report_lists_every_row_with_bytes_and_draws_the_pareto_figure(tmp_path):
    rows = []
    for model in ("digits-unet", "digits-dit"):
        rows += [{"model": model, "config": "ddim-10", "fd": 2.0, "fd_sd": 0.1, "ms_per_sample": 10.0, "reference": True},
                 _row(model, "ddim-10+ptq-W4A8", 2.1, 30.0,
                      {"compress": {"layers": 3, "fp32_bytes": 4000, "packed_bytes": 1000, "compression": 4.0}}),
                 _row(model, "ddim-10+int8-auto", 2.0, 8.0, {"compress": {"bytes_before": 4000, "bytes_after": 1100}}),
                 _row(model, "ddim-10+diff-pruning+ft", 2.2, 5.0, {"compress": {"params_before": 1000, "params_after": 600}})]
    rows[1]["info"]["peak_bytes"] = 3_500_000
    text = compress.report({"rows": rows, "n_samples": 20}, tmp_path)
    for r in rows[1:4] + rows[5:]:
        assert f"| {r['model']} | {r['config']} |" in text
    assert "| 3.5 MB |" in text and "digits-dit at full precision: 4.234 MB of weights" in text
    assert "0.001 MB packed" in text and "0.001 MB held" in text and "600 params" in text
    assert compress.model_bytes(rows[1]) == 1000 and compress.model_bytes(rows[3]) == 2400
    assert compress.model_bytes(rows[0]) is None
    composed = _row("digits-dit", "x", 2.0, 5.0, {"compress": {"depth-pruning": {"params_after": 700, "blocks": 2},
                                                               "head-pruning": {"params_after": 500}}})
    assert compress.model_bytes(composed) == 2000
    assert (tmp_path / "pareto_compress.png").stat().st_size > 10_000
    assert (tmp_path / "compress.md").read_text().strip() == text.strip()


def test_every_row_names_registered_techniques_and_valid_configs():
    for label, parts in compress.ROWS.items():
        for name, make in parts:
            cfg = make(10, "digits-dit")
            assert isinstance(cfg, T.get(name).config), label


def test_a_row_measures_the_peak_memory_of_one_call_on_its_batch():
    import effdiff as ed
    den = ed.zoo.load("digits-dit")
    sig = ed.timesteps.get("uniform", 4, den.process)
    x, labels = torch.randn(40, 1, 8, 8) * float(sig[0]), torch.arange(40) % 10
    row = compress._Row(compress.ROWS["int8-fbgemm"], "ddim", "digits-dit")
    h = row.setup(den, sig, x, labels)
    try:
        res = row.generate(den, den, x, sig, labels, seed=0)
        small = compress.call_peak(den, x[:4], sig, labels[:4])
    finally:
        h.remove()
    assert res.stats["peak_bytes"] > 5 * small > 0        # grows with the batch
