"""What the benchmark scripts share: how two implementations timed in the same rounds are compared, and how a
table is written into docs/ without dropping the notes beside it."""

from __future__ import annotations

import statistics
from pathlib import Path

from symdl.files import write_atomically


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over rounds of ``ours[i] / theirs[i]``: both sides of each ratio are timed within one
    round, a few hundred milliseconds apart, so the drift of a shared machine's speed cancels."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def write_table(path: str | Path, table: str) -> None:
    """Write a benchmark's generated ``table`` (Markdown) to ``path`` atomically, keeping the notes written
    there by hand: every line of the existing file from its first ``## `` heading that ``table`` does not
    contain (earlier runs, A/B sections) is appended unchanged, so re-running a benchmark never drops them."""
    path = Path(path)
    generated = {line for line in table.splitlines() if line.startswith("## ")}
    notes: list[str] = []
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("## ") and line not in generated), None)
        notes = lines[start:] if start is not None else []
    text = table.rstrip("\n") + "\n"
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    write_atomically(path, text)
