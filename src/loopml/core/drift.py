"""How a drift test's score reads, for every face that shows one (the portal's page,
``loopml monitor``): KS and chi-square give a p-value (lower is more different, drifted
below the threshold), Wasserstein, Jensen-Shannon and PSI a distance (higher is more
different, drifted at or above it).

Example:
    >>> drifts_when("ks", 0.05)
    'p < 0.05'
    >>> figure(4.47e-29)
    '4.47e-29'
"""

from __future__ import annotations

P_VALUE_TESTS = frozenset({"ks", "chi2"})
"""The tests whose score is a p-value."""

LEGEND = (
    "score: a p-value for ks and chi2 (lower is more different), a distance for "
    "wasserstein (in standard deviations), js and psi (higher is more different); "
    "p: the column's KS or chi-square p-value at this window's size, which must also be "
    "under the limit the title names for the column to count as drifted; "
    "PSI: the population stability index, higher is more different (0.1 a moderate "
    "shift, 0.25 a large one)"
)
"""What the score and PSI columns mean, under a drift table."""


def drifts_when(method: str, threshold: float) -> str:
    """The rule a column's test applied, as a person reads it: ``p < 0.05`` or
    ``distance >= 0.1`` (``-`` for a column too small to judge, threshold 0)."""
    if not threshold:
        return "-"
    if method in P_VALUE_TESTS:
        return f"p < {threshold:.3g}"
    return f"{method} >= {threshold:g}"


def figure(value: float) -> str:
    """A drift table's score, p-value or PSI as every face writes it: three significant
    figures, so a p-value of ``4.47e-29`` reads as that, not as ``0.0000`` (four decimals
    round every p-value under 5e-5 to zero)."""
    return f"{value:.3g}"
