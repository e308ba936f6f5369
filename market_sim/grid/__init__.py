"""Distribution networks: loading, AC power flow, bid validation.

``network`` loads SimBench networks and profiles (cached on disk); ``state`` turns operational
data back into set-points, ``injections`` moves them between arrays, bids, net tables and the
saved table.

``powerflow`` runs the repeated AC power flows of a period: on lightsim2grid
(``lightsim_conversion`` prepares the net, ``lightsim_model`` builds and solves it) or on
pandapower's ``runpp`` (``pandapower_reference``, also the replayable reference), summarised
against the limits by ``flow_summary``. ``sensitivities`` linearises a solved power flow
(``jacobian`` for the derivatives, ``adjoint`` for the transposed solves).

``validation`` is the entry point of the validation methods (``iterative_pf``, ``linear_opf``,
``ac_opf``), which share the limits of ``constraints``, the fairness policies of ``fairness``
and the tap search of ``oltc``.
"""
