"""Files: every file effdiff writes goes through ``atomic_write`` (a temp file in the same
directory, fsync, ``os.replace``), so a reader sees the old file or the new one, never a torn
one; ``check_writable`` validates an output location before any compute.

Temp files are named ``.NAME.PID.RANDOM.tmp``; one left by a killed writer (its process is
gone) is removed by the next write into that directory. New files get the usual umask mode.
"""
from __future__ import annotations

import errno
import glob
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write", "check_writable", "clean_stale"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # exists, owned by someone else
        return True
    return True


def _stale(p: Path) -> bool:
    """A temp file whose writer is gone (or an old-style name without a pid)."""
    parts = p.name.split(".")
    pid = parts[-3] if len(parts) >= 5 else ""
    return not (pid.isdigit() and _pid_alive(int(pid)))


def clean_stale(directory, name: str | None = None) -> list[Path]:
    """Remove temp files left in ``directory`` by killed writes (of ``name`` only, if given)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in directory.glob(f".{glob.escape(name) if name else '*'}.*.tmp"):
        if p.is_file() and _stale(p):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed


def atomic_write(path, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, text, or a function writing to a binary file) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # 0o666 & ~umask
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def check_writable(path, directory: bool = False) -> Path:
    """Fail now (an ``OSError`` naming ``path``) if ``path`` (a file, or a directory when
    ``directory``) cannot be written, instead of after the work that produces it."""
    path = Path(path)
    if not directory and (path.is_dir() or path.name in ("", ".", "..")):
        raise IsADirectoryError(errno.EISDIR, "output path is a directory, expected a file name", str(path))
    if path.exists() and directory and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "output directory is an existing file", str(path))
    parent = path if directory else path.parent
    existing = parent
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"cannot create a directory under the file {existing}", str(path))
    _probe(existing, path)
    return path


def _probe(directory: Path, path: Path) -> None:
    """Create and remove a temp file in ``directory``: the real test (permissions, read-only
    file systems, /proc) that ``os.access`` cannot give when running as root."""
    probe = directory / f".{path.name or 'probe'}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise type(e)(e.errno, f"cannot write into {directory}: {e.strerror}", str(path)) from None
    os.unlink(probe)
