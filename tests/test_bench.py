"""The bench runner's statistics: seeds, paired changes with confidence intervals, timing spread,
rounding to the spread, and the solvers suite's selection/fresh-seed split."""
import math

import pytest
import torch

from effdiff.bench import BenchConfig, run, table
from effdiff.bench.machine import machine
from effdiff.bench.scoring import dataset_of, decimals, mean_sd, paired_change, pct_ci, pm, t_interval
from effdiff.bench.timing import ms_stats, rounds


def test_mean_sd_t_interval_and_paired_change():
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    lo, hi = t_interval([1.0, 2.0, 3.0])
    # t(0.975, df=2) = 4.3027: 2 +- 4.3027 * 1 / sqrt(3)
    assert lo == pytest.approx(2 - 4.302653 / math.sqrt(3), rel=1e-5) and hi == pytest.approx(2 + 4.302653 / math.sqrt(3), rel=1e-5)
    assert t_interval([1.0]) == [None, None]
    change, ci = paired_change([1.1, 2.2, 3.3], [1.0, 2.0, 3.0])     # +10% on every seed: no spread
    assert change == pytest.approx(0.1) and ci == pytest.approx([0.1, 0.1])
    change, ci = paired_change([1.2, 1.8], [1.0, 2.0])              # +20% and -10%: the CI spans 0
    assert change == pytest.approx(0.05) and ci[0] < 0 < ci[1]


def test_rounding_follows_the_spread():
    assert decimals(0.3) == 1 and decimals(0.03) == 2 and decimals(0.15) == 2 and decimals(2.5) == 0
    assert pm(0.63812, 0.0912) == "0.64 ± 0.09"
    assert pm(0.63812, 0.0123) == "0.638 ± 0.012"
    assert pm(12.3, 0.0) == "12.3000"
    assert pct_ci(0.05, [-0.2, 0.3]).startswith("+5")


def test_timing_rounds_and_spread():
    assert rounds([0, 1, 2], 3) == [0, 1, 2]
    assert rounds([7], 3) == [7, 7, 7]
    assert rounds([0, 1, 2, 3], 2) == [0, 1, 2, 3]
    st = ms_stats([0.1, 0.3, 0.2], n=100)
    assert st["ms_per_sample"] == pytest.approx(2.0) and st["timed_runs"] == 3
    assert st["ms_sd"] == pytest.approx(1.0) and st["ms_runs"] == pytest.approx([1.0, 3.0, 2.0])


def test_machine_records_cpu_threads_and_torch():
    m = machine()
    assert {"processor", "threads", "torch", "cores"} <= set(m) and m["torch"] == torch.__version__


def test_dataset_of_zoo_models():
    import effdiff as ed
    assert dataset_of(ed.zoo.load("digits-unet")) == "digits"


def test_rows_over_seeds_with_paired_change(tmp_path):
    configs = [BenchConfig("digits-unet", "ddim-8", "ddim", "uniform", 8, reference=True),
               BenchConfig("digits-unet", "ddim-4", "ddim", "uniform", 4, baseline="ddim-8")]
    res = run(configs=configs, n_samples=40, n_seeds=3, repeats=3, out=tmp_path, verbose=False, grids=False)
    ref, fast = res["rows"]
    for r in (ref, fast):
        assert r["seeds"] == [0, 1, 2] and len(r["fd_per_seed"]) == 3 and r["timed_runs"] == 3
        assert r["fd"] == pytest.approx(sum(r["fd_per_seed"]) / 3)
        assert r["fd_sd"] > 0 and r["ms_sd"] >= 0 and len(r["ms_runs"]) == 3
        assert 0 <= r["mem_copy_fraction"] <= 1 and r["mem_asymmetry"] > 0 and r["real_vs_real_fd"] > 0
    rel = [(a - b) / b for a, b in zip(fast["fd_per_seed"], ref["fd_per_seed"])]
    assert fast["fd_change"] == pytest.approx(sum(rel) / 3)
    assert fast["fd_change_ci"][0] <= fast["fd_change"] <= fast["fd_change_ci"][1]
    assert res["real_vs_real"]["digits"]["n"] == 40 and res["floor_fd"] == res["real_vs_real_fd"]
    assert "±" in table(res) and "real vs real" in table(res)
    assert (tmp_path / "results.json").exists()


def test_every_row_is_compared_with_its_models_reference_paired():
    from effdiff.bench.runner import compare_to_reference
    from effdiff.bench.scoring import paired_change
    rows = [{"model": "m", "reference": True, "fd_per_seed": [1.0, 1.2, 0.9]},
            {"model": "m", "reference": False, "fd_per_seed": [1.1, 1.3, 1.0]},
            {"model": "other", "reference": False, "fd_per_seed": [2.0, 2.0, 2.0]}]
    compare_to_reference(rows)
    assert "fd_vs_ref" not in rows[0] and "fd_vs_ref" not in rows[2]          # no reference of its own
    change, ci = paired_change([1.1, 1.3, 1.0], [1.0, 1.2, 0.9])
    assert rows[1]["fd_vs_ref"] == change > 0 and rows[1]["fd_vs_ref_ci"] == ci and ci[0] < change < ci[1]
