"""Writing files without ever leaving a half-written one (no SymPy; usable anywhere).

The data goes to a temporary file in the target's folder, is flushed to disk
and renamed over the target (``os.replace``): after a crash or SIGKILL at any
moment the target is the old file or the new one, never a partial write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _replace_atomically(path: Path, binary: bool, write: Callable[[IO[Any]], object]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp would make it 0600
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable across a power loss
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    _replace_atomically(path, False, lambda handle: handle.write(text))


def write_binary_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(handle)`` on a binary temporary file, then put it at ``path`` atomically."""
    _replace_atomically(path, True, write)
