"""``symdl train``: train a small model on real data with symdl's kernels only.

Example: ``symdl train --model cnn --dataset digits --epochs 15 --out runs/cnn``.
A progress bar per epoch (on a terminal), one line per epoch, a summary, and
in the output folder: checkpoint.npz (every epoch, atomic), metrics.csv,
metrics.json and curves.png. ``--resume`` continues the run in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "train an MLP or CNN on digits, MNIST-1D or your .npz with symdl's kernels"
#: Most kernel threads accepted (more than any machine this runs on has cores; beyond, a typo).
MAX_THREADS = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options (choices are checked by ``TrainConfig``, so building the parser stays light)."""
    parser.add_argument("--model", default="mlp", help="mlp or cnn (default mlp)")
    parser.add_argument("--dataset", default="digits", help="digits, mnist1d, or a path to a .npz file")
    parser.add_argument("--optimizer", default="adam", help="adam, adamw, sgd or rmsprop (default adam)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seeds initialisation, shuffling and dropout")
    parser.add_argument("--schedule", default="none", help="none or cosine (CosineAnnealingLR over the epochs)")
    parser.add_argument("--dtype", default="float32", help="float32 or float64")
    parser.add_argument("--out", default=None, help="run folder (default runs/MODEL-DATASET[-N])")
    parser.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for the kernels (symdl.kernels.set_num_threads: large convolution and pooling "
                             "batches are split over them; BLAS then runs one thread per call). Default 1")
    parser.add_argument("--check-grads", action="store_true",
                        help="check the model's backward pass (float64, one batch) before training")


def _default_folder(model: str, dataset: str) -> Path:
    """``runs/MODEL-DATASET``, or the first free ``-2``, ``-3``, ... variant."""
    base = Path("runs") / f"{model}-{Path(dataset).stem}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


class _Progress:
    """A rich progress bar per epoch (on a terminal only) and one printed line per epoch."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console()
        self.bar = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[accuracy]:.3f}"),
                            TimeElapsedColumn(), console=self.console, transient=True,
                            disable=not self.console.is_terminal)  # one console: lines print above the bar
        self.epochs = 0

    def __enter__(self) -> _Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        self.epochs, self.seen, self.loss, self.hits = epochs, 0, 0.0, 0.0
        self.task = self.bar.add_task("", total=batches, epoch=f"{epoch}/{epochs}", loss=0.0, accuracy=0.0)

    def batch_done(self, loss: float, accuracy: float) -> None:
        self.seen += 1
        self.loss += loss
        self.hits += accuracy
        self.bar.update(self.task, advance=1, loss=self.loss / self.seen, accuracy=self.hits / self.seen)

    def epoch_done(self, row: dict[str, float]) -> None:
        self.bar.remove_task(self.task)
        self.console.print(f"epoch {row['epoch']:>3}/{self.epochs}  lr {row['lr']:.2e}  "
                           f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}  "
                           f"test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f}  "
                           f"{1000 * row['seconds']:.0f} ms", highlight=False, soft_wrap=True)


def _print_summary(summary: dict[str, Any], folder: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"symdl train: {folder}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    """Train; exit 0, or 1 when ``--check-grads`` finds a wrong gradient (2 for bad input, via main)."""
    from threadpoolctl import threadpool_limits

    from symdl.kernels import set_num_threads
    from symdl.optim._blas import load as load_blas
    from symdl.train import ConfigError, TrainConfig

    config = TrainConfig(model=args.model, dataset=args.dataset, optimizer=args.optimizer, lr=args.lr,
                         epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, schedule=args.schedule,
                         dtype=args.dtype)
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.threads > MAX_THREADS:
        raise ConfigError(f"--threads must be at most {MAX_THREADS}, got {args.threads}")
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out, the folder of the run to continue")
    if args.out is not None and not args.out.strip():
        raise ConfigError("--out is empty; give the run's folder (or leave --out out for runs/MODEL-DATASET)")
    folder = Path(args.out) if args.out is not None else _default_folder(config.model, config.dataset)
    load_blas()  # SciPy's BLAS (the optimizers' axpy) loaded before the limit, so that it covers it
    # the kernels' own threads each call BLAS: one BLAS thread per call, or they oversubscribe the cores
    set_num_threads(args.threads)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            return _train(config, folder, args)
    finally:
        set_num_threads(1)


def _train(config: Any, folder: Path, args: argparse.Namespace) -> int:
    from symdl.train import Trainer

    trainer = Trainer(config, folder, resume=args.resume)
    if args.resume and trainer.epoch:
        print(f"resuming {folder} after epoch {trainer.epoch}/{config.epochs}")
    elif args.resume:
        print(f"no completed epoch in {folder} yet: starting at epoch 1")
    if args.check_grads:
        result = trainer.check_gradients()
        print(result.to_text())
        if not result.passed:
            return 1
    try:
        with _Progress() as progress:
            summary = trainer.fit(progress)
    except KeyboardInterrupt:  # the last completed epoch is safe in the checkpoint
        print(f"symdl: interrupted after epoch {trainer.epoch}; continue with --out {folder} --resume",
              file=sys.stderr)
        return 130
    _print_summary(summary, folder)
    return 0
