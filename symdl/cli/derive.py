"""``symdl derive``: a step-by-step derivation, every step verified, as text, LaTeX, Markdown, HTML or JSON."""

from __future__ import annotations

import argparse
import sys

from symdl.errors import UsageError

HELP = ("derive an expression, a catalog name or a Python function (FILE.py:f) step by step, each step verified "
        "(text, latex, markdown, html or json)")
FORMATS = ("text", "latex", "markdown", "html", "json")
#: The longest --timeout accepted (a day, as ``symdl gradcheck``): a derivation is always bounded.
MAX_TIMEOUT = 86_400.0


def _check_output(text: str) -> None:
    """``-o``: a file name (an empty one would silently print to stdout instead); the rest (a device, a folder,
    a missing or read-only folder, a NUL byte) is refused by :func:`symdl.files.write_atomically`."""
    if not text.strip():
        raise UsageError(f"-o/--output must name a file, got {text!r}")


def _check_wrt(target: str, derivation: object) -> None:
    """``--wrt`` names a variable of an expression or function (a typo would derive a silent 0). Catalog
    entries are left alone: their index-level sums hide the variables from ``free_symbols``."""
    from symdl.catalog import ACTIVATIONS_AND_LOSSES

    if target in ACTIVATIONS_AND_LOSSES:
        return
    present = {s.name for s in derivation.expression.free_symbols}  # type: ignore[attr-defined]
    absent = [v.name for v in derivation.wrt if v.name not in present]  # type: ignore[attr-defined]
    if absent:
        raise UsageError(f"--wrt {', '.join(absent)}: {target[:60]} does not depend on it (its variables: "
                         f"{', '.join(sorted(present)) or 'none'})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options."""
    parser.add_argument("target", metavar="EXPR|NAME|FILE.py:f",
                        help="an expression (x*sigmoid(x)), a catalog name (cross_entropy) or FILE.py:function")
    parser.add_argument("--wrt", default=None, help="variables, comma separated (default: every variable)")
    parser.add_argument("--variant", default="", help="a catalog entry's formula variant (gelu: none or tanh)")
    parser.add_argument("--format", default="text", help=f"one of {', '.join(FORMATS)} (default text)")
    parser.add_argument("-o", "--output", default=None, help="write to this file (atomically) instead of stdout")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds for deriving and verifying (default 20)")
    parser.add_argument("--check", default=None, metavar="FILE.py:df",
                        help="with FILE.py:f: gradient-check your own gradient df (same parameters, returning the "
                             "partial derivatives as a tuple, or one value) against f by finite differences")
    # --- graphs and matrix calculus (issue 18): symdl.steps.graph_cli and symdl.steps.matrix.cli ---
    parser.add_argument("--graph", action="store_true",
                        help="show the computational graph: forward values, backward table, gradients (needs --at)")
    parser.add_argument("--at", default=None, metavar="x=3,y=-4", help="with --graph: the point")
    parser.add_argument("--shape", action="append", default=None, metavar="X=n,d",
                        help="declare a vector/matrix (repeatable; sizes are numbers or names; w= for a scalar): "
                             "the expression is then derived with matrix calculus")
    parser.add_argument("--assume", action="append", default=None, metavar="sum(y)=1",
                        help="with --shape: sum(y)=1 (y is a probability vector) or symmetric(A)")
    parser.add_argument("--stationary", action="store_true",
                        help="with --shape: also derive where the gradient vanishes (checked numerically)")
    parser.add_argument("--jacobian", action="store_true",
                        help="with --shape: a vector expression's Jacobian (numerator layout)")


def run(args: argparse.Namespace) -> int:
    """Derive, print or write; with ``--check``, also run the gradient check (exit 1 if it fails)."""
    from symdl.check.syntax import check_text

    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}; formats: {', '.join(FORMATS)}")
    if not 0 < args.timeout <= MAX_TIMEOUT:  # NaN and inf fail too: every derivation is bounded in time
        raise UsageError(f"--timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {args.timeout}")
    if args.output is not None:
        _check_output(args.output)
    check_text(args.target)  # length and nesting caps before anything is imported or built
    if getattr(args, "graph", False) or getattr(args, "shape", None):  # issue 18: graphs, matrix calculus
        from symdl.steps.graph_cli import run_graph_or_matrix

        return run_graph_or_matrix(args)
    for option in ("--stationary", "--jacobian", "--assume"):
        if getattr(args, option[2:], None):
            raise UsageError(f"{option} applies to matrix derivations: declare shapes with --shape")
    if getattr(args, "at", None) is not None:
        raise UsageError("--at applies to --graph (the point of the forward and backward pass)")
    is_file = ":" in args.target and args.target.rpartition(":")[0].endswith(".py")
    if not is_file:  # the whitelist and caps in pure Python: hostile text is refused before SymPy is imported
        from symdl.check.syntax import normalized, validate

        validate(normalized(args.target))
    if args.check is not None and not is_file:
        raise UsageError("--check FILE.py:df needs the function itself as FILE.py:f")
    if args.variant:
        from symdl.catalog import ACTIVATIONS_AND_LOSSES

        if args.target not in ACTIVATIONS_AND_LOSSES:
            raise UsageError("--variant applies to catalog names only")
    from symdl.steps import derive

    derivation = derive(args.target, args.wrt, variant=args.variant, timeout=args.timeout)
    if args.wrt is not None and not args.variant:
        _check_wrt(args.target, derivation)
    text = derivation.render(args.format)
    if args.output:
        from pathlib import Path

        from symdl.files import write_atomically

        write_atomically(Path(args.output), text)
    elif args.format == "text" and sys.stdout.isatty():
        from rich.console import Console

        from symdl.steps.printers.text import rich_text

        console = Console(highlight=False)
        console.print(rich_text(derivation, width=console.width), end="")
    else:
        sys.stdout.write(text)
    status = 0 if derivation.verified else 1
    if args.check is not None:
        from symdl.steps.gradcheck import check_gradient

        report = check_gradient(args.target, args.check)
        print(report)
        status = max(status, 0 if report else 1)
    return status
