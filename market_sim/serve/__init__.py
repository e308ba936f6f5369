"""The interactive page: ``market-sim serve CONFIG`` (mesa SolaraViz on a Solara server)."""
