"""What code produced a results.json: the git commit of the checkout effdiff runs from, whether its
code differed from that commit (dirty flag, the changed paths and a hash of the diff), the machine,
the command and the time. Every results.json the bench runner writes carries it (``provenance``).
"""
from __future__ import annotations

import datetime
import hashlib
import subprocess
import sys
from pathlib import Path

from .machine import machine

CODE_PATHS = ("src", "bench", "pyproject.toml")     # what "the code" is, for the dirty flag


def git(args: list[str], cwd) -> str | None:
    """stdout of ``git args`` in ``cwd`` (stripped), or None when git fails or is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=str(cwd), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def repo_root(path=None) -> Path | None:
    """The git work tree holding ``path`` (default: the effdiff package), or None."""
    here = Path(path) if path is not None else Path(__file__).resolve().parent
    top = git(["rev-parse", "--show-toplevel"], here if here.is_dir() else here.parent)
    return Path(top) if top else None


def code_state(root=None) -> dict:
    """{"commit", "dirty", "dirty_paths", "diff_sha256"} of the code under ``root`` (default: effdiff's
    checkout); commit None when effdiff does not run from a git checkout."""
    root = Path(root) if root is not None else repo_root()
    if root is None:
        return {"commit": None, "dirty": None, "dirty_paths": [], "diff_sha256": None,
                "note": "effdiff does not run from a git checkout"}
    commit = git(["rev-parse", "HEAD"], root)
    names = git(["diff", "--name-only", "HEAD", "--", *CODE_PATHS], root) or ""
    paths = sorted(line for line in names.splitlines() if line.strip())
    diff = git(["diff", "HEAD", "--", *CODE_PATHS], root) or ""
    return {"commit": commit, "dirty": bool(paths), "dirty_paths": paths,
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if paths else None}


def provenance(root=None) -> dict:
    """The block every results.json carries: code state, machine, command line and UTC time."""
    return {"code": code_state(root), "machine": machine(), "command": list(sys.argv),
            "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
