"""``symdl kernels``: list the ops with their inputs and PyTorch-default parameters, or, with
``--from my_ops.py -o my_kernels.py``, write the NumPy kernels of a file of user-defined ops."""

from __future__ import annotations

import argparse

HELP = "list the ops and their parameters, or generate kernels for user-defined ops (--from FILE -o OUT)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--from FILE.py`` and ``-o OUT.py`` (together) generate kernels for user ops."""
    parser.add_argument("--from", dest="source", metavar="FILE.py",
                        help="a Python file defining ops with symdl.define_op(...)")
    parser.add_argument("-o", "--output", metavar="OUT.py", help="where to write the generated NumPy kernels")


def run(args: argparse.Namespace) -> int:
    """Print the table of ops and layers, or write user ops' kernels."""
    if args.source or args.output:
        return _generate(args)
    from rich.console import Console
    from rich.table import Table

    from symdl.catalog import ACTIVATIONS_AND_LOSSES, LAYERS
    from symdl.catalog.layer_spec import LayerInput
    from symdl.catalog.spec import Input

    def described(item: Input | LayerInput) -> str:
        optional = isinstance(item, LayerInput) and item.presence == "optional"
        notes = [n for n, holds in (("optional", optional), ("no grad", not item.differentiable)) if holds]
        return item.name + (f" ({', '.join(notes)})" if notes else "")

    entries = [*ACTIVATIONS_AND_LOSSES.values(), *LAYERS]
    table = Table(title=f"{len(entries)} ops ({len(ACTIVATIONS_AND_LOSSES)} activations and losses, {len(LAYERS)} "
                        "layers): symdl.kernels.<name> and <name>_vjp")
    table.add_column("op", no_wrap=True)
    for column in ("family", "inputs", "parameters (PyTorch defaults)", "summary"):
        table.add_column(column)
    for entry in entries:
        params = ", ".join(f"{p.name}={p.default!r}" for p in entry.params)
        table.add_row(entry.name, getattr(entry, "family", "layer"), ", ".join(described(i) for i in entry.inputs),
                      params, entry.summary)
    Console(width=max(200, Console().width)).print(table)
    return 0


def _generate(args: argparse.Namespace) -> int:
    """``--from FILE.py -o OUT.py``: the user ops' NumPy kernels, written atomically."""
    from pathlib import Path

    from symdl.errors import UsageError

    if not (args.source and args.output):
        raise UsageError("kernels: --from FILE.py and -o OUT.py go together")
    from symdl.export.define import render_numpy
    from symdl.export.loading import load_definitions
    from symdl.files import write_atomically

    output = Path(args.output)
    if not output.parent.is_dir():
        raise UsageError(f"kernels: cannot write {args.output!r}: no directory {str(output.parent)!r}")
    ops = load_definitions(args.source)
    command = f"symdl kernels --from {Path(args.source).name} -o {Path(args.output).name}"
    write_atomically(output, render_numpy([op.op for op in ops], command))
    print(f"wrote {args.output}: {', '.join(op.name for op in ops)}")
    return 0
