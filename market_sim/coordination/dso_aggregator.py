"""C'. DSO-managed model with the DSO as the aggregator of its DER (Section II-C).

"The core coordination process described before will start from a modified step 2, in which
the DSO does not validate DER service bids but create/decide DER service bids and aggregate
them (2a)." So:

(no step 1: no aggregator sends bids)
2a. Each DSO decides the bids of the DER in its network from its own DER models, within its
    network's limits, and aggregates them.
2b, 3. As in the DSO-managed model (aggregated offer; aggregated dispatch or target).
4.  Each DSO dispatches the DER it operates: a message from the DSO to itself as their
    aggregator (the DER-control traffic stays inside the DSO, off every TSO or aggregator link).

Choices where the paper is silent:
- The DSO's DER models are the prosumer population's own (the same devices, energy states and
  prices as in every other model), so the variant changes who decides and the messages, not
  the DER. Deciding bids "in combination with the distribution network constraints" is the
  DSO's validation run on its DER's flexibility: the offers it aggregates are the ones a
  validating DSO would pass, recorded in the ``validation`` table as in ``dso_managed``.
- The DSO does the aggregator's work, so it is named as the DER's aggregator in the bids: it is
  the party that passes the buyers' payments on to its prosumers and keeps the aggregator fee;
  the config's aggregators do nothing and are paid nothing. Settlement stays zero-sum.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

import pandas as pd

from market_sim.agents.aggregator import collect_dispatch
from market_sim.columns import rows_where
from market_sim.coordination.dso_managed import DsoManaged
from market_sim.coordination.period import PeriodContext, Step
from market_sim.messages import Kind

_DECIDES = "each DSO decides its DER's bids within its network's limits and aggregates them"


class DsoIsAggregator(DsoManaged):
    name = "dso_managed+dso_is_aggregator"
    steps = tuple(
        replace(s, does=_DECIDES) if s.label == "2a" else s
        for s in DsoManaged.steps
        if s.label not in ("1", "4")
    ) + (Step("4", "dso", "dso", Kind.DISPATCH, "each DSO dispatches the DER it operates"),)

    def offered(self, bids: pd.DataFrame) -> pd.DataFrame:
        """Every DER's bids are offered by its DSO, as its aggregator."""
        return bids.assign(aggregator=bids.dso)

    def send_bids(self, ctx: PeriodContext, bids: pd.DataFrame) -> None:
        """No step 1: the DSO decides its DER's bids itself."""

    def bids_of(self, ctx: PeriodContext, name: str, bids: pd.DataFrame) -> pd.DataFrame:
        """The bids of the DER in DSO ``name``'s network, from its models of them."""
        return rows_where(bids, "dso", name)

    def dispatch_individual(
        self, ctx: PeriodContext, individual: dict[str, pd.DataFrame], bids: pd.DataFrame
    ) -> Generator:
        """Step 4: each DSO commands the DER it operates by the dispatch gate; a late command
        is lost. Returns the dispatch that reached the DER."""
        commands = {(n, n): d[d.mw > 1e-9].reset_index(drop=True) for n, d in individual.items()}
        yield ctx.send(self.step("4"), commands, ctx.clock.dispatch_gate)
        received = [
            table for name in individual for table in ctx.inbox(name, Kind.DISPATCH).values()
        ]
        return collect_dispatch(received)
