"""symdl: symbolic derivation and verification of deep-learning gradients.

Importing ``symdl`` is light (no SymPy): the symbolic side lives in
``symdl.catalog``, ``symdl.proofs``, ``symdl.steps`` and ``symdl.printing``;
the generated, SymPy-free NumPy kernels live in ``symdl.kernels``.

``symdl.derive(expr, wrt=...)`` derives a gradient step by step, every step
verified (:mod:`symdl.steps`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from symdl.export import UserOp
    from symdl.steps import Derivation

__version__ = "0.1.0"
__all__ = ["__version__", "define_op", "derive"]


def derive(expr: Any, wrt: Any = None, **options: Any) -> Derivation:
    """Derive ``expr`` step by step with respect to ``wrt``: see :func:`symdl.steps.derive`.

    A function here rather than a re-export so that ``import symdl`` does not import SymPy.
    """
    from symdl.steps import derive as derive_steps

    return derive_steps(expr, wrt, **options)


def define_op(name: str, definition: Any, **options: Any) -> UserOp:
    """Define, derive, prove and compile an op of your own: see :func:`symdl.export.define_op`.

    A function here rather than a re-export so that ``import symdl`` does not import SymPy.
    """
    from symdl.export import define_op as define

    return define(name, definition, **options)
