"""User-defined ops and export to PyTorch and JAX.

* :func:`define_op` builds a catalog entry from a definition, derives and
  proves it like the catalog's, and returns a :class:`UserOp` with NumPy
  kernels compiled from the same printer (:mod:`symdl.export.define`);
* :func:`export_source` / :func:`export_module` print standalone PyTorch
  (``torch.autograd.Function``) or JAX (``jax.custom_vjp``) modules for catalog
  and user ops (:mod:`symdl.export.torch_module`, :mod:`symdl.export.jax_module`).

Importing this package imports SymPy (the derivations need it); the generated
modules do not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.spec import Op
from symdl.errors import UnknownOpError
from symdl.export.define import DefinitionError, UserOp, define_op
from symdl.export.forms import ExportError, check_exportable
from symdl.files import write_atomically

__all__ = ["DefinitionError", "ExportError", "UserOp", "define_op", "export_module", "export_source", "resolve"]


def _renderer(target: str) -> Callable[[Sequence[Op], str], str]:
    from symdl.export import jax_module, torch_module

    renderers = {"torch": torch_module.render, "jax": jax_module.render}
    if target not in renderers:
        raise ExportError(f"unknown export target {target!r} (choose from {', '.join(renderers)})")
    return renderers[target]


def resolve(items: Iterable[str | Op | UserOp]) -> list[Op]:
    """Catalog names, catalog entries or user ops, as entries (each checked exportable)."""
    ops = []
    for item in items:
        if isinstance(item, UserOp):
            op = item.op
        elif isinstance(item, Op):
            op = item
        elif item in ACTIVATIONS_AND_LOSSES:
            op = ACTIVATIONS_AND_LOSSES[item]
        else:
            raise UnknownOpError(f"no op named {item!r} in the catalog")
        check_exportable(op)
        ops.append(op)
    names = [op.name for op in ops]
    if len(set(names)) != len(names):
        raise ExportError(f"an op is exported twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    return ops


def export_source(items: Iterable[str | Op | UserOp], target: str, command: str | None = None) -> str:
    """Source of a standalone ``target`` (``torch`` or ``jax``) module exporting ``items``."""
    render = _renderer(target)
    return render(resolve(items), command or f"symdl export --to {target}")


def export_module(items: Iterable[str | Op | UserOp], target: str, path: Path | str,
                  command: str | None = None) -> Path:
    """Write :func:`export_source` to ``path`` atomically; return the path."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {str(path)!r}: no directory {str(path.parent)!r}")
    write_atomically(path, export_source(items, target, command))
    return path
