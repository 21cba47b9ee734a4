"""The op catalog: one declarative entry per op drives everything else.

``CATALOG`` maps each op's snake_case name to its :class:`~symdl.catalog.spec.Op`.
Derivation, code generation, verification, tests, LaTeX and the CLI iterate
over it; nothing else lists ops.

How to add an op: append one :class:`Op` to the family module
(``activations.py`` or ``losses.py``) with its textbook ``definition``; add a
``stable`` form if the definition overflows, ``grads`` for compact closed forms
you want the kernel to use (each is proven equal to SymPy's derivative), and
``kinks`` with PyTorch's subgradient. Then run
``python scripts/generate_kernels.py`` and the catalog-driven tests.
"""

from __future__ import annotations

from symdl.catalog.activations import ACTIVATIONS
from symdl.catalog.layers import LAYERS
from symdl.catalog.losses import LOSSES
from symdl.catalog.optimizers import OPTIMIZERS
from symdl.catalog.schedules import SCHEDULES
from symdl.catalog.spec import Domain, Formula, Input, Kink, Op, Param, Rule, Tolerance
from symdl.errors import UnknownOpError

CATALOG: dict[str, Op] = {op.name: op for op in ACTIVATIONS + LOSSES}

__all__ = ["CATALOG", "LAYERS", "OPTIMIZERS", "SCHEDULES", "get", "Domain", "Formula", "Input", "Kink", "Op", "Param", "Rule", "Tolerance"]


def get(name: str) -> Op:
    """The catalog entry called ``name``."""
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownOpError(f"unknown op {name!r}; `symdl kernels` lists the {len(CATALOG)} ops") from None
