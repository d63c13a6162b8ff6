"""Tables generated, not typed (effdiff.bench.tables): every marked table in README.md, docs/ and the
zoo cards equals what its results files render, and a planted change is caught."""
import json
import shutil

import pytest

from effdiff.bench import tables as T


def test_committed_tables_match_their_results():
    bad = T.stale()
    assert not bad, "tables differ from their results.json (run python -m effdiff.bench.tables --write): " + \
        "; ".join(f"{f.name}: {a}" for f, a in bad)


def test_every_block_names_an_existing_results_file():
    n = 0
    for f in T.files():
        for m in T.BLOCK.finditer(f.read_text()):
            sources, opts = T.parse(m.group("args"))
            assert sources and all((T.ROOT / s).is_file() for s in sources), (f.name, m.group("args"))
            assert opts.get("kind", "rows") in T.KINDS
            n += 1
    assert n >= 5


def _tree(tmp_path):
    """A tiny repository: one results file and one doc with a table and an inline value."""
    src = T.ROOT / "docs/bench/retrieval/results.json"
    (tmp_path / "docs/bench/r").mkdir(parents=True)
    shutil.copy(src, tmp_path / "docs/bench/r/results.json")
    args = "docs/bench/r/results.json cols=model,run,fd,change has=fd_change"
    doc = (f"# x\n\n<!-- table: {args} -->\n<!-- /table -->\n\n"
           "There are <!-- value: docs/bench/r/results.json kind=count has=fd_change --><!-- /value --> comparisons; "
           "DiT redi-4to12-k4: <!-- value: docs/bench/r/results.json kind=verdicts model=digits-dit where=k4 -->"
           "<!-- /value -->.\n")
    (tmp_path / "docs/x.md").write_text(doc)
    (tmp_path / "docs/x.md").write_text(T.regenerate(doc, tmp_path))
    return tmp_path


def test_planted_changes_are_caught(tmp_path):
    root = _tree(tmp_path)
    text = (root / "docs/x.md").read_text()
    assert T.stale(root) == []
    assert "kind=count has=fd_change -->8<!-- /value --> comparisons" in text
    assert "redi-4to12-k4 +202% [-7, +411] (no measurable difference)" in text   # the ReDi row
    # a hand edit of one number in the table
    (root / "docs/x.md").write_text(text.replace("+219% [+27, +412]", "+119% [+27, +412]"))
    assert [f.name for f, _ in T.stale(root)] == ["x.md"]
    (root / "docs/x.md").write_text(text)
    # a results file that changed under a committed table
    res = json.loads((root / "docs/bench/r/results.json").read_text())
    res["rows"][1]["fd_change"] += 0.5
    (root / "docs/bench/r/results.json").write_text(json.dumps(res))
    assert [f.name for f, _ in T.stale(root)] == ["x.md"]
    T.write(root)
    assert T.stale(root) == [] and "+269%" in (root / "docs/x.md").read_text()


def test_unknown_columns_and_missing_files_raise(tmp_path):
    with pytest.raises(KeyError, match="unknown column"):
        T.render("docs/bench/retrieval/results.json cols=model,nonsense")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        T.render("docs/bench/none/results.json", root=tmp_path)


def test_verdict_follows_the_interval():
    assert T.verdict({"fd_change": 0.2, "fd_change_ci": [0.1, 0.3]}) == "costs measurably"
    assert T.verdict({"fd_change": 0.2, "fd_change_ci": [-0.1, 0.5]}) == "no measurable difference"
    assert T.verdict({"fd_change": -0.2, "fd_change_ci": [-0.3, -0.1]}) == "lowers FD measurably"


def test_training_speedups_are_t_intervals_over_seeds():
    """The training ablation's speed-up interval is a t-interval over per-seed speed-ups (2 df for 3
    seeds), not a bootstrap with 10 distinct resamples: it is wider than the old [1.26, 1.46]."""
    abl = json.loads((T.ROOT / "docs/bench/training/training_ablation.json").read_text())
    per = T.per_seed_speedups(abl["curves"], "lognormal")
    assert len(per) == 3 and all(v is not None and not bound for v, bound in per)
    vals, ci = T.speedup_cell(per)
    lo, hi = (float(x) for x in ci.split("[")[1].rstrip("]").split(", "))
    assert lo < 1.26 and hi > 1.46
    assert "bound" in T.speedup_cell(T.per_seed_speedups(abl["curves"], "priorgrad"))[1]


# ---- the sentence checker (effdiff.bench.sentences) ----------------------------------------------
from effdiff.bench import sentences as S  # noqa: E402


def test_measurable_sentences_are_generated_or_listed_and_hold():
    bad = S.problems()                               # README.md, docs/*.md, docs/bench/*.md
    assert not bad, "\n".join(bad)


def test_planted_sentences_are_caught(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "x.md"
    doc.write_text("Block caching costs measurably on every row. DeepCache N=2 is fine.\n")
    monkeypatch.setattr(S, "CLAIMS", [])
    assert any("unlisted sentence: Block caching costs measurably" in p for p in S.problems(tmp_path))
    # listed, but the rows say otherwise: DPM-Solver++(2M) block caching on the DiT contains 0 (issue 24, item 3)
    monkeypatch.setattr(S, "CLAIMS", [S.Claim("docs/x.md", "Block caching costs measurably", (
        S.Rows("docs/bench/caching/results.json", "model=digits-dit where=block-caching-0.2$", S.COST),))])
    bad = S.problems(tmp_path)
    assert len(bad) == 1 and "dpmpp-2m-50+block-caching-0.2: no measurable difference" in bad[0]
    # a generated value block is not prose: its words come from the interval
    doc.write_text("Rows: <!-- value: docs/bench/caching/results.json kind=verdicts where=x -->a costs measurably"
                   "<!-- /value -->.\n")
    monkeypatch.setattr(S, "CLAIMS", [])
    assert S.problems(tmp_path) == []
    # a listed sentence that was edited away is reported, so the list cannot go stale
    monkeypatch.setattr(S, "CLAIMS", [S.Claim("docs/x.md", "gone sentence")])
    assert "no longer in the file" in S.problems(tmp_path)[0]


# ---- card metrics backed by results files (effdiff.bench.card_results) ----------------------------
from effdiff.bench import card_results as CR  # noqa: E402


def test_card_metrics_equal_their_hashed_results_files():
    """Every zoo card with FD numbers is backed by a results file scored on the same tensors (SHA-256),
    by the distill runs it cites, or is listed as unbacked (docs/evaluation.md says which)."""
    import glob
    from pathlib import Path
    names = [Path(p).stem for p in glob.glob(str(T.ROOT / "src/effdiff/zoo/weights/*.json"))]
    backed = 0
    for n in names:
        m = CR.card(n)["card"]["metrics"]
        if not any(k.startswith("fd") and isinstance(v, (int, float)) for k, v in m.items()):
            continue
        if n in CR.ELSEWHERE or n in CR.UNBACKED or n in CR.SOURCED:      # SOURCED: tests/test_tables_generated.py
            continue
        assert CR.check(n) == [], CR.check(n)
        backed += 1
    assert backed >= 3


def test_a_hand_edited_card_metric_is_caught(monkeypatch):
    meta = CR.card("digits-dit")
    meta["card"]["metrics"]["fd_dpmpp-2m_logsnr_10"] += 0.1
    monkeypatch.setattr(CR, "card", lambda name: meta)
    assert any("card fd_dpmpp-2m_logsnr_10" in p for p in CR.check("digits-dit"))
    meta["sha256"]["tensors"] = "0" * 64                     # other weights than the file was scored on
    assert any("other weights" in p for p in CR.check("digits-dit"))


def test_student_cards_equal_the_runs_they_cite():
    for n in CR.ELSEWHERE:
        assert CR.check_cited(n) == [], CR.check_cited(n)


def test_students_dev_table_names_each_file_and_flags_a_dirty_tree():
    src = {"model": "digits-unet", "seeds": [3400, 3401, 3402], "reference": "heun/karras/40", "commit": "abcdef123",
           "dirty": True, "_file": "kd-2", "rows": [{"student": "runs/x/model", "steps": 2, "text": "+2.1% [-0.8, +4.9]"}]}
    out = T.render_students_dev([src, {**src, "dirty": False, "_file": "kd-1"}], {})
    lines = out.splitlines()
    assert lines[0].startswith("| results file |") and "vs heun/karras/40" in lines[0] and len(lines) == 4
    assert "`kd-2`" in lines[2] and "3400-3402 (3)" in lines[2] and "abcdef1 (src dirty)" in lines[2]
    assert "`kd-1`" in lines[3] and lines[3].endswith("| abcdef1 |")
