"""Files: every file effdiff writes goes through ``atomic_write`` (a temp file in the same
directory, fsync, ``os.replace``), so a reader sees the old file or the new one, never a torn
one; ``check_writable`` validates an output location before any compute.

Temp files are named ``.NAME.PID.RANDOM.tmp``; one left by a killed writer (its process is
gone) is removed by the next write into that directory. New files get the usual umask mode.
"""
from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import platform
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import EffdiffError

__all__ = ["atomic_write", "check_writable", "clean_stale", "parse_json", "read_json", "FileFormatError", "sha256_of", "machine", "cpu_name",
           "RunLock", "run_lock", "LOCK_NAME"]

MAX_JSON_BYTES = 64 << 20     # no JSON file effdiff reads is near this: a bigger one is not ours


class FileFormatError(EffdiffError, ValueError):
    """A file handed to effdiff cannot be read as what it should be (the message names the file)."""


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


def parse_json(text: str | bytes, where, what: str = "JSON", error: type = FileFormatError):
    """``json.loads`` of UTF-8 ``text``, any failure one ``error`` naming ``where``: not UTF-8, invalid
    JSON, a number past Python's int-str digit limit, nesting deeper than the parser's recursion."""
    try:
        return json.loads(text.decode("utf-8-sig") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as e:
        reason = f"not UTF-8 text (byte {e.start})"
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as e:             # JSONDecodeError, and "Exceeds the limit (4300 digits)"
        reason = " ".join(str(e).split())[:200]
    raise error(f"{where}: not a valid {what}: {reason}") from None


def read_json(path, what: str = "JSON file", kind: type | tuple | None = dict, error: type = FileFormatError):
    """The JSON value in the file ``path`` (a ``kind``, default an object), read for every JSON file a
    user hands effdiff; anything else is one ``error`` naming the file and ``what`` it should be."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_JSON_BYTES:
        raise error(f"{path}: not a valid {what}: larger than {MAX_JSON_BYTES >> 20} MiB")
    value = parse_json(path.read_bytes(), path, what, error)
    if kind is not None and not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        want = {"dict": "a JSON object", "list": "a JSON array"}.get(names, names)
        raise error(f"{path}: not a valid {what}: expected {want}, got {type(value).__name__}")
    return value


def sha256_of(x) -> str:
    """Content hash of a tensor (float32 bytes): provenance of what a network or statistic came from."""
    return hashlib.sha256(x.detach().float().contiguous().numpy().tobytes()).hexdigest()


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Platform, CPU model, cores, torch threads, Python, torch and CUDA device of this process."""
    import torch
    return {"platform": platform.platform(), "processor": cpu_name(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


LOCK_NAME = ".effdiff.lock"


class RunLock:
    """The one lock on a run folder, held by every writer of one (training, fine-tuning, distillation):
    ``LOCK_NAME`` inside it, locked with ``flock`` (exclusive, non-blocking), so a second run into the
    folder fails at once with ``OSError(EBUSY)`` naming the holder's pid, and a run killed with
    SIGKILL leaves no stale lock (the kernel drops it with the process). The folder is created if
    missing, and removed again on release if the lock made it and nothing else was written."""

    def __init__(self, directory):
        self.dir, self.fd, self.made = Path(directory), None, False

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> "RunLock":
        import fcntl
        if self.fd is not None:
            return self
        if self.dir.exists() and not self.dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "run folder is an existing file", str(self.dir))
        self.made = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                self._forget()
                raise OSError(errno.EBUSY, f"run folder is in use by another run (process {holder}); wait for "
                              "it to finish or choose another output folder", str(self.dir)) from None
            try:                                 # a releasing holder may have unlinked the file meanwhile
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.dir / LOCK_NAME)
        except FileNotFoundError:
            pass
        os.close(self.fd)                        # drops the flock
        self.fd = None
        self._forget()

    def _forget(self) -> None:
        """Remove the folder again if this lock created it and it is still empty."""
        if self.made:
            try:
                self.dir.rmdir()
            except OSError:
                pass
        self.made = False

    def __del__(self):                           # a holder dropped without release (prepare() alone)
        try:
            self.release()
        except Exception:                        # noqa: BLE001 - interpreter shutdown
            pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_lock(directory) -> RunLock:
    """``RunLock(directory)``: ``with run_lock(out): ...`` holds the run folder ``out``."""
    return RunLock(directory)
