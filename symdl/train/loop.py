"""The training loop: one seeded generator, epoch-end checkpoints, exact resume.

Determinism: a single ``np.random.Generator`` seeded with ``config.seed``
draws, in this order, the initial weights, then each epoch's shuffle (and any
dropout masks). Its ``bit_generator.state`` is saved in every checkpoint
together with the parameters, the optimizer's and scheduler's state, the epoch
and the metrics so far.

Checkpoints are written at the end of every epoch (after the scheduler step),
atomically. A run killed at any moment (mid-epoch, mid-write) and resumed
restarts from the last completed epoch with exactly the state it had then, so
it redoes the interrupted epoch with the same shuffle and ends with the same
parameters, bit for bit, as a run that was never interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from symdl import data as datasets
from symdl import nn, optim
from symdl.errors import SymdlError
from symdl.files import remove_stale_temporaries, writable_folder
from symdl.optim import lr_scheduler
from symdl.train import checkpoint, report
from symdl.check import GradcheckReport
from symdl.train.audit import audit
from symdl.train.models import MODELS

#: ``--optimizer`` names -> classes of :mod:`symdl.optim` (PyTorch's class names).
OPTIMIZERS: dict[str, str] = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}
#: ``--schedule`` names -> a scheduler factory ``(optimizer, epochs) -> scheduler`` (None: constant lr).
SCHEDULES: dict[str, Callable[[Any, int], Any] | None] = {
    "none": None,
    "cosine": lambda optimizer, epochs: lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs),
}
DTYPES = {"float32": np.float32, "float64": np.float64}
CHECKPOINT = "checkpoint.npz"
MAX_EPOCHS = 1_000_000  # a bound on typos (--epochs 1e12 would "hang" for ever), far beyond any real run
EVAL_CHUNK = 1024  # examples per forward pass when scoring (bounds memory on large user data)


class ConfigError(SymdlError, ValueError):
    """A training option is outside its domain."""


class DivergedError(SymdlError, ArithmeticError):
    """The training loss became NaN or infinite (learning rate or data scale far too large)."""


class RunExistsError(SymdlError, FileExistsError):
    """The output folder already holds a run and ``resume`` was not asked for."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's result (a checkpoint resumes only the same config)."""

    model: str = "mlp"
    dataset: str = "digits"
    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 30
    batch_size: int = 64
    seed: int = 0
    schedule: str = "none"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        choices = {"model": MODELS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "dtype": DTYPES}
        for name, table in choices.items():
            if getattr(self, name) not in table:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; choose {', '.join(table)}")
        if not (isinstance(self.lr, float | int) and np.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.epochs > MAX_EPOCHS:
            raise ConfigError(f"epochs must be at most {MAX_EPOCHS}, got {self.epochs}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.seed >= 2**64:
            raise ConfigError(f"seed must be at most 2**64-1, got {self.seed!r}")


class Reporter(Protocol):
    """Receives progress (the CLI draws a bar; the library default ignores it)."""

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None: ...

    def batch_done(self, loss: float, accuracy: float) -> None: ...

    def epoch_done(self, row: dict[str, float]) -> None: ...


class _Silent:
    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        pass

    def batch_done(self, loss: float, accuracy: float) -> None:
        pass

    def epoch_done(self, row: dict[str, float]) -> None:
        pass


def _history_fits(history: Any, epochs: int) -> bool:
    """Whether ``history`` is one row per epoch, numbered 1..epochs, each with every metric as a finite number.

    The metrics files and curves are rewritten from it after the next epoch: a hand-edited row (``{}``, a
    string, a NaN) would fail there, after a whole epoch of training, instead of at ``--resume``.
    """
    if not isinstance(history, list) or len(history) != epochs:
        return False
    for number, row in enumerate(history, start=1):
        if not isinstance(row, dict) or row.get("epoch") != number:
            return False
        values = [row.get(column) for column in report.COLUMNS]
        if not all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)
                   and np.isfinite(v) for v in values):
            return False
    return True


class Trainer:
    """A classification run: data, model, loss, optimizer, schedule, generator and history.

    ``Trainer(config, folder)`` starts a new run in ``folder``;
    ``resume=True`` continues the one whose checkpoint is there (or starts
    it, if it never finished an epoch).
    """

    def __init__(self, config: TrainConfig, folder: Path, *, resume: bool = False,
                 dataset: datasets.Dataset | None = None) -> None:
        self.config, self.folder = config, Path(folder)
        dtype = DTYPES[config.dtype]
        data = datasets.load(config.dataset) if dataset is None else dataset
        # Past sqrt(largest float) squares overflow (norms, variances, the loss's gradient steps): no training
        # at that scale is meaningful, so say so before the cast instead of producing inf/NaN losses.
        largest = max(float(np.abs(data.x_train).max()), float(np.abs(data.x_test).max()))
        limit = float(np.finfo(dtype).max) ** 0.5
        if not largest <= limit:
            raise datasets.DataError(f"{config.dataset}: inputs reach {largest:.3g} in magnitude, beyond what "
                                     f"{config.dtype} training can square ({limit:.2g}); "
                                     "scale the data to about unit size")
        self.x_train, self.y_train = data.x_train.astype(dtype), data.y_train
        self.x_test, self.y_test = data.x_test.astype(dtype), data.y_test
        # Before any work: an output folder that cannot be written fails now, not after the first epoch.
        writable_folder(self.folder)
        for name in (CHECKPOINT, *report.OUTPUTS):  # temporary files SIGKILL left in earlier writes
            remove_stale_temporaries(self.folder / name)
        self.generator = np.random.default_rng(config.seed)
        # one buffer for all parameters: the optimizer updates them in one call (symdl.optim.packing)
        self.model = MODELS[config.model](data.input_shape, data.num_classes, dtype, self.generator)
        self.model.flatten_parameters()
        # Labels are checked to be 0..C-1 (symdl.data), so no target can equal PyTorch's default
        # ignore_index=-100: None skips that per-batch search and gives the same values.
        self.criterion = nn.CrossEntropyLoss(ignore_index=None)
        self.scorer = nn.CrossEntropyLoss(ignore_index=None, reduction="sum")
        optimizer_class = getattr(optim, OPTIMIZERS[config.optimizer])
        self.optimizer = optimizer_class(self.model.parameters(), lr=config.lr)
        factory = SCHEDULES[config.schedule]
        self.scheduler = None if factory is None else factory(self.optimizer, config.epochs)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        path = self.folder / CHECKPOINT
        if path.exists() and not resume:
            raise RunExistsError(f"{self.folder} already holds a run ({CHECKPOINT}); "
                                 "pass --resume to continue it or choose another --out")
        if path.exists():
            self.restore(checkpoint.load(path), path)

    # -- checkpoints
    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (see the module docstring)."""
        return {"config": asdict(self.config), "epoch": self.epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "rng": self.generator.bit_generator.state, "history": self.history}

    def restore(self, state: dict[str, Any], path: Path) -> None:
        """Load a checkpoint's state, refusing one from a different run.

        Raises:
            checkpoint.CheckpointError: naming the options that differ, or what does not fit.
        """
        saved = state.get("config", {}) if isinstance(state, dict) else None
        if not isinstance(saved, dict):
            raise checkpoint.CheckpointError(f"{path}: checkpoint does not fit this run (no config)")
        differ = [f"{key} {saved.get(key)!r} (asked: {value!r})" for key, value in asdict(self.config).items()
                  if saved.get(key) != value]
        if differ:
            raise checkpoint.CheckpointError(f"{path}: checkpoint of a different run: {'; '.join(differ)}")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.generator.bit_generator.state = state["rng"]
            epoch, history = state["epoch"], state["history"]
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as error:
            raise checkpoint.CheckpointError(f"{path}: checkpoint does not fit this run ({error})") from None
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or not 0 <= epoch <= self.config.epochs:
            raise checkpoint.CheckpointError(f"{path}: checkpoint epoch {epoch!r} is not a whole number from 0 to "
                                             f"{self.config.epochs} (the run's epochs)")
        if not _history_fits(history, int(epoch)):
            raise checkpoint.CheckpointError(f"{path}: checkpoint history does not hold one row per epoch "
                                             f"({epoch} epochs) with finite {', '.join(report.COLUMNS)}")
        self.epoch, self.history = int(epoch), history

    # -- the work
    def check_gradients(self) -> GradcheckReport:
        """The float64 gradient audit of the whole model on the first training batch."""
        batch = slice(0, self.config.batch_size)
        return audit(self.model, self.criterion, self.x_train[batch], self.y_train[batch], seed=self.config.seed)

    def train_epoch(self, reporter: Reporter) -> tuple[float, float]:
        """One pass over the shuffled training set; mean loss and accuracy over its examples."""
        self.model.train()
        total_loss, correct = 0.0, 0
        for batch, index in enumerate(datasets.batches(len(self.y_train), self.config.batch_size, self.generator)):
            x, y = self.x_train[index], self.y_train[index]
            with np.errstate(all="ignore"):  # an overflow shows as a non-finite loss, reported by _finite
                logits = self.model.forward(x)
                loss = self._finite(float(self.criterion.forward(logits, y)), f"batch {batch + 1}")
                self.model.backward(self.criterion.backward(), input_grad=False)  # the data needs no gradient
                self.optimizer.step(self.model.gradients())
            hits = int(np.count_nonzero(logits.argmax(axis=1) == y))
            total_loss += loss * len(y)
            correct += hits
            reporter.batch_done(loss, hits / len(y))
        return total_loss / len(self.y_train), correct / len(self.y_train)

    def _finite(self, loss: float, where: str) -> float:
        """``loss``, or :class:`DivergedError` when it is NaN or infinite (never train on, or save, such a state)."""
        if np.isfinite(loss):
            return loss
        largest = float(np.abs(self.x_train).max())
        raise DivergedError(f"training diverged: the loss is {loss} at epoch {self.epoch + 1}, {where} "
                            f"(lr {self.config.lr:g}; largest input magnitude {largest:.3g}); "
                            "lower --lr or scale the data to about unit size")

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy on ``(x, y)`` in evaluation mode."""
        self.model.eval()
        total_loss, correct = 0.0, 0
        for start in range(0, len(y), EVAL_CHUNK):
            logits = self.model.forward(x[start:start + EVAL_CHUNK])
            total_loss += float(self.scorer.forward(logits, y[start:start + EVAL_CHUNK]))
            correct += int(np.count_nonzero(logits.argmax(axis=1) == y[start:start + EVAL_CHUNK]))
        self.model.train()
        return total_loss / len(y), correct / len(y)

    def fit(self, reporter: Reporter | None = None) -> dict[str, float]:
        """Train the remaining epochs, checkpointing each; write metrics and curves; return the summary."""
        reporter = _Silent() if reporter is None else reporter
        batches = -(-len(self.y_train) // self.config.batch_size)
        while self.epoch < self.config.epochs:
            reporter.epoch_started(self.epoch + 1, self.config.epochs, batches)
            lr = float(self.optimizer.param_groups[0]["lr"])
            start = time.perf_counter()
            train_loss, train_accuracy = self.train_epoch(reporter)
            seconds = time.perf_counter() - start
            with np.errstate(all="ignore"):
                test_loss, test_accuracy = self.evaluate(self.x_test, self.y_test)
            self._finite(test_loss, "the test set")
            if self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            row = {"epoch": self.epoch, "lr": lr, "train_loss": train_loss, "train_accuracy": train_accuracy,
                   "test_loss": test_loss, "test_accuracy": test_accuracy, "seconds": seconds}
            self.history.append(row)
            checkpoint.save(self.folder / CHECKPOINT, self.state())  # first: the files below derive from it
            report.write_metrics(self.folder, asdict(self.config), self.history)
            reporter.epoch_done(row)
        report.write_metrics(self.folder, asdict(self.config), self.history)
        report.plot_curves(self.folder / "curves.png", self.history,
                           f"{self.config.model} on {self.config.dataset}, {self.config.optimizer} lr={self.config.lr}")
        return report.summary(self.history)
