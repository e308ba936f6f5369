"""Fairness of a validation outcome between bidders.

Maximising validated volume favours bids at electrically strong locations: an LP optimum sits on
a vertex, so a few bids are accepted in full and the rest cut to zero. The alternative policy,
``equitable``, is max-min fairness over accepted *shares* (validated / offered): maximise the
smallest share first, then volume (lexicographic max-min, Bertsekas & Gallager, *Data Networks*,
1992, Sec. 6.5.2). Fairness is measured by Jain's index of the shares (R. Jain, D. Chiu,
W. Hawe, "A quantitative measure of fairness and discrimination for resource allocation in
shared computer systems", DEC-TR-301, 1984): 1 when every bid gets the same share, 1/n when one
bid gets everything.
"""

from __future__ import annotations

import numpy as np

#: Fairness policies a validation method accepts.
FAIRNESS = ("max_volume", "equitable")


def check_fairness(name: str) -> str:
    """``name`` if it is a known policy, else ValueError naming the allowed ones."""
    if name not in FAIRNESS:
        raise ValueError(f"unknown fairness {name!r}; allowed: {', '.join(FAIRNESS)}")
    return name


def shares(validated: np.ndarray, offered: np.ndarray) -> np.ndarray:
    """Accepted share of every bid with a positive offer."""
    offered = np.asarray(offered, dtype=float)
    ok = np.isfinite(offered) & (offered > 0)
    return np.clip(np.asarray(validated, dtype=float)[ok] / offered[ok], 0.0, 1.0)


def jain_index(validated: np.ndarray, offered: np.ndarray) -> float:
    """Jain's index (sum s)^2 / (n sum s^2) of the accepted shares; NaN without bids.

    All shares zero (nothing validated) counts as equal treatment: 1.
    """
    s = shares(validated, offered)
    if s.size == 0:
        return float("nan")
    sq = float(np.sum(s**2))
    return 1.0 if sq == 0 else float(np.sum(s) ** 2 / (s.size * sq))


def min_share(validated: np.ndarray, offered: np.ndarray) -> float:
    """Smallest accepted share (NaN without bids)."""
    s = shares(validated, offered)
    return float(s.min()) if s.size else float("nan")
