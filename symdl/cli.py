"""The ``symdl`` command: one subcommand per use.

Exit codes: 0 success, 1 a check failed, 2 bad usage or bad input (one line
on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence

from symdl.errors import UsageError

__all__ = ["UsageError", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


# --------------------------------------------------------------------------- verify
def _cmd_verify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from symdl.verify import plan, verify_everything

    names = [n.strip() for n in args.ops.split(",") if n.strip()] if args.ops else None
    todo, sections = plan(names)
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=args.json or not console.is_terminal) as progress:
        task = progress.add_task("deriving and checking", total=len(todo) + len(sections))
        rows = verify_everything(names, use_cache=not args.no_cache, on_done=lambda: progress.advance(task))
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        table = Table(title=f"symdl verify: {sum(r.passed for r in rows)}/{len(rows)} op variants pass")
        for column in ("op", "variant", "closed form proven", "fd rel err", "fwd ulp", "grad ulp", "finite", "ok"):
            table.add_column(column, justify="left" if column in ("op", "variant", "closed form proven") else "right")
        for r in rows:
            table.add_row(r.op, r.variant, r.proof, f"{r.fd_error:.1e}", f"{r.forward_ulp:.1f}", f"{r.grad_ulp:.1f}",
                          "yes" if r.finite else "NO", "PASS" if r.passed else f"FAIL {r.detail}")
        Console(width=max(160, Console().width)).print(table)
    return 0 if all(r.passed for r in rows) else 1


# --------------------------------------------------------------------------- kernels / show
def _cmd_kernels(args: argparse.Namespace) -> int:
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


def _cmd_show(args: argparse.Namespace) -> int:
    from symdl.printing.derivations import STYLES, entry as find, format_entry, names

    if args.format not in STYLES:
        raise UsageError(f"unknown format {args.format!r}; formats: {', '.join(STYLES)}")
    entry = find(args.op)
    if entry is None:
        raise UsageError(f"unknown name {args.op!r}; `symdl show` knows the {len(names())} ops, layers, optimizers, "
                         "schedules and facts listed in derivations/README.md")
    if args.variant is not None and args.variant not in entry.variants:
        raise UsageError(f"{entry.name} has no variant {args.variant!r}; variants: "
                         f"{', '.join(entry.variants) or 'none (one formula)'}")
    print("\n".join(format_entry(entry, args.format, args.variant)))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "verify": _cmd_verify,
    "kernels": _cmd_kernels,
    "show": _cmd_show,
}

#: Subcommands that live in their own module, by name. Each module exposes
#: ``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``; keep its
#: top-level imports light, since building the parser imports it.
PLUGINS: dict[str, str] = {"train": "symdl.cli_train", "gradcheck": "symdl.cli_gradcheck"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(prog="symdl", description="Symbolic derivation and verification of deep-learning gradients.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    verify = sub.add_parser("verify", help="re-derive and verify every catalog op")
    verify.add_argument("--ops", help="comma-separated op names (default: all)")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument("--no-cache", action="store_true", help="re-derive even when a cached proof exists")
    sub.add_parser("kernels", help="list the ops and their parameters")
    show = sub.add_parser("show", help="print the LaTeX of a catalog name: an op's definition and gradients, a "
                                       "layer's closed forms, an update rule, a schedule or a fact "
                                       "(derivations/ has them all)")
    show.add_argument("op", metavar="name", help="an op, layer, optimizer (adam), schedule (StepLR) or fact name")
    show.add_argument("--variant", default=None, help="only this formula (gelu: none or tanh)")
    show.add_argument("--format", default="rst",
                      help="reStructuredText math blocks (default), Markdown math fences, or LaTeX "
                           "gather* environments to paste into a paper")
    for name, module_path in PLUGINS.items():
        module = importlib.import_module(module_path)
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``symdl`` console script."""
    from symdl.errors import SymdlError

    try:
        args = build_parser().parse_args(argv)
        if args.command in PLUGINS:
            return int(importlib.import_module(PLUGINS[args.command]).run(args))
        return COMMANDS[args.command](args)
    except SymdlError as error:  # UsageError included
        print(f"symdl: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`symdl show adam | head`): nothing left to say
        sys.stdout = None  # type: ignore[assignment]  # (no flush of the dead pipe at exit)
        return 0


if __name__ == "__main__":
    sys.exit(main())
