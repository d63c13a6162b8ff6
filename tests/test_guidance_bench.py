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


def _row(config, fd, acc, ev, baseline=None, reference=False):
    return {"model": "digits-dit", "config": config, "fd_per_seed": fd, "class_acc_per_seed": acc,
            "info": {"evaluations_per_sample": ev}, "baseline": baseline, "reference": reference, "seeds": [0, 1, 2],
            "fd": sum(fd) / 3, "fd_sd": 0.1, "class_acc": sum(acc) / 3, "class_acc_sd": 0.01, "ms_per_sample": 1.0,
            "ms_sd": 0.1, "mem_asymmetry": 0.9, "nfe": 20}


def test_verdicts_read_the_checks_off_a_run(tmp_path):
    from effdiff.bench.scoring import paired_change
    best = G.SCALES["digits-dit"][0]
    cfg = _row(f"cfg-{best:g}", [2.0, 2.2, 1.9], [0.96, 0.95, 0.97], 40, reference=True)
    same = _row(f"interval-edm2-{best:g}", [2.1, 2.1, 2.0], [0.95, 0.96, 0.97], 23, baseline=cfg["config"])
    worse = _row(f"cfg-cache-N4-{best:g}", [3.0, 3.3, 2.9], [0.90, 0.91, 0.92], 27, baseline=cfg["config"])
    for r in (same, worse):
        r["fd_change"], r["fd_change_ci"] = paired_change(r["fd_per_seed"], cfg["fd_per_seed"])
    mg = _row("model-guidance (digits-dit-mg)", [2.05, 2.15, 1.95], [0.95, 0.96, 0.96], 20, baseline=cfg["config"])
    lines = G.verdicts({"rows": [cfg, same, worse, mg]})
    assert "-> met" in lines[0] and "interval-edm2" in lines[1] and "cfg-cache" not in lines[1]
    mg["fd_per_seed"] = [3.0, 3.2, 3.1]
    assert "NOT met" in G.verdicts({"rows": [cfg, same, worse, mg]})[0]
    doc = tmp_path / "g.md"
    doc.write_text(f"intro\n{G.START}\nold\n{G.END}\ntail\n")
    (tmp_path / "r.json").write_text(json.dumps({"rows": [cfg, same, worse, mg], "suite": "guidance", "seeds": [0, 1, 2]}))
    G.write_docs(doc, {"run": tmp_path / "r.json"})
    text = doc.read_text()
    assert text.startswith("intro") and text.endswith("tail\n") and "old" not in text and "| digits-dit |" in text


def test_guidance_free_suite_rows_and_savings():
    """guidance-free: CFG at the best scale and every training-free setting, each interval candidate guiding at most
    8 of the 20 steps (>= 30% of CFG's evaluations saved) on the suite's own schedule."""
    from effdiff import zoo
    from effdiff.bench.config import sigmas_for
    best = G.SCALES["mnist-ldm-dit"][0]
    rows = G._free("mnist-ldm-dit", quick=False)
    assert rows[0].config == f"cfg-{best:g}" and rows[0].reference
    assert [c.config for c in rows[1:]] == [f"{t}-{best:g}" for t in G.FREE]
    assert all(c.baseline == rows[0].config for c in rows[1:])
    s = sigmas_for(rows[0], zoo.load("digits-dit").process)[:-1]
    assert len(s) == G.STEPS
    for label, (tech, c) in G.CANDIDATES.items():
        if tech == "guidance-interval":
            guided = int(((s >= c.sigma_lo) & (s <= c.sigma_hi)).sum())
            assert 1 <= guided <= 8, (label, guided)


def test_select_row_follows_the_registered_rule():
    from effdiff.bench.scoring import paired_change
    cfg = _row("cfg-1.5", [2.0, 2.2, 1.9], [0.96, 0.95, 0.97], 40, reference=True)
    lossy = _row("interval-edm2-1.5", [2.1, 2.1, 2.0], [0.94, 0.93, 0.95], 23)          # accuracy measurably lower
    ok_lo = _row("interval-1-100-1.5", [2.0, 2.3, 1.9], [0.95, 0.96, 0.96], 26)
    ok_hi = _row("interval-3-inf-1.5", [2.1, 2.1, 1.8], [0.96, 0.95, 0.97], 27)
    costly = _row("adaptive-0.999-1.5", [2.0, 2.2, 1.9], [0.96, 0.95, 0.97], 30)        # saves < 30%
    for r in (lossy, ok_lo, ok_hi, costly):
        r["fd_change"], r["fd_change_ci"] = paired_change(r["fd_per_seed"], cfg["fd_per_seed"])
    pick, lines = G.select_row({"rows": [cfg, lossy, ok_lo, ok_hi, costly]}, "digits-dit")
    assert pick == "interval-3-inf-1.5" and lines[-1] == "- pick: interval-3-inf-1.5"
    assert "dropped" in lines[0] and "dropped" in lines[3]
    assert G.select_row({"rows": [cfg, lossy, costly]}, "digits-dit")[0] is None


def test_pooled_joins_the_seeds_of_runs_at_the_same_n():
    from effdiff.bench.scoring import t_interval
    def run(seeds, fd, acc, n=360):
        cfg = _row("cfg-1.5", [2.0] * 3, [0.96] * 3, 40, reference=True)
        row = _row("interval-edm2-1.5", fd, acc, 23, baseline="cfg-1.5")
        for r in (cfg, row):
            r["seeds"] = seeds
        return {"rows": [cfg, row], "n_samples": n}
    a = run([0, 1, 2], [2.2, 2.0, 1.8], [0.95, 0.96, 0.95])
    b = run([50, 51, 52], [2.1, 1.9, 2.0], [0.96, 0.95, 0.96])
    assert G.pooled([a]) == [] and G.pooled([a, run([0, 1, 2], [9.0] * 3, [0.5] * 3)]) == []  # one seed set
    assert G.pooled([a, run([7, 8, 9], [2.0] * 3, [0.96] * 3, n=200)]) == []                # other n: not pooled
    line, = G.pooled([a, b])
    acc = [-1, 0, -1, 0, -1, 0]
    lo, hi = t_interval(acc)
    assert "6 seeds (0-2, 50-52)" in line and f"[{lo:+.1f}, {hi:+.1f}]" in line and "measurably" not in line
    line, = G.pooled([a, run([50, 51, 52], [2.0] * 3, [0.95] * 3)])
    assert "measurably lower" in line


def test_guidance_high_suite_rows():
    best, high = G.SCALES["mnist-ldm-dit"]
    rows = G._high("mnist-ldm-dit", quick=False)
    assert [c.config for c in rows] == [f"cfg-{best:g}", f"cfg-{high:g}"] + [f"{t}-{high:g}" for t in G.TECHNIQUES]
    assert rows[0].reference and rows[1].baseline == rows[0].config
    assert all(c.baseline == f"cfg-{high:g}" for c in rows[2:])


def test_guidance_freq_suite_rows():
    best = G.SCALES["digits-dit"][0]
    rows = G._freq("digits-dit", quick=False)
    assert [c.config for c in rows] == [f"cfg-{best:g}", f"cfg-cache-N4-{best:g}", f"cfg-cache-N4-f0.2-{best:g}"]
    assert G.FREQ["cfg-cache-N4-f0.2"][1].boost > 0 and G.TECHNIQUES["cfg-cache-N4"][1].boost == 0
