"""``symdl export NAME[,NAME...]|FILE.py --to torch|jax -o FILE.py``: a standalone PyTorch or JAX module."""

from __future__ import annotations

import argparse

HELP = "export catalog or user-defined ops to a standalone PyTorch or JAX module"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ops, the target framework and the output file."""
    parser.add_argument("ops", metavar="NAME[,NAME...]|FILE.py",
                        help="catalog op names (comma-separated), or a Python file of symdl.define_op(...) definitions")
    parser.add_argument("--to", required=True, choices=("torch", "jax"), help="the framework")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.py", help="the module to write")


def run(args: argparse.Namespace) -> int:
    """Write the module atomically; print what it exports."""
    from pathlib import Path

    from symdl.errors import UsageError
    from symdl.export import export_module

    if args.ops.endswith(".py"):
        from symdl.export.loading import load_definitions

        items: list = list(load_definitions(args.ops))
        shown = Path(args.ops).name
    else:
        items = [name.strip() for name in args.ops.split(",") if name.strip()]
        if not items:
            raise UsageError("export: name at least one op")
        shown = ",".join(items)
    command = f"symdl export {shown} --to {args.to} -o {Path(args.output).name}"
    export_module(items, args.to, args.output, command)
    names = [item if isinstance(item, str) else item.name for item in items]
    print(f"wrote {args.output}: {', '.join(names)} ({args.to})")
    return 0
