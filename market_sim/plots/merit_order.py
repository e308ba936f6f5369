"""The balancing market of one period as a merit order, with the price it cleared at.

Injection is the good. Up offers sell it at their ask (the supply curve, cheapest first); down
offers buy it back at minus their ask (a generator moving down saves its fuel, a DER paid to
inject less costs the TSO its ask): the demand curve, highest value first. The TSO's need
shifts one of them: a need for more injection is demand at VOLL, so the demand curve starts at
the need (the supply curve, at a need for less injection). Where the curves cross is the
uniform price of a market without congestion; the recorded balancing prices are drawn as
horizontal lines (one where every bus has the same price, the lowest and the highest nodal
price where a line binds); the view is the offers' price range, so a scarcity price (VOLL, in
a period with unserved need) is noted at its edge. Rows of the TSO's problem beyond the nodal
balance (reserve, tso_managed's distribution rows) and the exclusive directions of a device are
not drawn: the recorded price is the LP's, the curves are its offers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

SUPPLY_GID = "supply"
DEMAND_GID = "demand"
PRICE_GID = "clearing_price"
#: Nodal prices closer than this are one price (EUR/MWh).
PRICE_TOLERANCE = 1e-6


def offer_curves(offers: pd.DataFrame, need_mw: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Supply (up offers) and demand (down offers) steps: columns left_mw, mw, value."""
    up = offers[offers.direction == "up"].assign(value=lambda o: o.price_eur_per_mwh)
    down = offers[offers.direction == "down"].assign(value=lambda o: -o.price_eur_per_mwh)
    up = up.sort_values(["value", "offer_id"], kind="stable")
    down = down.sort_values(["value", "offer_id"], ascending=[False, True], kind="stable")
    for curve, start in ((up, max(-need_mw, 0.0)), (down, max(need_mw, 0.0))):
        curve["left_mw"] = start + curve.mw.cumsum() - curve.mw
    return up, down


def merit_order(tables: dict[str, pd.DataFrame], period: int, title: str = "") -> Figure:
    """The balancing offers of ``period`` as supply and demand of injection, with its prices."""
    periods = tables["kpis"].period
    if period not in set(periods):
        raise ValueError(f"period: got {period}; allowed: {periods.min()}..{periods.max()}")
    offers = _of(tables["balancing_offers"], period)
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title or f"balancing market, period {period}")
    if offers.empty:  # the schedule or the clearing failed: an event of the period
        ax.text(
            0.5,
            0.5,
            f"no balancing offers in period {period} (see the events table)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        return fig
    need = float(_of(tables["balancing_buses"], period).need_mw.sum())
    up, down = offer_curves(offers, need)
    curves = (
        (up, "tab:green", SUPPLY_GID, "up offers (supply)"),
        (down, "tab:purple", DEMAND_GID, "down offers (demand)"),
    )
    for curve, color, gid, name in curves:
        if len(curve):
            edges = np.append(curve.left_mw.to_numpy(), curve.left_mw.iloc[-1] + curve.mw.iloc[-1])
            ax.stairs(
                curve.value.to_numpy(),
                edges,
                baseline=None,
                color=color,
                lw=1.8,
                label=name,
                gid=gid,
            )
    ax.axvline(abs(need), color="0.3", ls=":", label=f"need {need:+.1f} MW (at VOLL)")
    prices = _of(tables["prices"], period)
    prices = prices[prices.market == "balancing"].price_eur_per_mwh.dropna()
    values = pd.concat([up.value, down.value])
    pad = 0.08 * (values.max() - values.min() or 1.0)
    low, high = values.min() - pad, values.max() + pad
    ax.set_ylim(low, high)
    for label, price in _price_lines(prices):
        ax.axhline(price, color="tab:red", ls="--", label=label, gid=PRICE_GID)
        if not low <= price <= high:  # a scarcity price (VOLL): off the offers' scale
            ax.annotate(
                f"{label} (off scale)",
                (0.01, 0.98 if price > high else 0.02),
                xycoords="axes fraction",
                va="top" if price > high else "bottom",
                color="tab:red",
                fontsize=8,
            )
    ax.set_xlabel("cumulative offered MW (demand starts at the need for more injection)")
    ax.set_ylabel("value of injection, EUR/MWh")
    if not _of(tables["balancing_lp"], period).ok.all():
        ax.set_title(f"{ax.get_title()} (the clearing failed)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _price_lines(prices: pd.Series) -> list[tuple[str, float]]:
    if prices.empty:
        return []
    low, high = float(prices.min()), float(prices.max())
    if high - low <= PRICE_TOLERANCE:
        return [(f"clearing price {low:.2f} EUR/MWh", low)]
    return [(f"lowest nodal price {low:.2f}", low), (f"highest nodal price {high:.2f}", high)]


def _of(table: pd.DataFrame, period: int) -> pd.DataFrame:
    return table[table.period == period]
