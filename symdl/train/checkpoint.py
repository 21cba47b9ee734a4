"""Checkpoints that lose nothing: one ``.npz`` per run, written atomically.

A checkpoint holds nested Python state (the model's arrays, the optimizer's
and scheduler's ``state_dict``, the generator's ``bit_generator.state``, the
epoch and the metrics so far). :func:`pack` splits it into a JSON tree and a
set of arrays: every array and NumPy scalar becomes ``{"__array__": key}``
(so dtypes survive: a float32 step count comes back float32), tuples and
dicts with non-string keys are tagged, and the JSON text is stored as one
more array. Nothing is pickled, so loading runs no code.

Writing goes to a temporary file in the same folder, is flushed to disk, and
replaces the old checkpoint with ``os.replace``: a reader (or a resumed run
after SIGKILL) sees the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from symdl.errors import SymdlError
from symdl.files import UnreadableFileError, read_npz, write_binary_atomically

FORMAT = "symdl-checkpoint"
VERSION = 1
_META = "__meta__"


class CheckpointError(SymdlError, ValueError):
    """A checkpoint is unreadable, corrupt, or belongs to a different run."""


def pack(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as a JSON-able tree; arrays and NumPy scalars move into ``arrays``."""
    if isinstance(value, (np.ndarray, np.generic)):
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(value)
        return {"__array__": key, "scalar": isinstance(value, np.generic)}
    if isinstance(value, dict):
        return {"__dict__": [[pack(k, arrays), pack(v, arrays)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [pack(v, arrays) for v in value]}
    if isinstance(value, list):
        return [pack(v, arrays) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot store a {type(value).__name__} in a checkpoint")


def unpack(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :func:`pack`."""
    if isinstance(tree, list):
        return [unpack(v, arrays) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__array__" in tree:
        array = arrays[tree["__array__"]]
        return array[()] if tree["scalar"] else array
    if "__tuple__" in tree:
        return tuple(unpack(v, arrays) for v in tree["__tuple__"])
    return {unpack(k, arrays): unpack(v, arrays) for k, v in tree["__dict__"]}


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    arrays: dict[str, np.ndarray] = {}
    tree = pack(state, arrays)
    arrays[_META] = np.array(json.dumps({"format": FORMAT, "version": VERSION, "state": tree}))
    write_binary_atomically(Path(path), lambda handle: np.savez(handle, **arrays))


def load(path: Path) -> dict[str, Any]:
    """The state saved at ``path``.

    Raises:
        CheckpointError: if the file is truncated, corrupt (zip CRC), not a
            symdl checkpoint, or of another format version.
    """
    try:
        arrays = read_npz(path)
        meta = json.loads(str(arrays.pop(_META)))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a symdl checkpoint")
        if meta.get("version") != VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')}, "
                                  f"this symdl reads version {VERSION}")
        state = unpack(meta["state"], arrays)
        if not isinstance(state, dict):  # a hand-edited or foreign file: the trainer reads a dict of parts
            raise CheckpointError(f"{path}: corrupt checkpoint (its state is a {type(state).__name__}, not a dict); "
                                  "remove it to start the run over")
        return state
    except CheckpointError:
        raise
    except UnreadableFileError as error:
        raise CheckpointError(f"corrupt checkpoint: {error}; remove it to start the run over") from None
    except Exception as error:  # noqa: BLE001  damage surfaces as zip, npy-header (SyntaxError), JSON or key errors
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(error).__name__}: {error}); "
                              "remove it to start the run over") from None
