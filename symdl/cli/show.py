"""``symdl show``: the LaTeX of any catalog name."""

from __future__ import annotations

import argparse

from symdl.errors import UsageError

HELP = ("print the LaTeX of a catalog name: an op's definition and gradients, a layer's closed forms, an update "
        "rule, a schedule or a fact (derivations/ has them all)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options."""
    parser.add_argument("op", metavar="name", help="an op, layer, optimizer (adam), schedule (StepLR) or fact name")
    parser.add_argument("--variant", default=None, help="only this formula (gelu: none or tanh)")
    parser.add_argument("--format", default="rst",
                        help="reStructuredText math blocks (default), Markdown math fences, or LaTeX "
                             "gather* environments to paste into a paper")


def run(args: argparse.Namespace) -> int:
    """Print one catalog name's formulas in the requested markup."""
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
