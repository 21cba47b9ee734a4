"""Write every generated file: the kernels, the optimizer steps and ``derivations/``.

One module per family (:mod:`~symdl.codegen.ops` for activations and losses,
:mod:`~symdl.codegen.layers`, :mod:`~symdl.codegen.optimizers`) and one for the
documents (:mod:`~symdl.codegen.derivations`); each exposes ``render() ->
list[GeneratedModule]``. This module gathers them, writes ``symdl/kernels/__init__.py``
re-exporting every kernel, and checks or writes the files (atomically).

Output is a pure function of the catalog: regenerating twice gives identical
bytes, which ``tests/test_generated.py`` and ``.ci/run`` check.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.codegen import derivations, layers, ops, optimizers
from symdl.codegen.module import COMMAND, KERNEL_DIR, GeneratedModule, header
from symdl.files import write_atomically

__all__ = ["COMMAND", "KERNEL_DIR", "GeneratedModule", "generate", "render_all", "render_init", "stale_files"]


def render_init(modules: Iterable[GeneratedModule]) -> str:
    """Source of ``symdl/kernels/__init__.py``, re-exporting every kernel module's exports."""
    lines = header(
        "Generated NumPy kernels for every catalog op (imports NumPy only, never SymPy)",
        "``symdl.catalog`` (re-exporting every kernel module)",
        about=[["For each op ``name``: ``name(*inputs, **params)`` is the forward pass and",
                "``name_vjp(grad, *inputs, **params)`` returns one gradient per input."],
               ["``set_num_threads(n)`` lets the convolutions, max pooling and batch norm split large",
                "batches over ``n`` threads (:mod:`symdl.kernels._parallel`)."]],
        imports=["from symdl.kernels._parallel import get_num_threads, set_num_threads"]).splitlines()
    names: list[str] = []
    for module in modules:
        if module.exports and module.path.parent == KERNEL_DIR:
            lines.append(f"from symdl.kernels.{module.path.stem} import (")
            lines += [f"    {n}," for n in module.exports]
            lines.append(")")
            names += module.exports
    lines += ["", "#: Every op name, in catalog order.", "OPS: tuple[str, ...] = ("]
    lines += [f"    {op!r}," for op in ACTIVATIONS_AND_LOSSES]
    lines += [")", "", "__all__ = [\"OPS\", \"get_num_threads\", \"set_num_threads\", " + ", ".join(repr(n) for n in names)
              + "]", ""]
    return "\n".join(lines)


def render_all() -> dict[Path, str]:
    """Every generated file, by path."""
    modules = [*ops.render(), *layers.render(), *optimizers.render(), *derivations.render()]
    files = {KERNEL_DIR / "__init__.py": render_init(modules)}
    files.update((m.path, m.text) for m in modules)
    return files


def stale_files() -> list[Path]:
    """Generated files whose checked-in text differs from a fresh generation."""
    return [path for path, text in render_all().items()
            if not path.exists() or path.read_text(encoding="utf-8") != text]


def generate() -> list[Path]:
    """Regenerate every generated file; returns the files that changed."""
    changed = stale_files()
    for path, text in render_all().items():
        if path in changed:
            write_atomically(path, text)
    return changed
