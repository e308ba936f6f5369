"""Generator marginal costs by fuel, for transmission grids without cost data (SimBench EHV).

SimBench types its power plants (``gen.type``, ``ext_grid.type``: lignite, hard coal, gas, oil,
waste, nuclear, imp0/imp1 for exchanges with neighbouring grids) but gives no costs. A market
needs them, so every unit gets a linear cost ``c1`` (EUR/MWh) = short-run marginal cost of its
fuel: fuel price / efficiency + emission factor * CO2 price / efficiency + variable O&M.

Inputs are typical values for Germany in 2016, the year of the SimBench profiles:

* CO2: EU ETS allowances averaged about 5.4 EUR/t in 2016 (EEX EUA spot).
* Fuel prices: natural gas about 14.5 EUR/MWh_th (NCG/TTF day-ahead, 2016 average); hard coal
  about 7.5 EUR/MWh_th delivered (API2 around 60 USD/t, 8.14 MWh/t); lignite 1.5 EUR/MWh_th
  (mine-mouth, no market price); nuclear fuel about 3 EUR/MWh_th; light fuel oil about
  30 EUR/MWh_th (Brent around 44 USD/bbl).
* Efficiencies, emission factors and variable O&M as tabulated in the German
  power-plant-fleet literature: A. Schröder et al., "Current and Prospective Costs of
  Electricity Generation until 2050", DIW Data Documentation 68 (2013); J. Egerer et al.,
  "Electricity Sector Data for Policy-Relevant Modeling", DIW Data Documentation 72 (2014);
  the Open Power System Data "conventional power plants" package (fleet efficiencies).
* The results give the usual German merit order: nuclear ~10, lignite ~13, hard coal ~25,
  gas ~33 (a CCGT/OCGT mix), oil ~90 EUR/MWh; see e.g. the merit-order curves in
  F. Sensfuß et al., "The merit-order effect", Energy Policy 36 (2008) 3086-3094, and
  Agora Energiewende's annual reviews of the German power system (2016).

Assumptions (not from a source): waste incineration runs on fuel it is paid to take, so only
O&M counts; imports (``imp*``) are offered at a typical neighbouring day-ahead price of
35 EUR/MWh. Within a fuel, units differ by efficiency: a unit's cost is spread by
``+-spread/2`` around the fuel's value, the largest unit cheapest, so that no two units tie
(ties make the dispatch between them arbitrary, and results incomparable between solvers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: CO2 allowance price, EUR/t (EEX EUA, 2016 average).
CO2_EUR_PER_T = 5.4


@dataclass(frozen=True)
class Fuel:
    """Short-run marginal cost inputs of one fuel; ``source`` says where the numbers come from."""

    fuel_eur_per_mwh_th: float
    efficiency: float
    co2_t_per_mwh_th: float
    om_eur_per_mwh: float
    source: str

    @property
    def c1_eur_per_mwh(self) -> float:
        """Marginal cost per MWh of electricity."""
        thermal = self.fuel_eur_per_mwh_th + self.co2_t_per_mwh_th * CO2_EUR_PER_T
        return thermal / self.efficiency + self.om_eur_per_mwh


#: Fuel table, keyed by SimBench's (lower-case) generator type. c1 in the comment.
FUELS: dict[str, Fuel] = {
    "nuclear": Fuel(3.0, 0.33, 0.0, 1.0, "DIW DD68 fuel and O&M; c1 ~ 10.1"),
    "lignite": Fuel(1.5, 0.37, 0.40, 3.0, "DIW DD68/DD72, EUA 2016; c1 ~ 12.9"),
    "hard coal": Fuel(7.5, 0.40, 0.34, 2.0, "API2 2016, DIW DD72, EUA 2016; c1 ~ 25.3"),
    "gas": Fuel(14.5, 0.50, 0.20, 1.5, "NCG 2016, CCGT/OCGT fleet mix, EUA 2016; c1 ~ 32.7"),
    "oil": Fuel(30.0, 0.35, 0.27, 2.0, "light fuel oil 2016, DIW DD72; c1 ~ 91.9"),
    "waste": Fuel(0.0, 0.25, 0.0, 5.0, "assumption: gate fees cover fuel, O&M only; c1 = 5"),
    "import": Fuel(35.0, 1.0, 0.0, 0.0, "assumption: neighbouring day-ahead price; c1 = 35"),
}

#: SimBench type names that map onto a row of FUELS under another name.
ALIASES = {"imp0": "import", "imp1": "import", "hard_coal": "hard coal", "natural gas": "gas"}


def fuel_of(simbench_type: str) -> str:
    """FUELS key of a SimBench generator type; ValueError names the unknown type."""
    key = str(simbench_type).strip().lower()
    key = ALIASES.get(key, key)
    if key not in FUELS:
        allowed = ", ".join(sorted(set(FUELS) | set(ALIASES)))
        raise ValueError(f"no fuel cost for generator type {simbench_type!r}; known: {allowed}")
    return key


def unit_costs(types: pd.Series, p_max_mw: pd.Series, spread: float = 0.2) -> pd.Series:
    """Linear cost c1 (EUR/MWh) of each unit from its type and size.

    Within a fuel, units are ranked by size (then by position, so equal sizes do not tie) and
    spread linearly from ``(1 + spread/2) * c1`` (smallest) to ``(1 - spread/2) * c1``
    (largest), standing in for the efficiency differences within a fleet.
    """
    fuels = pd.Series([fuel_of(t) for t in types], index=types.index)
    cost = pd.Series(0.0, index=types.index)
    for fuel, idx in fuels.groupby(fuels).groups.items():
        size = p_max_mw.loc[idx].to_numpy(dtype=float)
        order = np.lexsort((np.arange(len(size)), size))  # by size, then position
        rank = np.empty(len(size))
        rank[order] = np.linspace(0.0, 1.0, len(size)) if len(size) > 1 else 0.5
        cost.loc[idx] = FUELS[fuel].c1_eur_per_mwh * (1.0 + spread * (0.5 - rank))
    logger.debug("unit costs by fuel: %s", cost.groupby(fuels).agg(["min", "max"]).to_dict())
    return cost


#: Fuel of each unit of the pandapower cases priced by the fuel table (``transmission.costs:
#: fuel_table``), by element name. An assumption (the IEEE cases give no fuels): case39 is the
#: New England system, whose bus-39 unit (``gen 8``, 1,100 MW) stands for the rest of the US
#: and Canadian interconnection, so it is an import. The other units form a German 2016 merit
#: order sized for the quickstart's summer day, whose transmission load (the case's load times
#: the DSOs' load profile over its annual peak) runs from about 860 to 3,000 MW: lignite
#: 687 MW (~13 EUR/MWh) lies below the lowest load, hard coal (1,941 MW, ~23-28) and gas
#: (2,599 MW, ~29-36) set the price, import (35) and oil (92) are peak reserve. So the
#: balancing price is tens of EUR/MWh in every period, as it was in Germany in 2016.
CASE_FUELS: dict[str, dict[str, str]] = {
    "case39": {
        "gen 0": "oil",  # bus 30 (IEEE numbering), 1,040 MW behind a 900 MVA transformer
        "ext_grid 0": "gas",  # bus 31, 646 MW, the slack
        "gen 1": "hard coal",  # bus 32, 725 MW
        "gen 2": "hard coal",  # bus 33, 652 MW
        "gen 3": "gas",  # bus 34, 508 MW
        "gen 4": "lignite",  # bus 35, 687 MW
        "gen 5": "gas",  # bus 36, 580 MW
        "gen 6": "hard coal",  # bus 37, 564 MW
        "gen 7": "gas",  # bus 38, 865 MW
        "gen 8": "import",  # bus 39, 1,100 MW: the neighbouring system
    }
}


def case_fuels(case: str) -> dict[str, str]:
    """Element name -> fuel of a pandapower case's units; ValueError names the priced cases."""
    if case not in CASE_FUELS:
        raise ValueError(
            f"no fuel assignment for case {case!r}; costs: fuel_table is known for "
            f"{', '.join(sorted(CASE_FUELS))}"
        )
    return CASE_FUELS[case]
