"""Loading a user's file of op definitions (``symdl kernels --from`` and ``symdl export FILE.py``).

The file is the user's own Python code, run as a script would be (``runpy``):
its module-level :class:`~symdl.export.define.UserOp` objects are the ops, in
the order they were defined.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from symdl.errors import SymdlError, UsageError
from symdl.export.define import UserOp


def load_definitions(path: Path | str) -> list[UserOp]:
    """The user ops a definitions file defines at module level (at least one)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no definitions file {str(path)!r}")
    try:
        namespace = runpy.run_path(str(path), run_name="__symdl_definitions__")
    except SymdlError:  # a DefinitionError names the op and the rule already
        raise
    except Exception as error:  # noqa: BLE001 - the user's code: any failure is reported on one line
        message = " ".join(str(error).split())
        raise UsageError(f"{path}: running the definitions failed: {type(error).__name__}: {message}") from None
    ops: list[UserOp] = []
    for value in namespace.values():
        if isinstance(value, UserOp) and all(value is not seen for seen in ops):
            ops.append(value)
    if not ops:
        raise UsageError(f"{path} defines no op (assign the results of symdl.define_op(...) at module level)")
    return ops
