"""``symdl derive --graph`` and ``symdl derive EXPR --shape ...``: the command-line side of graphs and matrices.

Called by :mod:`symdl.cli.derive` when ``--graph`` or ``--shape`` is given. Output goes to stdout or, with
``-o FILE``, to FILE atomically; a graph written as LaTeX or Markdown gets its picture beside it
(``FILE-graph.pdf`` for LaTeX, ``FILE-graph.svg`` for Markdown). Exit 0 when everything verified, 1 when a
check failed, 2 for bad input (raised as a :class:`symdl.errors.SymdlError`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from symdl.errors import UsageError

#: The picture written beside a graph document, per format.
PICTURES = {"latex": "pdf", "markdown": "svg"}


def emit(args: argparse.Namespace, text: str, renderables: Callable[[], list[object]] | None = None) -> None:
    """``text`` to ``-o`` (atomically) or stdout; on a terminal, text output is printed coloured with rich
    (``renderables``: the rich tables and lines ``text`` was rendered from), as scalar derivations are."""
    if args.output:
        from symdl.files import write_atomically

        write_atomically(Path(args.output), text)
    elif args.format == "text" and renderables is not None and sys.stdout.isatty():
        from symdl.steps.rich_tables import print_rich

        print_rich(renderables())
    else:
        sys.stdout.write(text)


def run_graph_or_matrix(args: argparse.Namespace) -> int:
    """Dispatch ``--graph`` to the graph engine and ``--shape`` to the matrix engine."""
    if args.graph and args.shape:
        raise UsageError("--graph works on scalar inputs; --shape declares matrices: use one of them")
    if args.check is not None or args.variant:
        raise UsageError("--check and --variant do not apply to --graph or --shape")
    from symdl.steps.budget import within

    # --timeout bounds the whole computation (deriving, verifying, drawing, printing): one line and exit 2 past it
    with within(args.timeout, "--graph" if args.graph else "the matrix derivation"):
        return _graph(args) if args.graph else _matrix(args)


def _graph(args: argparse.Namespace) -> int:
    from symdl.steps.graph import derive_graph

    if not args.at:
        raise UsageError("--graph needs the point, e.g. --at x=3,y=-4")
    if args.assume or args.jacobian or getattr(args, "stationary", False):
        raise UsageError("--assume, --jacobian and --stationary apply to matrix derivations (--shape), not --graph")
    if args.wrt:
        raise UsageError("--graph gives the gradient of every input; drop --wrt")
    derivation = derive_graph(args.target, args.at)
    picture = None
    if args.output and args.format in PICTURES:
        from symdl.files import write_binary_atomically
        from symdl.steps.graph_picture import draw

        output = Path(args.output)
        path = output.with_name(f"{output.stem}-graph.{PICTURES[args.format]}")
        data = draw(derivation, PICTURES[args.format])
        write_binary_atomically(path, lambda handle: handle.write(data))
        picture = path.name
    from symdl.steps.graph_printers import renderables

    emit(args, derivation.render(args.format, picture), lambda: renderables(derivation))
    return 0 if derivation.verified else 1


def _matrix(args: argparse.Namespace) -> int:
    from symdl.steps.matrix import derive_matrix, parse_matrix, parse_shapes
    from symdl.steps.matrix.engine import read_names

    if args.at:
        raise UsageError("--at applies to --graph only")
    if getattr(args, "stationary", False) and args.jacobian:
        raise UsageError("--stationary applies to gradients, not to --jacobian")
    shapes = parse_shapes(args.shape)
    wrt = [w.strip() for w in args.wrt.split(",") if w.strip()] if args.wrt else None  # None: the names it reads
    read = read_names(parse_matrix(args.target, shapes))
    unread = [w for w in wrt or () if w in shapes and w not in read]
    if unread:  # a declared variable the expression does not read: its gradient is a silent 0, more likely a typo
        raise UsageError(f"--wrt {', '.join(unread)}: {args.target[:60]} does not read it (it reads "
                         f"{', '.join(sorted(read))})")
    derivation = derive_matrix(args.target, wrt, shapes, assume=args.assume or (), jacobian=args.jacobian,
                               stationary=getattr(args, "stationary", False))
    from symdl.steps.matrix.printers import renderables

    emit(args, derivation.render(args.format), lambda: renderables(derivation))
    return 0 if derivation.verified else 1
