"""Distribution networks: loading, profiles, AC power flow, bid validation.

* :mod:`.network` loads a SimBench network once per run (with disk caches) and serves the
  baseline set-points of any 15-minute step.
* :mod:`.powerflow` applies bids, runs a fast Newton-Raphson on pandapower's internal case
  (identical to ``runpp`` to solver tolerance) and replays saved injections with plain
  ``runpp`` as the reference.
* :mod:`.validation` is the DSO's rule-based iterative power-flow validation of bids.
"""
