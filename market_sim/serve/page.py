"""The interactive page (mesa SolaraViz): step a scenario period by period and watch it.

``market-sim serve CONFIG`` runs this module as a Solara app. The page shows the distribution
networks coloured by voltage and loading after the period's delivery, the period's message flow,
and KPI charts; the sidebar steps one period and switches the coordination model (the model is
rebuilt from the same scenario, networks loaded once per server process).

Why a module-level ``page``: Solara serves a module's ``page`` (or ``Page``) component; the
scenario comes from ``$MARKET_SIM_SERVE_CONFIG``, which the CLI checked before it started the
server, so a bad config never reaches the browser.
"""

from __future__ import annotations

import os

import solara
from mesa.visualization import SolaraViz
from mesa.visualization.utils import update_counter

from market_sim.registry import COORDINATION_MODELS
from market_sim.serve.figures import kpi_figure, message_rows, network_figures
from market_sim.serve.served import ServedMarket, load_served_scenario

CONFIG_ENV = "MARKET_SIM_SERVE_CONFIG"


@solara.component
def PeriodShown(model: ServedMarket) -> None:
    """Which period the page shows (the last one run) and under which model."""
    update_counter.get()
    solara.Markdown(f"## {model.heading()}")


@solara.component
def NetworkView(model: ServedMarket) -> None:
    update_counter.get()
    with solara.Row():
        for figure in network_figures(model):
            solara.FigureMatplotlib(figure, dependencies=[model.period, model.name])


@solara.component
def MessageFlow(model: ServedMarket) -> None:
    """The last period's messages, in the order they were sent, with the paper's step."""
    update_counter.get()
    rows = message_rows(model)
    solara.Markdown(f"### Messages of the period ({len(rows)})")
    solara.DataFrame(rows, items_per_page=12)


@solara.component
def KpiCharts(model: ServedMarket) -> None:
    update_counter.get()
    solara.FigureMatplotlib(kpi_figure(model), dependencies=[model.period, model.name])


def make_page(config_path: str) -> solara.Element:
    """The SolaraViz page of the scenario at ``config_path``."""
    scenario = load_served_scenario(config_path)
    first = scenario.config.models[0]
    params = {
        "scenario": scenario,
        "coordination": {
            "type": "Select",
            "value": first,
            "values": list(COORDINATION_MODELS.names),
            "label": "Coordination model",
        },
    }
    return SolaraViz(
        ServedMarket(scenario, first),
        components=[PeriodShown, NetworkView, MessageFlow, KpiCharts],
        model_params=params,
        name=f"market_sim: {scenario.config.name}",
        play_interval=500,
    )


page = make_page(os.environ[CONFIG_ENV]) if CONFIG_ENV in os.environ else None
