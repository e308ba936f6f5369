"""Markets: the TSO's schedule and balancing market, DSO-level markets, priority, settlement."""
