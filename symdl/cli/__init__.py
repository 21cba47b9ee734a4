"""The ``symdl`` command: one subcommand per module of this package.

Each subcommand module exposes ``HELP: str``, ``add_arguments(parser)`` and
``run(args) -> int``, and keeps its top-level imports light (building the
parser imports every one of them; the work imports what it needs inside
``run``).

Exit codes: 0 success, 1 a check failed, 2 bad usage or bad input (one line
on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from symdl.errors import UsageError

try:  # Ctrl-C while the subcommands load (NumPy: a fraction of a second) is one line and 130 too, not a traceback
    from symdl.cli import derive, export, gradcheck, handout, kernels, show, train, verify
except KeyboardInterrupt:
    print("symdl: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

__all__ = ["SUBCOMMANDS", "UsageError", "build_parser", "main"]

#: The subcommands, in the order ``symdl --help`` lists them.
SUBCOMMANDS: dict[str, ModuleType] = {
    "verify": verify,
    "kernels": kernels,
    "show": show,
    "derive": derive,
    "gradcheck": gradcheck,
    "train": train,
    "handout": handout,
    "export": export,
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(prog="symdl", description="Symbolic derivation and verification of deep-learning gradients.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in SUBCOMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``symdl`` console script."""
    from symdl.errors import SymdlError

    try:
        args = build_parser().parse_args(argv)
        return int(SUBCOMMANDS[args.command].run(args))
    except SymdlError as error:  # UsageError included
        print(f"symdl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C anywhere (a subcommand that can resume says how, itself)
        print("symdl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`symdl show adam | head`): nothing left to say
        sys.stdout = None  # type: ignore[assignment]  # (no flush of the dead pipe at exit)
        return 0
