"""``effdiff zoo``: the shipped models as one table (name, kind, size, headline FD, how to sample it),
and ``effdiff zoo show NAME``: one model's card (its markdown, without machine paths)."""
from __future__ import annotations

import re

from .. import assets, checkpoint as ckpt

FD_TAG = re.compile(r"^fd_(?P<tag>[a-z][a-z0-9.+-]*_[a-z][a-z0-9-]*_\d+)$")   # fd_SOLVER_SCHEDULE_STEPS


def _kind(c: dict) -> str:
    task = c.get("task", "?")
    if task == "diffusion":
        what = {"student": "student", "latent": "latent diffusion"}.get(c.get("kind"), "diffusion")
        proc = c.get("process", {}).get("name", "?") if isinstance(c.get("process"), dict) else "?"
        return f"{what} ({proc}, {c.get('prediction')}, {c.get('arch')})"
    base = c.get("card", {}).get("base")
    return f"{task} ({c.get('arch')}{f', on {base}' if base else ''})"


def _size(name: str) -> str:
    st = ckpt.files(assets.path(name))[0]
    return f"{st.stat().st_size / 1e6:.1f} MB" if st.is_file() else "?"


def _headline(c: dict) -> tuple[str, str]:
    """(headline FD, recommended sampling) from the card's metrics."""
    card = c.get("card", {})
    m = card.get("metrics", {})
    for k, v in m.items():
        hit = FD_TAG.match(k)
        if hit and isinstance(v, (int, float)):
            tag = hit["tag"]
            sd = m.get(f"fd_sd_{tag}")
            solver, schedule, steps = tag.rsplit("_", 2)
            return (f"{v:.2f}" + (f" ± {sd:.2f}" if isinstance(sd, (int, float)) else ""),
                    f"{solver} {schedule} {steps}")
    if c.get("kind") == "student":
        summary = str(m.get("fd_summary", ""))
        fd = re.search(r"FD [0-9.]+ ± [0-9.]+", summary)
        st = c.get("student", {})
        return (fd.group(0)[3:] if fd else "-", f"its own {st.get('steps', '?')}-step {st.get('solver', '')} grid")
    for k, v in m.items():
        if k.startswith("fd_") and isinstance(v, str) and "±" in v:
            return v, f"with {card.get('base')}" if card.get("base") else "-"
    if card.get("base"):
        return "-", f"with {card['base']}"
    return "-", "-"


def rows() -> list[dict]:
    out = []
    for name in assets.names():
        c = assets.card(name)
        fd, how = _headline(c)
        out.append({"name": name, "kind": _kind(c), "size": _size(name), "FD (held-out)": fd, "sample with": how})
    return out


def table() -> str:
    """A plain-text table of every shipped model."""
    rs = rows()
    cols = list(rs[0])
    width = {k: max(len(k), *(len(str(r[k])) for r in rs)) for k in cols}
    line = "  ".join(k.ljust(width[k]) for k in cols)
    lines = [line, "  ".join("-" * width[k] for k in cols)]
    lines += ["  ".join(str(r[k]).ljust(width[k]) for k in cols) for r in rs]
    lines.append("\nFD: the card's headline FD ± sd against held-out data (3 seeds; students: on unused seeds). "
                 "effdiff zoo show NAME prints the card.")
    return "\n".join(lines)


def show(name: str) -> str:
    """The card of ``name`` (its shipped markdown; absolute paths of the training machine removed)."""
    md = assets.path(name).parent / f"{name}.md"
    text = md.read_text(encoding="utf-8") if md.is_file() else f"# {name}\n(no card text shipped)"
    return re.sub(r"(?<![\w.])/(?:[\w.-]+/)+([\w.-]+)", r"\1", text)
