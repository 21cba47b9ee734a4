"""Writing files without ever leaving a half-written one, and reading user archives safely (no SymPy).

The data goes to a temporary file ``.NAME.XXXX.tmp`` in the target's folder,
is flushed to disk and renamed over the target (``os.replace``): after a crash
or SIGKILL at any moment the target is the old file or the new one, never a
partial write. A SIGKILL can leave the temporary file behind;
:func:`remove_stale_temporaries` deletes those of one target (the trainer
calls it when a run starts or resumes).

:func:`read_npz` is the one way symdl reads a user's ``.npz`` (datasets,
checkpoints): every failure (missing, not a zip, truncated, CRC error, pickled
objects, a member too large to allocate) becomes one :class:`UnreadableFileError`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from symdl.errors import SymdlError

#: Largest total size (uncompressed) of the arrays :func:`read_npz` loads: 4 GiB.
MAX_NPZ_BYTES = 4 << 30


class UnreadableFileError(SymdlError, ValueError):
    """A user's file is missing, damaged or too large; the message names it and says why."""


class UnwritableFolderError(SymdlError, ValueError):
    """An output folder cannot be created or written to; the message names it and says why."""


class UnwritableFileError(SymdlError, OSError):
    """A file cannot be written (its folder is a file, is read-only or virtual, its name too long, the disk
    full); an ``OSError`` too, so callers that catch those still do."""


def _replace_atomically(path: Path, binary: bool, write: Callable[[IO[Any]], object]) -> None:
    path = Path(path)
    if "\x00" in str(path):  # os functions raise ValueError on it: a traceback, not a message
        raise UnwritableFileError(f"{str(path)!r}: cannot write there (a file name cannot contain a NUL byte)")
    try:  # a folder fails below (EISDIR), as does a name too long
        special = path.exists() and not path.is_file() and not path.is_dir()
    except OSError:
        special = False
    if special:
        # os.replace would put a regular file in place of /dev/null, a pipe or a socket (as root: remove it)
        raise UnwritableFileError(f"{path}: cannot write there (not a regular file: a device, pipe or socket)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp would make it 0600
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:  # the CLI reports a SymdlError on one line; a bare OSError would be a traceback
        raise UnwritableFileError(f"{path}: cannot write there ({error.strerror or type(error).__name__})") from None
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(error, OSError) and not isinstance(error, SymdlError):  # ENOSPC, EISDIR (path a folder), ...
            raise UnwritableFileError(f"{path}: cannot write there ({error.strerror or type(error).__name__})") \
                from None
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


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files that interrupted writes of ``path`` left behind; return them.

    Only this target's pattern, ``.NAME.*.tmp`` in its folder, is touched.
    """
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
                removed.append(stale)
    return removed


def read_npz(path: Path, *, max_bytes: int = MAX_NPZ_BYTES) -> dict[str, Any]:
    """The arrays of the ``.npz`` archive at ``path`` (``allow_pickle=False``: loading runs no code).

    Raises:
        UnreadableFileError: naming the file and the reason (no such file, not a readable archive of
            plain arrays, or arrays larger than ``max_bytes`` uncompressed).
    """
    import numpy as np

    if not Path(path).is_file():
        raise UnreadableFileError(f"{path}: no such file" if not Path(path).exists() else f"{path}: not a file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            total = sum(info.file_size for info in archive.zip.infolist())
            if total > max_bytes:
                raise UnreadableFileError(f"{path}: its arrays take {total / 2**30:.1f} GiB uncompressed; "
                                          f"the limit is {max_bytes / 2**30:.0f} GiB")
            return {key: archive[key] for key in archive.files}
    except UnreadableFileError:
        raise
    except Exception as error:  # noqa: BLE001 - damage surfaces as zipfile.BadZipFile, OSError, EOFError,
        # ValueError (pickled objects), SyntaxError (npy headers), MemoryError, TypeError (a bare .npy), ...
        text = " ".join(str(error).split())
        raise UnreadableFileError(f"{path}: not a readable .npz archive of plain arrays "
                                  f"({type(error).__name__}: {text})") from None


def writable_folder(folder: Path) -> Path:
    """Create ``folder`` (and its parents) if needed and prove that a file can be written in it.

    Checked up front so that a run fails before its work, not at its first write:
    a path under a file, an existing file (``/dev/null``), a read-only or virtual
    folder (``/proc``), a name longer than the file system allows.

    Raises:
        UnwritableFolderError: naming the folder and the operating system's reason.
    """
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise UnwritableFolderError(f"{folder}: exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".symdl-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:  # NotADirectoryError, PermissionError, ENAMETOOLONG, EROFS, ENOENT (/proc) ...
        why = error.strerror or type(error).__name__
        raise UnwritableFolderError(f"{folder}: cannot write there ({why})") from None
    return folder
