"""Key performance indicators of a period, and the side-by-side summary of runs.

These measure the claims of the paper's Table I: DER volume offered, validated and dispatched,
system cost, violations after delivery, and the data exchanged per link.
"""

from __future__ import annotations

import pandas as pd

from market_sim.types import PowerFlowResult


def period_kpis(
    *,
    hours: float,
    need_mw: float,
    schedule_cost_eur_per_h: float,
    schedule_below_min_mw: float,
    bids: pd.DataFrame,
    validation: pd.DataFrame,
    dispatch: pd.DataFrame,
    unserved_mw: float,
    voll_eur_per_mwh: float,
    grid: dict[str, PowerFlowResult],
    messages: pd.DataFrame,
    interface_shortfall_mw: float = 0.0,
    reserve_shortfall_mw: float = 0.0,
    priority_effects: dict[str, float] | None = None,
) -> list[tuple[str, float, str]]:
    """(name, value, unit) of every KPI of one period."""
    der = dispatch[dispatch.resource == "der"]
    ter = dispatch[dispatch.resource == "ter"]
    tso_bought = dispatch[dispatch.buyer == "tso"]
    dso_bought = der[der.buyer != "tso"]
    balancing = float(tso_bought.payment_eur.sum())
    imbalance = float(dispatch.imbalance_eur.sum())
    dso_net = float(dso_bought.payment_eur.sum())
    unserved_cost = unserved_mw * voll_eur_per_mwh * hours
    external = messages[messages.sender != messages.receiver]
    return [
        ("need_mw", need_mw, "MW"),
        ("der_offered_mw", float(bids.mw.sum()), "MW"),
        ("der_validated_mw", float(validation.validated_mw.sum()), "MW"),
        ("der_dispatched_mw", float(der.mw.sum()), "MW"),
        ("der_delivered_mw", float(der.delivered_mw.sum()), "MW"),
        ("ter_dispatched_mw", float(ter.mw.sum()), "MW"),
        ("unserved_mw", unserved_mw, "MW"),
        ("schedule_cost_eur", schedule_cost_eur_per_h * hours, "EUR"),
        ("schedule_below_min_mw", schedule_below_min_mw, "MW"),
        ("balancing_payments_eur", balancing, "EUR"),
        ("der_payments_eur", float(der.payment_eur.sum()), "EUR"),
        ("dso_purchased_mw", float(dso_bought.mw.sum()), "MW"),
        ("dso_payments_eur", float(dso_bought.payment_eur.sum()), "EUR"),
        ("interface_shortfall_mw", interface_shortfall_mw, "MW"),
        ("reserve_shortfall_mw", reserve_shortfall_mw, "MW"),
        (
            "priority_tso_extra_cost_eur",
            (priority_effects or {}).get("tso_extra_cost_eur_per_h", 0.0) * hours,
            "EUR",
        ),
        ("priority_dso_shortfall_mw", (priority_effects or {}).get("dso_shortfall_mw", 0.0), "MW"),
        ("imbalance_charges_eur", imbalance, "EUR"),
        ("unserved_cost_eur", unserved_cost, "EUR"),
        (
            "system_cost_eur",
            schedule_cost_eur_per_h * hours + balancing + dso_net - imbalance + unserved_cost,
            "EUR",
        ),
        ("voltage_violations", float(sum(g.n_voltage_violations for g in grid.values())), "buses"),
        ("line_violations", float(sum(g.n_line_violations for g in grid.values())), "lines"),
        ("trafo_violations", float(sum(g.n_trafo_violations for g in grid.values())), "trafos"),
        ("nonconverged_power_flows", float(sum(not g.converged for g in grid.values())), "count"),
        ("messages", float(len(external)), "count"),
        ("message_bytes", float(external.bytes.sum()), "bytes"),
        ("late_messages", float(external.late.sum()), "count"),
    ]


def summary(tables: dict[str, pd.DataFrame], hours: float) -> dict[str, float]:
    """One run in a few numbers: totals over all periods, and the TSO's computing burden."""
    kpis, timings = tables["kpis"], tables["timings"]
    total = kpis.pivot_table(index="period", columns="name", values="value").sum()
    tso_time = timings[timings.role == "tso"].seconds.sum()
    dso_roles = set(tables["grid"].dso)
    dso_time = timings[timings.role.isin(dso_roles)].seconds.sum()
    violations = total[["voltage_violations", "line_violations", "trafo_violations"]].sum()
    per_period = (
        kpis[kpis.name.isin(["voltage_violations", "line_violations", "trafo_violations"])]
        .groupby("period")
        .value.sum()
    )
    return {
        "system cost (EUR)": total["system_cost_eur"],
        "balancing payments (EUR)": total["balancing_payments_eur"],
        "unserved energy (MWh)": total["unserved_mw"] * hours,
        "DER offered (MWh)": total["der_offered_mw"] * hours,
        "DER validated (MWh)": total["der_validated_mw"] * hours,
        "DER dispatched (MWh)": total["der_dispatched_mw"] * hours,
        "DER delivered (MWh)": total["der_delivered_mw"] * hours,
        "violations after delivery": violations,
        "periods with violations": float((per_period > 0).sum()),
        # a delivery power flow that did not converge says nothing about violations: shown
        # beside them, so that a count of 0 is never read as a clean period
        "non-converged power flows": total["nonconverged_power_flows"],
        "messages": total["messages"],
        "bytes": total["message_bytes"],
        "late messages": total["late_messages"],
        "TSO problem constraints (mean)": float(tables["clearing_runs"].n_constraints.mean()),
        "TSO compute (s)": float(tso_time),
        "DSO compute (s)": float(dso_time),
    }


def links(messages: pd.DataFrame) -> pd.DataFrame:
    """Messages and bytes per link (sender role -> receiver role), internal steps excluded."""
    external = messages[messages.sender != messages.receiver]
    link = external.sender_role + " -> " + external.receiver_role
    return (
        external.assign(link=link)
        .groupby("link")
        .agg(messages=("bytes", "size"), bytes=("bytes", "sum"))
        .reset_index()
    )
