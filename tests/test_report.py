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


def test_every_row_and_image_is_in_the_page(tmp_path):
    rows = [{"config": f"c{i}", "nfe": 10 * i, "fd": 1.5 / (i + 1), "fd_ci": [0.1, 0.2], "seeds": [0, 1, 2]}
            for i in range(5)]
    (tmp_path / "results.json").write_text(json.dumps({"seed": 7, "n_samples": 64, "machine": {"cpu": "X<1>"},
                                                       "rows": rows, "best": rows[:2]}))
    _png(tmp_path / "pareto.png", 10)
    (tmp_path / "grids").mkdir()
    _png(tmp_path / "grids" / "samples.png", 200)
    page = Page()
    page.feed(Path(write_report(tmp_path)).read_text())
    body = page.tables["rows"][1:]
    assert [r[0] for r in body] == [r["config"] for r in rows] and page.tables["rows"][0][:3] == ["config", "nfe", "fd"]
    assert body[1][3] == "[0.1,0.2]" and len(page.tables["best"]) == 3
    settings = dict(page.tables["settings"][1:])
    assert settings["seed"] == "7" and settings["machine.cpu"] == "X<1>"      # escaped, then parsed back
    files = {f: base64.b64decode(src.split(",", 1)[1]) for f, src in page.images}
    assert set(files) == {"pareto.png", "grids/samples.png"}
    assert all(src.startswith("data:image/png;base64,") for _, src in page.images)
    assert files["pareto.png"] == (tmp_path / "pareto.png").read_bytes()


def test_real_bench_outputs_and_errors(tmp_path):
    bench = Path(__file__).resolve().parents[1] / "docs" / "bench" / "solvers"
    if (bench / "results.json").is_file():
        page = Page()
        page.feed(render(bench))
        assert len(page.tables["rows"]) == len(json.loads((bench / "results.json").read_text())["rows"]) + 1
        assert len(page.images) == len(list(bench.rglob("*.png")))
    with pytest.raises(FileNotFoundError):
        render(tmp_path / "missing")
    with pytest.raises(ValueError, match="nothing|no results"):
        render(tmp_path)
