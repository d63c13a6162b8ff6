"""Pre-registration that can be checked: a bench run named by a file committed to git *before* it ran.

``effdiff bench --prereg FILE`` (or ``python -m effdiff.bench.prereg FILE --out DIR``) refuses to run
unless FILE is tracked by git, committed, and unchanged in the working tree (index and work tree equal
to HEAD); it then runs exactly the suite, models, rows and seeds the file names and writes the file's
commit, blob hash and commit time into ``results.json`` (``prereg``), beside the code's commit and dirty
flag (``provenance``). The commit time precedes the run's start time, which git cannot fake after the
fact without rewriting the history the results.json cites.

The file (JSON, format ``effdiff-prereg-1``)::

    {"format": "effdiff-prereg-1", "id": "compress-posthoc-rerun",
     "suite": "compress", "models": ["digits-dit"],
     "rows": ["ddim-10", "ddim-10+depth-40%+kd"],       # config names as results.json writes them;
                                                          # the suite's reference row must be among them
     "seeds": [40, 41, 42, 43, 44, 45, 46, 47, 48, 49],  # consecutive run seeds (effdiff.seeds names them)
     "n_samples": 360, "threads": 1,                   # optional: "guidance", "follow_up": false
     "decision_rule": "what will be concluded from which interval, written before the run"}
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
from pathlib import Path

from ..errors import EffdiffError
from ..io import atomic_write
from .provenance import git, provenance, repo_root

FORMAT = "effdiff-prereg-1"
REQUIRED = ("id", "suite", "models", "rows", "seeds", "decision_rule")


class PreregError(EffdiffError, RuntimeError):
    """A pre-registration file that is not committed, edited since, or malformed."""


def read(path) -> dict:
    """The parsed pre-registration, checked for its fields (no git check)."""
    p = Path(path)
    if not p.is_file():
        raise PreregError(f"pre-registration file {p} does not exist")
    try:
        spec = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise PreregError(f"{p} is not JSON ({e}); format: {FORMAT}, see effdiff.bench.prereg") from None
    if spec.get("format") != FORMAT:
        raise PreregError(f"{p}: format must be {FORMAT!r}, got {spec.get('format')!r}")
    missing = [k for k in REQUIRED if not spec.get(k)]
    if missing:
        raise PreregError(f"{p}: missing or empty field(s) {', '.join(missing)}")
    seeds = spec["seeds"]
    if not all(isinstance(s, int) for s in seeds) or seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise PreregError(f"{p}: seeds must be consecutive integers, got {seeds}")
    return spec


def committed(path) -> dict:
    """{"path", "commit", "commit_time", "blob", "sha256"} of ``path`` if it is tracked, committed and
    unchanged against HEAD (work tree and index); PreregError saying which check failed otherwise."""
    p = Path(path).resolve()
    root = repo_root(p.parent)
    if root is None:
        raise PreregError(f"{path} is not inside a git work tree: commit the pre-registration first")
    rel = p.relative_to(root.resolve()).as_posix()
    if git(["ls-files", "--error-unmatch", "--", rel], root) is None:
        raise PreregError(f"{rel} is not committed to git: `git add {rel}; git commit -m ... -- {rel}` before the run")
    head_blob = git(["rev-parse", f"HEAD:{rel}"], root)
    if head_blob is None:
        raise PreregError(f"{rel} is staged but not committed: commit it before the run")
    work_blob = git(["hash-object", "--", rel], root)
    index_blob = (git(["ls-files", "-s", "--", rel], root) or " ").split()[1]
    if work_blob != head_blob or index_blob != head_blob:
        raise PreregError(f"{rel} differs from its committed version (edited after the commit): commit the change "
                          "as a new pre-registration, or restore the committed file")
    commit = git(["log", "-1", "--format=%H", "--", rel], root)
    when = git(["log", "-1", "--format=%cI", "--", rel], root)
    return {"path": rel, "commit": commit, "commit_time": when, "blob": head_blob,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def for_runner(path, suite: str) -> tuple[dict, dict]:
    """A pre-registration for a runner of its own (``effdiff.bench.video``, ``video_student``): the checked spec,
    refused unless it names ``suite`` and is committed unedited, and the record its results carry
    (``committed``'s fields, its id and decision rule)."""
    spec = read(path)
    if spec["suite"] != suite:
        raise PreregError(f"{path}: suite must be {suite!r} for this runner, got {spec['suite']!r}")
    return spec, {**committed(path), "id": spec["id"], "decision_rule": spec["decision_rule"]}


def configs_for(spec: dict) -> list:
    """The suite's configurations named in ``spec["rows"]``; unknown names and a missing reference raise."""
    from .runner import load_suite, suite
    load_suite(spec["suite"])
    allc = suite(spec["suite"], spec["models"], False)
    names = {c.config for c in allc}
    unknown = [r for r in spec["rows"] if r not in names]
    if unknown:
        raise PreregError(f"rows {unknown} are not in suite {spec['suite']!r}; known: {', '.join(sorted(names))}")
    chosen = [c for c in allc if c.config in spec["rows"]]
    for m in spec["models"]:
        if not any(c.reference and c.model == m for c in chosen):
            raise PreregError(f"the reference row of {m} must be pre-registered too (the paired change needs it)")
    return chosen


def run_file(path, out, verbose: bool = True) -> dict:
    """Check ``path``, run what it registers into ``out``, and write the registration into results.json."""
    spec, reg = read(path), committed(path)
    start = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    prov = provenance()                                   # the code as it was when the run started
    from .runner import FOLLOW_UPS, load_suite, run
    configs = configs_for(spec)          # imports the suite's module first, so its follow-up is registered
    load_suite(spec["suite"])
    follow = FOLLOW_UPS.pop(spec["suite"], None) if spec.get("follow_up") is False else None
    try:
        res = run(models=spec["models"], suite_name=spec["suite"], out=out, configs=configs,
                  n_samples=spec.get("n_samples"), seed=spec["seeds"][0], n_seeds=len(spec["seeds"]),
                  threads=spec.get("threads"), guidance=spec.get("guidance", 1.0), verbose=verbose)
    finally:                                              # "follow_up": false runs the rows alone
        if follow is not None:
            FOLLOW_UPS[spec["suite"]] = follow
    after = committed(path)                               # still the same file at the end of the run
    if after["blob"] != reg["blob"]:
        raise PreregError(f"{path} changed during the run; results kept in {out} but not registered")
    res = json.loads((Path(out) / "results.json").read_text())
    res["provenance"] = prov
    res["provenance"]["code_at_end"] = provenance()["code"]   # equal to "code" unless the checkout moved
    res["prereg"] = {**reg, "id": spec["id"], "decision_rule": spec["decision_rule"], "run_start_utc": start,
                     "seeds": spec["seeds"], "rows": spec["rows"]}
    atomic_write(Path(out) / "results.json", json.dumps(res, indent=1, default=str))
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m effdiff.bench.prereg", description=__doc__.splitlines()[0])
    ap.add_argument("file", help="the committed pre-registration (JSON, format effdiff-prereg-1)")
    ap.add_argument("--out", required=True, help="bench output folder (results.json, table, plots)")
    ap.add_argument("--check", action="store_true", help="only check the file; run nothing")
    a = ap.parse_args(argv)
    if a.check:
        read(a.file)
        print(json.dumps(committed(a.file), indent=1))
        return
    from .runner import table
    print(table(run_file(a.file, a.out)))


if __name__ == "__main__":
    main()
