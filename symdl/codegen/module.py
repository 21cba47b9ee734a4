"""What every generator shares: where kernels go, the command that regenerates, one generated file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The generated kernel package.
KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
#: The command that regenerates every generated file (named in each file's header).
COMMAND = "python scripts/generate_kernels.py"


@dataclass(frozen=True)
class GeneratedModule:
    """One generated file; ``exports`` are re-exported from ``symdl.kernels``."""

    path: Path
    text: str
    exports: tuple[str, ...] = ()
