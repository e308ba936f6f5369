"""The results tables' schema: every table's columns, dtypes, meanings and units.

One definition that the stages producing a table (settlement, the recorder) and the README's
results section (``python -m market_sim.tables`` prints it) all take their columns from.
"""

from __future__ import annotations

#: table -> column -> (dtype, meaning and unit). The README's results section mirrors this.
TABLES: dict[str, dict[str, tuple[str, str]]] = {
    "messages": {
        "period": ("int64", "market period, 0-based"),
        "time_s": ("float64", "simulated send time, s since the run's start"),
        "arrival_s": ("float64", "simulated arrival time, s"),
        "sender": ("string", "agent name (tso, a DSO or an aggregator name)"),
        "receiver": ("string", "agent name; equal to sender for a step inside one agent"),
        "sender_role": ("string", "tso, dso or aggregator"),
        "receiver_role": ("string", "tso, dso or aggregator"),
        "kind": ("string", "message kind (bids, operational_data, dispatch, ...)"),
        "step": ("string", "the paper's step label (Figs. 1-3)"),
        "items": ("int64", "rows of the table carried"),
        "bytes": ("int64", "payload size serialised as an Arrow IPC stream, bytes"),
        "late": ("bool", "arrived after its gate closed, so rejected"),
    },
    "bids": {
        "period": ("int64", "market period"),
        "bid_id": ("int64", "stable id of a device and direction"),
        "prosumer": ("int64", "prosumer agent id"),
        "aggregator": ("string", "aggregator name (the DSO's, where the DSO is the aggregator)"),
        "dso": ("string", "DSO name"),
        "element": ("string", "pandapower table of the device: load, sgen, storage"),
        "element_index": ("int64", "index in that pandapower table"),
        "bus": ("int64", "bus of the device in the DSO network"),
        "direction": ("string", "up = more injection, down = less injection"),
        "mw": ("float64", "offered quantity, MW (>= 0)"),
        "price_eur_per_mwh": ("float64", "asked price, EUR/MWh paid by the buyer"),
    },
    "validation": {
        "period": ("int64", "market period"),
        "bid_id": ("int64", "bid"),
        "validator": ("string", "who validated: tso (tso_managed) or the DSO's name"),
        "validated_mw": ("float64", "quantity the validator lets through, MW"),
        "reason": ("string", "ok, cut: <constraint>, or rejected: <why>"),
    },
    "validation_runs": {
        "period": ("int64", "market period"),
        "validator": ("string", "tso (tso_managed) or the DSO's name"),
        "network": ("string", "DSO whose network was checked"),
        "method": ("string", "iterative_pf, linear_opf or ac_opf"),
        "fairness": ("string", "max_volume or equitable"),
        "direction": ("string", "up or down (validated separately)"),
        "offered_mw": ("float64", "volume offered, MW"),
        "validated_mw": ("float64", "volume validated, MW"),
        "jain_index": ("float64", "Jain's fairness index of accepted shares (1 = all equal)"),
        "min_share": ("float64", "smallest accepted share of an offered bid"),
        "converged": ("bool", "a safe validated set was found (else nothing was validated)"),
        "ac_power_flows": ("int64", "AC power flows run by the whole validation (both directions)"),
        "lp_solves": ("int64", "linear programs solved by this direction"),
        "binding": ("string", "binding constraints, '; '-separated (bus or branch, limit)"),
    },
    "clearing_runs": {
        "period": ("int64", "market period"),
        "ok": ("bool", "the TSO's balancing market solved to optimality"),
        "n_variables": ("int64", "variables of the TSO's problem"),
        "n_constraints": ("int64", "constraints of the TSO's problem, distribution rows included"),
        "distribution_constraints": (
            "int64",
            "linearised DSO-network constraints it carried (tso_managed only)",
        ),
        "rounds": ("int64", "clearings the period took (AC checks of the dispatch in between)"),
    },
    "dispatch": {
        "period": ("int64", "market period"),
        "resource": ("string", "der or ter"),
        "id": ("int64", "bid_id for DER, offer id (negative) for TER"),
        "name": ("string", "aggregator for DER, pandapower element for TER (e.g. gen 3)"),
        "dso": ("string", "DSO of a DER, empty for TER"),
        "prosumer": ("int64", "prosumer agent id of a DER, -1 for TER"),
        "buyer": ("string", "who bought the service: tso, or a DSO's name (its own needs)"),
        "bus": ("int64", "transmission bus where it is settled"),
        "direction": ("string", "up or down"),
        "mw": ("float64", "dispatched quantity, MW"),
        "delivered_mw": ("float64", "what the resource really delivered, MW"),
        "bid_price_eur_per_mwh": ("float64", "asked price, EUR/MWh"),
        "price_eur_per_mwh": (
            "float64",
            "pay-as-clear: price of injection where it is settled (its bus; a tso_managed DER: "
            "the DLMP at its distribution bus); pay-as-bid or a DSO's purchase: its ask, EUR/MWh",
        ),
        "payment_eur": (
            "float64",
            "paid by the TSO for the service (pricing rule), EUR; <0: the provider pays",
        ),
        "imbalance_eur": ("float64", "charge for undelivered energy, paid by the provider, EUR"),
    },
    "flexibility_areas": {
        "period": ("int64", "market period"),
        "dso": ("string", "DSO whose interface it is"),
        "vertex": ("int64", "vertex number, counter-clockwise"),
        "p_mw": ("float64", "active power into the transmission network at the vertex, MW"),
        "q_mvar": ("float64", "reactive power into the transmission network, Mvar"),
        "verified": ("bool", "every vertex passed its AC power flow within the DSO's limits"),
    },
    "priority": {
        "period": ("int64", "market period"),
        "dso": ("string", "DSO whose needs competed with the TSO's"),
        "rule": ("string", "tso_first, dso_first, criticality, economic or local_first"),
        "bid_id": ("int64", "a DER the DSO asked for or either side used"),
        "dso_requested_mw": ("float64", "what the DSO's local market wanted of it, MW"),
        "dso_mw": ("float64", "what the DSO got, MW"),
        "tso_mw": ("float64", "what the TSO got, MW"),
    },
    "settlement": {
        "period": ("int64", "market period"),
        "party": ("string", "tso, a DSO, an aggregator, a TER (gen 3) or a prosumer (prosumer 17)"),
        "role": ("string", "tso, dso, aggregator, ter or prosumer"),
        "item": ("string", "balancing_energy, aggregator_fee or imbalance"),
        "amount_eur": ("float64", "net amount for the period, EUR (>0: the party receives)"),
    },
    "devices": {
        "period": ("int64", "market period (state at its end)"),
        "dso": ("string", "DSO name"),
        "element": ("string", "storage (a battery) or load (a flexible load)"),
        "element_index": ("int64", "index in that pandapower table"),
        "energy_mwh": (
            "float64",
            "battery state of charge, or a load's shifted energy still to be paid back by its "
            "baseline within load_shift_hours (consumption deferred > 0, advanced < 0), MWh",
        ),
        "min_mwh": ("float64", "lower bound of energy_mwh, MWh"),
        "max_mwh": ("float64", "upper bound of energy_mwh, MWh"),
        "target_mwh": (
            "float64",
            "state of charge a battery's baseline returns to within storage_recovery_hours "
            "(0 for a load: what it owes returns to 0), MWh",
        ),
        "overdue_mwh": (
            "float64",
            "energy owed past its deadline because a power limit (or a load's zero "
            "consumption) held the repayment back; repaid first, MWh",
        ),
    },
    "injections": {
        "period": ("int64", "market period"),
        "dso": ("string", "DSO name"),
        "element": ("string", "load, sgen, storage or trafo"),
        "element_index": ("int64", "index in that pandapower table"),
        "p_mw": ("float64", "delivered active power, MW, pandapower's sign for the table"),
        "q_mvar": ("float64", "delivered reactive power, Mvar"),
        "tap_pos": ("float64", "transformer tap position (trafo rows), else NaN"),
    },
    "grid": {
        "period": ("int64", "market period"),
        "dso": ("string", "DSO name"),
        "converged": ("bool", "the delivery AC power flow converged"),
        "vm_min_pu": ("float64", "lowest MV/LV bus voltage, pu"),
        "vm_max_pu": ("float64", "highest MV/LV bus voltage, pu"),
        "max_line_loading_percent": ("float64", "highest line loading, %"),
        "max_trafo_loading_percent": ("float64", "highest transformer loading, %"),
        "n_voltage_violations": ("int64", "buses outside the physical voltage band (limits)"),
        "n_line_violations": ("int64", "lines above the physical loading limit"),
        "n_trafo_violations": ("int64", "transformers above the physical loading limit"),
        "interface_p_mw": ("float64", "net injection into the transmission network, MW"),
        "interface_q_mvar": ("float64", "net reactive injection into transmission, Mvar"),
    },
    "aging": {
        "period": ("int64", "market period"),
        "dso": ("string", "DSO name"),
        "trafo": ("int64", "pandapower index of the transformer"),
        "load_factor": (
            "float64",
            "K: delivered loading / rating (the delivery power flow's loading_percent / 100); "
            "NaN where unknown (power flow not converged, out of service): then every column "
            "is NaN and the thermal state is held",
        ),
        "top_oil_c": ("float64", "top-oil temperature at the period's end, degC"),
        "hot_spot_c": ("float64", "winding hot-spot temperature at the period's end, degC"),
        "aging_rate": (
            "float64",
            "relative aging rate V over the period (loss_of_life_h / period hours): 1 at "
            "98 degC (normal paper) or 110 degC (thermally upgraded paper, aging.upgraded_paper)",
        ),
        "loss_of_life_h": (
            "float64",
            "insulation life used in the period, h at the normal aging rate (integral of V dt, "
            "IEC 60076-7 thermal model, market_sim/grid/aging.py)",
        ),
    },
    "prices": {
        "period": ("int64", "market period"),
        "market": ("string", "schedule (energy DC-OPF) or balancing"),
        "bus": ("int64", "transmission bus"),
        "price_eur_per_mwh": ("float64", "locational marginal price, EUR/MWh"),
    },
    "kpis": {
        "period": ("int64", "market period"),
        "name": ("string", "KPI name (the KPIs section below)"),
        "value": ("float64", "value"),
        "unit": ("string", "unit of value"),
    },
    "events": {
        "period": ("int64", "market period"),
        "time_s": ("float64", "simulated time, s"),
        "kind": (
            "string",
            "late_message, schedule_failed, schedule_below_minimum, validation_failed, "
            "clearing_failed, "
            "priority_failed, local_market_failed, interface_shortfall, "
            "power_flow_not_converged (delivery or baseline), power_flow_fallback, "
            "invariant_violated (only when checking, e.g. --check)",
        ),
        "message": ("string", "what happened"),
    },
    "timings": {
        "period": ("int64", "market period"),
        "role": (
            "string",
            "who computed: tso, a DSO, prosumers, grid, market; run: the whole period",
        ),
        "stage": (
            "string",
            "forecast, bids, validation, schedule, clearing, baseline, delivery, ...; of role "
            "run: period (its whole wall time), power_flows and solves (the part of it in AC "
            "power flows and in LP/QP/MILP solves, over every role)",
        ),
        "seconds": ("float64", "wall time, s (the only table that differs between reruns)"),
    },
    # What the period's balancing LP was built from (the clearing the dispatch came from):
    # with these tables alone the LP can be solved again (tests/test_rebuild_clearing.py).
    "balancing_lp": {
        "period": ("int64", "market period"),
        "ok": ("bool", "the balancing LP solved to optimality"),
        "cost_eur_per_h": (
            "float64",
            "objective: sum(offer price x accepted MW) + VOLL x unserved MW, EUR/h "
            "(tie-break left out); NaN if not ok",
        ),
        "unserved_up_mw": ("float64", "need for more injection no offer covered, MW"),
        "unserved_down_mw": ("float64", "need for less injection no offer covered, MW"),
        "voll_eur_per_mwh": ("float64", "value of lost load on unserved MW, EUR/MWh"),
        "tie_break_eur_per_mwh": (
            "float64",
            "cost added to every accepted MW (against wash trades of up/down pairs), EUR/MWh",
        ),
        "n_offers": ("int64", "offers in the book (rows of balancing_offers)"),
        "n_rows": ("int64", "rows A q <= b on the offers (rows of balancing_rows)"),
    },
    "balancing_offers": {
        "period": ("int64", "market period"),
        "offer_id": ("int64", "offer id: < 0 a TER step, else a DER bid_id or aggregated offer"),
        "resource": ("string", "ter (a generator) or der (a bid, or a DSO's aggregated offer)"),
        "element": ("string", "pandapower element of a TER (e.g. gen 3), empty for DER"),
        "bus": ("int64", "transmission bus the offer is located at"),
        "direction": ("string", "up = more injection, down = less injection"),
        "mw": ("float64", "offered quantity: upper bound of its accepted MW, MW"),
        "price_eur_per_mwh": ("float64", "asked price (objective coefficient), EUR/MWh"),
    },
    "balancing_buses": {
        "period": ("int64", "market period"),
        "bus": ("int64", "transmission bus"),
        "load_mw": (
            "float64",
            "load the schedule was solved for, MW consumed (DSO areas' forecast net "
            "injection taken off at their interface bus)",
        ),
        "need_mw": ("float64", "balancing need: right-hand side of the nodal balance, MW"),
    },
    "balancing_branches": {
        "period": ("int64", "market period"),
        "branch": ("string", "pandapower element (line 3, trafo 1, ...)"),
        "from_bus": ("int64", "transmission bus the flow leaves"),
        "to_bus": ("int64", "transmission bus the flow enters"),
        "b_pu": ("float64", "DC flow per angle difference: flow = b_pu x (theta_f - theta_t) MW"),
        "base_flow_mw": ("float64", "the schedule's flow from from_bus to to_bus, MW"),
        "limit_mw": (
            "float64",
            "|base + deviation flow| <= limit: max(rating, |base flow|), MW; inf: unrated",
        ),
    },
    "balancing_rows": {
        "period": ("int64", "market period"),
        "row": ("int64", "row number of A q <= b in the period, 0-based"),
        "kind": (
            "string",
            "reserve_up, reserve_down, or a linearised distribution limit (tso_managed): "
            "vmax, vmin, line, trafo",
        ),
        "dso": ("string", "DSO whose network the row limits, empty for reserve"),
        "element": ("string", "pandapower table it limits (bus, line, trafo), empty for reserve"),
        "element_index": ("int64", "index in that pandapower table, -1 for reserve"),
        "rhs": ("float64", "b of the row, MW (the offers' coefficients are per MW)"),
    },
    "balancing_coefficients": {
        "period": ("int64", "market period"),
        "row": ("int64", "row of balancing_rows"),
        "offer_id": ("int64", "offer of balancing_offers"),
        "coefficient": ("float64", "A of the row and offer: per accepted MW, dimensionless"),
    },
    "schedule_dispatch": {
        "period": ("int64", "market period"),
        "element": ("string", "pandapower element of the generator (gen 3, ext_grid 0, ...)"),
        "bus": ("int64", "transmission bus"),
        "p_mw": ("float64", "scheduled injection, MW (NaN if the schedule failed)"),
    },
    "baseline": {
        "period": ("int64", "market period"),
        "dso": ("string", "DSO name"),
        "element": ("string", "load, sgen, storage or trafo"),
        "element_index": ("int64", "index in that pandapower table"),
        "p_mw": ("float64", "forecast (baseline) active power, MW, pandapower's sign"),
        "q_mvar": ("float64", "forecast reactive power, Mvar"),
        "tap_pos": ("float64", "transformer tap position (trafo rows), else NaN"),
    },
    "operational_data": {
        "period": ("int64", "market period"),
        "dso": ("string", "DSO that reported (step 1b of tso_managed)"),
        "element": ("string", "load, sgen, storage, trafo, bus, line or ext_grid"),
        "element_index": ("int64", "index in that pandapower table"),
        "p_mw": (
            "float64",
            "load/sgen/storage/ext_grid: set-point or injection, pandapower's sign; "
            "line/trafo: flow into the from/hv end; MW",
        ),
        "q_mvar": ("float64", "the same for reactive power, Mvar"),
        "tap_pos": ("float32", "transformer tap position (trafo rows), else NaN"),
        "vm_pu": ("float32", "bus voltage magnitude (bus rows), pu"),
        "va_degree": ("float32", "bus voltage angle (bus rows), degree"),
        "loading_percent": ("float32", "line or transformer loading, %"),
    },
    "counterfactual": {
        "period": ("int64", "market period"),
        "dso": ("string", "a DSO whose conflict-of-interest parameters are not neutral"),
        "validated_up_mw": ("float64", "what it validated up, with its validation limits, MW"),
        "validated_down_mw": ("float64", "what it validated down, MW"),
        "neutral_up_mw": (
            "float64",
            "what a neutral validator (physical limits, no wear) validates up of the same bids "
            "at the same forecast point, same method (not dispatched), MW",
        ),
        "neutral_down_mw": ("float64", "the same down, MW"),
        "withheld_up_mw": ("float64", "neutral_up_mw - validated_up_mw, MW (signed)"),
        "withheld_down_mw": ("float64", "neutral_down_mw - validated_down_mw, MW (signed)"),
        "withheld_mwh": ("float64", "(withheld_up_mw + withheld_down_mw) x period length, MWh"),
        "neutral_converged": ("bool", "the neutral validation found a safe set in both directions"),
        "tso_cost_eur_per_h": (
            "float64",
            "what-if balancing objective with every DSO's validated bids (resource cost at asks "
            "+ unserved at VOLL, no payments), EUR/h; NaN if that clearing failed",
        ),
        "neutral_tso_cost_eur_per_h": (
            "float64",
            "the same with this DSO's neutral validated set instead of its own, EUR/h",
        ),
        "withheld_tso_cost_eur": (
            "float64",
            "(tso_cost_eur_per_h - neutral_tso_cost_eur_per_h) x period length: the TSO cost "
            "the withheld volume caused, EUR",
        ),
        "aging_avoided_h": (
            "float64",
            "transformer loss of life over the period (IEC 60076-7, from the delivered thermal "
            "state) with the neutral set fully activated minus with the own set, each in its "
            "worse direction, summed over transformers, h; NaN if a power flow did not converge",
        ),
    },
}

#: KPI name -> (unit, meaning): the rows of the ``kpis`` table, one per period and name, in this
#: order. Efficiency (resource cost) and transfers (payments) are separate rows.
KPIS: dict[str, tuple[str, str]] = {
    "need_mw": ("MW", "the TSO's balancing need for injection, summed over buses"),
    **{
        f"der_{stage}_{direction}_mwh": ("MWh", f"DER energy {meaning}, {direction} only")
        for stage, meaning in (
            ("offered", "offered in bids"),
            ("validated", "validated (let through by the validator)"),
            ("dispatched", "dispatched, to the TSO and to DSOs"),
            ("delivered", "really delivered"),
        )
        for direction in ("up", "down")
    },
    "ter_activated_up_mwh": ("MWh", "transmission resources' balancing energy activated up"),
    "ter_activated_down_mwh": ("MWh", "transmission resources' balancing energy activated down"),
    "dso_purchased_mwh": ("MWh", "DER energy the DSOs bought for their own needs"),
    "unserved_mwh": ("MWh", "need no offer covered (up and down), NaN if the clearing failed"),
    "schedule_below_min_mw": (
        "MW",
        "the schedule's plants below their minimum outputs, which the network cannot absorb "
        "(LP relaxation of shutting units down, priced at VOLL; market_sim/markets/schedule.py)",
    ),
    "resource_cost_eur": (
        "EUR",
        "efficiency: schedule_cost + activation_cost + undelivered_cover_cost + unserved_cost",
    ),
    "schedule_cost_eur": ("EUR", "generation cost of the TSO's energy schedule for the period"),
    "activation_cost_eur": (
        "EUR",
        "every activated resource's ask x the energy it delivered (TER at their offer price, "
        "negative for a generator moved down, which saves fuel; DER at their bid price)",
    ),
    "undelivered_cover_cost_eur": (
        "EUR",
        "DER energy dispatched and not delivered x |balancing price at its bus| (VOLL where "
        "there is none): the cost of covering it",
    ),
    "unserved_cost_eur": ("EUR", "unserved energy x VOLL"),
    **{
        f"payments_{role}_eur": (
            "EUR",
            f"transfer: net amount received by the {role} parties (settlement table; the five "
            "roles sum to zero)",
        )
        for role in ("tso", "dso", "aggregator", "prosumer", "ter")
    },
    **{
        f"surplus_{role}_eur": (
            "EUR",
            f"payments to the {role} parties less the cost at their asks of what their resources "
            "delivered",
        )
        for role in ("tso", "dso", "aggregator", "prosumer", "ter")
    },
    "imbalance_charges_eur": ("EUR", "transfer: charges paid by DER for undelivered energy"),
    "reserve_shortfall_mw": ("MW", "configured reserve the offers could not hold back"),
    "priority_tso_extra_cost_eur": (
        "EUR",
        "what the DSOs' taking DER first cost the TSO, against its clearing with every "
        "validated bid",
    ),
    "priority_dso_shortfall_mw": ("MW", "what the DSOs asked of shared DER and did not get"),
    "voltage_violations": ("buses", "buses outside limits after delivery (converged flows)"),
    "line_violations": ("lines", "lines above their loading limit after delivery"),
    "trafo_violations": ("trafos", "transformers above their loading limit after delivery"),
    "baseline_violations": (
        "elements",
        "elements outside limits at the operating point with no DER activated (networks whose "
        "baseline and delivery power flows both converged)",
    ),
    "der_caused_violations": (
        "elements",
        "elements outside limits after delivery and not at the baseline (same networks)",
    ),
    "nonconverged_power_flows": (
        "count",
        "delivery power flows that did not converge: their networks are left out of the "
        "violation counts, which are unknown there, not zero",
    ),
    "baseline_nonconverged_power_flows": ("count", "baseline power flows that did not converge"),
    "trafo_hot_spot_max_c": (
        "degC",
        "hottest transformer winding hot spot at the period's end, over the DSOs' networks "
        "(aging table; NaN if no transformer's loading is known)",
    ),
    "trafo_loss_of_life_h": (
        "h",
        "transformer insulation life used in the period, summed over transformers (aging "
        "table; transformers of non-converged power flows left out)",
    ),
    "baseline_trafo_loss_of_life_h": (
        "h",
        "the same at the operating point with no DER activated (a thermal state of its own, "
        "carried over the baseline power flows): trafo_loss_of_life_h less this is what the "
        "DER activation caused",
    ),
    "line_hours_above_80pct": (
        "line-hours",
        "lines loaded above the DSO's first aging.line_thresholds_percent (default 80 %) "
        "after delivery x period hours (converged power flows)",
    ),
    "line_hours_above_100pct": (
        "line-hours",
        "the same above the second threshold (default 100 %)",
    ),
    "interface_deviation_mw": (
        "MW",
        "sum over DSOs of abs(interface P after delivery - at the baseline - DER dispatched in "
        "the area): undelivered DER and changed losses as the transmission network sees them",
    ),
    "withheld_up_mw": (
        "MW",
        "up volume the conflicted DSOs withheld: a neutral validator's minus their own, summed "
        "(counterfactual table; 0 without conflicted DSOs)",
    ),
    "withheld_down_mw": ("MW", "the same down"),
    "withheld_mwh": ("MWh", "withheld up and down volume x period length"),
    "withheld_tso_cost_eur": (
        "EUR",
        "the TSO's balancing cost the withheld volume caused (what-if clearings, no payments); "
        "NaN if a what-if clearing failed",
    ),
    "aging_avoided_h": (
        "h",
        "transformer loss of life the conflicted DSOs avoided: with their neutral sets fully "
        "activated minus with their own (counterfactual table), summed",
    ),
    "messages": ("count", "messages between agents (steps inside one agent excluded)"),
    "message_bytes": ("bytes", "their payload size"),
    "late_messages": ("count", "of them, arrived after their gate closed (rejected)"),
}


#: The KPIs of the conflicted DSOs' counterfactual (market_sim/counterfactual.py), each the sum
#: over DSOs of the ``counterfactual`` column of the same name.
COUNTERFACTUAL_KPIS = (
    "withheld_up_mw",
    "withheld_down_mw",
    "withheld_mwh",
    "withheld_tso_cost_eur",
    "aging_avoided_h",
)

#: Measures of a run in ``market-sim compare`` (``measures.csv``, one row per model, and the
#: figures of the measured Table I), beyond every KPI of :data:`KPIS` (summed over periods;
#: MW KPIs averaged over periods) and ``messages: <link>`` / ``bytes: <link>`` per link.
COMPARISON_MEASURES: dict[str, tuple[str, str]] = {
    "violations_after_delivery": ("element-periods", "voltage + line + trafo violations"),
    "tso_compute_s": ("s", "wall time the TSO computed (timings, role tso)"),
    "dso_compute_s_per_dso": ("s", "wall time a DSO computed, mean over the DSOs"),
    "largest_operator_compute_s": ("s", "the largest wall time of one operator: TSO or a DSO"),
    "tso_constraints_mean": ("count", "constraints of the TSO's balancing problem, per period"),
    "message_steps": ("count", "distinct step labels in the message log (the paper's steps)"),
    "tso_dso_bytes": ("bytes", "payload between the TSO and the DSOs, both directions"),
    "tso_link_bytes": ("bytes", "payload to and from the TSO (DSOs and aggregators)"),
    "operational_data_bytes": ("bytes", "payload of operational data, DSO -> TSO (step 1b)"),
}

#: Columns of ``comparison.csv`` (the measured Table I), one row per claim; between ``rule``
#: and ``verdict`` one column per model run, holding the claim's figures of that model.
COMPARISON_COLUMNS: dict[str, str] = {
    "id": "claim id: T (TSO-managed), H (hybrid), D (DSO-managed), number, letter per measure",
    "model": "the coordination model the claim is about",
    "side": "advantage, or disadvantage (the paper's 'disadvantages and challenges')",
    "claim": "the paper's words (Table I)",
    "kpi": "the measure, its unit, and what it stands for",
    "rule": "the rule the verdict is computed by",
    "verdict": "supported, contradicted, or not measurable on this scenario",
    "reason": "the figures the rule compared, or why the claim is not measurable",
}

#: The columns of a sweep's table, ``sweep.parquet`` and ``sweep.csv`` (:mod:`market_sim.sweep`),
#: one row per run and KPI. Between ``run_id`` and ``status`` come the swept fields, one column
#: each, named by their dotted path (``model``, ``seed``, ``dso_market.priority``, ...).
SWEEP_COLUMNS: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run: a hash of its resolved config; its folder is runs/<run_id>/"),
    "status": ("string", "complete, or failed (then one row: kpi and unit empty, value NaN)"),
    "error": (
        "string",
        "a failed run's exception, type and message (traceback: runs/<run_id>/error.txt)",
    ),
    "kpi": ("string", "a KPI name of the kpis table"),
    "value": (
        "float64",
        "the KPI over the whole run: its sum over the periods (NaN periods skipped, as in the "
        "run summary); a KPI in MW times the period length, in MWh",
    ),
    "unit": ("string", "the unit of value: the KPI's, MWh for a KPI in MW"),
}


def tables_markdown() -> str:
    """The README's "Results tables" section, generated from :data:`TABLES`.

    ``python -m market_sim.results`` prints it; a test keeps the README in step with it.
    """
    lines = ["## Results tables", ""]
    for table, columns in TABLES.items():
        lines += [f"### `{table}`", "", "| column | type | meaning and unit |", "|---|---|---|"]
        lines += [f"| `{c}` | {dtype} | {meaning} |" for c, (dtype, meaning) in columns.items()]
        lines.append("")
    lines += ["### KPIs (`kpis` rows)", "", "| name | unit | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {unit} | {meaning} |" for name, (unit, meaning) in KPIS.items()]
    lines.append("")
    return "\n".join(lines) + "\n"


def column_dtypes(table: str, without: tuple[str, ...] = ("period",)) -> dict[str, str]:
    """Column -> dtype of ``table``, less ``without`` (a stage builds a period's rows and the
    recorder adds the period)."""
    return {c: t for c, (t, _) in TABLES[table].items() if c not in without}


if __name__ == "__main__":
    print(tables_markdown(), end="")
