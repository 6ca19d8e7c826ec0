"""Atomic file writes: a temp name in the same folder, fsync, then rename over the target.

A crash, a kill or a full disk never leaves a half-written file under the final name.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plumbing.errors import UserError

# Causes that are the machine's, not a bug: reported as one line naming the file.
_SYSTEM_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EIO: "input/output error"}


def temp_path(path: Path) -> Path:
    """The temp name a write of ``path`` uses: ``.<name>.<pid>.tmp`` beside it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temps(path: str | Path) -> None:
    """Delete temp files that killed writers left for ``path`` (any pid)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_error(err: BaseException) -> int | None:
    """The errno of a full disk (or alike) behind ``err``, also when a library wrapped it."""
    if isinstance(err, OSError) and err.errno in _SYSTEM_ERRNOS:
        return err.errno
    text = str(err).lower()
    if "system error" in text or "no space" in text:  # libsndfile hides the errno
        return errno.ENOSPC if "space" in text else errno.EIO
    return None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write ``path`` through; on success fsync it and rename it over.

    On any failure the temp file is removed and the target is left as it was. A full disk,
    a read-only or unwritable folder becomes a :class:`UserError` naming the file and the cause.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except Exception as err:
        code = _disk_error(err)
        if code is None:
            raise
        raise UserError(f"cannot write {path}: {_SYSTEM_ERRNOS[code]}") from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` to fill a temp file, then move it over ``path`` (see
    :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically (checkpoints, exports, caches)."""
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_text(path: str | Path, text: str) -> None:
    """Write a text file (utf-8) atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
