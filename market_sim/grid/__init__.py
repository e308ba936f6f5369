"""Distribution networks: loading, AC power flow, bid validation.

``network`` loads SimBench networks and profiles (cached on disk); ``powerflow`` runs the
repeated AC power flows of a period; ``state`` turns operational data back into set-points;
``validation`` is the entry point of the validation methods (``linear_opf``, ``ac_opf``, the
rule-based iterative method), which share the limits of ``constraints``, the fairness policies
of ``fairness`` and the tap search of ``oltc``.
"""
