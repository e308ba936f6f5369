"""Mesa agents: Prosumer, Aggregator, DSO, TSO."""
