"""The guidance bench suite runs end to end on a small batch and reports honest evaluation counts."""
import json

import pytest

from effdiff.bench import guidance as G
from effdiff.bench.runner import run


def test_rows_of_the_suite():
    labels = [c.config for c in G._guidance("digits-dit", quick=False)]
    best, high = G.SCALES["digits-dit"]
    assert labels[0] == f"cfg-{best:g}" and f"cfg-{high:g}" in labels and "cond (w=1)" in labels
    assert all(f"{t}-{w:g}" in labels for t in G.TECHNIQUES for w in (best, high))
    assert [c.config for c in G._scales("digits-dit", False)] == [f"cfg-{w:g}" for w in G.SWEEP]


@pytest.mark.slow
def test_guidance_suite_quick(tmp_path):
    res = run(models=["digits-dit"], suite_name="guidance", quick=True, n_samples=20, out=tmp_path,
              repeats=1, threads=1, grids=False, verbose=False)
    rows = {r["config"]: r for r in res["rows"]}
    best = G.SCALES["digits-dit"][0]
    cfg = rows[f"cfg-{best:g}"]
    assert cfg["info"]["evaluations_per_sample"] == 2 * G.STEPS and cfg["nfe"] == G.STEPS
    assert rows["cond (w=1)"]["info"]["evaluations_per_sample"] == G.STEPS
    for label in G.TECHNIQUES:
        r = rows[f"{label}-{best:g}"]
        assert G.STEPS <= r["info"]["evaluations_per_sample"] < 2 * G.STEPS
        assert r["baseline"] == f"cfg-{best:g}" and "fd_change_ci" in r
        assert len(r["class_acc_per_seed"]) == len(r["seeds"])
    text = (tmp_path / "guidance.md").read_text()
    assert "evaluations / sample" in text and "interval-edm2" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert "class_acc_per_seed" in saved["rows"][0]
