"""What the benchmark scripts share: how two implementations timed in the same rounds are compared."""

from __future__ import annotations

import statistics


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over rounds of ``ours[i] / theirs[i]``: both sides of each ratio are timed within one
    round, a few hundred milliseconds apart, so the drift of a shared machine's speed cancels."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
