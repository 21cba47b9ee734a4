"""``symdl verify``: re-derive every catalog entry, prove its closed forms and check its kernels."""

from __future__ import annotations

import argparse
import json

from symdl.errors import UsageError

HELP = "re-derive and verify every catalog op"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options."""
    parser.add_argument("--ops", help="comma-separated op names (default: all)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--no-cache", action="store_true", help="re-derive even when a cached proof exists")


def run(args: argparse.Namespace) -> int:
    """Derive, prove and check the requested entries; exit 0 only when every row passes."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from symdl.verify import plan, row_count, verify_everything

    names = None if args.ops is None else [n.strip() for n in args.ops.split(",") if n.strip()]
    if names is not None and not names:  # `--ops ,` or `--ops ""` is a mistake, not a request for everything
        raise UsageError(f"--ops {args.ops!r} names no op; give comma-separated names, or leave --ops out for all")
    if names is not None and len(set(names)) != len(names):
        raise UsageError(f"--ops names {next(n for n in names if names.count(n) > 1)!r} twice")
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=args.json or not console.is_terminal) as progress:
        task = progress.add_task("deriving and checking", total=row_count(plan(names)))
        rows = verify_everything(names, use_cache=not args.no_cache, on_done=lambda: progress.advance(task))
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        table = Table(title=f"symdl verify: {sum(r.passed for r in rows)}/{len(rows)} rows pass (ops' variants, "
                            "layers, update rules, schedules, facts)")
        for column in ("name", "variant", "closed form proven", "fd rel err", "fwd ulp", "grad ulp (result=)", "finite",
                       "ok"):
            table.add_column(column, justify="left" if column in ("name", "variant", "closed form proven") else "right")
        for r in rows:
            grad = f"{r.grad_ulp:.1f}" + (f" ({r.result_ulp:.1f})" if r.result_ulp is not None else "")
            table.add_row(r.op, r.variant, r.proof, f"{r.fd_error:.1e}", f"{r.forward_ulp:.1f}", grad,
                          "yes" if r.finite else "NO", "PASS" if r.passed else f"FAIL {r.detail}")
        Console(width=max(160, Console().width)).print(table)
    return 0 if all(r.passed for r in rows) else 1
