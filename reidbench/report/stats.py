"""Statistics behind the table marks: 95 % intervals of a mean over seeds and Welch's t-test between rows.

Both work from a :class:`Cell` (mean, sample std, n over seeds): that is all a row keeps, and all the
t distribution needs. A cell with fewer than two seeds has no interval and cannot be tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # two-sided significance level of the best-row test


@dataclass(frozen=True)
class Cell:
    """Aggregate of one metric over seeds: mean, sample std (NaN when n < 2 or unknown), n (0: unknown)."""

    mean: float
    std: float = math.nan
    n: int = 0

    @staticmethod
    def of(values: list[float] | np.ndarray) -> Cell:
        """Mean, sample std (ddof=1) and count of the finite ``values``."""
        arr = np.asarray(values, dtype=float)
        arr = arr[np.isfinite(arr)]
        if len(arr) == 0:
            return Cell(math.nan, math.nan, 0)
        return Cell(float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan, len(arr))

    @property
    def has_std(self) -> bool:
        return math.isfinite(self.std)


def testable(cell: Cell | None) -> bool:
    """Whether ``cell`` has the n >= 2 seeds and finite std an interval or a test needs."""
    return cell is not None and cell.n >= 2 and math.isfinite(cell.std)


FRACTION = (0.0, 1.0)  # the range of mAP, CMC and mINP: an interval past it is cut there


def ci95(cell: Cell, bounds: tuple[float, float] | None = None) -> tuple[float, float] | None:
    """Two-sided 95 % t interval of the mean (n - 1 degrees of freedom), cut at ``bounds`` (the values
    the metric can take: R1 over 3 seeds of 85 ± 7 % gives [67, 104] before the cut); None when not
    :func:`testable`."""
    if not testable(cell):
        return None
    from scipy import stats

    half = stats.t.ppf(0.975, cell.n - 1) * cell.std / math.sqrt(cell.n)
    lo, hi = cell.mean - half, cell.mean + half
    return (max(lo, bounds[0]), min(hi, bounds[1])) if bounds else (lo, hi)


def welch_p(a: Cell, b: Cell) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) between the means of ``a`` and ``b``;
    None when either is not :func:`testable`. Equal means with zero spread: 1."""
    if not (testable(a) and testable(b)):
        return None
    if a.std == 0 and b.std == 0:
        return 1.0 if a.mean == b.mean else 0.0
    from scipy import stats

    return float(stats.ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n, equal_var=False).pvalue)


def tied_with_best(best: Cell, other: Cell) -> bool | None:
    """Whether ``other`` is within noise of ``best`` (Welch p >= ALPHA); None when it cannot be tested."""
    p = welch_p(best, other)
    return None if p is None else p >= ALPHA
