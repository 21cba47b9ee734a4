"""The small trainer behind ``symdl train``: every forward and backward step is a generated kernel.

``Trainer(TrainConfig(...), folder).fit()`` trains, checkpoints every epoch and
writes ``metrics.csv``, ``metrics.json`` and ``curves.png`` into ``folder``;
see :mod:`symdl.train.loop` for determinism and resume.
"""

from __future__ import annotations

from symdl.train.checkpoint import CheckpointError
from symdl.train.loop import (OPTIMIZERS, SCHEDULES, ConfigError, DivergedError, RunExistsError, TrainConfig,
                              Trainer)
from symdl.train.models import MODELS

__all__ = ["CheckpointError", "ConfigError", "DivergedError", "MODELS", "OPTIMIZERS", "RunExistsError", "SCHEDULES",
           "TrainConfig", "Trainer"]
