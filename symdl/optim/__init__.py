"""Optimizers over lists of NumPy arrays, with PyTorch's names, defaults and semantics.

``symdl.optim.Adam(params, lr=1e-3, ...)`` and every class here match the
``torch.optim`` class of the same name (Lion has none): ``step(grads)``
updates the arrays in place, ``param_groups`` holds the hyper-parameters
(schedulers in :mod:`symdl.optim.lr_scheduler` write ``group["lr"]``), and
``state_dict``/``load_state_dict``/``zero_state`` save, restore and reset the
state. Each update is generated from its SymPy rule in
:mod:`symdl.catalog.optimizers`; importing this package imports NumPy only.
"""

from __future__ import annotations

from symdl.optim._generated import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    NAdam,
    RAdam,
    RMSprop,
)
from symdl.optim.optimizer import Optimizer

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "Lion"]
