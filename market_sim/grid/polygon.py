"""Convex hull of 2-D points (the vertices of a P-Q flexibility area)."""

from __future__ import annotations

import numpy as np


def convex_hull(points: np.ndarray) -> list[int]:
    """Indices of the convex hull of 2-D ``points``, counter-clockwise (Andrew's monotone chain).

    Written out rather than qhull's: it copes with the degenerate areas (a single point, a
    segment when there is no reactive flexibility) without special cases.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i, 0], points[i, 1]))
    if len(order) <= 2:
        return order

    def cross(o: int, a: int, b: int) -> float:
        return float(
            (points[a, 0] - points[o, 0]) * (points[b, 1] - points[o, 1])
            - (points[a, 1] - points[o, 1]) * (points[b, 0] - points[o, 0])
        )

    lower: list[int] = []
    for i in order:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], i) <= 1e-12:
            lower.pop()
        lower.append(i)
    upper: list[int] = []
    for i in reversed(order):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], i) <= 1e-12:
            upper.pop()
        upper.append(i)
    hull = lower[:-1] + upper[:-1]
    return hull if len(hull) >= 2 else order[:1]
