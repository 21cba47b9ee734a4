"""symdl: symbolic derivation and verification of deep-learning gradients.

Importing ``symdl`` is light (no SymPy): the symbolic side lives in
``symdl.catalog``, ``symdl.derive`` and ``symdl.printing``; the generated,
SymPy-free NumPy kernels live in ``symdl.kernels``.
"""

from __future__ import annotations

__version__ = "0.1.0"
