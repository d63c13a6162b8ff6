"""effdiff report: one self-contained HTML page per bench folder, checked by parsing it."""
import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from effdiff.report import render, write_report


class Page(HTMLParser):
    """Tables (name -> list of rows of cell texts) and images (src) of a page."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self._t, self._row, self._cell = {}, [], None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._t = self.tables.setdefault(a["data-name"], [])
        elif tag == "tr" and self._t is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.images.append((a.get("data-file"), a["src"]))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._t.append(self._row)
            self._row = None
        elif tag == "table":
            self._t = None


def _png(path: Path, shade: int):
    from PIL import Image
    Image.new("L", (4, 3), shade).save(path)


def _folder(tmp_path, results) -> Path:
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path


def test_key_columns_first_one_table_per_model_grids_beside_rows(tmp_path):
    rows = [{"model": m, "config": f"c{i}", "nfe": 10 * i, "ms_per_sample": 2.0 * i, "ms_sd": 0.1,
             "speedup": 1.0 + i, "fd": 1.5 / (i + 1), "fd_sd": 0.2, "reference": i == 0, "ms_runs": [1, 2],
             "fd_vs_ref": None if i == 0 else 0.05 * i, "fd_vs_ref_ci": None if i == 0 else [-0.01, 0.2 * i],
             "mem_asymmetry": 0.93, "seeds": [0, 1, 2]} for m in ("m1", "m2") for i in range(3)]
    _folder(tmp_path, {"seeds": [0, 1, 2], "n_samples": 64, "machine": {"cpu": "X<1>"}, "rows": rows,
                       "best": [{"budget": 5, "config": "c1"}]})
    _png(tmp_path / "pareto.png", 10)
    (tmp_path / "grids").mkdir()
    _png(tmp_path / "grids" / "m1__c1.png", 200)
    _png(tmp_path / "grids" / "other.png", 100)
    page = Page()
    page.feed(Path(write_report(tmp_path)).read_text())
    key = page.tables["rows:m1"]
    assert key[0] == ["config", "NFE", "ms/sample", "speed-up", "FD ± sd", "FD vs reference (paired, 95% CI)",
                      "memorization (NN train/held-out)", "samples"]
    assert key[1][:6] == ["c0", "0", "0 ± 0.1", "1.0x", "1.5 ± 0.2", "reference"]
    assert key[2][5] == "+5.0% [-1.0%, +20%] (no measurable difference)" and key[3][5] == "+10% [-1.0%, +40%] (no measurable difference)"
    assert len(page.tables["rows:m2"]) == 4 and "rows:m1:all" in page.tables      # every field behind the toggle
    assert "ms_runs" in page.tables["rows:m1:all"][0] and "ms_runs" not in key[0]
    assert page.tables["best"][1][0] == "c1"
    settings = dict(page.tables["settings"][1:])
    assert settings["n_samples"] == "64" and settings["machine.cpu"] == "X<1>"      # escaped, then parsed back
    files = {f: base64.b64decode(src.split(",", 1)[1]) for f, src in page.images}
    assert set(files) == {"pareto.png", "grids/m1__c1.png", "grids/other.png"}    # the grid beside its row, once
    assert [f for f, _ in page.images].count("grids/m1__c1.png") == 1
    assert files["pareto.png"] == (tmp_path / "pareto.png").read_bytes()


def test_real_bench_outputs(tmp_path):
    for suite in ("solvers", "default", "external"):
        bench = Path(__file__).resolve().parents[1] / "docs" / "bench" / suite
        if not (bench / "results.json").is_file():
            continue
        page = Page()
        page.feed(render(bench))
        rows = json.loads((bench / "results.json").read_text())["rows"]
        models = list(dict.fromkeys(r.get("model") for r in rows))
        assert sum(len(page.tables[f"rows:{m}"]) - 1 for m in models) == len(rows)
        assert len(page.images) == len(list(bench.rglob("*.png")))


# ---- issue 25: bad files are one-line errors, and nothing outside the folder is read ------------

BAD_JSON = [b"{not json", b"7", b"null", b"[" * 100_000 + b"]" * 100_000,
            b'{"rows": [{"fd": 1' + b"0" * 5000 + b"}]}", b'{"x": "\xff\xfe"}', '{"rows": "\u00e9"}'.encode("latin-1")]


@pytest.mark.parametrize("content", BAD_JSON, ids=["invalid", "scalar", "null", "deep", "huge-number", "bytes", "latin-1"])
def test_a_malformed_results_json_is_one_line_exit_2(tmp_path, capsys, content):
    from effdiff.cli import main
    (tmp_path / "results.json").write_bytes(content)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.json" in err[0], err
    assert not (tmp_path / "report.html").exists()


def test_no_results_json_is_an_error(tmp_path, capsys):
    from effdiff.cli import main
    _png(tmp_path / "grid.png", 3)
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        render(tmp_path / "missing")


def test_a_non_utf8_md_is_one_line_exit_2(tmp_path, capsys):
    from effdiff.cli import main
    _folder(tmp_path, {"rows": [{"config": "a", "fd": 1.0}]})
    (tmp_path / "notes.md").write_bytes(b"caf\xe9")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.md" in err[0] and "UTF-8" in err[0]


def test_symlinks_are_never_followed(tmp_path):
    """Issue 25 defect 7: a *.png or *.md link in the folder must not pull a file from elsewhere into the page."""
    secret = tmp_path / "outside"
    secret.mkdir()
    _png(secret / "secret.png", 77)
    (secret / "secret.md").write_text("SECRET TEXT")
    bench = tmp_path / "bench"
    bench.mkdir()
    _folder(bench, {"rows": [{"model": "m", "config": "c", "fd": 1.0}]})
    (bench / "link.png").symlink_to(secret / "secret.png")
    (bench / "link.md").symlink_to(secret / "secret.md")
    (bench / "linkdir").symlink_to(secret, target_is_directory=True)
    (bench / "grids").mkdir()
    (bench / "grids" / "m__c.png").symlink_to(secret / "secret.png")
    page_text = render(bench)
    page = Page()
    page.feed(page_text)
    assert page.images == [] and "SECRET" not in page_text
    (bench / "results.json").rename(bench / "real.json")
    (bench / "results.json").symlink_to(bench / "real.json")
    with pytest.raises(ValueError, match="no results.json"):
        render(bench)


def test_a_results_json_without_tables_says_so(tmp_path):
    _folder(tmp_path, {"seeds": [0, 1, 2]})
    assert "holds no table of rows" in render(tmp_path)


def test_plot_labels_never_overlap_and_the_front_is_labelled_first():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from matplotlib.text import Text
    from effdiff.viz import pareto_front, place_labels
    g = torch.Generator().manual_seed(0)
    pts = [(float(10 ** (1 + torch.rand(1, generator=g))), float(2 + torch.rand(1, generator=g))) for _ in range(60)]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(*zip(*pts))
    ax.set_xscale("log")
    front = pareto_front(pts)
    done = place_labels(ax, pts, [f"config-{i}" for i in range(len(pts))], first=front)
    r = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, r) for t in ax.texts]
    assert len(boxes) == len(done) and 0 < len(done) < len(pts)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert set(front) <= set(done) or len(done) >= len(front)
    assert all(not any(u <= x and v <= y and (u, v) != (x, y) for u, v in pts) for x, y in (pts[i] for i in front))
    plt.close(fig)
