"""Markets: transmission DC-OPF clearing, aggregation, settlement."""
