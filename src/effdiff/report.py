"""``effdiff report BENCH_DIR``: one self-contained HTML page from any bench output folder.

What a reader wants first comes first: per model, one table of the key columns (config, NFE,
ms/sample, speed-up, FD ± sd, FD change against the reference with its 95% CI, memorization) with
each row's sample grid beside it; every other field of ``results.json`` sits behind a "all columns"
toggle, as do the settings, the machine and any ``*.md`` notes. Plots (``*.png`` that are not
grids) come after the tables. Everything is embedded (base64 PNGs, no scripts, nothing linked): the
file can be mailed. Only regular files inside the folder are read (no symlinks followed), JSON through
``io.read_json``; a folder without ``results.json`` is an error. Written atomically to
``BENCH_DIR/report.html``.
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

from .io import FileFormatError, atomic_write, check_writable, read_json

MAX_FILE_BYTES = 32 << 20     # a png or md larger than this is not a bench output
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#222}
h1{font-size:1.5em;margin:.2em 0} h2{font-size:1.2em;margin:1.4em 0 .3em}
p.summary{color:#444;margin:.3em 0 1em}
table{border-collapse:collapse;margin:.4em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:middle}
th{background:#eef;position:sticky;top:0} td.text,th.text{text-align:left}
tr.ref td{background:#f6f6f6;font-weight:600}
td.grid img{height:44px;image-rendering:pixelated;border:0}
details{margin:.3em 0 1em} summary{cursor:pointer;color:#225}
.scroll{overflow-x:auto;max-width:100%}
figure{display:inline-block;margin:.5em 1em .5em 0} figure img{max-width:100%;border:1px solid #ddd}
pre{background:#f6f6f6;padding:1em;overflow:auto;white-space:pre-wrap}
.warn{background:#fff4d6;border:1px solid #e0b84c;padding:.5em 1em}
"""


# ---- reading: only regular files inside the folder ----------------------------------------------

def _regular_files(d: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` under ``d``, never through a symlink (file or folder)."""
    out = []
    for root, dirs, files in os.walk(d, followlinks=False):
        dirs[:] = sorted(x for x in dirs if not (Path(root) / x).is_symlink())
        for f in sorted(files):
            p = Path(root) / f
            if p.match(pattern) and not p.is_symlink() and p.is_file():
                out.append(p)
    return out


def _read_bytes(p: Path) -> bytes:
    if p.stat().st_size > MAX_FILE_BYTES:
        raise FileFormatError(f"{p}: larger than {MAX_FILE_BYTES >> 20} MiB; not a bench output")
    return p.read_bytes()


def _read_text(p: Path) -> str:
    try:
        return _read_bytes(p).decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{p}: not UTF-8 text (byte {e.start})") from None


def load_results(d: Path) -> dict:
    """``results.json`` of bench folder ``d`` as a dict (a bare list becomes ``{"rows": ...}``)."""
    path = d / "results.json"
    if path.is_symlink() or not path.is_file():
        raise FileFormatError(f"{d} has no results.json (a regular file): not an effdiff bench output folder, "
                              "or a run that finished no row yet")
    results = read_json(path, what="bench results.json", kind=(dict, list))
    return {"rows": results} if isinstance(results, list) else results


# ---- cells -----------------------------------------------------------------------------------------

def _num(v, digits: int = 3) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "" if v is None else str(v)
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _sd(sd) -> str:
    return f" ± {_num(sd, 2)}" if isinstance(sd, (int, float)) and not isinstance(sd, bool) and sd == sd else ""


def _pm(r: dict, key: str, digits: int = 3) -> str:
    return _num(r.get(key), digits) + _sd(r.get(f"{key}_sd"))


def _pct(v: float) -> str:
    return f"{100 * v:+.1f}%" if abs(v) < 0.1 else f"{100 * v:+.0f}%"


def _change(r: dict) -> str:
    if r.get("reference"):
        return "reference"
    v, ci = r.get("fd_vs_ref"), r.get("fd_vs_ref_ci")
    if not isinstance(v, (int, float)):
        return ""
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci):
        same = ci[0] <= 0 <= ci[1]
        text = f"{_pct(v)} [{_pct(ci[0])}, {_pct(ci[1])}]"
        return text + (" (no measurable difference)" if same else "")
    return _pct(v) + " (no CI)"


def _vs_baseline(r: dict) -> str:
    v, ci = r.get("fd_change"), r.get("fd_change_ci")
    if not isinstance(v, (int, float)):
        return ""
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci):
        return f"{_pct(v)} [{_pct(ci[0])}, {_pct(ci[1])}]" + (" (no measurable difference)" if ci[0] <= 0 <= ci[1] else "")
    return _pct(v) + " (no CI)"


def _speedup(r: dict) -> str:
    v = r.get("speedup")
    return f"{v:.1f}x" if isinstance(v, (int, float)) else ""


def _memo(r: dict) -> str:
    v = r.get("mem_asymmetry")
    return "" if not isinstance(v, (int, float)) else f"{v:.2f}"


# label, the result fields it shows (shown when any row has one), how to write a row's cell
KEY_COLUMNS = [
    ("config", ("config", "sampler", "run", "name"),
     lambda r: str(next((r[k] for k in ("config", "sampler", "run", "name") if k in r), ""))),
    ("NFE", ("nfe",), lambda r: _num(r.get("nfe"))),
    ("ms/sample", ("ms_per_sample",), lambda r: _num(r.get("ms_per_sample")) + _sd(r.get("ms_sd"))),
    ("speed-up", ("speedup",), _speedup),
    ("FD ± sd", ("fd",), lambda r: _pm(r, "fd")),
    ("FD vs reference (paired, 95% CI)", ("fd_vs_ref", "reference"), _change),
    ("baseline", ("baseline",), lambda r: str(r.get("baseline") or "")),
    ("speed-up vs baseline", ("speedup_vs_baseline",),
     lambda r: f"{r['speedup_vs_baseline']:.2f}x" if isinstance(r.get("speedup_vs_baseline"), (int, float)) else ""),
    ("MACs ratio", ("macs_ratio",), lambda r: f"{r['macs_ratio']:.2f}x" if isinstance(r.get("macs_ratio"), (int, float)) else ""),
    ("FD vs baseline (paired, 95% CI)", ("fd_change",), _vs_baseline),
    ("memorization (NN train/held-out)", ("mem_asymmetry",), _memo),
    ("metric", ("metric",), lambda r: str(r.get("metric", ""))),
    ("mean ± sd", ("mean",), lambda r: _num(r.get("mean")) + _sd(r.get("sd"))),
]


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return "" if v is None else str(v)


def table(records: list[dict], caption: str) -> str:
    """An HTML table of every field of ``records`` (columns: the union of their keys, first-seen order)."""
    cols: list[str] = []
    for r in records:
        cols += [k for k in r if k not in cols]
    head = "".join(f'<th class="text">{html.escape(c)}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f'<td class="text">{html.escape(_cell(r.get(c)))}</td>' for c in cols) + "</tr>"
                   for r in records)
    return (f'<div class="scroll"><table data-name="{html.escape(caption)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def key_table(records: list[dict], caption: str, grids: dict) -> str:
    """The key columns of ``records`` (those any record has), with each row's grid image if any."""
    cols = [(label, fn) for label, keys, fn in KEY_COLUMNS if any(k in r for r in records for k in keys)]
    with_grid = any(_grid_key(r) in grids for r in records)
    head = "".join(f'<th class="{"text" if i == 0 else ""}">{html.escape(c)}</th>' for i, (c, _) in enumerate(cols))
    head += '<th class="text">samples</th>' if with_grid else ""
    body = []
    for r in records:
        cells = "".join(f'<td class="{"text" if i == 0 else ""}">{html.escape(fn(r))}</td>'
                        for i, (_, fn) in enumerate(cols))
        if with_grid:
            g = grids.get(_grid_key(r))
            cells += f'<td class="grid">{_img(*g, thumb=True) if g else ""}</td>'
        body.append(f'<tr class="{"ref" if r.get("reference") else ""}">{cells}</tr>')
    return (f'<div class="scroll"><table data-name="{html.escape(caption)}" class="key"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


# ---- images ------------------------------------------------------------------------------------

def grid_stem(model, config) -> str:
    """The file stem of a row's sample grid, ``MODEL__CONFIG`` with path separators replaced by '_' (a plan's
    label such as ``dpmpp-2m/logsnr/6`` would otherwise make folders)."""
    return f"{model}__{config}".replace("/", "_").replace("\\", "_")


def _grid_key(r: dict) -> str:
    return grid_stem(r.get("model"), r.get("config"))


def _img(name: str, data: bytes, thumb: bool = False) -> str:
    src = "data:image/png;base64," + base64.b64encode(data).decode()
    alt = html.escape(name)
    return f'<img alt="{alt}" data-file="{alt}" src="{src}"' + (' title="' + alt + '">' if thumb else ">")


def _images(d: Path) -> tuple[dict, list]:
    """(grid key -> (name, bytes)) for ``grids/MODEL__CONFIG.png``, and the other pngs as (name, bytes)."""
    grids, plots = {}, []
    for p in _regular_files(d, "*.png"):
        name = str(p.relative_to(d))
        if p.parent.name == "grids":
            grids[p.stem] = (name, _read_bytes(p))
        else:
            plots.append((name, _read_bytes(p)))
    return grids, plots


# ---- the page ---------------------------------------------------------------------------------

def _is_records(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(r, dict) for r in v)


def _settings(results: dict) -> list[dict]:
    """Scalar settings and the machine as (field, value) records."""
    out = [{"field": k, "value": v} for k, v in results.items()
           if not isinstance(v, (dict, list)) and k != "report"]
    for k, v in results.items():
        if isinstance(v, dict) and not _is_records(list(v.values())):
            out += [{"field": f"{k}.{kk}", "value": vv} for kk, vv in v.items()]
        elif isinstance(v, list) and not _is_records(v):
            out.append({"field": k, "value": v})
    return out


def _summary(results: dict) -> str:
    bits = []
    for key, label in (("suite", "suite"), ("seeds", "seeds"), ("n_samples", "samples per row and seed"),
                       ("real_vs_real_fd", "real-vs-real FD"), ("wall_time_s", "whole run (s)")):
        v = results.get(key)
        if v is not None:
            bits.append(f"{label}: {html.escape(_num(v, 4) if not isinstance(v, list) else ', '.join(map(str, v)))}")
    cpu = (results.get("machine") or {}).get("cpu") if isinstance(results.get("machine"), dict) else None
    if cpu:
        bits.append(f"machine: {html.escape(str(cpu))}")
    return f'<p class="summary">{" · ".join(bits)}</p>' if bits else ""


def _record_lists(results: dict) -> list[tuple[str, list]]:
    out = [(k, v) for k, v in results.items() if _is_records(v)]
    for k, v in results.items():
        if isinstance(v, dict):
            out += [(f"{k}.{kk}", vv) for kk, vv in v.items() if _is_records(vv)]
    return out


def _section(name: str, records: list, grids: dict) -> list[str]:
    """One key table per model (with the rest behind a toggle), or one for records without a model."""
    parts = []
    models = list(dict.fromkeys(r.get("model") for r in records))
    for model in models:
        rs = [r for r in records if r.get("model") == model]
        title = name if model is None else (f"{model}" if name == "rows" else f"{name}: {model}")
        cap = name if model is None else f"{name}:{model}"
        parts += [f"<h2>{html.escape(str(title))}</h2>", key_table(rs, cap, grids),
                  f"<details><summary>all {len({k for r in rs for k in r})} columns ({len(rs)} rows)</summary>"
                  f"{table(rs, cap + ':all')}</details>"]
    return parts


def render(bench_dir) -> str:
    """The page for ``bench_dir`` (a folder with ``results.json``) as a string."""
    d = Path(bench_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"no bench output folder {d}")
    results = load_results(d)
    grids, plots = _images(d)
    lists = _record_lists(results)
    parts = [f"<h1>effdiff bench: {html.escape(d.name)}</h1>", _summary(results)]
    if results.get("complete") is False:
        parts.append(f'<p class="warn">Partial run: {len(results.get("rows", []))} rows finished when this '
                     "results.json was written.</p>")
    if not lists:
        parts.append('<p class="warn">results.json holds no table of rows.</p>')
    for name, records in lists:
        parts += _section(name, records, grids)
    shown = {_grid_key(r) for _, rs in lists for r in rs}
    if plots:
        parts += ["<h2>Plots</h2>"] + [f"<figure>{_img(n, b)}<figcaption>{html.escape(n)}</figcaption></figure>"
                                       for n, b in plots]
    rest = [g for k, g in grids.items() if k not in shown]
    if rest:
        parts += ["<h2>Other sample grids</h2>"] + [f"<figure>{_img(n, b)}<figcaption>{html.escape(n)}</figcaption>"
                                                    "</figure>" for n, b in rest]
    settings = _settings(results)
    if settings:
        parts.append(f"<details><summary>Settings and machine</summary>{table(settings, 'settings')}</details>")
    for md in _regular_files(d, "*.md"):
        if md.parent == d:
            parts.append(f"<details><summary>{html.escape(md.name)}</summary>"
                         f"<pre>{html.escape(_read_text(md))}</pre></details>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>effdiff bench {html.escape(d.name)}</title>"
            f"<link rel='icon' href='data:,'><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def write_report(bench_dir, out=None) -> Path:
    """Render ``bench_dir`` and write it atomically (default ``bench_dir/report.html``)."""
    out = Path(out) if out is not None else Path(bench_dir) / "report.html"
    check_writable(out)
    atomic_write(out, render(bench_dir))
    return out


def report_main(args) -> None:
    """``effdiff report BENCH_DIR [--out FILE] [--quiet]``."""
    path = write_report(args.bench_dir, getattr(args, "out", None))
    if not getattr(args, "quiet", False):
        print(path)
