"""The viewer's plots: uPlot data with a cursor at the time shown, and the units to plot."""

from __future__ import annotations

import re

import numpy as np

#: Colours of plotted series (matplotlib's tab10).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def parse_units(text: str, count: int) -> list[int]:
    """Unit indices from ``"0-3, 7"`` (ranges inclusive), each checked against ``count``.

    Raises:
        ValueError: the text is not a list of indices and ranges, or an index is >= ``count``.
    """
    chosen: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise ValueError(f"{part!r} is not a unit index or a range such as 0-7")
        first, last = int(match[1]), int(match[2] or match[1])
        if last >= count:
            raise ValueError(f"unit {last} does not exist: there are {count} units (0-{count - 1})")
        chosen.extend(range(first, last + 1))
    return list(dict.fromkeys(chosen))


def gaps_filled(values: np.ndarray) -> np.ndarray:
    """``values`` [T] with non-finite entries interpolated linearly from their finite
    neighbours (uPlot cannot draw NaN); zeros if none is finite."""
    finite = np.isfinite(values)
    if finite.all():
        return values
    if not finite.any():
        return np.zeros_like(values)
    index = np.arange(len(values))
    return np.interp(index, index[finite], values[finite])


def with_cursor(times: np.ndarray, series: list[np.ndarray], now: float) -> tuple[np.ndarray, ...]:
    """uPlot data for ``series`` [T] against ``times``, with a vertical line at ``now``: three
    x values at ``now`` are inserted, where the series take their interpolated value and a
    last series, on its own 0..1 scale, goes 0 -> 1 -> 0 (it is 0, the bottom edge,
    elsewhere)."""
    at = int(np.searchsorted(times, now))
    x = np.insert(times, at, [now, now, now])
    ys = [np.insert(values, at, np.full(3, np.interp(now, times, values))) for values in map(gaps_filled, series)]
    cursor = np.zeros(len(x))
    cursor[at + 1] = 1.0
    return (x, *ys, cursor)
