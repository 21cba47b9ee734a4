"""``symdl kernels``: list the ops with their inputs and PyTorch-default parameters."""

from __future__ import annotations

import argparse

HELP = "list the ops and their parameters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Print the table of ops and layers."""
    from rich.console import Console
    from rich.table import Table

    from symdl.catalog import CATALOG, LAYERS
    from symdl.catalog.layer_spec import LayerInput
    from symdl.catalog.spec import Input

    def described(item: Input | LayerInput) -> str:
        optional = isinstance(item, LayerInput) and item.presence == "optional"
        notes = [n for n, holds in (("optional", optional), ("no grad", not item.differentiable)) if holds]
        return item.name + (f" ({', '.join(notes)})" if notes else "")

    entries = [*CATALOG.values(), *LAYERS]
    table = Table(title=f"{len(entries)} ops: symdl.kernels.<name> and <name>_vjp")
    table.add_column("op", no_wrap=True)
    for column in ("family", "inputs", "parameters (PyTorch defaults)", "summary"):
        table.add_column(column)
    for entry in entries:
        params = ", ".join(f"{p.name}={p.default!r}" for p in entry.params)
        table.add_row(entry.name, getattr(entry, "family", "layer"), ", ".join(described(i) for i in entry.inputs),
                      params, entry.summary)
    Console(width=max(200, Console().width)).print(table)
    return 0
