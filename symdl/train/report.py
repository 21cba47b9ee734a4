"""What a run leaves in its folder: metrics.csv, metrics.json and curves.png.

All three are rewritten (atomically) after every epoch from the history kept
in the checkpoint, so a resumed run's files are those of an uninterrupted one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from symdl.files import write_atomically, write_binary_atomically

#: The files written into a run's folder besides the checkpoint.
OUTPUTS = ("metrics.csv", "metrics.json", "curves.png")
#: Columns of metrics.csv, in order (one row per epoch).
COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")


def write_metrics(folder: Path, config: dict[str, Any], history: list[dict[str, float]]) -> None:
    """metrics.csv (one row per epoch) and metrics.json (the config, the rows and a summary)."""
    lines = [",".join(COLUMNS)] + [",".join(repr(row[c]) for c in COLUMNS) for row in history]
    write_atomically(folder / "metrics.csv", "\n".join(lines) + "\n")
    write_atomically(folder / "metrics.json", json.dumps({"config": config, "epochs": history,
                                                          "summary": summary(history)}, indent=2) + "\n")


def summary(history: list[dict[str, float]]) -> dict[str, float]:
    """Final and best test accuracy, final losses, and the median seconds per training epoch."""
    if not history:
        return {}
    seconds = sorted(row["seconds"] for row in history)
    last = history[-1]
    return {"epochs": last["epoch"], "final_train_loss": last["train_loss"], "final_test_loss": last["test_loss"],
            "final_train_accuracy": last["train_accuracy"], "final_test_accuracy": last["test_accuracy"],
            "best_test_accuracy": max(row["test_accuracy"] for row in history),
            "median_epoch_seconds": seconds[len(seconds) // 2]}


def plot_curves(path: Path, history: list[dict[str, float]], title: str) -> None:
    """Loss and accuracy per epoch, train and test, as a PNG (matplotlib's Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    epochs = [row["epoch"] for row in history]
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for part in ("train", "test"):
            axes.plot(epochs, [row[f"{part}_{metric}"] for row in history], marker=".", label=part)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_binary_atomically(path, lambda handle: handle.write(buffer.getvalue()))
