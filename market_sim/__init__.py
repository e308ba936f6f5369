"""market_sim package."""
