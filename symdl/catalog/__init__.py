"""The catalog: one declarative entry per op, layer, update rule, schedule and fact drives everything else.

The vocabulary, the same in the CLI and the README: an *op* is anything with a
``symdl.kernels.<name>``/``<name>_vjp`` pair (``symdl.kernels.OPS``): the
activations and losses, defined by a closed-form formula
(:class:`~symdl.catalog.spec.Op`, gathered in ``ACTIVATIONS_AND_LOSSES``), and
the *layers*, defined at index level (``LAYERS``). *Update rules*
(``OPTIMIZERS``), *schedules* (``SCHEDULES``) and derived *facts*
(``symdl.catalog.facts.FACTS``) have no VJP. Derivation, code generation,
verification, tests, LaTeX and the CLI iterate over these; nothing else lists
them.

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

#: The activations and losses by snake_case name.
ACTIVATIONS_AND_LOSSES: dict[str, Op] = {op.name: op for op in ACTIVATIONS + LOSSES}
#: The former name of ACTIVATIONS_AND_LOSSES, kept so that code written against it still imports.
CATALOG = ACTIVATIONS_AND_LOSSES

__all__ = ["ACTIVATIONS_AND_LOSSES", "CATALOG", "LAYERS", "OPTIMIZERS", "SCHEDULES", "get", "Domain", "Formula", "Input", "Kink", "Op", "Param", "Rule", "Tolerance"]


def get(name: str) -> Op:
    """The activation or loss called ``name``."""
    try:
        return ACTIVATIONS_AND_LOSSES[name]
    except KeyError:
        raise UnknownOpError(f"unknown op {name!r}: not one of the {len(ACTIVATIONS_AND_LOSSES)} activations and "
                             "losses that `symdl kernels` lists") from None
