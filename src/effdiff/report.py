"""``effdiff report BENCH_DIR``: one self-contained HTML page from any bench output folder.

The page holds every scalar setting of ``results.json`` (seeds, sample counts, ...) and its
``machine``, one table per list of records (``rows``, ``best_per_budget``, ...; every record a
table row, nested values as compact JSON, so CIs and per-seed values stay visible), every
``*.png`` (Pareto plots, sample grids) embedded as base64 and every ``*.md`` as text. Nothing
is linked: the file can be mailed. Written atomically to ``BENCH_DIR/report.html``.
"""
from __future__ import annotations

import base64
import html
import json

from pathlib import Path

from .io import atomic_write, check_writable

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0;"
         "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#eee}"
         "img{max-width:100%;border:1px solid #ddd}pre{background:#f6f6f6;padding:1em;overflow:auto}")


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return "" if v is None else str(v)


def table(records: list[dict], caption: str) -> str:
    """An HTML table of ``records`` (columns: the union of their keys, in first-seen order)."""
    cols: list[str] = []
    for r in records:
        cols += [k for k in r if k not in cols]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
                   for r in records)
    return (f'<table data-name="{html.escape(caption)}"><caption>{html.escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _is_records(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(r, dict) for r in v)


def _settings(results: dict) -> list[dict]:
    """Scalar settings and the machine as (field, value) records."""
    out = [{"field": k, "value": v} for k, v in results.items()
           if not isinstance(v, (dict, list)) and k != "report"]
    for k, v in results.items():
        if isinstance(v, dict) and not _is_records(list(v.values())):
            out += [{"field": f"{k}.{kk}", "value": vv} for kk, vv in v.items()]
    return out


def render(bench_dir) -> str:
    """The page for ``bench_dir`` (a folder with results.json and/or pngs) as a string."""
    d = Path(bench_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"no bench output folder {d}")
    res_path = d / "results.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}
    if isinstance(results, list):
        results = {"rows": results}
    parts = [f"<h1>effdiff bench: {html.escape(d.name)}</h1>"]
    settings = _settings(results)
    if settings:
        parts += ["<h2>Settings and machine</h2>", table(settings, "settings")]
    for k, v in results.items():
        if _is_records(v):
            parts += [f"<h2>{html.escape(k)}</h2>", table(v, k)]
        elif isinstance(v, dict):
            for kk, vv in v.items():
                if _is_records(vv):
                    parts += [f"<h2>{html.escape(k)}.{html.escape(kk)}</h2>", table(vv, f"{k}.{kk}")]
    for png in sorted(d.rglob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        name = html.escape(str(png.relative_to(d)))
        parts.append(f'<figure><img alt="{name}" data-file="{name}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{name}</figcaption></figure>")
    for md in sorted(d.glob("*.md")):
        parts += [f"<h2>{html.escape(md.name)}</h2>", f"<pre>{html.escape(md.read_text())}</pre>"]
    if len(parts) == 1:
        raise ValueError(f"{d} has no results.json, png or md to report")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>effdiff bench {html.escape(d.name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def write_report(bench_dir, out=None) -> Path:
    """Render ``bench_dir`` and write it atomically (default ``bench_dir/report.html``)."""
    out = Path(out) if out is not None else Path(bench_dir) / "report.html"
    check_writable(out)
    atomic_write(out, render(bench_dir))
    return out


def report_main(args) -> None:
    """``effdiff report BENCH_DIR [--out FILE]``."""
    print(write_report(args.bench_dir, getattr(args, "out", None)))
